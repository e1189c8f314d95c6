"""The Ray executor against a local Ray cluster started on loopback by the test."""

import csv
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT, bnlab_cmd, run_plan, seed_sweep

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
    start = [
        RAY,
        "start",
        "--head",
        "--node-ip-address=127.0.0.1",
        f"--port={port}",
        "--num-cpus=2",
        "--include-dashboard=false",
        "--disable-usage-stats",
    ]
    r = subprocess.run(start, capture_output=True, text=True, timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr
    yield f"127.0.0.1:{port}"
    subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120, env=ENV)


def sweep(tmp_path, runs=4, steps=300):
    return seed_sweep(tmp_path, seeds=runs, steps=steps)


def summary(out):
    with open(out / "summary.csv", newline="") as f:
        return {r["run_id"]: r for r in csv.DictReader(f)}


def run_on_ray(cfg, out, address, retries, die_at=None):
    """`bnlab run --executor ray`; with `die_at` (run_id:step) the task training that run SIGKILLs itself there, once."""
    env = {**ENV, "BNLAB_DIE_AT": die_at} if die_at else ENV
    return subprocess.run(
        bnlab_cmd("run", str(cfg), "--out", str(out), "--quiet", "--executor", "ray", "--address", address, "--retries", str(retries)),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )


def test_ray_records_a_killed_run_retries_another_and_matches_local(tmp_path, cluster):
    cfg = sweep(tmp_path)
    out = tmp_path / "ray"
    r = run_on_ray(cfg, out, cluster, retries=0, die_at="seed-2:200")  # no retries: the killed run is failed
    assert r.returncode == 1, r.stderr  # a failed run makes the command fail
    statuses = {rid: row["status"] for rid, row in summary(out).items()}
    assert statuses == {"seed-0": "done", "seed-1": "done", "seed-2": "failed", "seed-3": "done"}
    done_before = {rid: (out / "runs" / rid / "metrics.jsonl").stat().st_mtime_ns for rid, s in statuses.items() if s == "done"}
    (out / "runs" / "seed-2" / ".killed-at-200").unlink()  # the rerun's task dies there again, once, and is retried
    r = run_on_ray(cfg, out, cluster, retries=2, die_at="seed-2:200")
    assert r.returncode == 0, r.stderr
    assert (out / "runs" / "seed-2" / ".killed-at-200").exists()
    got = summary(out)
    assert all(row["status"] == "done" and row["step"] == "300" for row in got.values())
    for rid, stamp in done_before.items():  # finished runs were not redone
        assert (out / "runs" / rid / "metrics.jsonl").stat().st_mtime_ns == stamp
    local = run_plan([], tmp_path / "local", source=cfg, workers=1)[1]  # the same numbers as a local run
    for rid, row in summary(local).items():
        assert float(got[rid]["test_loss"]) == pytest.approx(float(row["test_loss"]), rel=1e-4)


def test_bad_ray_address_is_a_clear_error(tmp_path):
    r = subprocess.run(
        bnlab_cmd("run", str(sweep(tmp_path, runs=1, steps=10)), "--out", str(tmp_path / "o"), "--executor", "ray", "--address", "127.0.0.1:1"),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        env=ENV,
    )
    assert r.returncode == 2 and "Ray" in r.stderr and "Traceback" not in r.stderr
