"""The short table `bnlab run` prints at the end: final metrics per swept setting, seeds aggregated."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..runner.results import final_metrics, load_runs, varying_keys
from .figure_helpers import short


def _cell(values: list[float]) -> str:
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.4g}"
    return f"{np.mean(values):.4g} ({min(values):.4g}–{max(values):.4g})"


def final_table(out_dir: str | Path) -> str:
    """One line per setting (the swept values but the seed): runs, diverged, and the final test
    metric and training loss as mean (min–max) over the runs that finished."""
    runs = load_runs(out_dir)
    keys = [k for k in varying_keys(runs) if k != "seed"]
    metric = "test_acc" if any("test_acc" in r for run in runs for r in run.rows) else "test_loss"
    settings: dict[tuple, list] = {}
    for run in runs:
        settings.setdefault(tuple(run.config.get(k) for k in keys), []).append(run)
    header = [short(k) for k in keys] + ["runs", "diverged", f"final {metric}", "final train_loss"]
    lines = []
    for values, members in settings.items():
        finals = [final_metrics(run.status, run.rows) for run in members if run.status.get("status") == "done"]
        diverged = sum(run.diverged for run in members)
        lines.append(
            [str(v) for v in values]
            + [
                str(len(members)),
                str(diverged),
                _cell([f[metric] for f in finals if metric in f]),
                _cell([f["train_loss"] for f in finals if "train_loss" in f]),
            ]
        )
    widths = [max(len(row[i]) for row in [header] + lines) for i in range(len(header))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [header] + lines)
