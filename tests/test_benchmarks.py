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
