"""`bnlab reproduce` on a real two-node Ray cluster on this machine (a head and a worker node on
loopback): a small reproduction of two claims runs on both nodes; the worker node is killed while it
trains a run, and Ray's own retry (max_retries) finishes that run on the head, so every run ends
done exactly once and the report is written."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, bnlab_cmd

ray = pytest.importorskip("ray")
pytestmark = pytest.mark.slow
RAY = str(Path(sys.executable).parent / "ray")
ENV = {**os.environ, "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "1", "RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": os.urandom(16).hex()}
CLAIMS = ("ics", "init_drift")
TINY = [  # small nets, runs of a few seconds (long enough to be caught training), 12 runs per claim
    "data.mnist1d_samples=500",
    "model.depth=3",
    "train.steps=3000",
    "train.log_every=100",
    "diagnostics.ics.schedule.every=500",
    "diagnostics.activations.schedule.every=500",
    "diagnostics.activations.batch_size=50",
    "sweep.grid.seed=[0,1,2]",
]


def _raylets() -> dict[int, str]:
    """session (and process group) id -> raylet socket path of every raylet on this machine."""
    out = subprocess.run(["ps", "-ww", "-eo", "pgid,args"], capture_output=True, text=True).stdout
    found = {}
    for line in out.splitlines():
        if "/raylet/raylet " in line:
            pgid, args = line.strip().split(" ", 1)
            socket_arg = next(a for a in args.split() if a.startswith("--raylet_socket_name="))
            found[int(pgid)] = socket_arg.split("=", 1)[1]
    return found


@pytest.fixture
def two_nodes():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    address = f"127.0.0.1:{port}"
    common = ["--node-ip-address=127.0.0.1", "--num-cpus=1", "--disable-usage-stats"]
    before = set(_raylets())

    def start(*args):  # each node in a session of its own, so that the worker node can be killed as a process group
        r = subprocess.run([RAY, "start", *args, *common], capture_output=True, text=True, timeout=120, env=ENV, start_new_session=True)
        assert r.returncode == 0, r.stderr

    try:
        start("--head", f"--port={port}", "--include-dashboard=false")
        head = set(_raylets()) - before
        start(f"--address={address}")
        (worker_pgid,) = set(_raylets()) - before - head
        probe = (
            f"import ray; ray.init(address='{address}', logging_level='ERROR'); print([(n['NodeID'], n['RayletSocketName']) for n in ray.nodes()])"
        )
        printed = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=ENV).stdout
        worker_node = next(node for node, sock in eval(printed.strip().splitlines()[-1]) if sock == _raylets()[worker_pgid])
        yield address, worker_pgid, worker_node
    finally:
        subprocess.run([RAY, "stop", "--force"], capture_output=True, timeout=120, env=ENV)


def _kill_session(sid: int) -> int:
    """SIGKILL every process of a node: its raylet and its workers share the session that its
    `ray start` began (each worker has a process group of its own)."""
    out = subprocess.run(["ps", "-ww", "-eo", "pid,sid"], capture_output=True, text=True).stdout
    killed = 0
    for line in out.splitlines()[1:]:
        pid, session = (int(v) for v in line.split())
        if session == sid:
            try:
                os.kill(pid, signal.SIGKILL)
                killed += 1
            except ProcessLookupError:
                pass
    return killed


def _task_log(out: Path) -> list[dict]:
    """Every task start of every claim, with the claim's folder."""
    lines = []
    for path in sorted(out.glob("*/ray_tasks.jsonl")):
        lines += [{**json.loads(line), "folder": path.parent} for line in path.read_text().splitlines() if line.strip()]
    return lines


def test_a_reproduction_on_two_nodes_survives_a_killed_worker_node(tmp_path, two_nodes):
    address, worker_pgid, worker_node = two_nodes
    out = tmp_path / "claims"
    cmd = bnlab_cmd("reproduce", "--quick", "--only", *CLAIMS, "--out", str(out), "--quiet")
    cmd += ["--executor", "ray", "--address", address, "--retries", "3", *TINY]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    killed_run = None
    deadline = time.time() + 240
    while killed_run is None and time.time() < deadline and proc.poll() is None:
        for task in _task_log(out):  # a run the worker node is training now
            path = task["folder"] / "runs" / task["run_id"] / "status.json"
            try:
                status = json.loads(path.read_text()) if task["node"] == worker_node else {}
            except (OSError, ValueError):
                continue
            if status.get("status") == "running" and 0 < status.get("step", 0) <= status.get("total_steps", 0) // 2:
                assert _kill_session(worker_pgid) >= 2  # the raylet and the task's worker at least
                killed_run = (task["folder"], task["run_id"])
                break
        time.sleep(0.2)
    stdout, stderr = proc.communicate(timeout=600)
    assert killed_run is not None, "the worker node was never caught training a run"
    assert proc.returncode == 0, stderr[-3000:]
    starts = _task_log(out)
    nodes = {t["node"] for t in starts}
    assert len(nodes) == 2  # the runs were spread over both nodes
    retried = [t for t in starts if (t["folder"], t["run_id"]) == killed_run]
    assert len(retried) >= 2 and retried[-1]["node"] != worker_node  # Ray ran it again, on the live node
    for claim in CLAIMS:
        for run in (out / claim / "runs").iterdir():  # every run finished, its metrics written once
            assert json.loads((run / "status.json").read_text())["status"] in ("done", "diverged"), run
            steps = [json.loads(line)["step"] for line in (run / "metrics.jsonl").read_text().splitlines()]
            assert steps == sorted(set(steps)), run
    report = (tmp_path / "REPORT.md").read_text()
    assert "Internal covariate shift is not why BN works" in report and "Careful initialisation balances layers" in report
