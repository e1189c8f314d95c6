"""Timing helper shared by the benchmarks: medians of repeated calls after a compiling warm-up."""

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
