"""Figures from saved results only (`bnlab plot DIR`); nothing here trains.

A configuration is a set of runs that differ only in `seed`; curves show the mean over seeds with
a min-max band. Diverged runs stay visible: their curves end in an x at the step they diverged,
and legends count them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from . import config as C
from .errors import ConfigError
from .results import RunDir, final_row, read_summary

CURVE_METRICS = (("train_loss", "train loss (chunk mean)"), ("test_acc", "test accuracy"), ("val_loss", "validation loss"), ("val_acc", "validation accuracy"))


@dataclass
class Run:
    run_id: str
    config: dict[str, Any]  # flattened
    status: dict[str, Any]
    rows: list[dict[str, Any]]

    @property
    def diverged(self) -> bool:
        return self.status.get("status") == "diverged"


def load_runs(out_dir: str | Path) -> list[Run]:
    runs_dir = Path(out_dir) / "runs"
    if not runs_dir.is_dir():
        raise ConfigError(f"{out_dir}: no runs/ folder here; give a folder written by `bnlab run`")
    paths = sorted(p for p in runs_dir.iterdir() if (p / "config.yaml").exists())
    summary = Path(out_dir) / "summary.csv"
    if summary.exists():  # the sweep's own order (none, batch, layer), not the alphabet's
        order = {row["run_id"]: i for i, row in enumerate(read_summary(Path(out_dir)))}
        paths.sort(key=lambda p: order.get(p.name, len(order)))
    runs = []
    for path in paths:
        rd = RunDir(path)
        flat = C.flatten(yaml.safe_load(rd.config_path.read_text()))  # as saved: results of older versions still plot
        runs.append(Run(rd.run_id, {k: v for k, v in flat.items() if not k.startswith("sweep.")}, rd.status(), rd.metrics()))
    if not runs:
        raise ConfigError(f"{out_dir}: no runs with results yet")
    return runs


def varying_keys(runs: list[Run]) -> list[str]:
    keys = list(runs[0].config)
    return [k for k in keys if len({repr(r.config.get(k)) for r in runs}) > 1]


def _short(key: str) -> str:
    return key.rsplit(".", 1)[-1]


def group_runs(runs: list[Run], keys: list[str]) -> dict[str, list[Run]]:
    """Label -> runs, over the varying keys except the seed (label order follows the runs)."""
    groups: dict[str, list[Run]] = {}
    for run in runs:
        label = ", ".join(f"{_short(k)}={run.config[k]}" for k in keys if k != "seed") or "all runs"
        groups.setdefault(label, []).append(run)
    return groups


def _series(runs: list[Run], metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Steps and a (runs x steps) array of a metric, NaN where a run has no value (e.g. after divergence)."""
    steps = sorted({r["step"] for run in runs for r in run.rows if r.get(metric) is not None})
    index = {s: i for i, s in enumerate(steps)}
    values = np.full((len(runs), len(steps)), np.nan)
    for i, run in enumerate(runs):
        for r in run.rows:
            if r.get(metric) is not None:
                values[i, index[r["step"]]] = r[metric]
    return np.asarray(steps), values


def _nan_stats(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean, min and max over runs, ignoring runs without a value (all-NaN columns stay NaN)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.nanmean(values, 0), np.nanmin(values, 0), np.nanmax(values, 0)


def _legend_label(label: str, runs: list[Run]) -> str:
    n_div = sum(r.diverged for r in runs)
    return f"{label} ({n_div}/{len(runs)} diverged)" if n_div else label


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def learning_curves(groups: dict[str, list[Run]], path: Path) -> Path:
    plt = _plt()
    present = {k for runs in groups.values() for run in runs for r in run.rows for k in r}
    panels = [(m, t) for m, t in CURVE_METRICS if m in present] or list(CURVE_METRICS[:1])
    if "test_acc" not in present:  # regression: losses only
        panels = [(m, t) for m, t in (("train_loss", "train loss (chunk mean)"), ("val_loss", "validation loss"), ("test_loss", "test loss")) if m in present]
    fig, axes = plt.subplots(math.ceil(len(panels) / 2), 2, figsize=(11, 3.75 * math.ceil(len(panels) / 2)), sharex=True, squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (metric, title) in zip(axes.flat, panels):
        for (label, runs), color in zip(groups.items(), colors * 10):
            steps, values = _series(runs, metric)
            if not len(steps):
                continue
            mean, lo, hi = _nan_stats(values)
            ax.plot(steps, mean, color=color, label=_legend_label(label, runs))
            if len(runs) > 1:
                ax.fill_between(steps, lo, hi, color=color, alpha=0.2, linewidth=0)
            for run in runs:
                if run.diverged:
                    step = run.status.get("diverged_step", steps[-1])
                    last = [r.get(metric) for r in run.rows if r.get(metric) is not None]
                    ax.plot([step], [last[-1] if last else np.nanmean(mean)], "x", color=color, markersize=9, mew=2)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if metric.endswith("loss"):
            ax.set_yscale("log")
    for ax in axes.flat[max(len(panels) - 2, 0):len(panels)]:
        ax.set_xlabel("training step")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 3), frameon=False)
    fig.suptitle("Learning curves: mean over seeds, band = min-max, x = diverged run")
    fig.tight_layout(rect=(0, 0.06 + 0.03 * (len(labels) // 3), 1, 0.96))
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def final_vs(runs: list[Run], axis: str, keys: list[str], metric: str, path: Path) -> Path:
    """Final `metric` against one swept variable; other swept variables are separate lines."""
    plt = _plt()
    others = [k for k in keys if k not in (axis, "seed")]
    hue: dict[str, list[Run]] = {}
    for run in runs:
        label = ", ".join(f"{_short(k)}={run.config[k]}" for k in others) or metric
        hue.setdefault(label, []).append(run)
    xs_all = [r.config[axis] for r in runs]
    numeric = _numeric(xs_all)
    categories = list(dict.fromkeys(map(str, xs_all)))
    fig, ax = plt.subplots(figsize=(7, 4.5))
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for (label, members), color in zip(hue.items(), colors * 10):
        by_x: dict[Any, list[float]] = {}
        n_div = 0
        for run in members:
            x = run.config[axis] if numeric else categories.index(str(run.config[axis]))
            value = final_row(run.rows).get(metric)
            if run.diverged:
                n_div += 1
                ax.plot([x], [0 if metric.endswith("acc") else np.nan], "x", color=color, markersize=9, mew=2)
                continue
            if value is not None:
                by_x.setdefault(x, []).append(value)
                ax.plot([x], [value], ".", color=color, alpha=0.5)
        xs = sorted(by_x)
        ax.plot(xs, [np.mean(by_x[x]) for x in xs], "-o", color=color, label=label + (f" ({n_div} diverged)" if n_div else ""))
    if numeric:
        positive = [x for x in xs_all if x > 0]
        if len(positive) == len(xs_all) and max(positive) / min(positive) >= 10:
            ax.set_xscale("log")
    else:
        ax.set_xticks(range(len(categories)), categories)
    ax.set_xlabel(axis)
    ax.set_ylabel(f"final {metric}")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"Final {metric} vs {_short(axis)} (dots: seeds, line: mean, x: diverged)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def gradient_norms(groups: dict[str, list[Run]], path: Path) -> Path:
    """Per-layer gradient norms (mean over seeds) over training, one panel per configuration."""
    plt = _plt()
    n = len(groups)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows), squeeze=False, sharey=True)
    for ax, (label, runs) in zip(axes.flat, groups.items()):
        names = sorted({k for run in runs for r in run.rows for k in r if k.startswith("grad_norm/")})
        for name in names:
            steps, values = _series(runs, name)
            mean, _, _ = _nan_stats(values)
            style = "-" if name.endswith("kernel") else ":"
            ax.plot(steps, mean, style, label=name.removeprefix("grad_norm/"))
        ax.set_yscale("log")
        ax.set_title(_legend_label(label, runs), fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6, ncol=2)
    for ax in axes.flat[n:]:
        ax.axis("off")
    axes[0][0].set_ylabel("gradient l2 norm (before clipping)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_all(out_dir: str | Path, fmt: str = "png") -> list[Path]:
    """Every standard figure for a results folder, written to OUT/figures/."""
    runs = load_runs(out_dir)
    keys = varying_keys(runs)
    groups = group_runs(runs, keys)
    fig_dir = Path(out_dir) / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    paths = [learning_curves(groups, fig_dir / f"learning_curves.{fmt}"), gradient_norms(groups, fig_dir / f"grad_norms.{fmt}")]
    metric = "test_acc" if any("test_acc" in r for run in runs for r in run.rows) else "test_loss"
    for axis in keys:
        if axis != "seed":
            paths.append(final_vs(runs, axis, keys, metric, fig_dir / f"final_{metric}_vs_{_short(axis)}.{fmt}"))
    from .diagnostic_plots import plot_diagnostics

    return paths + plot_diagnostics(groups, Path(out_dir), fig_dir, fmt)
