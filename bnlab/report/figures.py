"""Training figures from saved results: learning curves, final metric against each swept variable,
per-parameter gradient norms. Nothing here trains."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np

from ..runner.results import final_metrics
from .figure_helpers import COLORS, Run, has_metric, legend_label, mark_diverged, nan_stats, pyplot, save, series, short

CLASSIFICATION_PANELS = (
    ("train_loss", "train loss (mean since the last log)"),
    ("test_acc", "test accuracy"),
    ("val_loss", "validation loss"),
    ("val_acc", "validation accuracy"),
)
REGRESSION_PANELS = (("train_loss", "train loss (mean since the last log)"), ("val_loss", "validation loss"), ("test_loss", "test loss"))


def learning_curve_panels(groups: dict[str, list[Run]]) -> list[tuple[str, str]]:
    """(metric, title) of each panel: only metrics some run logged (no validation panels without a validation split)."""
    candidates = CLASSIFICATION_PANELS if has_metric(groups, "test_acc") else REGRESSION_PANELS
    return [(m, t) for m, t in candidates if has_metric(groups, m)] or list(candidates[:1])


def learning_curves(groups: dict[str, list[Run]], path: Path) -> Path:
    """Mean over seeds, band min–max over seeds, x where a run diverged."""
    plt = pyplot()
    panels = learning_curve_panels(groups)
    rows = math.ceil(len(panels) / 2)
    fig, axes = plt.subplots(rows, 2, figsize=(11, 3.75 * rows + 0.8), sharex=True, squeeze=False)
    for ax in axes.flat[len(panels) :]:
        ax.axis("off")
    for ax, (metric, title) in zip(axes.flat, panels):
        for (label, runs), color in zip(groups.items(), COLORS * 10):
            steps, values = series(runs, metric)
            if not len(steps):
                continue
            mean, lo, hi = nan_stats(values)
            ax.plot(steps, mean, color=color, label=legend_label(label, runs))
            if len(runs) > 1:
                ax.fill_between(steps, lo, hi, color=color, alpha=0.2, linewidth=0)
            mark_diverged(ax, runs, metric, color)
        ax.set_title(title)
        ax.grid(alpha=0.3)
        if metric.endswith("loss"):
            ax.set_yscale("log")
    for ax in axes.flat[max(len(panels) - 2, 0) : len(panels)]:
        ax.set_xlabel("training step")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    ncol = min(len(labels), 3)
    fig.legend(handles, labels, loc="lower center", ncol=ncol, frameon=False)
    fig.suptitle("Learning curves: line = mean over seeds, band = min–max over seeds, x = a run diverged there")
    fig.tight_layout(rect=(0, 0.05 + 0.035 * math.ceil(len(labels) / ncol), 1, 0.96))
    return save(fig, path)


def _numeric(values: list[Any]) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def final_vs(runs: list[Run], axis: str, keys: list[str], metric: str, path: Path) -> Path:
    """Final `metric` against one swept variable; other swept variables are separate lines.
    Diverged runs have no final value: they are drawn as x on a strip below the axis, not as a number."""
    plt = pyplot()
    others = [k for k in keys if k not in (axis, "seed")]
    hue: dict[str, list[Run]] = {}
    for run in runs:
        label = ", ".join(f"{short(k)}={run.config[k]}" for k in others) or metric
        hue.setdefault(label, []).append(run)
    xs_all = [r.config[axis] for r in runs]
    numeric = _numeric(xs_all)
    categories = list(dict.fromkeys(map(str, xs_all)))
    fig, ax = plt.subplots(figsize=(7.5, 4.8))
    any_diverged = False
    for (label, members), color in zip(hue.items(), COLORS * 10):
        by_x: dict[Any, list[float]] = {}
        n_div = 0
        for run in members:
            x = run.config[axis] if numeric else categories.index(str(run.config[axis]))
            if run.diverged:
                n_div += 1
                ax.plot([x], [0.03], "x", color=color, markersize=9, mew=2, transform=ax.get_xaxis_transform(), clip_on=False)
                continue
            value = final_metrics(run.status, run.rows).get(metric)
            if value is not None:
                by_x.setdefault(x, []).append(value)
                ax.plot([x], [value], ".", color=color, alpha=0.5)
        any_diverged |= n_div > 0
        xs = sorted(by_x)
        ax.plot(xs, [np.mean(by_x[x]) for x in xs], "-o", color=color, label=label + (f" ({n_div} diverged)" if n_div else ""))
    if any_diverged:  # a strip below the data, in axes coordinates: diverged runs have no value to plot
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo - 0.1 * (hi - lo) / 0.9, hi)
        ax.add_patch(plt.Rectangle((0, 0), 1, 0.07, transform=ax.transAxes, color="0.92", zorder=0, linewidth=0))
        ax.text(0.005, 0.075, "diverged", transform=ax.transAxes, fontsize=7, color="0.4")
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
    ax.set_title(f"Final {metric} vs {short(axis)}\n(dots: seeds; line: mean over the seeds that did not diverge; x: diverged)", fontsize=10)
    fig.tight_layout()
    return save(fig, path)


_KIND_STYLES = {"kernel": "-", "bias": "--", "gamma": ":", "beta": "-.", "scale": (0, (1, 3))}
_OTHER_STYLES = [(0, (5, 1)), (0, (3, 1, 1, 1, 1, 1)), (0, (8, 3)), (0, (3, 3, 1, 3))]


def _owner_and_kind(name: str) -> tuple[str, str]:
    """Where a parameter sits and what it is: 'hidden.2.layer.kernel' -> ('hidden.2', 'kernel'),
    'hidden.0.norm.gamma' -> ('hidden.0', 'gamma'), an LSTM's 'hidden.0.norm_x.norm.gamma' ->
    ('hidden.0.norm_x', 'gamma'), 'head.bias' -> ('head', 'bias')."""
    owner, _, kind = name.rpartition(".")
    for suffix in (".layer", ".norm"):
        owner = owner.removesuffix(suffix)
    return owner, kind


def _owner_rank(owner: str) -> tuple:
    parts = owner.split(".")
    return (parts[0] == "head", int(parts[1]) if parts[0] == "hidden" and len(parts) > 1 and parts[1].isdigit() else 0, owner)


def parameter_styles(names: list[str]) -> dict[str, tuple[Any, Any]]:
    """(colour, line style) per parameter name, in layer order (head last): the colour tells where the
    parameter sits (its layer, or a recurrent layer's path), the style what it is (kernel, bias, γ, β),
    so no two parameters look alike."""
    plt = pyplot()
    owners = sorted({_owner_and_kind(nm)[0] for nm in names}, key=_owner_rank)
    palette = plt.get_cmap("tab10").colors if len(owners) <= 10 else [plt.get_cmap("viridis")(i / (len(owners) - 1)) for i in range(len(owners))]
    color = dict(zip(owners, palette))
    others = sorted({_owner_and_kind(nm)[1] for nm in names} - set(_KIND_STYLES))
    style = {**_KIND_STYLES, **{k: _OTHER_STYLES[i % len(_OTHER_STYLES)] for i, k in enumerate(others)}}
    ordered = sorted(names, key=lambda nm: (_owner_rank(_owner_and_kind(nm)[0]), list(style).index(_owner_and_kind(nm)[1])))
    return {nm: (color[_owner_and_kind(nm)[0]], style[_owner_and_kind(nm)[1]]) for nm in ordered}


def gradient_norms(groups: dict[str, list[Run]], path: Path) -> Path:
    """Per-parameter gradient norms (mean over seeds) over training, one panel per configuration:
    colour = layer, line style = kind of parameter; one legend for the whole figure."""
    plt = pyplot()
    n = len(groups)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    names = sorted(
        {k.removeprefix("grad_norm/") for runs in groups.values() for run in runs for r in run.rows for k in r if k.startswith("grad_norm/")}
    )
    styles = parameter_styles(names)
    fig, axes = plt.subplots(rows, cols, figsize=(5 * cols, 3.6 * rows + 1.0), squeeze=False, sharey=True)
    for ax, (label, runs) in zip(axes.flat, groups.items()):
        for name in names:
            steps, values = series(runs, "grad_norm/" + name)
            if not len(steps):
                continue
            color, style = styles[name]
            ax.plot(steps, nan_stats(values)[0], linestyle=style, color=color, linewidth=1.3)
        ax.set_yscale("log")
        ax.set_title(legend_label(label, runs), fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    for ax in axes.flat[n:]:
        ax.axis("off")
    axes[0][0].set_ylabel("gradient ℓ2 norm (before clipping)")
    layers = {_owner_and_kind(nm)[0]: color for nm, (color, _) in styles.items()}
    kinds = {
        _owner_and_kind(nm)[1]: style
        for nm, (_, style) in sorted(
            styles.items(), key=lambda kv: list(_KIND_STYLES).index(_owner_and_kind(kv[0])[1]) if _owner_and_kind(kv[0])[1] in _KIND_STYLES else 9
        )
    }
    handles = [plt.Line2D([], [], color=color, linewidth=2) for color in layers.values()]
    handles += [plt.Line2D([], [], color="black", linestyle=style) for style in kinds.values()]
    fig.legend(handles, list(layers) + list(kinds), loc="lower center", ncol=min(len(handles), 8), frameon=False, fontsize=8)
    fig.suptitle("Gradient norm per parameter, mean over seeds (colour: where it sits; line style: what it is)", fontsize=11)
    fig.tight_layout(rect=(0, 0.04 + 0.03 * math.ceil(len(handles) / 8), 1, 0.96))
    return save(fig, path)
