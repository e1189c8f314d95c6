"""Claim 1: sigmoid nets train with BN, and deeper ones without BN do not."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import stats
from .claim import Claim, Finding
from .plots import BAND_NOTE, against, color, save

DEEPEST_AT_LEAST = 10


def analyse(results, measurements) -> Finding:
    runs = results.runs
    depth = int(runs["config.model.depth"].max())
    by = {norm: stats.per_seed(runs, "test_acc", **{"model.norm": norm, "model.depth": depth}) for norm in ("none", "batch", "layer")}
    diff = stats.paired(by["none"], by["batch"])
    verdict = stats.three_way(diff, support_at_least=0.05, refute_below=0.01)
    if depth < DEEPEST_AT_LEAST:
        verdict, why = stats.INCONCLUSIVE, f"the deepest net here has {depth} layers, fewer than the {DEEPEST_AT_LEAST} the rule asks for"
    else:
        why = f"at depth {depth} BN's final test accuracy is {by['batch'].mean():.1%} against {by['none'].mean():.1%} without normalisation"
    details = []
    for d in sorted(runs["config.model.depth"].unique()):
        cells = [f"{n} {stats.per_seed(runs, 'test_acc', **{'model.norm': n, 'model.depth': d}).mean():.1%}" for n in ("none", "batch", "layer")]
        details.append(f"depth {d}: mean final test accuracy " + ", ".join(cells))
    details.append(f"LayerNorm - none at depth {depth}: {stats.paired(by['none'], by['layer']).format(1, 100, ' pt')}")
    return Finding(f"BN - none, final test accuracy at depth {depth} (points)", diff.map(lambda v: 100 * v), verdict, why + ".", details)


def figure(results, measurements, path) -> None:
    runs, metrics = results.runs, results.metrics
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    against(a, runs, "model.depth", "model.norm", "test_acc")
    a.set_ylabel("final test accuracy")
    a.set_title("sigmoid MLP: accuracy vs depth")
    a.legend()
    depth = int(runs["config.model.depth"].max())
    first = metrics[metrics["step"] > 0]["step"].min()
    rows = metrics[(metrics["step"] == first)].merge(runs[["run_id", "config.model.depth", "config.model.norm"]], on="run_id")
    rows = rows[rows["config.model.depth"] == depth]
    for i, (norm, group) in enumerate(rows.groupby("config.model.norm", sort=False)):
        norms = np.array([[r[f"grad_norm/hidden.{k}.layer.kernel"] for k in range(depth)] for _, r in group.iterrows()])
        layers = np.arange(1, depth + 1)
        b.plot(layers, norms.mean(0), "o-", color=color(norm, i), label=norm, ms=4)
        b.fill_between(layers, norms.min(0), norms.max(0), color=color(norm, i), alpha=0.2, lw=0)
    b.set_yscale("log")
    b.set_xlabel("hidden layer (1 = next to the input)")
    b.set_ylabel("gradient norm of the layer's weights")
    b.set_title(f"depth {depth}: gradient norms over steps 1-{first}")
    b.grid(alpha=0.3)
    b.legend()
    save(fig, path, BAND_NOTE)


CLAIM = Claim(
    name="sigmoid_depth",
    title="Sigmoid nets train with BN",
    source="Ioffe & Szegedy 2015, §3.3 and §4.2",
    quote="Batch Normalization also makes it possible to use saturating nonlinearities by preventing the network "
    "from getting stuck in the saturated modes.",
    setup="MNIST-1D (4,000/1,000 split, 10% of training held out), sigmoid MLPs of width 100 and depth 2 to 12, "
    "no normalisation / BN / LayerNorm, default (LeCun normal) init, SGD lr 0.5, batch 64, 3,000 steps.",
    rule="supported if, at the deepest depth (at least 10), BN's mean final test accuracy exceeds none's by at least 5 points "
    "and the 95% interval of the per-seed difference lies above 0; not supported if that interval lies below +1 point; otherwise inconclusive.",
    analyse=analyse,
    figure=figure,
    differs="The paper shows this on Inception/ImageNet (sigmoid Inception trains only with BN) and MNIST; "
    "we use small MLPs on MNIST-1D at a fixed learning rate for every arm, without tuning per arm.",
)
