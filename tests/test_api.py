"""The Python API: bnlab.run, bnlab.load_results, bnlab.load_config, and the README's notebook example."""

import math
import re

import pytest
from conftest import ROOT

import bnlab

SMALL = {
    "model": {"width": 16, "depth": 2, "activation": "sigmoid"},
    "optim": {"lr": 0.5},
    "train": {"steps": 40, "log_every": 20, "batch_size": 32},
    "sweep": {"grid": {"model.norm": ["none", "batch"], "seed": [0, 1]}},
}


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    out = tmp_path_factory.mktemp("api") / "small"
    return out, bnlab.run(SMALL, out=out, workers=1)


def test_run_returns_a_row_per_run_and_per_logged_step(finished):
    out, (runs, metrics) = finished
    assert list(runs["run_id"]) == ["norm-none_seed-0", "norm-none_seed-1", "norm-batch_seed-0", "norm-batch_seed-1"]
    assert set(runs["status"]) == {"done"}
    assert list(runs["model.norm"]) == ["none", "none", "batch", "batch"] and list(runs["seed"]) == [0, 1, 0, 1]
    assert runs["test_acc"].between(0, 1).all() and (runs["config.train.steps"] == 40).all()
    assert len(metrics) == 4 * 3 and sorted(set(metrics["step"])) == [0, 20, 40]
    last = metrics[(metrics["run_id"] == "norm-batch_seed-1") & (metrics["step"] == 40)].iloc[0]
    assert last["test_acc"] == pytest.approx(runs.set_index("run_id").loc["norm-batch_seed-1", "test_acc"])
    assert last["eval_bn_stats"] == "running"


def test_load_results_reads_the_same_tables_back(finished):
    out, (runs, metrics) = finished
    again = bnlab.load_results(out)
    assert again.runs.equals(runs) and again.metrics.equals(metrics)


def test_a_run_saved_before_a_key_existed_reads_it_as_its_default(finished, tmp_path):
    import shutil

    import yaml

    out, _ = finished
    old = tmp_path / "old"
    shutil.copytree(out, old)
    for cfg in (old / "runs").glob("*/config.yaml"):  # as an older version saved it, without a key added since
        saved = yaml.safe_load(cfg.read_text())
        del saved["diagnostics"]["activations"]["point"]
        cfg.write_text(yaml.safe_dump(saved))
    runs = bnlab.load_results(old).runs
    assert set(runs["config.diagnostics.activations.point"]) == {"nonlinearity_input"}
    # a second run of the same config trains nothing and returns the same results
    assert bnlab.run(SMALL, out=out, workers=1).runs.equals(runs)


def test_load_config_validates_every_run_of_a_sweep(tmp_path):
    cfg = bnlab.load_config(ROOT / "configs" / "quickstart.yaml", ["optim.lr=0.1"])
    assert cfg.optim.lr == 0.1 and cfg.model.activation == "sigmoid" and cfg.sweep.grid["seed"] == [0, 1, 2]
    with pytest.raises(bnlab.ConfigError, match="model.norm"):
        bnlab.load_config(SMALL, ["sweep.grid.model.norm=[batch,bogus]"])
    with pytest.raises(bnlab.ConfigError, match="optim.lr"):
        bnlab.run(SMALL, ["optim.lr=-1"], out=tmp_path / "never")
    assert not (tmp_path / "never").exists()


def test_a_diverged_run_has_no_final_metrics(tmp_path):
    runs, _ = bnlab.run(
        {
            **SMALL,
            "model": {"width": 16, "depth": 2, "norm": "none", "init_scale": 30.0, "activation": "relu"},
            "sweep": {"grid": {"optim.lr": [1e6, 0.01]}},
        },
        out=tmp_path / "o",
        workers=1,
    )
    bad, good = runs.iloc[0], runs.iloc[1]
    assert bad["status"] == "diverged" and bad["diverged_step"] >= 0 and math.isnan(bad["test_acc"])
    assert good["status"] == "done" and good["test_acc"] > 0
    summary = (tmp_path / "o" / "summary.csv").read_text().splitlines()
    header, first = summary[0].split(","), summary[1].split(",")
    assert first[header.index("test_acc")] == ""  # not the last finite value before the blow-up


@pytest.mark.slow
def test_readme_notebook_example_runs(tmp_path, monkeypatch):
    readme = (ROOT / "README.md").read_text()
    section = readme.split("## Python API", 1)[1]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    monkeypatch.chdir(ROOT)
    out = re.search(r'out="([^"]+)"', code)
    assert out, 'the README\'s example should name its output folder as out="..."'
    code = code.replace(out.group(0), f"out={str(tmp_path / 'notebook')!r}")
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "notebook" / "summary.csv").exists()  # it trained where we told it to
    runs, metrics = namespace["runs"], namespace["metrics"]
    assert len(runs) >= 2 and len(metrics) > 0
