"""Claim 11: BN makes the loss landscape smoother (Santurkar et al. 2018, §3, Figure 4)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import stats
from .claim import Claim, Finding
from .plots import color, save

MEASURES = {
    "beta": "effective beta-smoothness",
    "loss_range": "loss range along the gradient / loss",
    "grad_range": "gradient change along the gradient / gradient norm",
}


def profile(metrics, run_id: str) -> dict[str, np.ndarray]:
    """Per measurement step after 0: the three landscape quantities, the loss ones relative to the
    loss and gradient at that point, so that a net that has fitted its data is not smooth by default."""
    rows = metrics[(metrics["run_id"] == run_id) & (metrics["step"] > 0)].dropna(subset=["landscape/beta_smoothness"])
    loss = rows["landscape/loss"].to_numpy(float)
    return {
        "step": rows["step"].to_numpy(),
        "beta": rows["landscape/beta_smoothness"].to_numpy(float),
        "loss_range": (rows["landscape/loss_max"] - rows["landscape/loss_min"]).to_numpy(float) / loss,
        "grad_range": rows["landscape/grad_pred_max"].to_numpy(float) / rows["landscape/grad_norm"].to_numpy(float),
        "loss": loss,
    }


def log_ratio(runs, metrics, model: str, key: str) -> dict[int, float]:
    """Per seed: mean over the measurements of log(BN's value / none's value) at the same steps."""

    def by_seed(norm):
        rows = runs[(runs["config.model.norm"] == norm) & (runs["config.model.name"] == model)]
        return {int(s): profile(metrics, r) for s, r in zip(rows["config.seed"], rows["run_id"])}

    bn, none = by_seed("batch"), by_seed("none")
    return {s: float(np.mean(np.log(bn[s][key]) - np.log(none[s][key]))) for s in sorted(set(bn) & set(none))}


def analyse(results, measurements) -> Finding:
    runs, metrics = results.runs, results.metrics
    models = sorted(runs["config.model.name"].unique())
    parts, details = [], []
    for model in models:
        for key, label in MEASURES.items():
            iv = stats.t_interval(list(log_ratio(runs, metrics, model, key).values()))
            parts.append(((model, key), iv))
            details.append(f"{model}, {label}: BN / none = {np.exp(iv.estimate):.2f}x (log ratio {iv.format(2)})")
    rule_parts = [
        stats.NOT_SUPPORTED if iv.low > 0 else (stats.SUPPORTED if iv.high < 0 else stats.INCONCLUSIVE)
        for (m, k), iv in parts
        if k in ("beta", "loss_range")
    ]
    verdict = stats.all_of(*rule_parts)
    head = dict(parts)[(models[0], "beta")]
    ratio = head.map(np.exp)
    reason = (
        "BN / none, mean over training: "
        + "; ".join(
            f"{m} beta-smoothness {np.exp(dict(parts)[(m, 'beta')].estimate):.2f}x, "
            f"relative loss range {np.exp(dict(parts)[(m, 'loss_range')].estimate):.2f}x"
            for m in models
        )
        + "."
    )
    return Finding(
        f"BN / none, effective beta-smoothness, {models[0]} (ratio, geometric mean over training)", ratio, verdict, reason, details, signed=False
    )


def figure(results, measurements, path) -> None:
    runs, metrics = results.runs, results.metrics
    models = sorted(runs["config.model.name"].unique())
    fig, axes = plt.subplots(len(models), 3, figsize=(14, 3.6 * len(models)), squeeze=False)
    for row, model in zip(axes, models):
        for ax, key in zip(row, MEASURES):
            for i, norm in enumerate(("none", "batch")):
                ids = runs[(runs["config.model.norm"] == norm) & (runs["config.model.name"] == model)]["run_id"]
                profiles = [profile(metrics, r) for r in ids]
                steps = profiles[0]["step"]
                values = np.array([p[key] for p in profiles])
                ax.plot(steps, values.mean(0), color=color(norm, i), label=norm)
                ax.fill_between(steps, values.min(0), values.max(0), color=color(norm, i), alpha=0.2, lw=0)
            ax.set_yscale("log")
            ax.set_title(f"{model}: {MEASURES[key]}", fontsize=9)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        row[0].legend()
    save(fig, path, "mean over seeds, band min-max over seeds; along the gradient at step sizes lr x {0.5, 1, 2, 3, 4} (Santurkar App. A.2.2)")


CLAIM = Claim(
    name="landscape",
    title="BN makes the loss landscape smoother",
    source="Santurkar et al. 2018, §3.1 and Figure 4",
    quote="BatchNorm ... makes the landscape of the corresponding optimization problem significantly more smooth ... "
    "the loss changes at a smaller rate and the magnitudes of the gradients are smaller too.",
    setup="MNIST-1D (where neither net fits its training data to zero loss), ReLU MLP 6x100 and a 2-stage CNN (16/32 channels), "
    "SGD lr 0.1, batch 64, 3,000 steps; every 150 steps along the step's gradient at lr x {0.5, 1, 2, 3, 4}: the range of the loss and of "
    "the gradient change, and the effective beta-smoothness; loss and gradient ranges taken relative to the loss and gradient norm there.",
    rule="supported if, for both models, BN's effective beta-smoothness and relative loss range are lower than none's over training: the "
    "per-seed interval of the mean log ratio (BN / none, at the same steps) lies below 0 for both quantities; not supported if either "
    "interval lies above 0; otherwise inconclusive.",
    analyse=analyse,
    figure=figure,
    differs="Santurkar et al. measure VGG on CIFAR-10 (and a deep linear network) in absolute terms; we compare relative to the loss at the "
    "same step, since a plain net that fits its data reaches a flat, near-zero loss region for a different reason. The loss range "
    "relative to the loss is far smaller with BN on the MLP, as in the paper; the effective beta-smoothness is not. A likely reason: "
    "for both MLPs it sits near 2/lr = 20 for most of training, the 'edge of stability' that gradient descent drives the sharpness "
    "to (Cohen et al. 2021), so at one shared learning rate the smoothness along the gradient is set by the step size, not by BN. "
    "The deep linear network of the paper's Fig. 4 is not part of this quick sweep (configs/landscape.yaml and configs/dln.yaml run it).",
)
