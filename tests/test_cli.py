"""End to end through the command line: run + plot on the embedded data, help, list, kill and resume."""

import csv
import os
import signal
import subprocess
import sys
import time

import pytest
from conftest import ROOT, bnlab_cmd, seed_sweep


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


def test_help_everywhere_and_fast():
    for args in ([], ["run"], ["plot"], ["list"]):
        t = time.perf_counter()
        r = sh(*args, "--help")
        assert r.returncode == 0 and "usage: bnlab" in r.stdout
        assert time.perf_counter() - t < 5  # generous; the point is that JAX is not imported
    r = subprocess.run([sys.executable, "-c", "import sys, bnlab.cli; bnlab.cli.build_parser(); print('jax' in sys.modules)"], capture_output=True, text=True)
    assert r.stdout.strip() == "False"


def test_list_names_every_registry():
    r = sh("list")
    assert r.returncode == 0
    for word in ("digits", "idx:<folder>", "tfds:<name>", "synthetic", "mlp", "cnn", "batch", "layer", "group", "none",
                 "sigmoid", "relu", "tanh", "he_normal", "normal", "sgd", "momentum", "adam"):
        assert word in r.stdout


def test_bad_override_exit_code_2_from_the_shell(tmp_path):
    r = sh("run", "configs/quickstart.yaml", "optim.lr=-1", "--out", str(tmp_path / "x"))
    assert r.returncode == 2 and "optim.lr" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "x").exists()


def test_plot_of_missing_folder_is_a_clear_error(tmp_path):
    r = sh("plot", str(tmp_path))
    assert r.returncode == 2 and "no runs/ folder" in r.stderr


@pytest.mark.slow
def test_sweep_killed_with_sigkill_resumes_without_redoing_finished_runs(tmp_path):
    cfg = seed_sweep(tmp_path, seeds=6, steps=3000)
    out = tmp_path / "out"
    proc = subprocess.Popen(bnlab_cmd("run", str(cfg), "--out", str(out), "--quiet"), cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    done = []
    while time.time() < deadline:
        if (out / "summary.csv").exists():
            done = [r["run_id"] for r in summary(out) if r["status"] == "done"]
            if len(done) >= 2:
                break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert len(done) >= 2, "the sweep did not finish two runs in time"
    statuses = {r["run_id"]: r["status"] for r in summary(out)}
    assert list(statuses.values()).count("done") < 6, "killed too late to test resume"
    stamps = {rid: (out / "runs" / rid / "metrics.jsonl").stat().st_mtime_ns for rid in done}
    r = sh("run", str(cfg), "--out", str(out), "--quiet")
    assert r.returncode == 0, r.stderr
    assert all(row["status"] == "done" and row["step"] == "3000" for row in summary(out))
    for rid, stamp in stamps.items():  # finished runs were not redone
        assert (out / "runs" / rid / "metrics.jsonl").stat().st_mtime_ns == stamp


def _children(pid: int) -> list[int]:
    out = []
    for stat in os.listdir("/proc"):
        if stat.isdigit():
            try:
                fields = open(f"/proc/{stat}/stat").read().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                out.append(int(stat))
    return out


@pytest.mark.slow
def test_workers_give_the_same_results_and_survive_a_killed_worker(tmp_path):
    cfg = seed_sweep(tmp_path, seeds=4, steps=1500)
    ref = tmp_path / "ref"
    assert sh("run", str(cfg), "--out", str(ref), "--quiet", "--workers", "1").returncode == 0
    out = tmp_path / "out"
    proc = subprocess.Popen(bnlab_cmd("run", str(cfg), "--out", str(out), "--quiet", "--workers", "2"), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed = None
    deadline = time.time() + 120
    while time.time() < deadline and killed is None:  # kill one worker while it trains a run
        running = [p for p in (out / "runs").glob("*/status.json") if '"running"' in p.read_text()] if (out / "runs").exists() else []
        kids = [k for k in _children(proc.pid) if "resource_tracker" not in open(f"/proc/{k}/cmdline").read()]
        if running and len(kids) >= 2:
            killed = kids[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=240)
    assert killed is not None
    assert proc.returncode == 1, stderr  # a failed run makes the command fail
    statuses = {r["run_id"]: r["status"] for r in summary(out)}
    assert list(statuses.values()).count("failed") == 1 and list(statuses.values()).count("done") == 3
    failed = next(rid for rid, s in statuses.items() if s == "failed")
    assert "worker process died" in (out / "runs" / failed / "status.json").read_text()
    r = sh("run", str(cfg), "--out", str(out), "--quiet", "--workers", "2")  # the rerun retries it
    assert r.returncode == 0, r.stderr
    got = {row["run_id"]: row["test_loss"] for row in summary(out)}
    want = {row["run_id"]: row["test_loss"] for row in summary(ref)}
    for rid in want:  # single-threaded workers compute the same numbers (to float reassociation)
        assert float(got[rid]) == pytest.approx(float(want[rid]), rel=1e-4)


def test_a_second_run_on_the_same_folder_is_refused(tmp_path):
    import fcntl

    out = tmp_path / "o"
    out.mkdir()
    with open(out / "sweep.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        r = sh("run", "configs/quickstart.yaml", "--out", str(out), "--quiet")
    assert r.returncode == 2 and "another `bnlab run`" in r.stderr
