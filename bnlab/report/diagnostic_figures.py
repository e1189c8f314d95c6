"""Figures of the diagnostics, from saved metrics only. Each function draws nothing (returns None)
when no run of the folder has that diagnostic."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..measure.hessian import density
from .figure_helpers import COLORS, Run, has_metric, legend_label, nan_stats, pyplot, save, series

SEED_BAND = "line: mean over seeds; band: min–max over seeds"


def _mode(groups: dict[str, list[Run]], key: str) -> str:
    modes = {r[key] for runs in groups.values() for run in runs for r in run.rows if key in r}
    return "/".join(sorted(modes))


def _band(ax, runs: list[Run], lo_metric: str, hi_metric: str, color: str, label: str) -> None:
    """Shaded band between the seed-mean of a min metric and of a max metric (Santurkar Fig. 4 style:
    the band spans the step sizes η, not the seeds)."""
    steps, lo = series(runs, lo_metric)
    _, hi = series(runs, hi_metric)
    if not len(steps):
        return
    lo_mean, _, _ = nan_stats(lo)
    hi_mean, _, _ = nan_stats(hi)
    ax.fill_between(steps, lo_mean, hi_mean, color=color, alpha=0.35, linewidth=0, label=label)
    ax.plot(steps, lo_mean, color=color, linewidth=0.8)
    ax.plot(steps, hi_mean, color=color, linewidth=0.8)


def _line(ax, runs: list[Run], metric: str, color: str, label: str, style: str = "-") -> None:
    steps, values = series(runs, metric)
    if not len(steps):
        return
    mean, lo, hi = nan_stats(values)
    ax.plot(steps, mean, style, color=color, label=label)
    if len(runs) > 1:
        ax.fill_between(steps, lo, hi, color=color, alpha=0.15, linewidth=0)


def _save(fig, path: Path) -> Path:
    fig.tight_layout()
    return save(fig, path)


def landscape(groups: dict[str, list[Run]], path: Path) -> Path | None:
    if not has_metric(groups, "landscape/loss_min"):
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.3))
    for (label, runs), color in zip(groups.items(), COLORS * 4):
        name = legend_label(label, runs)
        _band(axes[0], runs, "landscape/loss_min", "landscape/loss_max", color, name)
        _band(axes[1], runs, "landscape/grad_pred_min", "landscape/grad_pred_max", color, name)
        _line(axes[2], runs, "landscape/beta_smoothness", color, name)
    titles = (
        "loss landscape: L(w − ηg)\nband: min–max over η, mean over seeds",
        "gradient predictiveness: ‖g − ∇L(w − ηg)‖\nband: min–max over η, mean over seeds",
        "effective β-smoothness: max over η\n" + SEED_BAND,
    )
    for ax, title in zip(axes, titles):
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("training step")
        ax.set_yscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(f"Landscape along the gradient (Santurkar et al. 2018, Fig. 4); BN mode: {_mode(groups, 'landscape/bn_mode')}", fontsize=11)
    return _save(fig, path)


def activations(groups: dict[str, list[Run]], path: Path) -> Path | None:
    """Percentiles {15, 50, 85} of the followed units' pre-activations, each averaged over seeds;
    one row per configuration, one column per layer, y shared down each column."""
    if not has_metric(groups, "activations/hidden.0/mean"):
        return None
    plt = pyplot()
    layers = sorted(
        {
            k.split("/")[1]
            for runs in groups.values()
            for run in runs
            for r in run.rows
            for k in r
            if k.startswith("activations/hidden.") and k.endswith("/p50")
        },
        key=lambda s: int(s.split(".")[1]),
    )
    fig, axes = plt.subplots(len(groups), len(layers), figsize=(3.6 * len(layers), 2.8 * len(groups) + 0.6), squeeze=False, sharex=True, sharey="col")
    for row, (label, runs) in zip(axes, groups.items()):
        for ax, layer in zip(row, layers):
            units = sorted({k.split("/")[2] for run in runs for r in run.rows for k in r if k.startswith(f"activations/{layer}/u")})
            for unit, color in zip(units, COLORS):
                prefix = f"activations/{layer}/{unit}"
                steps, p15 = series(runs, prefix + "/p15")
                _, p50 = series(runs, prefix + "/p50")
                _, p85 = series(runs, prefix + "/p85")
                ax.fill_between(steps, nan_stats(p15)[0], nan_stats(p85)[0], color=color, alpha=0.2, linewidth=0)
                ax.plot(steps, nan_stats(p50)[0], color=color, label=unit)
            ax.set_title(f"{legend_label(label, runs)}\n{layer}", fontsize=8)
            ax.grid(alpha=0.3)
        row[0].set_ylabel("pre-activation")
    for ax in axes[-1]:
        ax.set_xlabel("training step")
    axes[0][0].legend(fontsize=7, title="unit", title_fontsize=7)
    fig.suptitle(
        "Input to the nonlinearity over training (Ioffe & Szegedy 2015, Fig. 1b,c)\nline: 50th, band: 15th–85th percentile over the "
        f"evaluation batch, each averaged over seeds\nBN mode: {_mode(groups, 'activations/bn_mode')}",
        fontsize=9,
    )
    return _save(fig, path)


def saturation(groups: dict[str, list[Run]], path: Path) -> Path | None:
    if not has_metric(groups, "activations/hidden.0/saturated"):
        return None
    plt = pyplot()
    layers = sorted(
        {k.split("/")[1] for runs in groups.values() for run in runs for r in run.rows for k in r if k.endswith("/saturated")},
        key=lambda s: int(s.split(".")[1]),
    )
    fig, axes = plt.subplots(1, len(layers), figsize=(4 * len(layers), 3.4), squeeze=False, sharey=True)
    for ax, layer in zip(axes[0], layers):
        for (label, runs), color in zip(groups.items(), COLORS * 4):
            _line(ax, runs, f"activations/{layer}/saturated", color, legend_label(label, runs))
        ax.set_title(layer, fontsize=10)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("fraction of saturated units")
    fig.suptitle(f"Saturated sigmoid/tanh units ({SEED_BAND})", fontsize=10)
    axes[0][0].legend(fontsize=8)
    return _save(fig, path)


def ics(groups: dict[str, list[Run]], path: Path) -> Path | None:
    if not has_metric(groups, "ics/head/l2"):
        return None
    plt = pyplot()
    fig, axes = plt.subplots(2, len(groups), figsize=(4.5 * len(groups), 6.5), squeeze=False, sharey="row")
    for col, (label, runs) in enumerate(groups.items()):
        layers = sorted({k.split("/")[1] for run in runs for r in run.rows for k in r if k.startswith("ics/") and k.endswith("/l2")})
        for layer, color in zip(layers, COLORS):
            _line(axes[0][col], runs, f"ics/{layer}/l2", color, layer)
            _line(axes[1][col], runs, f"ics/{layer}/cos", color, layer)
        axes[0][col].set_title(legend_label(label, runs), fontsize=10)
        axes[0][col].set_yscale("log")
        axes[1][col].set_xlabel("training step")
        for ax in axes[:, col]:
            ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("‖G − G′‖₂")
    axes[1][0].set_ylabel("cos(G, G′)")
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Internal covariate shift (Santurkar et al. 2018, Def. 2.1), {SEED_BAND}; BN mode: {_mode(groups, 'ics/bn_mode')}", fontsize=10)
    return _save(fig, path)


def hessian(groups: dict[str, list[Run]], path: Path) -> Path | None:
    if not has_metric(groups, "hessian/eig_1"):
        return None
    plt = pyplot()
    share = next((k for runs in groups.values() for run in runs for r in run.rows for k in r if k.startswith("hessian/grad_share")), None)
    panels = [("hessian/eig_1", "top Hessian eigenvalue", "symlog")]
    if has_metric(groups, "hessian/trace"):
        panels.append(("hessian/trace", "Hessian trace (Hutchinson)", "symlog"))
    if share:
        panels.append((share, f"share of ‖g‖² in the top-{share.rsplit('top', 1)[-1]} eigenspace", "linear"))
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, (metric, title, scale) in zip(axes[0], panels):
        for (label, runs), color in zip(groups.items(), COLORS * 4):
            _line(ax, runs, metric, color, legend_label(label, runs), "-o")
        ax.set_title(title, fontsize=10)
        ax.set_xscale("symlog", linthresh=1)
        ax.set_yscale(scale)
        ax.set_xlabel("training step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=8)
    fig.suptitle(f"Hessian of the loss on a fixed batch, {SEED_BAND}; BN mode: {_mode(groups, 'hessian/bn_mode')}", fontsize=10)
    return _save(fig, path)


def spectral_density(groups: dict[str, list[Run]], path: Path) -> Path | None:
    """SLQ density at the first and last measured step of each configuration's first seed (named in the title)."""
    if not has_metric(groups, "hessian/density_nodes"):
        return None
    plt = pyplot()
    fig, axes = plt.subplots(1, len(groups), figsize=(4.8 * len(groups), 3.8), squeeze=False)
    for ax, (label, runs) in zip(axes[0], groups.items()):
        rows = [r for r in runs[0].rows if r.get("hessian/density_nodes") is not None]
        for r, color in zip((rows[0], rows[-1]) if len(rows) > 1 else rows, ("#7f7f7f", "#d62728")):
            nodes, weights = np.asarray(r["hessian/density_nodes"]), np.asarray(r["hessian/density_weights"])
            span = max(nodes.max() - nodes.min(), 1e-3)
            sigma = span / 100
            grid = np.linspace(nodes.min() - 5 * sigma, nodes.max() + 5 * sigma, 1000)
            ax.semilogy(grid, np.maximum(np.asarray(density(nodes, weights, grid, sigma)), 1e-8), color=color, label=f"step {r['step']}")
        ax.set_ylim(bottom=1e-6)
        ax.set_title(f"{label}\n(seed {runs[0].config.get('seed')} of {len(runs)})", fontsize=9)
        ax.set_xlabel("eigenvalue")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    axes[0][0].set_ylabel("density (SLQ, Gaussian σ = span/100)")
    return _save(fig, path)


def surface(groups: dict[str, list[Run]], path: Path) -> Path | None:
    found = {
        label: [json.loads((run.path / "surface.json").read_text()) for run in runs if (run.path / "surface.json").exists()]
        for label, runs in groups.items()
    }
    found = {k: v for k, v in found.items() if v}
    if not found:
        return None
    plt = pyplot()
    first = next(iter(found.values()))[0]
    if first["dims"] == 1:
        fig, ax = plt.subplots(figsize=(6.5, 4.5))
        for (label, surfaces), color in zip(found.items(), COLORS * 4):
            losses = np.array([s["loss"] for s in surfaces], dtype=float)
            ax.plot(first["coords"], np.nanmean(losses, 0), color=color, label=f"{label} ({len(surfaces)} seeds)")
            if len(surfaces) > 1:
                ax.fill_between(first["coords"], np.nanmin(losses, 0), np.nanmax(losses, 0), color=color, alpha=0.2, linewidth=0)
        ax.set_yscale("log")
        ax.set_xlabel("α (filter-normalised direction)")
        ax.set_ylabel("training loss")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
    else:
        cols = min(len(found), 3)
        rows = math.ceil(len(found) / cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.6 * cols, 4.2 * rows), squeeze=False)
        for ax, (label, surfaces) in zip(axes.flat, found.items()):
            loss = np.log10(np.clip(np.array(surfaces[0]["loss"], dtype=float), 1e-8, None))
            cs = ax.contour(surfaces[0]["coords"], surfaces[0]["coords"], loss.T, levels=20, cmap="viridis")
            ax.clabel(cs, fontsize=6, fmt="%.1f")
            ax.plot([0], [0], "k+")
            ax.set_title(f"{label}: log10 loss\n(first of {len(surfaces)} seeds)", fontsize=9)
        for ax in axes.flat[len(found) :]:
            ax.axis("off")
    band = "; 1-D: line = mean, band = min–max over seeds" if first["dims"] == 1 else ""
    fig.suptitle(
        f"Loss around the final weights (Li et al. 2018); BN params: {first['bn_params']}, BN statistics: {first['bn_stats']}{band}", fontsize=9
    )
    return _save(fig, path)


def plot_diagnostics(groups: dict[str, list[Run]], fig_dir: Path, fmt: str) -> list[Path]:
    made = [
        landscape(groups, fig_dir / f"landscape.{fmt}"),
        activations(groups, fig_dir / f"activations.{fmt}"),
        saturation(groups, fig_dir / f"saturation.{fmt}"),
        ics(groups, fig_dir / f"ics.{fmt}"),
        hessian(groups, fig_dir / f"hessian.{fmt}"),
        spectral_density(groups, fig_dir / f"spectral_density.{fmt}"),
        surface(groups, fig_dir / f"surface.{fmt}"),
    ]
    return [p for p in made if p is not None]
