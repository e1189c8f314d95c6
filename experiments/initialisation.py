"""Claim 4: BN makes training much less sensitive to the scale of the initial weights; and BN's
scale invariance, measured on a trained net."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np

from . import describe, stats, tuning
from .claim import STATISTICS_REVIEW, Claim, Finding, PaperNumber, Part, Rule, RuleChange
from .plots import DIVERGED_NOTE, SEED_NOTE, against, save
from .tuning import Tune

ACTIVATIONS = ("sigmoid", "relu")
CHANCE = 0.10  # a diverged run counts as chance accuracy (MNIST-1D's ten classes) in the spread
MIN_EFFECT = 0.2  # share of the above-chance accuracy at the default scale: BN keeps at least this much more of it
TRAINS = 0.05  # an arm within this of chance at the default scale has nothing to lose: its share counts as 0
OUTPUT_TOLERANCE, GRADIENT_TOLERANCE = 1e-3, 1e-2  # scale invariance: relative output change; |grad ratio x a - 1|
INVARIANCE_STEPS, INVARIANCE_LAYER, INVARIANCE_FACTORS = 300, 1, (0.1, 10.0)
SIDES = (("small", lambda scale: scale < 1), ("large", lambda scale: scale > 1))  # the init scales below and above the default
TUNE = Tune(values=(0.01, 0.03, 0.1, 0.3, 1.0), at=(("model.init_scale", 1.0),))  # each arm's lr, chosen at the default scale


def final_accuracy(runs, norm: str, act: str) -> dict[int, dict[float, float]]:
    """seed -> init scale -> final test accuracy (a diverged run at chance)."""
    rows = runs[(runs["config.model.norm"] == norm) & (runs["config.model.activation"] == act)]
    out: dict[int, dict[float, float]] = {}
    for _, r in rows.iterrows():
        acc = float(r["test_acc"]) if r["status"] == "done" else CHANCE
        out.setdefault(int(r["config.seed"]), {})[float(r["config.model.init_scale"])] = acc
    return out


def kept_share(runs, norm: str, act: str, side) -> dict[int, float]:
    """Per seed: R = (lowest accuracy over the side's scales - chance) / (accuracy at scale 1 - chance),
    the share of the default init's above-chance accuracy a bad init keeps (0 where the default
    init is itself within TRAINS of chance)."""
    out = {}
    for seed, by_scale in final_accuracy(runs, norm, act).items():
        base = by_scale.get(1.0, CHANCE) - CHANCE
        worst = min(v for a, v in by_scale.items() if side(a)) - CHANCE
        out[seed] = worst / base if base > TRAINS else 0.0
    return out


def worst_case(runs, norm: str, act: str, side) -> dict[int, float]:
    """Per seed: the lowest final test accuracy over the side's scales (a diverged run at chance)."""
    return {s: min(v for a, v in by.items() if side(a)) for s, by in final_accuracy(runs, norm, act).items()}


def spread(runs, norm: str) -> dict[int, float]:
    """Per seed: max - min of the final test accuracy over the init scales, mean over the activations
    (version 2's statistic, reported: it penalises the arm with the higher ceiling)."""
    out: dict[int, list[float]] = {}
    for act in ACTIVATIONS:
        rows = runs[(runs["config.model.norm"] == norm) & (runs["config.model.activation"] == act)]
        for seed, group in rows.groupby("config.seed"):
            acc = np.where(group["status"] == "done", group["test_acc"].astype(float), CHANCE)
            out.setdefault(int(seed), []).append(float(acc.max() - acc.min()))
    return {s: float(np.mean(v)) for s, v in out.items()}


def setup(results, record) -> str:
    runs = results.runs
    return (
        f"{describe.data(runs, record.get('data_sizes'))}, MLP {describe.one(runs, 'model.depth')}x{describe.one(runs, 'model.width')}, "
        f"{describe.listed(describe.values(runs, 'model.activation'))}, {describe.init(runs)} multiplied by "
        f"{describe.listed(describe.values(runs, 'model.init_scale'))}, SGD, {describe.length(runs)}; {describe.norms(runs)}; "
        f"{tuning.text(record['tuned'], _arm)}. Scale invariance: a BN ReLU net of this config trained {INVARIANCE_STEPS} steps, hidden layer "
        f"{INVARIANCE_LAYER + 1}'s weights multiplied by {describe.listed(INVARIANCE_FACTORS)}."
    )


def _arm(arm: dict) -> str:
    return f"{describe.NORM_NAMES.get(arm['model.norm'], arm['model.norm'])} {arm['model.activation']}"


def analyse(results, measurements) -> Finding:
    runs = results.runs
    scales = describe.values(runs, "model.init_scale")
    inv = measurements.get("scale_invariance", [])
    holds = bool(inv) and all(m["output_max_rel_change"] < OUTPUT_TOLERANCE and abs(m["grad_ratio_times_a"] - 1) < GRADIENT_TOLERANCE for m in inv)
    worst_out = max((m["output_max_rel_change"] for m in inv), default=float("nan"))
    worst_grad = max((abs(m["grad_ratio_times_a"] - 1) for m in inv), default=float("nan"))
    parts, worst = [], {}
    for label, ((side, test), act) in zip("abcd", [(sd, a) for sd in SIDES for a in ACTIVATIONS]):
        on_side = [v for v in scales if test(v)]
        worst[(side, act)] = {n: {k: 100 * v for k, v in worst_case(runs, n, act, test).items()} for n in ("none", "batch", "layer")}
        shares = {n: kept_share(runs, n, act, test) for n in ("none", "batch")}
        diff = stats.paired(shares["none"], shares["batch"])
        parts.append(
            Part(
                label,
                f"{act}, {side} initial weights (x{describe.listed(on_side)}): BN keeps more of its default-init accuracy than none, by "
                f"more than {MIN_EFFECT:g} of it",
                f"{act}, {side} side: BN - none, share R of the above-chance test accuracy at x1 kept at the worst of x{describe.listed(on_side)}",
                diff,
                stats.superior(diff, MIN_EFFECT),
                threshold=MIN_EFFECT,
            )
        )
    parts.append(
        Part(
            "e",
            "scaling a layer's weights leaves a BN net's output unchanged and scales that layer's gradient by 1/a",
            "largest relative output change; largest deviation of gradient norm x a from 1",
            f"{worst_out:.1e}; {worst_grad:.1e}",
            stats.SUPPORTED if holds else stats.NOT_SUPPORTED,
        )
    )
    parts = tuple(parts)
    s = {n: spread(runs, n) for n in ("none", "batch", "layer")}
    mean = {n: 100 * np.mean(list(v.values())) for n, v in s.items()}
    details = [
        f"{act}, {side} side: mean worst-case final test accuracy (reported): "
        + ", ".join(f"{n} {np.mean(list(v.values())):.1f}%" for n, v in w.items())
        + f"; BN - none {stats.paired(w['none'], w['batch']).format(1, unit=' pt')}"
        for (side, act), w in worst.items()
    ]
    details.append(
        f"version 2's statistic, the spread (max - min) over init scales {describe.number(scales[0])} to {describe.number(scales[-1])} "
        "(mean of the activations; reported, not judged): " + ", ".join(f"{n} {v:.1f} pt" for n, v in mean.items())
    )
    for m in inv:
        details.append(
            f"scale invariance, layer {m['layer']} weights x {m['a']:g} on a BN net trained {m['steps_trained']} steps: outputs change by at most "
            f"{m['output_max_rel_change']:.1e} (relative), gradient norm x a = {m['grad_ratio_times_a']:.5f} of the original (1: exactly 1/a)"
        )
    kept = {
        (side, act, n): np.mean(list(kept_share(runs, n, act, test).values()))
        for side, test in SIDES
        for act in ACTIVATIONS
        for n in ("none", "batch")
    }
    reason = (
        "of its default-init accuracy above chance, BN keeps "
        + ", ".join(
            f"{kept[(side, act, 'batch')]:.2f} against none's {kept[(side, act, 'none')]:.2f} ({act}, {side})"
            for side, _ in SIDES
            for act in ACTIVATIONS
        )
        + f" (parts a-d {', '.join(p.verdict for p in parts[:4])}); BN's scale invariance {'holds' if holds else 'does not hold'} within "
        f"the rule's tolerances on the trained net (part e {parts[4].verdict})."
    )
    per_scale = []
    for scale in describe.values(runs, "model.init_scale"):
        cells = []
        for norm in ("batch", "none"):
            acc = [stats.accuracy(runs, CHANCE, **{"model.norm": norm, "model.activation": a, "model.init_scale": scale}).mean() for a in ACTIVATIONS]
            cells.append(f"{'BN' if norm == 'batch' else 'none'} {100 * np.mean(acc):.1f}%")
        per_scale.append(f"x{describe.number(scale)}: " + ", ".join(cells))
    facts = {"per_scale": "; ".join(per_scale)}
    return Finding(parts, reason, details, (), facts)


def measure(cfg, seeds: list[int]) -> dict:
    """Train a BN ReLU net of this claim's config briefly, then scale one hidden layer's weights by
    a: BN's output must not change and that layer's gradient must scale by 1/a (Ioffe & Szegedy §3.3)."""
    import jax
    import jax.numpy as jnp

    from bnlab.data.dataset import load
    from bnlab.train.program import TrainProgram

    cfg = dataclasses.replace(cfg, seed=seeds[0], model=dataclasses.replace(cfg.model, norm="batch", activation="relu", init_scale=1.0))
    program = TrainProgram(cfg, load(cfg.data))
    state, _ = program.train_chunk(program.init(seeds[0]), INVARIANCE_STEPS)
    x, y = program.batch_at(state)
    name = "hidden"
    out = []
    for layer in (INVARIANCE_LAYER,):
        for a in INVARIANCE_FACTORS:

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
    save(fig, path, f"{SEED_NOTE}; {DIVERGED_NOTE}; init scale multiplies the default (LeCun normal) init")


RULE_V1 = (
    "two parts, both needed: (a) the spread (max - min over init scales, a diverged run counted at chance) of the final test "
    "accuracy is at least 10 points smaller with BN than without, its per-seed interval above 0 (not supported if below +2 points); "
    "(b) scaling a layer's weights by a changes a BN net's outputs by < 1e-3 (relative) and scales that layer's gradient by 1/a to within 1%."
)

RULE_V2 = (
    "two parts: (a) the spread (max - min over init scales, a diverged run counted at chance, mean of the activations) of the final "
    "test accuracy is smaller with BN: the 95% interval of the per-seed none - BN spread lies wholly above +10 points (supported) or "
    "wholly below it (not supported); (b) an exact check: scaling a layer's weights by a changes a BN net's outputs by less than 0.001 "
    "(relative) and scales that layer's gradient by 1/a to within 1% (supported), else not supported."
)

CLAIM = Claim(
    name="initialisation",
    fresh_seeds=tuple(range(10, 20)),  # confirmation on seeds never run before (the rule changed after earlier seeds were read)
    number=4,
    tune=TUNE,
    tiny=(
        "data.mnist1d_samples=500",
        "train.steps=20",
        "train.log_every=10",
        "sweep.grid.model.init_scale=[0.1,1.0,10.0]",
        "sweep.grid.model.norm=[none,batch]",
    ),  # a CI-sized run of every arm (tests/test_claims.py)
    title="BN makes training less sensitive to initialisation",
    source="Ioffe & Szegedy 2015, §1 and §3.3",
    quote="Batch Normalization ... allows us to use much higher learning rates and be less careful about initialization. "
    "... BN(Wu) = BN((aW)u) ... the scale does not affect the layer Jacobian nor, consequently, the gradient propagation.",
    setup=setup,
    rule=Rule(
        version=3,
        fixed="2026-12-03",
        explored_on="seeds 100-104 at lr 0.1 under version 3, and a referee's review of the design; seeds 0-9 had been run at lr 0.1 "
        "and their per-scale means printed under version 2, so seeds 10-19 are the fresh confirmation",
        text=f"five parts. Each arm (norm and activation) trains at its own lr, chosen at the default init scale x1 on the tuning "
        f"seeds {describe.seeds(TUNE.seeds)} by final validation accuracy and kept at every scale. Per seed, arm and side of x1 (below, "
        f"above), R = (the lowest final test accuracy over that side's scales - chance) / (the accuracy at x1 - chance), a diverged run "
        f"at chance, R = 0 where the x1 run is within {100 * TRAINS:g} points of chance: the share of the default init's above-chance "
        f"accuracy that a bad init keeps. (a-d) one part per activation and side: the {stats.CI} interval of the per-seed BN - none R "
        f"lies wholly above +{MIN_EFFECT:g} (supported) or wholly below it (not supported), otherwise inconclusive; (e) an exact check: "
        f"scaling a layer's weights by a changes a BN net's outputs by less than {OUTPUT_TOLERANCE:g} (relative) and scales that "
        f"layer's gradient by 1/a to within {GRADIENT_TOLERANCE:.0%} (supported), else not supported.",
        history=(
            RuleChange(
                1,
                "2026-11-27",
                RULE_V1,
                "inconclusive on seeds 0-2 and on seeds 3-5 (part a inconclusive, part b supported)",
                "2026-12-03",
                STATISTICS_REVIEW + ".",
            ),
            RuleChange(
                2,
                "2026-12-03",
                RULE_V2,
                "not supported on seeds 0-9 (part a not supported: +1.74 [-0.87, +4.35] points; part b supported)",
                "2026-12-03",
                "a review of the designs (issue 'Claims, part 4') and a referee's review: max - min over init scales penalises the "
                "arm with the higher ceiling, and no number of seeds would reach the 10-point threshold; version 3 asks what share of "
                "its default-init accuracy each arm keeps at the worst bad init on each side, per activation (averaging hid a weak "
                "one), with each arm at its own lr chosen at the default scale.",
            ),
        ),
    ),
    paper=(
        PaperNumber(
            "sensitivity to the init scale",
            "no number: §3.3 is analytic (BN(Wu) = BN((aW)u), larger weights get smaller gradients)",
            "-",
            "-",
            "-",
            "Ioffe & Szegedy 2015, §3.3",
        ),
    ),
    analyse=analyse,
    figure=figure,
    measure=measure,
    differs="The paper states the invariance and its consequence for Inception; we measure both on small MLPs, each arm at its own "
    "learning rate. The init scale multiplies the output layer too, which no norm follows: at large scales its saturated logits are "
    "not something the paper says BN fixes. The invariance also predicts a limit: scaling a layer's weights by a scales its gradient "
    "by 1/a, so at a fixed lr the relative update shrinks by 1/a², and a BN layer initialised far too large barely moves. Mean final "
    "test accuracy per init scale over both "
    "activations and all seeds (a diverged run at chance): {per_scale}.",
)
