"""End to end through the command line: run + plot on the embedded data, help, list, kill and resume."""

import csv
import os
import signal
import subprocess
import sys

import pytest
from conftest import ROOT, bnlab_cmd, run_plan, seed_sweep

from bnlab.runner.results import RunDir


def sh(*args, **kw):
    return subprocess.run(bnlab_cmd(*args), capture_output=True, text=True, cwd=kw.pop("cwd", ROOT), timeout=kw.pop("timeout", 300), **kw)


def summary(out):
    with open(out / "summary.csv", newline="") as f:
        return list(csv.DictReader(f))


@pytest.mark.slow
def test_run_then_plot_on_embedded_digits(tmp_path):
    out = tmp_path / "qs"
    r = sh("run", "configs/quickstart.yaml", "train.steps=200", "train.log_every=50", "sweep.grid.seed=[0,1]", "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    rows = summary(out)
    assert [row["run_id"] for row in rows] == [f"norm-{n}_seed-{s}" for n in ("none", "batch", "layer") for s in (0, 1)]
    assert all(row["status"] == "done" and row["step"] == "200" for row in rows)
    assert {"test_acc", "val_acc", "train_loss", "grad_norm", "config.optim.lr"} <= set(rows[0])
    bn = [float(row["test_acc"]) for row in rows if row["model.norm"] == "batch"]
    none = [float(row["test_acc"]) for row in rows if row["model.norm"] == "none"]
    assert min(bn) > max(none)  # Ioffe & Szegedy's sigmoid net: BN learns, plain SGD has not started yet
    r = sh("plot", str(out))
    assert r.returncode == 0, r.stderr
    figs = sorted(p.name for p in (out / "figures").iterdir())
    assert figs == ["final_test_acc_vs_norm.png", "grad_norms.png", "learning_curves.png"]
    assert all((out / "figures" / f).stat().st_size > 10_000 for f in figs)
    # a rerun trains nothing
    r = sh("run", "configs/quickstart.yaml", "train.steps=200", "train.log_every=50", "sweep.grid.seed=[0,1]", "--out", str(out), "--quiet")
    assert r.returncode == 0 and "6 done" in r.stdout
    # the same folder with a different config is refused, nothing touched
    r = sh("run", "configs/quickstart.yaml", "train.steps=300", "sweep.grid.seed=[0,1]", "--out", str(out), "--quiet")
    assert r.returncode == 2 and "different config" in r.stderr and "train.steps" in r.stderr


def test_help_everywhere_without_importing_jax():
    for args in ([], ["run"], ["plot"], ["list"]):
        r = sh(*args, "--help")
        assert r.returncode == 0 and "usage: bnlab" in r.stdout
    code = "import sys, bnlab, bnlab.cli; bnlab.cli.build_parser(); print(sorted(m for m in ('jax', 'tensorflow', 'pandas') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stderr


def test_list_names_every_registry_with_whole_descriptions():
    r = sh("list")
    assert r.returncode == 0
    for word in (
        "digits",
        "idx:<folder>",
        "tfds:<name>",
        "synthetic",
        "mlp",
        "cnn",
        "lstm",
        "batch",
        "layer",
        "group",
        "none",
        "batch_per_step",
        "sigmoid",
        "relu",
        "tanh",
        "he_normal",
        "normal",
        "sgd",
        "momentum",
        "adam",
        "activations",
        "landscape",
        "ics",
        "hessian",
        "surface",
    ):
        assert word in r.stdout
    from bnlab.data.sources import DATASETS
    from bnlab.measure.diagnostics import DIAGNOSTICS
    from bnlab.nn.models import MODELS
    from bnlab.nn.norms import NORMS

    for registry in (DATASETS, MODELS, NORMS, DIAGNOSTICS):
        for name, doc in registry.describe():
            assert doc and doc in r.stdout, name
            # never cut mid-sentence: a description does not stop on a joining word or open bracket
            assert not doc.rstrip().endswith((",", "(", " the", " of", " for", " to", " and", " in")), (name, doc)


def test_bad_override_exit_code_2_from_the_shell(tmp_path):
    r = sh("run", "configs/quickstart.yaml", "optim.lr=-1", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "optim.lr" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_plot_of_missing_folder_is_a_clear_error(tmp_path):
    r = sh("plot", str(tmp_path))
    assert r.returncode == 2 and "no runs/ folder" in r.stderr


def killed_at(run_id: str, step: int) -> dict[str, str]:
    """The environment of a bnlab process that SIGKILLs itself once `run_id` has logged `step`."""
    return {**os.environ, "BNLAB_DIE_AT": f"{run_id}:{step}"}


@pytest.mark.slow
def test_sweep_killed_with_sigkill_resumes_without_redoing_finished_runs(tmp_path):
    cfg = seed_sweep(tmp_path, seeds=4, steps=300)
    out = tmp_path / "out"
    r = sh("run", str(cfg), "--out", str(out), "--quiet", "--workers", "1", env=killed_at("seed-2", 100))
    assert r.returncode == -signal.SIGKILL
    statuses = {row["run_id"]: row["status"] for row in summary(out)}
    assert statuses == {"seed-0": "done", "seed-1": "done", "seed-2": "pending", "seed-3": "pending"}  # summary of the last finished run
    assert RunDir(out / "runs" / "seed-2").status()["status"] == "running"
    stamps = {rid: (out / "runs" / rid / "metrics.jsonl").stat().st_mtime_ns for rid in ("seed-0", "seed-1")}
    r = sh("run", str(cfg), "--out", str(out), "--quiet", "--workers", "1")
    assert r.returncode == 0, r.stderr
    assert all(row["status"] == "done" and row["step"] == "300" for row in summary(out))
    for rid, stamp in stamps.items():  # finished runs were not redone
        assert (out / "runs" / rid / "metrics.jsonl").stat().st_mtime_ns == stamp


@pytest.mark.slow
def test_workers_give_the_same_results_and_survive_a_killed_worker(tmp_path):
    cfg = seed_sweep(tmp_path, seeds=4, steps=300)
    ref = run_plan([], tmp_path / "ref", source=cfg, workers=1)[1]  # the reference, in this process
    out = tmp_path / "out"
    r = sh("run", str(cfg), "--out", str(out), "--quiet", "--workers", "2", env=killed_at("seed-1", 100))
    assert r.returncode == 1, r.stderr  # a failed run makes the command fail; the parent lives on
    statuses = {row["run_id"]: row["status"] for row in summary(out)}
    assert statuses == {"seed-0": "done", "seed-1": "failed", "seed-2": "done", "seed-3": "done"}
    assert "worker process died" in (out / "runs" / "seed-1" / "status.json").read_text()
    r = sh("run", str(cfg), "--out", str(out), "--quiet", "--workers", "2")  # the rerun retries it
    assert r.returncode == 0, r.stderr
    got = {row["run_id"]: row["test_loss"] for row in summary(out)}
    want = {row["run_id"]: row["test_loss"] for row in summary(ref)}
    for rid in want:  # workers pinned to one core compute the same numbers (to float reassociation)
        assert float(got[rid]) == pytest.approx(float(want[rid]), rel=1e-4)


def test_a_second_run_on_the_same_folder_is_refused(tmp_path):
    import fcntl

    out = tmp_path / "o"
    out.mkdir()
    with open(out / "sweep.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = sh("run", "configs/quickstart.yaml", "--out", str(out), "--quiet")
    assert r.returncode == 2 and "another `bnlab run`" in r.stderr


def test_reproduce_takes_the_same_execution_options_as_run():
    from bnlab.cli import _execution, build_parser

    parser = build_parser()
    for command in (["run", "c.yaml"], ["reproduce", "--quick"]):
        options = ["--workers", "3", "--vectorize", "off", "--executor", "ray", "--address", "10.0.0.5:6379", "--retries", "5"]
        args = parser.parse_args([*command, *options])
        assert _execution(args) == {"workers": 3, "vectorize": False, "executor": "ray", "address": "10.0.0.5:6379", "retries": 5}
        defaults = _execution(parser.parse_args(command))
        assert defaults == {"workers": None, "vectorize": None, "executor": "local", "address": None, "retries": 2}
