"""A fair setting per arm (issue 'Claims, part 4'): where arms would otherwise share one learning
rate that suits only one of them, each arm gets its own, chosen from a small grid on tuning seeds
(>= 100) by its final validation accuracy, before the confirmation seeds (0-9) run at it.

The tuning runs have a folder of their own, `<out>/<claim>.tuning`, whatever confirmation seeds
run, so `--seeds 10,11,...` confirms the same choice (delete the folders when the Tune changes). The choice is a function of that folder's saved
runs, and the confirmation folder's sweep (its `sweep.yaml`) lists every arm with its value: each
arm's runs can be repeated with `bnlab run <folder>/sweep.yaml`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from . import describe


@dataclass(frozen=True)
class Tune:
    """Each arm's own value of `key`, the one of `values` with the highest mean final `by` over
    `seeds` (a run that diverged counts at chance; a tie goes to the value listed first)."""

    values: tuple[float, ...]
    also: tuple[float, ...] = ()  # values every arm runs at on the confirmation seeds too (a fixed-lr comparison kept as a part)
    at: tuple[tuple[str, Any], ...] = ()  # (axis, value): tune there only, and keep the choice for every value of that axis
    key: str = "optim.lr"
    seeds: tuple[int, ...] = (100, 101, 102, 103, 104)
    by: str = "val_acc"

    def __post_init__(self):
        if min(self.seeds) < 100:
            raise ValueError(f"tuning seeds must be >= 100 (0-99 are kept for confirmation), got {self.seeds}")
        if not self.by.endswith("_acc"):  # the highest value wins, and a diverged run counts at chance
            raise ValueError(f"Tune.by must be an accuracy (val_acc, ...), got {self.by!r}")


def folder(out: Path, name: str) -> Path:
    return out / f"{name}.tuning"


def overrides(tune: Tune) -> list[str]:
    """The claim's sweep at the tuning seeds, every value of the grid crossed with every arm (at the
    `at` values of their axes)."""
    return [
        f"sweep.grid.seed=[{','.join(map(str, tune.seeds))}]",
        f"sweep.grid.{tune.key}=[{','.join(map(str, tune.values))}]",
        *(f"sweep.grid.{axis}=[{value}]" for axis, value in tune.at),
    ]


def arm_axes(cfg: Any, tune: Tune) -> list[str]:
    """The sweep's axes other than the seed and the `at` axes: a combination of their values is an arm."""
    fixed = {axis for axis, _ in tune.at}
    return [k for k in (*cfg.sweep.grid, *cfg.sweep.zip) if k != "seed" and k not in fixed]


def choose(runs, tune: Tune, axes: list[str], chance: float) -> list[dict]:
    """Per arm (in the order the tuning runs list them): its axes' values, the chosen value and
    the mean final `by` of every value, from the tuning folder's runs table."""
    import numpy as np

    arms: dict[tuple, dict] = {}
    runs = runs[runs["config.seed"].isin(tune.seeds)]  # a run left from other tuning seeds does not count
    for _, r in runs.iterrows():
        arm = tuple(describe.hashable(r[f"config.{a}"]) for a in axes)
        score = r.get(tune.by)
        ok = r["status"] == "done" and score is not None and not (isinstance(score, float) and math.isnan(score))
        entry = arms.setdefault(arm, {"arm": {a: _unset_as_none(r[f"config.{a}"]) for a in axes}, "scores": {}})
        entry["scores"].setdefault(float(r[f"config.{tune.key}"]), []).append(float(score) if ok else chance)
    chosen = []
    for entry in arms.values():
        means = {v: float(np.mean(entry["scores"][v])) for v in tune.values if v in entry["scores"]}
        best = max(means, key=lambda v: (means[v], -tune.values.index(v)))
        chosen.append({"arm": entry["arm"], "value": best, "means": {str(v): round(m, 6) for v, m in means.items()}})
    return chosen


def _unset_as_none(v):
    """An unset config value (null) as the config has it: the runs table reads it as NaN."""
    return None if isinstance(v, float) and math.isnan(v) else v


def confirmation(cfg, tune: Tune, chosen: list[dict], seeds: list[int]) -> dict:
    """The claim's config as a mapping whose sweep runs every arm at its chosen value (and at the
    values of `also`) over `seeds`: the seeds as the grid, the arms (their axes and the value) as one zip."""
    source = OmegaConf.to_container(cfg)
    points = [(c["arm"], v) for c in chosen for v in dict.fromkeys([c["value"], *tune.also])]  # chosen first, no value twice
    held = {axis: source["sweep"]["grid"][axis] for axis, _ in tune.at}  # every value of an `at` axis, at the arm's choice
    source["sweep"] = {
        "grid": {**held, "seed": list(seeds)},
        "zip": {**{a: [arm[a] for arm, _ in points] for a in chosen[0]["arm"]}, tune.key: [v for _, v in points]},
    }
    return source


def record(tune: Tune, chosen: list[dict]) -> dict:
    """What claim.json keeps of the tuning (the setup text reads it)."""
    return {
        "key": tune.key,
        "values": list(tune.values),
        "also": list(tune.also),
        "at": {axis: value for axis, value in tune.at},
        "seeds": list(tune.seeds),
        "by": tune.by,
        "chosen": chosen,
    }


def text(tuned: dict, arm_name) -> str:
    """'lr per arm, the best of 0.01, 0.05 and 0.1 by mean final validation accuracy over tuning
    seeds 100-104: BN 0.1, none 0.05'; `arm_name(arm dict) -> str` names an arm."""
    by = {"val_acc": "validation accuracy", "val_loss": "validation loss"}.get(tuned["by"], tuned["by"])
    key = tuned["key"].rsplit(".", 1)[-1]
    picks = ", ".join(f"{arm_name(c['arm'])} {describe.number(c['value'])}" for c in tuned["chosen"])
    at = "".join(f" at {axis.rsplit('.', 1)[-1]} {describe.number(v)}" for axis, v in tuned.get("at", {}).items())
    return (
        f"{key} per arm, the best of {describe.listed(tuned['values'])} by mean final {by}{at} over tuning seeds "
        f"{describe.seeds(tuned['seeds'])}: {picks}"
    )


def at_edge(tuned: dict, arm_name) -> list[str]:
    """The arms whose chosen value is the grid's smallest or largest: a better one may lie beyond it."""
    ends = (min(tuned["values"]), max(tuned["values"]))
    return [arm_name(c["arm"]) for c in tuned["chosen"] if c["value"] in ends]


def details(tuned: dict, arm_name, where: str = "") -> list[str]:
    """The report's lines on a tuning: each arm's mean final validation accuracy per value, and the
    arms chosen at an end of the grid. `where`: e.g. ' at batch 32'."""
    lines = [
        f"tuning{where} (seeds {describe.seeds(tuned['seeds'])}), mean final validation accuracy per lr: "
        + "; ".join(
            arm_name(c["arm"]) + " " + ", ".join(f"{describe.number(float(v))}: {100 * m:.1f}%" for v, m in c["means"].items())
            for c in tuned["chosen"]
        )
    ]
    edge = at_edge(tuned, arm_name)
    if edge:
        lines.append("chosen lr at an end of the grid (a better one may lie beyond it): " + ", ".join(edge))
    return lines


def chosen_runs(runs, tuned: dict):
    """The confirmation runs at each arm's chosen value (dropping those at the `also` values only)."""
    import numpy as np

    keep = np.zeros(len(runs), dtype=bool)
    for c in tuned["chosen"]:
        match = runs[f"config.{tuned['key']}"].astype(float) == float(c["value"])
        for axis, value in c["arm"].items():
            wanted = describe.hashable(value)
            match &= runs[f"config.{axis}"].map(lambda v, wanted=wanted: describe.hashable(v) == wanted)  # None == None, as pandas' == is not
        keep |= match.to_numpy()
    return runs[keep]
