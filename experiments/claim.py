"""What a claim module declares: the claim as its source states it, the source's own numbers, the
verdict rule (fixed and committed before the confirmation seeds run, with its history), and
functions of saved results only (setup text, analysis, figure) or of nothing but the config (extra
measurements that are not training runs, such as step timings).

Its sweep is one YAML file per scale, `configs/claims/<name>.<scale>.yaml`: a user's own ablation
is the same kind of file, run with `bnlab run`.

No measured number is written by hand: the setup text is formatted from the configs that ran, the
verdict's reason and the "where this differs" facts from the analysis (tests/test_claims.py checks
every static string of every claim module). A claim's verdict combines its parts: supported if
every part is, not supported if any part is not, otherwise inconclusive.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .stats import Interval, all_of
from .tuning import Tune

ROOT = Path(__file__).resolve().parents[1]
SCALES = ("quick", "paper")
# what had been seen when the version-2 rules were written: seeds 0-5 are among the confirmation seeds 0-9
SEEN_UNDER_V1 = "no new runs; seeds 0-5, among today's confirmation seeds 0-9, had been run and read under version 1"
# why every rule of version 1 was replaced (each RuleChange adds its own reasons)
STATISTICS_REVIEW = (
    "a review of the statistics (issue 'Claims, part 3'): version 1 counted 'better by at least X' as an estimate of at least X with "
    "an interval above 0, showed one number in the table where another part decided, and ran on three seeds; version 2 asks the whole "
    "interval to lie above the minimum effect, tests 'no difference' by equivalence within a margin, shows every part, and runs ten seeds"
)


@dataclass(frozen=True)
class Part:
    """One judged part of a claim: what it says, the statistic that decides it, its verdict."""

    label: str  # "a", "b", ... ("" for a claim of one part)
    says: str  # the part of the claim, in words
    statistic: str  # what the value measures, in words and units
    value: Interval | str  # an interval, or the text of an exact check
    verdict: str  # stats.SUPPORTED | NOT_SUPPORTED | INCONCLUSIVE
    signed: bool = True  # False for a ratio
    digits: int = 2
    threshold: float | None = None  # the bound the interval is judged against (minimum effect, margin), in the value's units

    def value_text(self) -> str:
        return self.value if isinstance(self.value, str) else self.value.format(self.digits, signed=self.signed)


@dataclass(frozen=True)
class Ours:
    """Our number for the table that sets it beside the source's."""

    quantity: str
    model: str
    data: str
    scale: str
    value: str


@dataclass(frozen=True)
class Finding:
    """What the analysis of one results folder found."""

    parts: tuple[Part, ...]
    reason: str  # one or two sentences, formatted from the numbers
    details: list[str] = field(default_factory=list)  # extra report lines (sub-statistics, reported-not-judged numbers)
    ours: tuple[Ours, ...] = ()
    facts: dict[str, str] = field(default_factory=dict)  # the fields of the claim's `differs` text

    @property
    def verdict(self) -> str:
        return all_of(*(p.verdict for p in self.parts))


@dataclass(frozen=True)
class PaperNumber:
    """A headline number of the source, as it states it."""

    quantity: str
    value: str
    model: str
    data: str
    scale: str
    where: str  # paper and section / figure / table


@dataclass(frozen=True)
class RuleChange:
    """A rule that was replaced after confirmation results existed: its text and verdict are kept."""

    version: int
    fixed: str  # date it was fixed
    text: str  # the rule, verbatim
    verdict: str  # what it gave, on which seeds
    changed: str  # date of the change
    reason: str


@dataclass(frozen=True)
class Rule:
    version: int
    fixed: str  # the date it was fixed and committed, before the confirmation seeds ran
    explored_on: str  # what was looked at before it was fixed (seeds, and under which version)
    text: str
    history: tuple[RuleChange, ...] = ()


@dataclass(frozen=True)
class Claim:
    name: str  # its module's name: experiments/<name>.py
    number: int  # its place in the report (1, 2, ...): claims are found by experiments.load_claims, not listed
    title: str
    source: str  # paper, section / figure
    quote: str
    setup: Callable[[Any, dict], str]  # (bnlab.Results, claim.json record) -> the setup, formatted from the configs that ran
    rule: Rule
    analyse: Callable[[Any, dict], Finding]  # (bnlab.Results, measurements) -> Finding
    figure: Callable[[Any, dict, Path], None]  # (bnlab.Results, measurements, png path)
    paper: tuple[PaperNumber, ...] = ()
    measure: Callable[[Any, list[int]], dict] | None = None  # (the claim's Config, seeds) -> JSON-able measurements
    differs: str = ""  # where our setup differs from the paper's; {fields} filled from Finding.facts
    tune: Tune | None = None  # each arm's own lr, chosen on tuning seeds before the confirmation seeds run (experiments.tuning)
    fresh_seeds: tuple[int, ...] = ()  # a second confirmation set reproduce runs too (a rule changed after seeds 0-9 were read)
    ceiling: bool = True  # the report's ceiling check applies (False for claims not about accuracy: timings, one-step gradients)
    tiny: tuple[str, ...] = ()  # overrides that shrink every arm to a CI-sized run (tests run each claim with them)
    configs: Path = ROOT / "configs" / "claims"  # where its <name>.<scale>.yaml sweeps are

    def config(self, scale: str) -> Path:
        """Its sweep at this scale; a scale it has no file for is reported as not run."""
        return self.configs / f"{self.name}.{scale}.yaml"
