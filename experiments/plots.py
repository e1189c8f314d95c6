"""Figure helpers the claims share. Every figure shows each seed's value, not only a summary: a
value against a swept number is a mean line with a dot per seed; a curve over training is a thin
line per seed under the mean; diverged runs are x marks at the bottom of the axis."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bnlab.nn.norms import NORMS  # noqa: E402
from bnlab.nn.recurrent import RNN_NORMS  # noqa: E402

FALLBACK = ["#d62728", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]
SEED_NOTE = "lines: mean over seeds; dots or thin lines: each seed"
DIVERGED_NOTE = "x at the bottom: a diverged run"


def color(arm: str, i: int = 0) -> str:
    """A norm's own colour (its registration's `colour=`), else the i-th fallback."""
    for registry in (NORMS, RNN_NORMS):
        if arm in registry and registry.declaration(arm).colour:
            return registry.declaration(arm).colour
    return FALLBACK[i % len(FALLBACK)]


def seed_dots(ax, x: float, values, c: str, *, logx: bool = False, width: float = 0.06) -> None:
    """One dot per seed at `x`, spread a little sideways (in log space on a log axis) so ties show."""
    v = np.asarray(list(values), dtype=float)
    if not len(v):
        return
    offsets = np.linspace(-width, width, len(v)) if len(v) > 1 else np.zeros(1)
    xs = x * 10**offsets if logx else x + offsets * (abs(x) if x else 1.0)
    ax.plot(xs, v, ".", color=c, ms=3.5, alpha=0.6, zorder=3)


def against(ax, runs: pd.DataFrame, x: str, arm: str, value: str, *, logx: bool = False, scale: float = 1.0, label_fmt: str = "{}") -> None:
    """`value` (a column of runs) against config `x`, a line per config `arm`: the mean over seeds
    of the runs that finished, a dot per seed; a run that diverged is an x at the bottom."""
    for i, (name, rows) in enumerate(runs.groupby(f"config.{arm}", sort=False)):
        c = color(str(name), i)
        done = rows[rows["status"] == "done"]
        g = done.groupby(f"config.{x}")[value]
        xs = np.asarray(sorted(g.groups), dtype=float)
        if len(xs):
            ax.plot(xs, g.mean().loc[xs].to_numpy() * scale, "o-", color=c, label=label_fmt.format(name), ms=4)
            for xv in xs:
                seed_dots(ax, xv, g.get_group(xv).to_numpy() * scale, c, logx=logx)
        diverged = rows[rows["status"] == "diverged"]
        if len(diverged):
            ax.plot(
                diverged[f"config.{x}"].astype(float), np.zeros(len(diverged)), "x", color=c, ms=7, transform=ax.get_xaxis_transform(), clip_on=False
            )
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.grid(alpha=0.3)


def seed_curves(ax, curves, c: str, label: str | None = None, marker: str = "") -> None:
    """Curves over training, one (steps, values) pair per seed: a thin line per seed and the mean
    over seeds at the steps every seed has, thick."""
    curves = [(np.asarray(s, dtype=float), np.asarray(v, dtype=float)) for s, v in curves if len(s)]
    if not curves:
        return
    for steps, vals in curves:
        ax.plot(steps, vals, color=c, lw=0.6, alpha=0.35)
    common = sorted(set.intersection(*(set(s.tolist()) for s, _ in curves)))
    if common:
        mean = np.mean([[v[list(s).index(t)] for t in common] for s, v in curves], axis=0)
        ax.plot(common, mean, marker + "-", color=c, lw=1.8, ms=3, label=label)


def metric_curves(metrics: pd.DataFrame, run_ids, column: str, scale: float = 1.0):
    """(steps, values) of `column` for each run, where it was logged."""
    out = []
    for rid in run_ids:
        rows = metrics[metrics["run_id"] == rid].dropna(subset=[column])
        out.append((rows["step"].to_numpy(), rows[column].to_numpy(float) * scale))
    return out


def save(fig, path: Path, note: str) -> None:
    """Save with a one-line note under the panels saying what the lines and dots are. The PNG names
    the matplotlib that drew it: with the same version a rebuilt figure is the same file, byte for byte."""
    fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8, color="#444444")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110, metadata={"Software": f"matplotlib {matplotlib.__version__}"})
    plt.close(fig)
