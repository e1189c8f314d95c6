"""Saved runs as the figures see them, and the helpers every figure shares.

A configuration is a set of runs that differ only in `seed`; figures show the mean over seeds with
a band whose span each figure states.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np

from ..runner.results import SavedRun as Run

COLORS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"]


def short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def group_runs(runs: list[Run], keys: list[str]) -> dict[str, list[Run]]:
    """Label -> runs, over the varying keys except the seed (label order follows the runs)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        label = ", ".join(f"{short(k)}={run.config[k]}" for k in keys if k != "seed") or "all runs"
        groups.setdefault(label, []).append(run)
    return groups


def has_metric(groups: dict[str, list[Run]], metric: str) -> bool:
    """Whether any run logged a value (not null) for `metric`."""
    return any(r.get(metric) is not None for runs in groups.values() for run in runs for r in run.rows)


def series(runs: list[Run], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and a (runs x steps) array of a metric, NaN where a run has no value (e.g. after divergence)."""
    steps = sorted({r["step"] for run in runs for r in run.rows if r.get(metric) is not None})
    index = {s: i for i, s in enumerate(steps)}
    values = np.full((len(runs), len(steps)), np.nan)
    for i, run in enumerate(runs):
        for r in run.rows:
            if r.get(metric) is not None:
                values[i, index[r["step"]]] = r[metric]
    return np.asarray(steps), values


def nan_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over runs, ignoring runs without a value (all-NaN columns stay NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, 0), np.nanmin(values, 0), np.nanmax(values, 0)


def seeds_note(runs: list[Run]) -> str:
    return f"{len(runs)} seed{'s' * (len(runs) != 1)}"


def legend_label(label: str, runs: list[Run]) -> str:
    """The configuration's label, its seed count, and how many of its runs diverged."""
    n_div = sum(r.diverged for r in runs)
    return f"{label} ({seeds_note(runs)}" + (f", {n_div} diverged)" if n_div else ")")


def mark_diverged(ax, runs: list[Run], metric: str, color: str) -> None:
    """An x at the step each diverged run diverged, at its last logged value of `metric`."""
    for run in runs:
        if run.diverged:
            last = [r for r in run.rows if r.get(metric) is not None]
            if last:
                ax.plot([run.status.get("diverged_step", last[-1]["step"])], [last[-1][metric]], "x", color=color, markersize=9, mew=2)


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, path: Path) -> Path:
    fig.savefig(path, dpi=110)
    pyplot().close(fig)
    return path
