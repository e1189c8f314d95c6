"""The Ray executor against a local Ray cluster started on loopback by the test."""

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, bnlab_cmd, seed_sweep

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).parent / "ray")


# the test's cluster stays on loopback (Ray's single-node mode) and uses token auth, driver included
ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(16).hex()}


@pytest.fixture(scope="module")
def cluster():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    start = [RAY, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}", "--num-cpus=2",
             "--include-dashboard=false", "--disable-usage-stats"]
    r = subprocess.run(start, capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr
    yield f"127.0.0.1:{port}"
    subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120, env=ENV)


def sweep(tmp_path, runs=4, steps=3000):
    return seed_sweep(tmp_path, seeds=runs, steps=steps)


def summary(out):
    with open(out / "summary.csv", newline="") as f:
        return {r["run_id"]: r for r in csv.DictReader(f)}


def task_pids():
    pids = []
    for pid in os.listdir("/proc"):
        if pid.isdigit():
            try:
                if open(f"/proc/{pid}/cmdline", "rb").read().startswith(b"ray::_task"):
                    pids.append(int(pid))
            except OSError:
                pass
    return pids


def run_and_kill_a_worker(cfg, out, address, retries):
    proc = subprocess.Popen(bnlab_cmd("run", str(cfg), "--out", str(out), "--quiet", "--executor", "ray", "--address", address,
                                      "--retries", str(retries)), cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=ENV)
    killed, deadline = None, time.time() + 180
    while killed is None and time.time() < deadline:
        running = [p for p in (out / "runs").glob("*/status.json") if '"running"' in p.read_text()] if (out / "runs").exists() else []
        pids = task_pids()
        if running and pids:
            killed = pids[0]
            os.kill(killed, signal.SIGKILL)
        time.sleep(0.05)
    stdout, stderr = proc.communicate(timeout=300)
    assert killed is not None, "no Ray task to kill"
    return proc.returncode, stderr


def test_ray_sweep_matches_local_and_retries_a_killed_worker(tmp_path, cluster):
    cfg = sweep(tmp_path)
    local = tmp_path / "local"
    assert subprocess.run(bnlab_cmd("run", str(cfg), "--out", str(local), "--quiet", "--workers", "1"), cwd=ROOT).returncode == 0
    out = tmp_path / "ray"
    code, stderr = run_and_kill_a_worker(cfg, out, cluster, retries=2)
    assert code == 0, stderr
    got, want = summary(out), summary(local)
    assert all(r["status"] == "done" and r["step"] == "3000" for r in got.values())
    for rid in want:
        assert float(got[rid]["test_loss"]) == pytest.approx(float(want[rid]["test_loss"]), rel=1e-4)


def test_ray_without_retries_records_the_killed_run_and_a_rerun_finishes_it(tmp_path, cluster):
    cfg = sweep(tmp_path)
    out = tmp_path / "ray"
    code, stderr = run_and_kill_a_worker(cfg, out, cluster, retries=0)
    assert code == 1, stderr  # a failed run makes the command fail
    statuses = {rid: r["status"] for rid, r in summary(out).items()}
    assert list(statuses.values()).count("failed") == 1 and list(statuses.values()).count("done") == 3
    done_before = {rid: (out / "runs" / rid / "metrics.jsonl").stat().st_mtime_ns for rid, s in statuses.items() if s == "done"}
    r = subprocess.run(bnlab_cmd("run", str(cfg), "--out", str(out), "--quiet", "--executor", "ray", "--address", cluster),
                       cwd=ROOT, capture_output=True, text=True, timeout=300, env=ENV)
    assert r.returncode == 0, r.stderr
    assert all(s["status"] == "done" for s in summary(out).values())
    for rid, stamp in done_before.items():  # finished runs were not redone
        assert (out / "runs" / rid / "metrics.jsonl").stat().st_mtime_ns == stamp


def test_bad_ray_address_is_a_clear_error(tmp_path):
    r = subprocess.run(bnlab_cmd("run", str(sweep(tmp_path, runs=1, steps=10)), "--out", str(tmp_path / "o"), "--executor", "ray",
                                 "--address", "127.0.0.1:1"), cwd=ROOT, capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 2 and "Ray" in r.stderr and "Traceback" not in r.stderr
