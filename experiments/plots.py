"""Figure helpers the claims share: a value against a swept number, one line per arm, the mean
over seeds with a min-max band; diverged runs as x marks at the bottom of the axis."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

COLORS = {"none": "#7f7f7f", "batch": "#1f77b4", "layer": "#ff7f0e", "group": "#2ca02c", "ghost_batch": "#9467bd"}
FALLBACK = ["#d62728", "#8c564b", "#e377c2", "#bcbd22", "#17becf"]


def color(arm: str, i: int = 0) -> str:
    return COLORS.get(arm, FALLBACK[i % len(FALLBACK)])


def against(ax, runs: pd.DataFrame, x: str, arm: str, value: str, *, logx: bool = False, scale: float = 1.0, label_fmt: str = "{}") -> None:
    """`value` (a column of runs) against config `x`, a line per config `arm`: mean over seeds of the
    runs that finished, band = min-max; a run that diverged is an x at the bottom."""
    for i, (name, rows) in enumerate(runs.groupby(f"config.{arm}", sort=False)):
        c = color(str(name), i)
        done = rows[rows["status"] == "done"]
        g = done.groupby(f"config.{x}")[value]
        xs = np.asarray(sorted(g.groups), dtype=float)
        if len(xs):
            ax.plot(xs, g.mean().loc[xs].to_numpy() * scale, "o-", color=c, label=label_fmt.format(name), ms=4)
            ax.fill_between(xs, g.min().loc[xs].to_numpy() * scale, g.max().loc[xs].to_numpy() * scale, color=c, alpha=0.2, lw=0)
        diverged = rows[rows["status"] == "diverged"]
        if len(diverged):
            ax.plot(
                diverged[f"config.{x}"].astype(float), np.zeros(len(diverged)), "x", color=c, ms=7, transform=ax.get_xaxis_transform(), clip_on=False
            )
    if logx:
        ax.set_xscale("log")
    ax.set_xlabel(x)
    ax.grid(alpha=0.3)


def save(fig, path: Path, note: str) -> None:
    """Save with a one-line note under the panels saying what the lines and bands are."""
    fig.text(0.5, 0.005, note, ha="center", va="bottom", fontsize=8, color="#444444")
    fig.tight_layout(rect=(0, 0.04, 1, 1))
    fig.savefig(path, dpi=110, metadata={"Software": None})
    plt.close(fig)


BAND_NOTE = "lines: mean over seeds of finished runs; bands: min-max over seeds; x at the bottom: a diverged run"
