"""Claim 2: Ioffe & Szegedy's Figure 1 - the 3x100 sigmoid MNIST net trains faster and to a higher
accuracy with BN (1a), and its last hidden layer's input distribution is far more stable (1b, 1c)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import stats
from .claim import Claim, Finding
from .plots import color, save

PERCENTILES = (15, 50, 85)


def _layer(metrics) -> str:
    layers = sorted({c.split("/")[1] for c in metrics.columns if c.startswith("activations/hidden.") and c.endswith("/p50")})
    return layers[-1]  # the last hidden layer


def drift(metrics, run_id: str) -> float:
    """How far a unit's 15/50/85th percentiles move over training (max - min over the measured steps
    after step 0), relative to the unit's final 15-85 spread; mean over the three percentiles and the
    followed units of the last hidden layer."""
    layer = _layer(metrics)
    rows = metrics[(metrics["run_id"] == run_id) & (metrics["step"] > 0)].dropna(subset=[f"activations/{layer}/u0/p50"])
    units = sorted({c.split("/")[2] for c in metrics.columns if c.startswith(f"activations/{layer}/u") and c.endswith("/p50")})
    values = []
    for u in units:
        path = {p: rows[f"activations/{layer}/{u}/p{p}"].to_numpy() for p in PERCENTILES}
        spread = path[85][-1] - path[15][-1]
        values.append(np.mean([(path[p].max() - path[p].min()) / spread for p in PERCENTILES]))
    return float(np.mean(values))


def analyse(results, measurements) -> Finding:
    runs, metrics = results.runs, results.metrics
    acc = {n: stats.per_seed(runs, "test_acc", **{"model.norm": n}) for n in ("none", "batch")}
    gain = stats.paired(acc["none"], acc["batch"])
    drifts = {n: runs[runs["config.model.norm"] == n].set_index("config.seed")["run_id"].map(lambda r: drift(metrics, r)) for n in ("none", "batch")}
    calmer = stats.paired(drifts["batch"], drifts["none"])  # none's drift - BN's
    accuracy_verdict = stats.three_way(gain, support_at_least=0.01, refute_below=0.0)
    stability_verdict = stats.three_way(calmer, support_at_least=0.0, refute_below=0.0)
    verdict = stats.all_of(accuracy_verdict, stability_verdict)
    reason = (
        f"final test accuracy BN {acc['batch'].mean():.1%} vs none {acc['none'].mean():.1%} ({accuracy_verdict}); "
        f"percentile drift of the last hidden layer's inputs BN {drifts['batch'].mean():.2f} vs none {drifts['none'].mean():.2f} "
        f"(in final 15-85 spreads; {stability_verdict})."
    )
    points = gain.map(lambda v: 100 * v)
    details = [f"none - BN drift (final 15-85 spreads): {calmer.format(2)}", f"test accuracy BN - none: {points.format(2, unit=' pt')}"]
    return Finding("BN - none, final test accuracy (points)", points, verdict, reason, details)


def figure(results, measurements, path) -> None:
    runs, metrics = results.runs, results.metrics
    layer = _layer(metrics)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for i, norm in enumerate(("none", "batch")):
        ids = runs[runs["config.model.norm"] == norm]["run_id"]
        rows = metrics[metrics["run_id"].isin(ids)].dropna(subset=["test_acc"])
        g = rows.groupby("step")["test_acc"]
        steps = np.asarray(sorted(g.groups))
        axes[0].plot(steps, g.mean().loc[steps], color=color(norm), label="BN" if norm == "batch" else "without BN")
        axes[0].fill_between(steps, g.min().loc[steps], g.max().loc[steps], color=color(norm), alpha=0.2, lw=0)
        ax = axes[1 + i]
        for k, run_id in enumerate(ids):
            act = metrics[metrics["run_id"] == run_id].dropna(subset=[f"activations/{layer}/u0/p50"])
            for p in PERCENTILES:
                style = dict(color=color(norm), alpha=0.9 if k == 0 else 0.35, lw=1.2 if p == 50 else 0.8)
                ax.plot(act["step"], act[f"activations/{layer}/u0/p{p}"], **style)
        ax.set_title(f"({'b' if norm == 'none' else 'c'}) {'without BN' if norm == 'none' else 'with BN'}: {layer}, unit 0")
        ax.set_xlabel("step")
        ax.set_ylabel("input to the sigmoid: 15/50/85th percentile")
        ax.grid(alpha=0.3)
    axes[0].set_title("(a) test accuracy")
    axes[0].set_xlabel("step")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    lo = min(a.get_ylim()[0] for a in axes[1:])
    hi = max(a.get_ylim()[1] for a in axes[1:])
    for a in axes[1:]:
        a.set_ylim(lo, hi)
    seeds = runs["config.seed"]
    save(fig, path, f"(a) mean over {seeds.nunique()} seeds, band min-max; (b, c) one line set per seed (seed {seeds.min()} darker)")


CLAIM = Claim(
    name="ioffe_fig1",
    title="Ioffe & Szegedy Fig. 1: faster, higher and stabler with BN",
    source="Ioffe & Szegedy 2015, §4.1, Figure 1",
    quote="the network with Batch Normalization enjoys the higher test accuracy ... the distributions in the batch-normalized network "
    "are much more stable as training progresses, which aids the training.",
    setup="real MNIST images (the 10,000-image t10k IDX files, split 70/10/20 into train/validation/test), 784-100-100-100-10 sigmoid MLP, "
    "N(0, 0.01²) init, SGD lr 0.5, batch 60, 8,000 steps; BN vs none; the 15/50/85th percentiles of the last hidden layer's first "
    "three units over 500 validation images every 250 steps (training-mode BN, as the paper's N^tr_BN).",
    rule="two parts, both needed: (a) BN's final test accuracy exceeds none's by at least 1 point, its per-seed interval above 0; "
    "(b) the percentile drift (range over training divided by the final 15-85 spread) is smaller with BN, its per-seed interval "
    "of none - BN above 0. Not supported if either interval lies wholly on the wrong side; otherwise inconclusive.",
    analyse=analyse,
    figure=figure,
    differs="The paper trains 50,000 steps on the 60,000 MNIST training images; we have its 10,000 test images only "
    "(7,000 for training), so accuracies are lower and the nets are compared at 8,000 steps.",
)
