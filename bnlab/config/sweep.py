"""Expand a config's `sweep:` block into runs, each with a stable, readable id.

    sweep:
      grid: {model.norm: [none, batch], seed: [0, 1]}   # product: 4 runs
      zip:  {optim.lr: [0.1, 1.0], train.batch_size: [60, 600]}  # pairs, crossed with the grid

The run id is built from the values that vary, in the order the axes are written, e.g.
`norm-batch_seed-1_lr-0.1_batch_size-60`, so it does not change when unrelated config changes.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from .load import to_object, with_values
from .schema import Config, SweepConfig


@dataclass(frozen=True)
class RunSpec:
    run_id: str
    config: Config
    varying: dict[str, Any]  # dotted key -> value, in axis order


def _fmt(value: Any) -> str:
    text = repr(value) if isinstance(value, float) else str(value)
    return re.sub(r"[^A-Za-z0-9.+=-]+", "-", text).strip("-") or "x"


def _short_names(keys: list[str]) -> dict[str, str]:
    """Last component of each dotted key, or the whole key where the last components collide."""
    last = [k.rsplit(".", 1)[-1] for k in keys]
    return {k: (s if last.count(s) == 1 else k) for k, s in zip(keys, last)}


def run_id(varying: dict[str, Any]) -> str:
    if not varying:
        return "run"
    names = _short_names(list(varying))
    return "_".join(f"{names[k]}-{_fmt(v)}" for k, v in varying.items())


def _plain(value: Any) -> Any:
    return OmegaConf.to_container(value) if OmegaConf.is_config(value) else value


def expand(cfg: DictConfig) -> list[RunSpec]:
    """All runs of a config (not yet validated: see bnlab.runner.validate). A config without a sweep
    block is one run, id `run`."""
    grid = OmegaConf.to_container(cfg.sweep.grid)
    zipped = OmegaConf.to_container(cfg.sweep.zip)
    both = set(grid) & set(zipped)
    if both:
        raise ConfigError(f"sweep: {', '.join(sorted(both))} appear in both grid and zip; use one")
    for kind, axes in (("grid", grid), ("zip", zipped)):
        for key, values in axes.items():
            if not isinstance(values, list) or not values:
                raise ConfigError(f"sweep.{kind}.{key}: must be a non-empty list of values, got {values!r}")
    lengths = {k: len(v) for k, v in zipped.items()}
    if len(set(lengths.values())) > 1:
        raise ConfigError(f"sweep.zip: all axes must have the same length, got {lengths}")

    grid_points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())] or [{}]
    zip_points = [dict(zip(zipped, combo)) for combo in zip(*zipped.values())] or [{}]
    base = with_values(cfg, {})
    base.sweep = OmegaConf.structured(SweepConfig)  # each run's saved config is that run alone

    runs: list[RunSpec] = []
    seen: dict[str, dict[str, Any]] = {}
    for g in grid_points:
        for z in zip_points:
            run_dc = with_values(base, {**g, **z})
            # typed values (e.g. the string "1e6" read as the float 1000000.0) make the id
            varying = {k: _plain(OmegaConf.select(run_dc, k)) for k in {**g, **z}}
            rid = run_id(varying)
            if rid in seen:
                raise ConfigError(f"sweep: two runs get the same id {rid!r} ({seen[rid]} and {varying}); remove repeated values")
            seen[rid] = varying
            runs.append(RunSpec(rid, to_object(run_dc), varying))
    return runs
