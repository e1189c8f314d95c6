"""The speed benchmark is a command users run for the README's table: it must keep running (no
timings are checked here, only that every row comes out)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_speed_benchmark_prints_every_single_run_row():
    command = [sys.executable, "benchmarks/speed.py", "--steps", "10", "--repeats", "1", "--blocks", "1", "--skip-sweeps"]
    proc = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [line.split()[:2] for line in proc.stdout.splitlines() if line.startswith(("mlp ", "cnn "))]
    assert rows == [["mlp", "none"], ["mlp", "batch"], ["cnn", "none"], ["cnn", "batch"]]


def test_speed_benchmark_rejects_an_unknown_model():
    proc = subprocess.run([sys.executable, "benchmarks/speed.py", "--models", "vgg"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert "unknown vgg; allowed: mlp, cnn" in proc.stderr


def _event(name, tid, ts, dur=1e-6, **extra):
    return {"name": name, "tid": tid, "ts": ts, "dur": dur, **extra}


def _task(tid, ts, dur, bind_id):
    return [_event("ThreadpoolListener::Region", tid, ts, dur), _event("ThreadpoolListener::StartRegion", tid, ts, bind_id=bind_id)]


def test_step_profile_counts_each_ops_pool_tasks_and_the_waits_for_a_sleeping_thread():
    """A synthetic trace: op A (thread 1) schedules a task that thread 2 starts 5 us later and that
    schedules one more; the runtime, between ops, hands thread 2 a task that runs op C."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from step_profile import BETWEEN_OPS, Trace

    events = [
        _event("A", 1, 0, 10),
        _event("ThreadpoolListener::Record", 1, 1, bind_id=7),
        *_task(2, 6, 5, 7),  # A's work on thread 2, after waiting 5 us for it to wake up
        _event("ThreadpoolListener::Record", 2, 7, bind_id=9),  # inside A's task: A's too
        *_task(1, 10.2, 0.5, 9),
        _event("ThreadpoolListener::Record", 1, 11.25, bind_id=8),  # between ops
        *_task(2, 11.5, 10, 8),  # the runtime running op C, not work of its own
        _event("B", 1, 12, 3),
        _event("C", 2, 12, 2),
    ]
    trace = Trace(events, {"A": "a", "B": "b", "C": "c"})
    assert trace.thread_time() == {"A": 15.5, "B": 3, "C": 2}
    wall, idle, waits = trace.idle()
    assert (wall, idle) == (15, 1)  # busy 0-11 and 12-15
    assert waits == {"A": 5, BETWEEN_OPS: 0.75}  # thread 2 asleep 1-6 (A) and 11.25-12 (the runtime's task)
