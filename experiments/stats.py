"""Intervals and verdict rules shared by the claims.

Intervals are Student-t 95% intervals over seeds; where two arms share seeds the interval is of the
per-seed (paired) difference. A verdict rule is fixed in the claim module before any result is read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"


@dataclass(frozen=True)
class Interval:
    """A mean with its 95% Student-t interval over `n` values (NaN bounds when n < 2)."""

    estimate: float
    low: float
    high: float
    n: int

    def format(self, digits: int = 2, scale: float = 1.0, unit: str = "", signed: bool = True) -> str:
        """'+1.23 [+0.50, +1.96] (n=3)'; signed=False for ratios."""
        e, lo, hi = (v * scale for v in (self.estimate, self.low, self.high))
        f = f"{'+' if signed else ''}.{digits}f"
        if self.n == 0:
            return "not measured (n=0)"
        if math.isnan(lo):
            return f"{e:{f}}{unit} (n={self.n}, no interval)"
        return f"{e:{f}}{unit} [{lo:{f}}, {hi:{f}}] (n={self.n})"

    def map(self, f) -> Interval:
        """The interval under an increasing function f (points from fractions, ratios from log ratios)."""
        return Interval(float(f(self.estimate)), float(f(self.low)), float(f(self.high)), self.n)


def seconds_per_step(metrics: pd.DataFrame, run_id: str) -> float:
    """A run's median seconds per training step over its logged chunks; NaN for a run that diverged
    before its first log row."""
    rows = metrics[(metrics["run_id"] == run_id) & (metrics["step"] > 0)]
    rows = rows.dropna(subset=["steps_per_sec"]) if "steps_per_sec" in rows else rows.iloc[:0]
    return float(np.median(1.0 / rows["steps_per_sec"].to_numpy())) if len(rows) else float("nan")


def t_interval(values, level: float = 0.95) -> Interval:
    """Mean and Student-t interval of `values` (NaNs dropped); zero spread gives a zero-width interval."""
    from scipy import stats

    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    n = len(v)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0)
    mean = float(v.mean())
    if n < 2:
        return Interval(mean, float("nan"), float("nan"), n)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * v.std(ddof=1) / math.sqrt(n))
    return Interval(mean, mean - half, mean + half, n)


def per_seed(runs: pd.DataFrame, value: str, **where) -> pd.Series:
    """`value` of the runs whose config matches `where` (e.g. **{"model.norm": "batch"}), indexed by seed."""
    rows = runs
    for key, wanted in where.items():
        rows = rows[rows[f"config.{key}"] == wanted]
    return rows.set_index("config.seed")[value].astype(float)


def paired(a: pd.Series, b: pd.Series) -> Interval:
    """Interval of b - a over the seeds both have."""
    seeds = sorted(set(a.index) & set(b.index))
    return t_interval([b[s] - a[s] for s in seeds])


def three_way(iv: Interval, support_at_least: float, refute_below: float) -> str:
    """The usual rule: supported if the estimate is at least `support_at_least` and the interval
    excludes 0 (lies above it); not supported if the whole interval lies below `refute_below`;
    otherwise inconclusive."""
    if iv.n >= 2 and iv.estimate >= support_at_least and iv.low > 0:
        return SUPPORTED
    if iv.n >= 2 and iv.high < refute_below:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def all_of(*verdicts: str) -> str:
    """Several parts of one claim: supported if all are, not supported if any is not."""
    if all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if any(v == NOT_SUPPORTED for v in verdicts):
        return NOT_SUPPORTED
    return INCONCLUSIVE
