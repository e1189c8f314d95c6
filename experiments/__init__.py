"""The claims about Batch Normalization, one module per claim: a module of this package that
defines `CLAIM = Claim(...)` is a claim (no list to keep); its `number` orders the report.

bnlab reproduce [--scale quick|paper] [--only NAME ...] [--seeds 0,1,2] [--out results/claims]
bnlab report [results/claims]
"""

from __future__ import annotations

import functools
import pkgutil
from pathlib import Path

HERE = Path(__file__).resolve().parent


def claim_names() -> list[str]:
    """The claim modules, in report order."""
    return [c.name for c in load_claims()]


@functools.cache
def _discover() -> tuple:
    """The claim modules' Claims, in report order (found once per process)."""
    import importlib

    from .claim import Claim

    claims = []
    for info in pkgutil.iter_modules([str(HERE)]):
        if "CLAIM = Claim(" not in (HERE / f"{info.name}.py").read_text():  # the shared modules need no import
            continue
        claim = importlib.import_module(f"{__name__}.{info.name}").CLAIM
        if not isinstance(claim, Claim) or claim.name != info.name:
            raise ValueError(f"experiments/{info.name}.py: CLAIM must be a Claim named {info.name!r}")
        claims.append(claim)
    numbers = sorted(c.number for c in claims)
    if numbers != list(range(1, len(claims) + 1)):
        raise ValueError(f"the claims' numbers must be 1..{len(claims)}, each once; found {numbers}")
    return tuple(sorted(claims, key=lambda c: c.number))


def load_claims(names=None) -> list:
    """The Claim objects of the named modules (all, in report order, by default)."""
    from bnlab.errors import ConfigError

    claims = _discover()
    known = [c.name for c in claims]
    unknown = [n for n in (names or []) if n not in known]
    if unknown:
        raise ConfigError(f"--only: no claim named {', '.join(unknown)}; the claims are {', '.join(known)}")
    return [c for c in claims if not names or c.name in names]
