"""Intervals, tests and verdicts shared by the claims.

Intervals are Student-t 95% intervals over seeds (or over timing rounds); where two arms share seeds
the interval is of the per-seed (paired) difference. Each test reads the words of a claim:

- `superior` ("A is better than B"): the whole interval lies above a stated minimum effect;
- `equivalent` ("no difference", "as good as"): both ends of the 95% interval lie inside a margin
  fixed in advance, two one-sided tests (TOST) at the 2.5% level each; an interval that merely
  includes 0 is never support;
- `not_below` ("A does not reduce X"): a one-sided equivalence (non-inferiority) test;
- `median_interval` and `sign_test`: exact, distribution-free tests for quantised outcomes (the
  largest learning rate of a grid that trains), where a t-interval of equal values has zero width.

A rule is fixed in its claim module before the confirmation seeds run (experiments.claim.Rule).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

SUPPORTED, NOT_SUPPORTED, INCONCLUSIVE = "supported", "not supported", "inconclusive"
LEVEL = 0.95
CI = f"{LEVEL:.0%}"  # for the rules' text: 'the 95% interval'


@dataclass(frozen=True)
class Interval:
    """An estimate with its 95% interval over `n` values (NaN bounds when n < 2). `kind` says how
    the interval was made: 't' (Student-t, mean) or 'median' (exact, order statistics)."""

    estimate: float
    low: float
    high: float
    n: int
    kind: str = "t"

    def format(self, digits: int = 2, scale: float = 1.0, unit: str = "", signed: bool = True) -> str:
        """'+1.23 [+0.50, +1.96] (n=10)'; signed=False for ratios."""
        e, lo, hi = (v * scale for v in (self.estimate, self.low, self.high))
        f = f"{'+' if signed else ''}.{digits}f"
        if self.n == 0:
            return "not measured (n=0)"
        what = ", median" if self.kind == "median" else ""
        if math.isnan(lo):
            return f"{e:{f}}{unit} (n={self.n}{what}, no interval)"
        return f"{e:{f}}{unit} [{lo:{f}}, {hi:{f}}] (n={self.n}{what})"

    def map(self, f) -> Interval:
        """The interval under an increasing function f (points from fractions, ratios from log ratios)."""
        return Interval(float(f(self.estimate)), float(f(self.low)), float(f(self.high)), self.n, self.kind)

    def negated(self) -> Interval:
        return Interval(-self.estimate, -self.high, -self.low, self.n, self.kind)


def t_interval(values, level: float = LEVEL) -> Interval:
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


def median_interval(values, level: float = LEVEL) -> Interval:
    """The median and its exact distribution-free interval [x_(k), x_(n+1-k)] (order statistics),
    with k the largest rank whose binomial tail P(Bin(n, 1/2) < k) stays within (1 - level)/2: its
    coverage is at least `level` whatever the distribution, ties and quantised values included
    (n = 10: [x_(2), x_(9)], coverage 97.9%). NaN bounds where n is too small for any such k."""
    from scipy import stats

    v = np.sort(np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float))
    n = len(v)
    if n == 0:
        return Interval(float("nan"), float("nan"), float("nan"), 0, "median")
    k = 0
    while k + 1 <= n // 2 and stats.binom.cdf(k, n, 0.5) <= (1 - level) / 2:
        k += 1  # P(Bin < k+1) = cdf(k) within the tail: rank k+1 is still safe
    median = float(np.median(v))
    if k == 0:
        return Interval(median, float("nan"), float("nan"), n, "median")
    return Interval(median, float(v[k - 1]), float(v[n - k]), n, "median")


@dataclass(frozen=True)
class SignTest:
    """How many seeds favour A over B (`wins`), the other way (`losses`), ties, and the exact
    one-sided p-value P(Bin(wins + losses, 1/2) >= wins) that A does not beat B more often than B does A."""

    wins: int
    losses: int
    ties: int
    p: float

    def format(self) -> str:
        return (
            f"{self.wins} of {self.wins + self.losses + self.ties} seeds ({self.losses} the other way, {self.ties} tied; sign test p = {self.p:.3f})"
        )


def sign_test(differences) -> SignTest:
    from scipy import stats

    d = [x for x in differences if x is not None and not math.isnan(x)]
    wins, losses = sum(x > 0 for x in d), sum(x < 0 for x in d)
    p = float(stats.binom.sf(wins - 1, wins + losses, 0.5)) if wins + losses else 1.0
    return SignTest(wins, losses, len(d) - wins - losses, p)


def seeds_to_settle(iv: Interval, threshold: float, most: int = 1000) -> int | None:
    """How many seeds would put a Student-t interval wholly on one side of `threshold` if its
    estimate and spread stayed as they are (None: not a t-interval, the estimate sits on the
    threshold, or more than `most`). A ratio's interval (mapped from log ratios) is read in logs."""
    from scipy import stats

    if iv.kind != "t" or iv.n < 2 or math.isnan(iv.low):
        return None
    est, low, high, thr = iv.estimate, iv.low, iv.high, threshold
    if abs((high - est) - (est - low)) > 1e-9 * max(1.0, abs(high - low)):  # not symmetric: a mapped ratio
        if min(est, low, high, thr) <= 0:
            return None
        est, low, high, thr = (math.log(v) for v in (est, low, high, thr))
    distance = abs(est - thr)
    if distance == 0:
        return None
    sd = (high - low) / 2 / stats.t.ppf(0.5 + LEVEL / 2, iv.n - 1) * math.sqrt(iv.n)
    for n in range(iv.n, most + 1):
        if stats.t.ppf(0.5 + LEVEL / 2, n - 1) * sd / math.sqrt(n) < distance:
            return n
    return None


def accuracy(runs: pd.DataFrame, chance: float, column: str = "test_acc", **where) -> pd.Series:
    """Per seed, `column` of the runs matching `where`, a run that diverged (or has no finite value)
    counted at chance: dropping it would favour the arm that diverged."""
    rows = runs
    for key, wanted in where.items():
        rows = rows[rows[f"config.{key}"] == wanted]
    values = pd.to_numeric(rows[column], errors="coerce") if column in rows else pd.Series(np.nan, index=rows.index)
    ok = (rows["status"] == "done") & np.isfinite(values)
    return pd.Series(np.where(ok, values, chance), index=rows["config.seed"].astype(int).to_numpy(), dtype=float)


def per_seed(runs: pd.DataFrame, value: str, **where) -> pd.Series:
    """`value` of the runs whose config matches `where` (e.g. **{"model.norm": "batch"}), indexed by seed."""
    rows = runs
    for key, wanted in where.items():
        rows = rows[rows[f"config.{key}"] == wanted]
    return rows.set_index("config.seed")[value].astype(float)


def paired(a: pd.Series | dict, b: pd.Series | dict) -> Interval:
    """Interval of b - a over the seeds both have."""
    return t_interval(paired_differences(a, b))


def paired_differences(a: pd.Series | dict, b: pd.Series | dict) -> list[float]:
    """b - a per seed, over the seeds both have, in seed order."""
    a, b = dict(a.items()) if isinstance(a, pd.Series) else a, dict(b.items()) if isinstance(b, pd.Series) else b
    return [float(b[s] - a[s]) for s in sorted(set(a) & set(b))]


def superior(iv: Interval, min_effect: float, inclusive: bool = False) -> str:
    """'Better by at least `min_effect`': supported if the whole interval lies above it, not
    supported if the whole interval lies below it, otherwise inconclusive. `inclusive` for quantised
    outcomes, where an end exactly at the minimum effect counts (a grid step is reached, not passed)."""
    if iv.n < 2 or math.isnan(iv.low):
        return INCONCLUSIVE
    if iv.low > min_effect or (inclusive and iv.low >= min_effect):
        return SUPPORTED
    if iv.high < min_effect:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def inferior(iv: Interval, max_effect: float) -> str:
    """'Lower than `max_effect`' (BN's log ratio below 0): `superior` read the other way round."""
    return superior(iv.negated(), -max_effect)


def equivalent(iv: Interval, margin: float) -> str:
    """'No difference' within +-`margin` (TOST): supported if both ends of the 95% interval lie
    inside the margin; not supported if the whole interval lies outside it (a difference larger than
    the margin is shown); otherwise inconclusive."""
    if iv.n < 2 or math.isnan(iv.low):
        return INCONCLUSIVE
    if -margin < iv.low and iv.high < margin:
        return SUPPORTED
    if iv.low > margin or iv.high < -margin:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def not_below(iv: Interval, margin: float) -> str:
    """'Not lower by more than `margin`' (non-inferiority, one side of TOST): supported if the whole
    interval lies above -margin; not supported if it lies wholly below -margin."""
    return superior(iv, -margin)


def all_of(*verdicts: str) -> str:
    """Several parts of one claim, all needed: supported if all are, not supported if any is not."""
    if all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    if any(v == NOT_SUPPORTED for v in verdicts):
        return NOT_SUPPORTED
    return INCONCLUSIVE
