"""One compilation per network structure: numbers (optimiser, BN momentum and epsilon, dropout
rate, init) are traced arguments of the compiled training program, and each run's numbers really
reach it."""

import contextlib
import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_plan

from bnlab.config.load import load, to_object
from bnlab.data.dataset import load as load_dataset
from bnlab.train.program import TrainProgram
from bnlab.train.structure import as_arrays, structure_key, traced_numbers

TINY = ["model.width=16", "model.depth=2", "train.steps=20", "train.log_every=10", "train.batch_size=32"]


@pytest.fixture
def fresh_programs(monkeypatch):
    """No programs kept from earlier tests in this process."""
    from bnlab.runner import loop

    monkeypatch.setattr(loop, "PROGRAMS", loop.ProgramCache())


@contextlib.contextmanager
def compilations(function: str):
    """Counts compilations of the jitted `function` (JAX logs a persistent-cache hit as one too)."""
    seen: list[str] = []

    class Handler(logging.Handler):
        def emit(self, record):
            message = record.getMessage()
            if f"Finished XLA compilation of jit({function})" in message:
                seen.append(message)

    handler = Handler()
    logger = logging.getLogger("jax")
    logger.addHandler(handler)
    previous = jax.config.jax_log_compiles
    jax.config.update("jax_log_compiles", True)
    try:
        yield seen
    finally:
        jax.config.update("jax_log_compiles", previous)
        logger.removeHandler(handler)


def test_a_sweep_of_numbers_compiles_the_training_program_once(tmp_path, fresh_programs):
    sweep = [
        "model.norm=batch",
        "sweep.grid.optim.lr=[0.02,0.05,0.1]",
        "sweep.grid.seed=[0,1]",
        "sweep.zip.model.bn_momentum=[0.9,0.99]",
        "sweep.zip.model.norm_epsilon=[1e-5,1e-3]",
        "sweep.zip.model.init_scale=[1.0,2.0]",
    ]
    with compilations("chunk") as seen:
        counts, _ = run_plan(TINY + sweep, tmp_path / "o", workers=1)
    assert counts == {"done": 12}
    assert len(seen) == 1, seen


def test_a_structure_change_compiles_again(tmp_path, fresh_programs):
    sweep = ["sweep.grid.model.norm=[none,batch]", "sweep.grid.optim.lr=[0.05,0.1]", "sweep.grid.optim.clipvalue=[null,1.0]"]
    with compilations("chunk") as seen:
        counts, _ = run_plan(TINY + sweep, tmp_path / "o", workers=1)
    assert counts == {"done": 8}
    assert len(seen) == 4, seen  # norm x (clipping on/off); the learning rates share


@pytest.mark.parametrize(
    "key, a, b",
    [
        ("optim.lr", 0.05, 0.2),
        ("model.bn_momentum", 0.5, 0.99),
        ("model.norm_epsilon", 1e-5, 1.0),
        ("model.dropout", 0.1, 0.5),
        ("optim.global_clipnorm", 0.1, 10.0),
    ],
)
def test_a_run_trained_by_another_configs_program_gets_its_own_numbers(key, a, b):
    """Program A (built from config A) trained with B's numbers equals program B: the numbers are
    not baked into the compiled program. (Not equal to A's own training, or the test proves nothing.)"""
    base = TINY + ["model.norm=batch", "optim.name=momentum", "train.eval_bn_stats=population"]
    cfg_a, cfg_b = (to_object(load(None, base + [f"{key}={v}"])) for v in (a, b))
    assert structure_key(cfg_a) == structure_key(cfg_b)
    dataset = load_dataset(cfg_a.data)
    prog_a, prog_b = TrainProgram(cfg_a, dataset), TrainProgram(cfg_b, dataset)
    numbers_b = as_arrays(traced_numbers(cfg_b))
    own_a, _ = prog_a.train_chunk(prog_a.init(0), 15)
    a_with_b, _ = prog_a.train_chunk(prog_a.init(0), 15, numbers_b)
    own_b, _ = prog_b.train_chunk(prog_b.init(0), 15)
    leaves = lambda s: np.concatenate([np.ravel(x) for x in jax.tree.leaves((s.params, s.batch_stats))])  # noqa: E731
    np.testing.assert_allclose(leaves(a_with_b), leaves(own_b), rtol=1e-5, atol=1e-6)
    assert not np.allclose(leaves(own_a), leaves(own_b), rtol=1e-3, atol=1e-4)


def test_evaluation_takes_the_runs_epsilon():
    from bnlab.train.evaluation import Evaluator

    base = TINY + ["model.norm=batch"]
    cfg_a, cfg_b = (to_object(load(None, base + [f"model.norm_epsilon={v}"])) for v in (1e-5, 1.0))
    dataset = load_dataset(cfg_a.data)
    prog_a, prog_b = TrainProgram(cfg_a, dataset), TrainProgram(cfg_b, dataset)
    state, _ = prog_b.train_chunk(prog_b.init(0), 10)
    ev_a = Evaluator(prog_a.model, cfg_a, dataset, prog_a.x_train, prog_a.batch_size)
    ev_b = Evaluator(prog_b.model, cfg_b, dataset, prog_b.x_train, prog_b.batch_size)
    numbers_b = as_arrays(traced_numbers(cfg_b))
    for stats in ("running", "population"):
        got, want = ev_a.metrics(state, stats, numbers_b), ev_b.metrics(state, stats)
        assert got["test_loss"] == pytest.approx(want["test_loss"], rel=1e-5)
        assert ev_a.metrics(state, stats)["test_loss"] != pytest.approx(want["test_loss"], rel=1e-3)


def test_dropout_matches_flax_dropout():
    """The hidden layer's dropout (its rate may be traced) drops exactly what nnx.Dropout drops."""
    from flax import nnx

    from bnlab.nn.models import build

    cfg = to_object(load(None, TINY + ["model.dropout=0.3", "model.norm=none"]))
    layer = build(cfg.model, (8, 8, 1), 10, seed=0).hidden[0]
    x = jax.random.normal(jax.random.PRNGKey(1), (32, 64))
    key = jax.random.PRNGKey(3)
    out, pre = layer(x, train=True, rng=key)
    want = nnx.Dropout(0.3)(layer.act(pre), deterministic=False, rngs=jax.random.split(key)[1])
    assert 0 < float(jnp.mean(out == 0)) < 1
    np.testing.assert_allclose(out, want, rtol=1e-6)


def test_workers_get_one_run_per_structure_until_it_has_compiled(tmp_path):
    """Local workers never compile one program twice at once: the rest of a structure is ready
    only after its first run reports its programs compiled (a crash or the run's end counts too);
    a run goes out when a worker is free, the costliest ready run first."""
    import queue

    from bnlab.runner.plan import plan
    from bnlab.runner.workers import _Dispatch

    p = plan(None, TINY + ["sweep.grid.model.norm=[none,batch]", "sweep.grid.optim.lr=[0.05,0.1,0.2]"], tmp_path / "o")
    jobs: queue.Queue = queue.Queue()
    costs = {s.run_id: 1.0 for s in p.runs} | {"norm-batch_lr-0.2": 3.0, "norm-none_lr-0.1": 2.0}
    dispatch = _Dispatch(p, [s.run_id for s in p.runs], jobs, workers=2, costs=costs)

    def drain():
        out = []
        while not jobs.empty():
            out.append(jobs.get())
        return out

    assert drain() == ["norm-batch_lr-0.2", "norm-none_lr-0.1"]  # each structure's costliest run first
    dispatch.compiled("norm-batch_lr-0.2")
    assert drain() == []  # its structure is ready, but both workers are busy
    dispatch.ended("norm-batch_lr-0.2")
    assert drain() == ["norm-batch_lr-0.05"]  # the free worker takes a ready run (none's wait for their compile)
    dispatch.ended("norm-none_lr-0.1")  # its end counts as compiled: the rest of none is ready
    assert drain() == ["norm-batch_lr-0.1"]  # costs tie: the plan's order
    dispatch.ended("norm-batch_lr-0.05")
    dispatch.ended("norm-batch_lr-0.1")
    assert drain() == ["norm-none_lr-0.05", "norm-none_lr-0.2", None, None]  # then the workers stop


def test_run_costs_grow_with_steps_batch_and_width(tmp_path):
    from bnlab.runner.plan import plan
    from bnlab.runner.workers import estimated_costs

    tiny = [o for o in TINY if not o.startswith(("model.width=", "train.steps="))]
    p = plan(None, tiny + ["sweep.grid.train.steps=[10,20]", "sweep.grid.model.width=[8,64]"], tmp_path / "o")
    costs = estimated_costs(p, [s.run_id for s in p.runs])
    by = {(s.config.train.steps, s.config.model.width): costs[s.run_id] for s in p.runs}
    assert by[(20, 8)] == pytest.approx(2 * by[(10, 8)]) and by[(10, 64)] > by[(10, 8)]


def test_every_split_is_evaluated_by_one_program_and_equals_a_direct_pass():
    """Validation, test and training splits of different sizes (144, 359, 1294 digits) share one
    compiled evaluation program (one batch shape, the last batch of each zero-padded and masked),
    and the padded examples change nothing: each split's loss and accuracy equal one direct pass."""
    from bnlab.train.evaluation import Evaluator
    from bnlab.train.state import per_example

    cfg = to_object(load(None, TINY + ["model.norm=batch", "train.eval_train=true", "train.eval_batch_size=100"]))
    dataset = load_dataset(cfg.data)
    program = TrainProgram(cfg, dataset)
    state, _ = program.train_chunk(program.init(0), 10)
    evaluator = Evaluator(program.model, cfg, dataset, program.x_train, program.batch_size)
    with compilations("_evaluate_batch") as seen:
        row = evaluator.metrics(state, "running")
    assert len(seen) == 1, seen
    for split, x, y in (
        ("val", dataset.x_val, dataset.y_val),
        ("test", dataset.x_test, dataset.y_test),
        ("train_eval", dataset.x_train, dataset.y_train),
    ):
        assert len(y) % 100 != 0
        logits = program.model.apply(state.params, state.batch_stats, jnp.asarray(x), train=False).logits
        losses, correct = per_example(logits, jnp.asarray(y), "classification")
        assert row[f"{split}_loss"] == pytest.approx(float(losses.mean()), rel=1e-5)
        assert row[f"{split}_acc"] == pytest.approx(float(correct.mean()), abs=1e-6)


def test_init_numbers_are_traced_arguments_of_one_initial_state_program():
    """model.init_scale, init_std, norm_gamma_init and recurrent_gain reach the initial values (the
    same seed gives exactly scaled kernels, and the norms' scale equals gamma), and every init
    config of one structure shares one compiled initial-state program."""
    from bnlab.train.model_fns import ModelFunctions

    def model(overrides):
        cfg = to_object(load(None, TINY + overrides))
        ds = load_dataset(cfg.data)
        return cfg, ModelFunctions(cfg.model, ds.image_shape, ds.num_classes, ds.task)

    import dataclasses

    for base, key, a, b, kernels in [
        (["model.init=he_normal", "model.norm=batch"], "init_scale", 1.0, 3.0, lambda p: [p["hidden"][0]["layer"]["kernel"], p["head"]["kernel"]]),
        (["model.init=normal"], "init_std", 0.05, 0.2, lambda p: [p["hidden"][1]["layer"]["kernel"]]),
        (["model.name=rnn", "model.norm=none"], "recurrent_gain", 1.0, 1.5, lambda p: [p["hidden"][0]["h"]["kernel"], p["hidden"][1]["h"]["kernel"]]),
    ]:
        cfg, fns = model(base)
        with compilations("init") as seen:
            pa, _ = fns.init_variables(4, dataclasses.replace(cfg.model, **{key: a}))
            pb, _ = fns.init_variables(4, dataclasses.replace(cfg.model, **{key: b}))
        assert len(seen) == 1, (key, seen)
        for ka, kb in zip(kernels(pa), kernels(pb)):
            np.testing.assert_allclose(np.asarray(kb), np.asarray(ka) * (b / a), rtol=2e-6, err_msg=key)
    cfg, fns = model(["model.norm=batch"])
    params, _ = fns.init_variables(0, dataclasses.replace(cfg.model, norm_gamma_init=0.25))
    np.testing.assert_array_equal(np.asarray(params["hidden"][0]["norm"]["scale"]), 0.25)
    with pytest.raises(ValueError, match="more than its numbers"):
        fns.init_variables(0, dataclasses.replace(cfg.model, init="he_normal"))
