"""Claim 3: BN lets a net train at higher learning rates."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt

from . import stats
from .claim import Claim, Finding
from .plots import BAND_NOTE, against, save

TRAINS_AT = 0.25  # final test accuracy a run needs (chance: 0.10) to count as trained
ACTIVATIONS = ("sigmoid", "relu")


def largest_trainable_lr(runs, norm: str, activation: str) -> dict[int, float]:
    """Per seed: log10 of the largest lr whose run finished without diverging at >= TRAINS_AT test
    accuracy; one grid step below the smallest lr where none did."""
    rows = runs[(runs["config.model.norm"] == norm) & (runs["config.model.activation"] == activation)]
    grid = sorted(rows["config.optim.lr"].unique())
    below = math.log10(grid[0]) - (math.log10(grid[1]) - math.log10(grid[0]))
    out = {}
    for seed, group in rows.groupby("config.seed"):
        ok = group[(group["status"] == "done") & (group["test_acc"] >= TRAINS_AT)]
        out[int(seed)] = math.log10(ok["config.optim.lr"].max()) if len(ok) else below
    return out


def _difference(runs, a: str, b: str):
    """Per seed: b's minus a's log10 largest trainable lr, averaged over the activations."""
    per_act = [(largest_trainable_lr(runs, a, act), largest_trainable_lr(runs, b, act)) for act in ACTIVATIONS]
    seeds = sorted(set.intersection(*(set(x) & set(y) for x, y in per_act)))
    return stats.t_interval([sum(y[s] - x[s] for x, y in per_act) / len(per_act) for s in seeds])


def analyse(results, measurements) -> Finding:
    runs = results.runs
    grid = sorted(runs["config.optim.lr"].unique())
    step = math.log10(grid[1]) - math.log10(grid[0])
    diff = _difference(runs, "none", "batch")
    verdict = stats.three_way(diff, support_at_least=step, refute_below=step / 2)
    details = []
    for act in ACTIVATIONS:
        cells = []
        for norm in ("none", "batch", "layer"):
            lrs = largest_trainable_lr(runs, norm, act)
            cells.append(f"{norm} " + "/".join(f"{10**v:g}" for _, v in sorted(lrs.items())))
        details.append(f"{act}: largest trainable lr per seed: " + "; ".join(cells))
    details.append(f"LayerNorm - none (decades): {_difference(runs, 'none', 'layer').format(2)}")
    n_div = runs.groupby("config.model.norm")["status"].apply(lambda s: int((s == "diverged").sum()))
    details.append("diverged runs: " + ", ".join(f"{k} {v}" for k, v in n_div.items()))
    reason = f"BN's largest trainable learning rate is {10**diff.estimate:.3g}x none's (geometric mean over seeds and both activations)."
    return Finding("BN - none, log10 of the largest trainable lr (decades, mean of sigmoid and ReLU)", diff, verdict, reason, details)


def figure(results, measurements, path) -> None:
    runs = results.runs
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, act in zip(axes, ACTIVATIONS):
        against(ax, runs[runs["config.model.activation"] == act], "optim.lr", "model.norm", "test_acc", logx=True)
        ax.axhline(TRAINS_AT, color="k", lw=0.8, ls=":")
        ax.set_title(f"{act} MLP: final test accuracy vs learning rate")
        ax.legend()
    axes[0].set_ylabel("final test accuracy (dotted: 'trains' threshold)")
    save(fig, path, BAND_NOTE)


CLAIM = Claim(
    name="learning_rate",
    title="BN allows higher learning rates",
    source="Ioffe & Szegedy 2015, §3.3; Bjorck et al. 2018, §2",
    quote="Batch Normalization ... allows us to use much higher learning rates and be less careful about initialization.",
    setup="MNIST-1D, MLP 3x100, sigmoid and ReLU, default init, SGD at lr 0.01-30 (half-decade steps), batch 64, 1,500 steps; "
    "none / BN / LayerNorm. A run 'trains' if it finishes without diverging at >= 25% test accuracy (chance 10%).",
    rule="supported if BN's largest trainable lr exceeds none's by at least one grid step (half a decade) in the per-seed mean over "
    "both activations, with its 95% interval above 0; not supported if the interval lies below half a grid step; otherwise inconclusive.",
    analyse=analyse,
    figure=figure,
    differs="Bjorck et al. train ResNet-110 on CIFAR-10; Ioffe & Szegedy speed up Inception by raising the lr 5-30x. "
    "Our nets are small MLPs, where un-normalised nets may tolerate large steps better than deep ones: BN's margin here is at least one "
    "grid step (about 3x) on every seed, two on one seed of seeds 0-2 (sigmoid).",
)
