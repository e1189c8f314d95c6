import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MNIST_T10K = ROOT.parent / "shared" / "data" / "mnist-t10k"

# tests train tiny nets for a few steps: compiling is most of their time, and XLA's cheapest code generation
# cuts that by a third (measured: 65 s -> 44 s for the diagnostics and inference tests, cold cache)
os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()
# a private compilation cache per test session keeps tests independent of a user's cache
os.environ.setdefault("BNLAB_JAX_CACHE", str(Path(os.environ.get("PYTEST_CACHE_BASE", "/tmp")) / "bnlab-test-jax-cache"))
os.environ.setdefault("BNLAB_DATA_CACHE", str(Path(os.environ.get("PYTEST_CACHE_BASE", "/tmp")) / "bnlab-test-data-cache"))


def pytest_sessionstart(session):
    """Programs compiled by in-process tests go to the same cache as the CLI's (a rerun compiles nothing)."""
    from bnlab.runner.compilation_cache import enable_compilation_cache

    enable_compilation_cache()


@pytest.fixture
def tiny_overrides():
    """A run that trains in well under a second on the embedded digits."""
    return ["model.width=16", "model.depth=2", "train.steps=40", "train.log_every=20", "train.batch_size=32"]


def seed_sweep(tmp_path: Path, seeds: int, steps: int) -> Path:
    """A config file: a small BN MLP on the digits, swept over `seeds` seeds of `steps` steps."""
    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(
        "model: {width: 32, depth: 2, norm: batch}\n"
        f"train: {{steps: {steps}, log_every: 100, batch_size: 32}}\n"
        f"sweep: {{grid: {{seed: {list(range(seeds))}}}}}\n"
    )
    return cfg


def run_plan(overrides: list[str], out: Path, source=None, **execute_options) -> tuple[dict[str, int], Path]:
    """Plan and execute in this process: (counts by status, the results folder)."""
    from bnlab.runner.execute import execute
    from bnlab.runner.plan import plan

    p = plan(source, overrides, out)
    return execute(p, **execute_options), p.out_dir


def bnlab_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "bnlab", *args]
