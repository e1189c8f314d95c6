"""`bnlab plot DIR`: every standard figure of a results folder, from saved results only."""

from __future__ import annotations

from pathlib import Path

from ..runner.results import load_runs, varying_keys
from .diagnostic_figures import plot_diagnostics
from .figure_helpers import group_runs, has_metric, short
from .figures import final_vs, gradient_norms, learning_curves


def plot_all(out_dir: str | Path, fmt: str = "png") -> list[Path]:
    """Write the figures to OUT/figures/ and return their paths."""
    runs = load_runs(out_dir)
    keys = varying_keys(runs)
    groups = group_runs(runs, keys)
    fig_dir = Path(out_dir) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = [learning_curves(groups, fig_dir / f"learning_curves.{fmt}"), gradient_norms(groups, fig_dir / f"grad_norms.{fmt}")]
    metric = "test_acc" if has_metric(groups, "test_acc") else "test_loss"
    for axis in keys:
        if axis != "seed":
            paths.append(final_vs(runs, axis, keys, metric, fig_dir / f"final_{metric}_vs_{short(axis)}.{fmt}"))
    return paths + plot_diagnostics(groups, fig_dir, fmt)
