"""Timing helpers shared by the benchmarks: medians of repeated calls after a compiling warm-up, and
where a PyTorch baseline runs (on the accelerator JAX uses, so that the two are compared on one device)."""

from __future__ import annotations

import statistics
import time

import jax


def median_seconds(fn, repeats: int) -> float:
    """Median wall seconds of `fn()`, waiting for its device results; the first call (compiling) is not timed."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def torch_device(torch) -> str:
    """'cuda' where JAX runs on a GPU and PyTorch sees one, else 'cpu'."""
    return "cuda" if jax.default_backend() == "gpu" and torch.cuda.is_available() else "cpu"


def torch_sync(torch, device: str) -> None:
    """Wait for PyTorch's queued GPU work, so that a block's time includes it (eager CUDA calls return early)."""
    if device == "cuda":
        torch.cuda.synchronize()
