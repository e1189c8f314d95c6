"""Claim 10: internal covariate shift is not why BN works (Santurkar et al. 2018, §2)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import stats
from .claim import Claim, Finding
from .plots import color, save


def ics(metrics, run_id: str) -> float:
    """Mean of 1 - cos(G, G') over the layers and the measurements after step 0 (Santurkar Def. 2.1)."""
    rows = metrics[(metrics["run_id"] == run_id) & (metrics["step"] > 0)]
    cols = [c for c in metrics.columns if c.startswith("ics/") and c.endswith("/cos")]
    values = rows[cols].dropna(how="all").to_numpy(dtype=float)
    return float(np.nanmean(1.0 - values))


def activation_drift(metrics, run_id: str) -> float:
    """Mean over layers of the std over training of the per-layer mean pre-activation (how much the
    distribution each layer sees moves)."""
    rows = metrics[(metrics["run_id"] == run_id) & (metrics["step"] > 0)]
    cols = [c for c in metrics.columns if c.startswith("activations/hidden.") and c.endswith("/mean")]
    return float(np.nanmean(rows[cols].dropna(how="all").to_numpy(dtype=float).std(0)))


def analyse(results, measurements) -> Finding:
    runs, metrics = results.runs, results.metrics
    acc = {n: stats.per_seed(runs, "test_acc", **{"model.norm": n}) for n in runs["config.model.norm"].unique()}
    noisy_gap = stats.paired(100 * acc["noisy_batch"], 100 * acc["batch"])  # BN - noisy BN
    nearly = stats.NOT_SUPPORTED if noisy_gap.low > 2.0 else (stats.SUPPORTED if noisy_gap.high < 2.0 else stats.INCONCLUSIVE)
    shift = {n: runs[runs["config.model.norm"] == n].set_index("config.seed")["run_id"].map(lambda r: ics(metrics, r)) for n in ("none", "batch")}
    reduced = stats.paired(shift["batch"], shift["none"])  # none's ICS - BN's
    not_reduced = stats.NOT_SUPPORTED if reduced.low > 0 else stats.SUPPORTED
    verdict = stats.all_of(nearly, not_reduced)
    drift = {n: np.mean([activation_drift(metrics, r) for r in runs[runs["config.model.norm"] == n]["run_id"]]) for n in acc}
    noise_alone = stats.paired(100 * acc["noise"], 100 * acc["noisy_batch"])
    details = [
        "final test accuracy: " + ", ".join(f"{n} {acc[n].mean():.1%}" for n in ("none", "batch", "noisy_batch", "noise") if n in acc),
        f"BN - noisy BN: {noisy_gap.format(1, unit=' pt')} ({nearly}: 'nearly as well' is below 2 points)",
        f"noisy BN - noise without BN: {noise_alone.format(1, unit=' pt')}",
        f"ICS, mean 1 - cos(G, G') over layers and training: none {shift['none'].mean():.4f}, BN {shift['batch'].mean():.4f}; "
        f"none - BN {reduced.format(4)} ({'BN does not reduce it' if not_reduced == stats.SUPPORTED else 'BN reduces it'})",
        "movement of the per-layer mean pre-activation over training (std over measurements): " + ", ".join(f"{n} {v:.3f}" for n, v in drift.items()),
    ]
    lower = "not lower" if not_reduced == stats.SUPPORTED else "lower"
    reason = (
        f"noisy BN ends {noisy_gap.estimate:+.1f} points from BN ({nearly}), and BN's ICS is {lower} than the plain net's "
        f"({shift['batch'].mean():.4f} vs {shift['none'].mean():.4f})."
    )
    return Finding("BN - noisy BN, final test accuracy (points)", noisy_gap, verdict, reason, details)


def figure(results, measurements, path) -> None:
    runs, metrics = results.runs, results.metrics
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (norm, group) in enumerate(runs.groupby("config.model.norm", sort=False)):
        rows = metrics[metrics["run_id"].isin(group["run_id"])].dropna(subset=["test_acc"])
        g = rows.groupby("step")["test_acc"]
        steps = np.asarray(sorted(g.groups))
        a.plot(steps, g.mean().loc[steps], color=color(norm, i), label=norm)
        a.fill_between(steps, g.min().loc[steps], g.max().loc[steps], color=color(norm, i), alpha=0.2, lw=0)
        if norm in ("none", "batch"):
            cols = [c for c in metrics.columns if c.startswith("ics/") and c.endswith("/cos")]
            m = metrics[metrics["run_id"].isin(group["run_id"])].dropna(subset=cols[:1])
            per_step = (1 - m[cols].astype(float)).mean(1).groupby(m["step"]).mean()
            b.plot(per_step.index, per_step.to_numpy(), "o-", color=color(norm, i), label=norm, ms=3)
    a.set_xlabel("step")
    a.set_ylabel("test accuracy")
    a.set_title("training: BN, noisy BN, noise alone, none")
    a.legend()
    a.grid(alpha=0.3)
    b.set_yscale("log")
    b.set_xlabel("step")
    b.set_ylabel("ICS: 1 - cos(G, G'), mean over layers and seeds")
    b.set_title("internal covariate shift (Santurkar Def. 2.1)")
    b.legend()
    b.grid(alpha=0.3)
    save(fig, path, "left: mean over seeds, band min-max; right: mean over layers and seeds")


CLAIM = Claim(
    name="ics",
    title="Internal covariate shift is not why BN works",
    source="Santurkar et al. 2018, §2, Figures 2 and 3",
    quote="the performance gain of BatchNorm [is not] stemming from increased stability of layer input distributions ... "
    "BatchNorm might not even be reducing internal covariate shift.",
    setup="MNIST-1D, ReLU MLP 6x100, SGD lr 0.1, batch 64, 3,000 steps; none / BN / noisy BN (Santurkar's Algorithm 1 noise after BN, "
    "per unit and step) / the noise alone; ICS (Def. 2.1: G vs G' after the lower layers' update) and activation statistics every 300 steps.",
    rule="two parts, both needed: (a) noisy BN trains nearly as well as BN: BN minus noisy BN final test accuracy below 2 points (interval's "
    "upper end; not supported if its lower end is above 2); (b) BN does not reduce ICS: the per-seed interval of none's minus BN's mean "
    "1 - cos(G, G') does not lie above 0 (not supported if it does).",
    analyse=analyse,
    figure=figure,
    differs="Santurkar et al. use VGG on CIFAR-10 and a 25-layer deep linear network; ours is a 6-layer MLP on MNIST-1D, where BN itself "
    "does not beat the plain net at this learning rate and the injected noise (Algorithm 1's magnitudes, per unit and step) costs "
    "about 11 points: the noise is large relative to what such a small net can absorb. The ICS part agrees with the paper (BN does "
    "not lower ICS here); the 'trains nearly as well' part does not.",
)
