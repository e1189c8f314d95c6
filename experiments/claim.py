"""What a claim module declares: the claim as its source states it, the verdict rule (fixed before
any result is read), and three functions of saved results only (analysis, figure) or of nothing
but the config (extra measurements that are not training runs).

Its sweep is one YAML file per scale, `configs/claims/<name>.<scale>.yaml`: a user's own ablation
is the same kind of file, run with `bnlab run`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .stats import Interval

ROOT = Path(__file__).resolve().parents[1]
SCALES = ("quick", "paper")


@dataclass(frozen=True)
class Finding:
    """What the analysis of one results folder found."""

    statistic: str  # what the interval measures, in words and units
    value: Interval
    verdict: str  # stats.SUPPORTED | NOT_SUPPORTED | INCONCLUSIVE
    reason: str  # one or two sentences
    details: list[str] = field(default_factory=list)  # extra report lines (a small table, sub-statistics)
    signed: bool = True  # False for a ratio

    def value_text(self) -> str:
        return self.value.format(signed=self.signed)


@dataclass(frozen=True)
class Claim:
    name: str
    title: str
    source: str  # paper, section / figure
    quote: str
    setup: str  # the quick-scale setup in one or two sentences
    rule: str  # the verdict rule, in words
    analyse: Callable[[Any, dict], Finding]  # (bnlab.Results, measurements) -> Finding
    figure: Callable[[Any, dict, Path], None]  # (bnlab.Results, measurements, png path)
    measure: Callable[[Any, list[int]], dict] | None = None  # (the claim's Config, seeds) -> JSON-able measurements
    workers: int | None = None  # None: bnlab's default; 1 where timings must come from one process
    differs: str = ""  # where our setup differs from the paper's, and what that may change

    def config(self, scale: str) -> Path:
        return ROOT / "configs" / "claims" / f"{self.name}.{scale}.yaml"
