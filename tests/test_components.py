"""The component contract: every number a component declares traced really reaches its modules
through one compiled program, an undeclared number recompiles, and a norm written as a newcomer
would (docs/extending.md, run here as written) trains with each run's own numbers or fails clearly."""

import ast
import re
from pathlib import Path

import jax
import numpy as np
import pytest
from conftest import ROOT, run_plan

from bnlab.config.load import load, to_object
from bnlab.config.schema import ModelConfig
from bnlab.errors import ConfigError
from bnlab.nn.models import MODELS, RECURRENT
from bnlab.nn.norms import NORMS
from bnlab.nn.recurrent import RNN_NORMS
from bnlab.nn.traced import give_numbers
from bnlab.train.model_fns import ModelFunctions
from bnlab.train.structure import structure_key

VALUES = {"bn_momentum": (0.5, 0.9), "norm_epsilon": (1e-5, 10.0), "renorm_rmax": (1.5, 3.0), "renorm_dmax": (0.2, 5.0), "dropout": (0.2, 0.5)}


def declared_cases():
    for norm in NORMS.names():
        yield from (("mlp", norm, key) for key in NORMS.declaration(norm).traced)
    for norm in RNN_NORMS.names():
        yield from (("lstm", norm, key) for key in RNN_NORMS.declaration(norm).traced)
    for model in MODELS.names():
        yield from ((model, "none" if model in RECURRENT else "batch", key) for key in MODELS.declaration(model).traced)


def test_every_registered_component_is_covered():
    cases = list(declared_cases())
    assert {n for m, n, _ in cases if m == "mlp"} >= {"batch", "layer", "group", "batch_renorm", "whiten", "lp", "ghost_batch"}
    assert {m for m, _, k in cases if k == "dropout"} == {"mlp", "cnn", "dln"}
    assert all(key in VALUES for _, _, key in cases), "a new traced number needs two values here"


@pytest.mark.parametrize("model,norm,key", list(declared_cases()))
def test_sweeping_a_declared_traced_number_changes_the_outputs_through_one_program(model, norm, key):
    cfg = ModelConfig(
        name=model,
        norm=norm,
        depth=2,
        width=8 if model == "cnn" else 16,
        groups=4,
        whiten_group_size=4,
        ghost_batch_size=8,
        activation="linear" if model == "dln" else "relu",
        dropout=0.3 if key == "dropout" else 0.0,
    )
    fns = ModelFunctions(cfg, (8, 8, 1), 10, "classification")
    params, stats = fns.init_variables(0)
    x = 5.0 * jax.random.normal(jax.random.key(1), (32, 8, 8, 1)) + 3.0  # far from the running statistics: renorm's r and d clip

    @jax.jit
    def forward(numbers):
        out = fns.apply(params, stats, x, train=True, rng=jax.random.key(2), numbers=numbers)
        return out.logits, out.batch_stats

    a, b = (forward({key: np.float32(v)}) for v in VALUES[key])
    assert forward._cache_size() == 1
    leaves_a, leaves_b = jax.tree.leaves(a), jax.tree.leaves(b)
    assert any(not np.allclose(u, v, rtol=1e-4, atol=1e-6) for u, v in zip(leaves_a, leaves_b)), f"{key} changed nothing"


def config(*overrides):
    return to_object(load(None, ["model.width=16", "model.depth=2", *overrides]))


def test_a_number_no_selected_component_declares_is_structure():
    # lp's p changes the program's branches: an option, not traced
    assert structure_key(config("model.norm=lp", "model.lp_p=1")) != structure_key(config("model.norm=lp", "model.lp_p=2"))
    # BN's epsilon is traced for BN, so one program; LayerNorm has no momentum, so a momentum sweep of
    # a LayerNorm net is a sweep of a number it does not read
    assert structure_key(config("model.norm=batch", "model.norm_epsilon=1e-3")) == structure_key(config("model.norm=batch"))
    assert structure_key(config("model.norm=layer", "model.bn_momentum=0.5")) != structure_key(config("model.norm=layer"))
    # sgd takes no momentum; the momentum optimiser does
    assert structure_key(config("optim.name=sgd", "optim.momentum=0.5")) != structure_key(config("optim.name=sgd"))
    assert structure_key(config("optim.name=momentum", "optim.momentum=0.5")) == structure_key(config("optim.name=momentum"))


def test_a_modules_own_attribute_named_like_a_number_is_left_alone():
    from flax import nnx

    class Scaled(nnx.Module):
        def __init__(self):
            self.epsilon, self.momentum, self.dropout_rate = 0.5, 0.25, 0.125

    module = Scaled()
    give_numbers(module, {"norm_epsilon": 1.0, "bn_momentum": 0.9, "dropout": 0.3})
    assert (module.epsilon, module.momentum, module.dropout_rate) == (0.5, 0.25, 0.125)


# -- the newcomer's RMSNorm, from docs/extending.md -------------------------------------------------


def extending_blocks() -> list[str]:
    text = (ROOT / "docs" / "extending.md").read_text()
    section = text.split("## A norm", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```python\n(.*?)```", section, re.S)


@pytest.fixture
def scratch_norms(monkeypatch):
    """NORMS as it is now, restored after the test (the docs' norms register into it)."""
    for attr in ("_entries", "_docs", "_declarations"):  # without the docs' norms, should a reader have pasted them in
        monkeypatch.setattr(NORMS, attr, {k: v for k, v in getattr(NORMS, attr).items() if k not in ("rms", "rms_traced")})


def docs_command() -> tuple[str, list[str]]:
    """The config and overrides of the `bnlab run` command docs/extending.md gives for the RMSNorm."""
    import shlex

    text = (ROOT / "docs" / "extending.md").read_text().split("## A norm", 1)[1]
    words = shlex.split(re.search(r"`(bnlab run [^`]+)`", text).group(1))
    return words[2], words[3:]


def final_losses(tmp_path: Path, norm: str) -> list[float]:
    """The docs' command, with `norm` for rms and 20 steps of a small net."""
    import pandas as pd

    config, overrides = docs_command()
    overrides = [o.replace("[rms]", f"[{norm}]") for o in overrides]
    short = ["model.width=16", "model.depth=2", "train.steps=20", "train.log_every=10", "train.batch_size=32", "sweep.grid.seed=[0]"]
    counts, out = run_plan([*overrides, *short], tmp_path / norm, source=ROOT / config, workers=1, vectorize=False)
    assert counts.get("done") == 2, counts
    table = pd.read_csv(out / "summary.csv").sort_values("model.norm_epsilon")
    return list(table["train_loss"])


def test_the_docs_rmsnorm_trains_each_epsilon_with_its_own_value(tmp_path, scratch_norms):
    blocks = extending_blocks()
    assert len(blocks) == 2, "docs/extending.md: the plain RMSNorm and the traced one"
    namespace: dict = {}
    for block in blocks:
        ast.parse(block)
        exec(compile(block, "docs/extending.md", "exec"), namespace)
    for norm in ("rms", "rms_traced"):
        small, large = final_losses(tmp_path, norm)
        assert small != pytest.approx(large, rel=1e-3), f"{norm}: both epsilons gave the same loss"
    # plain: epsilon is structure; traced: one structure for both
    keys = {norm: {structure_key(config(f"model.norm={norm}", f"model.norm_epsilon={e}")) for e in (1e-5, 100.0)} for norm in ("rms", "rms_traced")}
    assert len(keys["rms"]) == 2 and len(keys["rms_traced"]) == 1


def test_a_traced_number_no_module_takes_is_a_clear_error(tmp_path, scratch_norms):
    declared = 'options=("norm_gamma_init",), traced=("norm_epsilon",)'  # epsilon traced, but RMSNorm takes no NUMBERS
    code = extending_blocks()[0].replace('options=("norm_epsilon", "norm_gamma_init")', declared)
    exec(compile(code, "docs", "exec"), {})
    with pytest.raises(ConfigError, match=r"declares model\.norm_epsilon as traced, but none of its modules takes it"):
        ModelFunctions(config("model.norm=rms").model, (8, 8, 1), 10, "classification")


def test_a_declaration_naming_no_config_key_is_refused():
    with pytest.raises(ValueError, match="model.epsilon, which is not a config key"):
        NORMS.register("typo", traced=("epsilon",))


# -- the worked claim, from docs/extending.md --------------------------------------------------------


@pytest.mark.slow
def test_the_docs_claim_runs_and_reaches_the_report(tmp_path):
    import dataclasses

    from experiments import load_claims
    from experiments.reproduce import reproduce

    text = (ROOT / "docs" / "extending.md").read_text().split("## A claim, worked", 1)[1]
    code = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    yaml = re.search(r"```yaml\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "docs/extending.md", "exec"), namespace)
    (tmp_path / "layer_vs_batch.quick.yaml").write_text(yaml)
    claim = dataclasses.replace(namespace["CLAIM"], configs=tmp_path, number=len(load_claims()) + 1)
    out, report = tmp_path / "claims", tmp_path / "REPORT.md"
    reproduce([claim], "quick", None, out, report, progress=False, overrides=[*claim.tiny, "sweep.grid.seed=[0,1]"], execution={"workers": 1})
    body = report.read_text()
    section = body.split(f"## {claim.number}. {claim.title}", 1)[1]
    assert "**Verdict: " in section.split("\n## ", 1)[0] and (out / "layer_vs_batch" / "figure.png").exists()
    assert "20 steps" in section or "20 training steps" in section  # the setup reports the steps that ran, not the YAML's 3,000
    # no paper-scale file: reported as not run at that scale, with the reason
    paper = tmp_path / "paper"
    reproduce([claim], "paper", None, paper / "claims", paper / "REPORT.md", progress=False)
    assert "has no paper-scale sweep" in (paper / "claims" / "layer_vs_batch" / "skipped.txt").read_text()
    assert "| not run |" in (paper / "REPORT.md").read_text()
