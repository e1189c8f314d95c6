"""Claim 4: BN makes training much less sensitive to the scale of the initial weights; and BN's
scale invariance, measured on a trained net."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np

from . import stats
from .claim import Claim, Finding
from .plots import BAND_NOTE, against, save

ACTIVATIONS = ("sigmoid", "relu")
CHANCE = 0.10  # a diverged run counts as chance accuracy in the spread


def spread(runs, norm: str) -> dict[int, float]:
    """Per seed: max - min of the final test accuracy over the init scales, mean over the activations."""
    out: dict[int, list[float]] = {}
    for act in ACTIVATIONS:
        rows = runs[(runs["config.model.norm"] == norm) & (runs["config.model.activation"] == act)]
        for seed, group in rows.groupby("config.seed"):
            acc = np.where(group["status"] == "done", group["test_acc"].astype(float), CHANCE)
            out.setdefault(int(seed), []).append(float(acc.max() - acc.min()))
    return {s: float(np.mean(v)) for s, v in out.items()}


def analyse(results, measurements) -> Finding:
    runs = results.runs
    s = {n: spread(runs, n) for n in ("none", "batch", "layer")}
    seeds = sorted(set(s["none"]) & set(s["batch"]))
    diff = stats.t_interval([100 * (s["none"][k] - s["batch"][k]) for k in seeds])
    sensitivity = stats.three_way(diff, support_at_least=10.0, refute_below=2.0)
    inv = measurements.get("scale_invariance", [])
    holds = bool(inv) and all(m["output_max_rel_change"] < 1e-3 and abs(m["grad_ratio_times_a"] - 1) < 1e-2 for m in inv)
    verdict = stats.all_of(sensitivity, stats.SUPPORTED if holds else stats.NOT_SUPPORTED)
    mean = {n: np.mean(list(v.values())) for n, v in s.items()}
    details = ["accuracy spread over init scales 0.01-100 (mean of sigmoid and ReLU): " + ", ".join(f"{n} {100 * v:.1f} pt" for n, v in mean.items())]
    for m in inv:
        details.append(
            f"scale invariance, layer {m['layer']} weights x {m['a']:g} on a trained BN net: outputs change by at most "
            f"{m['output_max_rel_change']:.1e} (relative), gradient norm x a = {m['grad_ratio_times_a']:.5f} of the original (1: exactly 1/a)"
        )
    reason = (
        f"the final accuracy varies by {mean['batch']:.0%} over init scales with BN and {mean['none']:.0%} without ({sensitivity}); "
        f"BN's scale invariance {'holds' if holds else 'does not hold'} to float precision on the trained net."
    )
    return Finding("none - BN, spread of final test accuracy over init scales (points)", diff, verdict, reason, details)


def measure(cfg, seeds: list[int]) -> dict:
    """Train a BN ReLU net of this claim's config briefly, then scale one hidden layer's weights by
    a: BN's output must not change and that layer's gradient must scale by 1/a (Ioffe & Szegedy §3.3)."""
    import jax
    import jax.numpy as jnp

    from bnlab.data.dataset import load
    from bnlab.train.program import TrainProgram

    cfg = dataclasses.replace(cfg, seed=seeds[0], model=dataclasses.replace(cfg.model, norm="batch", activation="relu", init_scale=1.0))
    program = TrainProgram(cfg, load(cfg.data))
    state, _ = program.train_chunk(program.init(seeds[0]), 300)
    x, y = program.batch_at(state)
    name = "hidden"
    out = []
    for layer in (1,):
        for a in (0.1, 10.0):

            def loss_and_logits(params):
                loss, (logits, _) = program.model.loss(params, state.batch_stats, x, y, bn_mode="batch")
                return loss, logits

            def scaled(params, a=a, layer=layer):
                p = jax.tree.map(lambda v: v, params)
                p[name][layer]["layer"]["kernel"] = p[name][layer]["layer"]["kernel"] * a
                return p

            (_, logits), grads = jax.value_and_grad(loss_and_logits, has_aux=True)(state.params)
            (_, logits_a), grads_a = jax.value_and_grad(loss_and_logits, has_aux=True)(scaled(state.params))
            g, g_a = grads[name][layer]["layer"]["kernel"], grads_a[name][layer]["layer"]["kernel"]
            out.append(
                {
                    "layer": f"{name}.{layer}",
                    "a": a,
                    "steps_trained": int(state.step),
                    "output_max_rel_change": float(jnp.max(jnp.abs(logits_a - logits)) / jnp.max(jnp.abs(logits))),
                    "grad_ratio_times_a": float(jnp.linalg.norm(g_a) / jnp.linalg.norm(g) * a),
                }
            )
    return {"scale_invariance": out}


def figure(results, measurements, path) -> None:
    runs = results.runs
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, act in zip(axes, ACTIVATIONS):
        against(ax, runs[runs["config.model.activation"] == act], "model.init_scale", "model.norm", "test_acc", logx=True)
        ax.set_title(f"{act} MLP: final test accuracy vs init scale")
        ax.legend()
    axes[0].set_ylabel("final test accuracy")
    save(fig, path, BAND_NOTE + "; init scale multiplies the default (LeCun normal) init")


CLAIM = Claim(
    name="initialisation",
    title="BN makes training less sensitive to initialisation",
    source="Ioffe & Szegedy 2015, §1 and §3.3",
    quote="Batch Normalization ... allows us to use much higher learning rates and be less careful about initialization. "
    "... BN(Wu) = BN((aW)u) ... the scale does not affect the layer Jacobian nor, consequently, the gradient propagation.",
    setup="MNIST-1D, MLP 3x100, sigmoid and ReLU, LeCun-normal init multiplied by 0.01-100, SGD lr 0.1, batch 64, 1,500 steps; "
    "none / BN / LayerNorm. Scale invariance: a BN ReLU net trained 300 steps, hidden layer 2's weights multiplied by 0.1 and 10.",
    rule="two parts, both needed: (a) the spread (max - min over init scales, a diverged run counted at chance) of the final test "
    "accuracy is at least 10 points smaller with BN than without, its per-seed interval above 0 (not supported if below +2 points); "
    "(b) scaling a layer's weights by a changes a BN net's outputs by < 1e-3 (relative) and scales that layer's gradient by 1/a to within 1%.",
    analyse=analyse,
    figure=figure,
    measure=measure,
    differs="The paper states the invariance and its consequence for Inception; we measure both on small MLPs. The most likely reason "
    "the sensitivity part does not reproduce is the invariance itself: scaling a layer's weights by a leaves its output unchanged but "
    "scales its gradient by 1/a, so at a fixed lr the relative update shrinks by 1/a² and BN layers initialised 10-100x too large "
    "barely move in 1,500 steps (the figure: BN's accuracy falls at x10 and x100, where the un-normalised ReLU net diverges). "
    "BN removes the damage of a too-small init (0.01-0.1x), not of a too-large one, at a fixed learning rate.",
)
