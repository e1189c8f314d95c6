"""Claim 16: at initialisation, BN itself makes the gradient explode with depth in a plain
(no skip connections) network (Yang et al. 2019), the opposite of what claim 15 says of training."""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import numpy as np

from . import describe, gradients, stats
from .claim import Claim, Finding, Ours, PaperNumber, Part, Rule
from .plots import SEED_NOTE, color, save, seed_dots

MIN_EFFECT = 0.02  # decades per layer: one decade of growth over 50 layers
# Yang et al.'s rate for ReLU as the batch grows: the squared gradient norm grows by pi/(pi-1) a layer
MEAN_FIELD_RATE = math.log10(math.sqrt(math.pi / (math.pi - 1)))  # decades of gradient norm per layer


def ratios(results) -> dict[str, dict[int, dict[int, float]]]:
    """norm -> depth -> seed -> log10(|grad W_1| / |grad W_L|) at the first step (before any update)."""
    runs, metrics = results.runs, results.metrics
    out: dict = {}
    for _, r in runs.iterrows():
        depth = int(r["config.model.depth"])
        steps, ratio = gradients.first_over_last(metrics, r["run_id"], depth)
        if len(ratio):
            out.setdefault(r["config.model.norm"], {}).setdefault(depth, {})[int(r["config.seed"])] = float(ratio[0])
    return out


def slopes(by_depth: dict[int, dict[int, float]]) -> dict[int, float]:
    """Per seed, the least-squares slope of the log ratio against depth: decades of growth per layer."""
    depths = sorted(by_depth)
    seeds = set.intersection(*(set(by_depth[d]) for d in depths))
    return {s: float(np.polyfit(depths, [by_depth[d][s] for d in depths], 1)[0]) for s in sorted(seeds)}


def setup(results, record) -> str:
    runs = results.runs
    return (
        f"{describe.data(runs, record.get('data_sizes'))}, ReLU MLPs of width {describe.spread(runs, 'model.width')} and depth "
        f"{describe.listed(describe.values(runs, 'model.depth'))} without skip connections, {describe.norms(runs)}, {describe.init(runs)}, "
        f"batch {describe.spread(runs, 'train.batch_size')}, BN epsilon {describe.number(describe.one(runs, 'model.norm_epsilon'))}; the "
        "gradient of the first training step (at initialisation, before any update), no training otherwise."
    )


def analyse(results, measurements) -> Finding:
    r = ratios(results)
    bn, none = slopes(r["batch"]), slopes(r["none"])
    diff = stats.paired(none, bn)
    part = Part(
        "",
        f"with BN the gradient grows towards the input faster than without, by more than {MIN_EFFECT:g} decades per layer "
        f"(one decade over {1 / MIN_EFFECT:g} layers)",
        "BN - none, growth of log10(|grad W_1| / |grad W_L|) with depth at initialisation (decades per layer; per-seed slope over depths)",
        diff,
        stats.superior(diff, MIN_EFFECT),
        digits=3,
        threshold=MIN_EFFECT,
    )
    deepest = max(r["batch"])
    bn_deep, none_deep = (np.mean(list(r[n][deepest].values())) for n in ("batch", "none"))
    rate = stats.t_interval(list(bn.values()))
    reason = (
        f"at depth {deepest} the first layer's gradient is {10**bn_deep:,.0f} times the last layer's with BN and "
        f"{10**none_deep:.2f} times without; BN's gradient grows by a factor {10**rate.estimate:.3f} a layer, "
        f"against {10**MEAN_FIELD_RATE:.3f} in Yang et al.'s mean-field limit."
    )
    details = [
        f"depth {d}: mean log10(|grad W_1| / |grad W_L|) at initialisation: BN {np.mean(list(r['batch'][d].values())):+.2f}, "
        f"none {np.mean(list(r['none'][d].values())):+.2f}"
        for d in sorted(r["batch"])
    ]
    details.append(
        f"BN's growth rate (decades per layer, reported, not judged): {rate.format(3)}; the mean-field value for ReLU as the batch grows, "
        f"log10 sqrt(pi/(pi-1)) = {MEAN_FIELD_RATE:.3f}"
    )
    details.append(f"none's growth rate (decades per layer): {stats.t_interval(list(none.values())).format(3)}")
    runs = results.runs
    ours = Ours(
        "gradient growth per layer towards the input at initialisation, BN",
        f"ReLU MLP of width {describe.spread(runs, 'model.width')}, depth {describe.spread(runs, 'model.depth')}, {describe.init(runs)}",
        describe.data(runs),
        f"batch {describe.spread(runs, 'train.batch_size')}",
        f"x{10**rate.estimate:.3f} a layer (none x{10 ** stats.t_interval(list(none.values())).estimate:.3f})",
    )
    facts = {"deepest": str(deepest), "bn_factor": f"{10**bn_deep:,.0f}"}
    return Finding((part,), reason, details, (ours,), facts)


def figure(results, measurements, path) -> None:
    r = ratios(results)
    runs, metrics = results.runs, results.metrics
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for i, norm in enumerate(("none", "batch")):
        c = color(norm, i)
        depths = sorted(r[norm])
        a.plot(depths, [np.mean(list(r[norm][d].values())) for d in depths], "o-", color=c, label=norm, ms=4)
        for d in depths:
            seed_dots(a, d, r[norm][d].values(), c)
    d0 = min(r["batch"])
    a.plot(
        [d0, max(r["batch"])],
        [np.mean(list(r["batch"][d0].values())) + MEAN_FIELD_RATE * (d - d0) for d in (d0, max(r["batch"]))],
        ":",
        color="k",
        label="mean-field rate (ReLU, batch to infinity)",
    )
    a.set_xlabel("depth (hidden layers)")
    a.set_ylabel("log10(|grad W_1| / |grad W_L|)")
    a.set_title("at initialisation: first over last layer's gradient")
    a.grid(alpha=0.3)
    a.legend(fontsize=8)
    deepest = max(r["batch"])
    for i, norm in enumerate(("none", "batch")):
        rows = runs[(runs["config.model.norm"] == norm) & (runs["config.model.depth"] == deepest)]
        curves = [gradients.log_norms(metrics, rid, deepest)[1][0] for rid in rows["run_id"]]
        layers = np.arange(1, deepest + 1)
        for v in curves:
            b.plot(layers, v, color=color(norm, i), lw=0.6, alpha=0.35)
        b.plot(layers, np.mean(curves, 0), color=color(norm, i), lw=1.8, label=norm)
    b.set_xlabel("hidden layer (1 = next to the input)")
    b.set_ylabel("log10 |grad W_l|")
    b.set_title(f"depth {deepest}: every layer's gradient norm at initialisation")
    b.grid(alpha=0.3)
    b.legend(fontsize=8)
    save(fig, path, SEED_NOTE)


CLAIM = Claim(
    name="bn_explodes_at_init",
    ceiling=False,  # one step at initialisation: no accuracy to compare
    number=16,
    tiny=("data.mnist1d_samples=500", "sweep.grid.model.depth=[3,6]"),  # a CI-sized run of every arm (tests/test_claims.py)
    title="BN itself explodes gradients at initialisation in deep plain nets",
    source="Yang et al. 2019 (A mean field theory of batch normalization), abstract, §3.1.2 and Theorem 8 (ICLR 2019 numbering)",
    quote="gradient signals grow exponentially in depth and ... these exploding gradients cannot be eliminated by tuning the initial "
    "weight variances or by adjusting the nonlinear activation function. Indeed, batch normalization itself is the cause of gradient explosion.",
    setup=setup,
    rule=Rule(
        version=1,
        fixed="2026-12-03",
        explored_on="seeds 100-104 (the quick config at those seeds); no confirmation seed had been run; a referee's review of the "
        "design (citations corrected)",
        text=f"the {stats.CI} interval of the per-seed difference BN - none in the slope of log10(|grad W_1| / |grad W_L|) against depth "
        f"(least squares over the depths, at initialisation) lies wholly above +{MIN_EFFECT:g} decades per layer: supported; wholly "
        f"below +{MIN_EFFECT:g}: not supported; otherwise inconclusive.",
    ),
    analyse=analyse,
    figure=figure,
    paper=(
        PaperNumber(
            "growth of the squared gradient norm per layer towards the input, BN with ReLU, as the batch grows",
            f"pi/(pi-1) = {math.pi / (math.pi - 1):.3f} (gradient norm x{10**MEAN_FIELD_RATE:.3f} a layer)",
            "fully connected net with BN, ReLU, no skip connections",
            "at initialisation (data-independent mean-field theory)",
            "infinite width and batch",
            "Yang et al. 2019, §3.1.2 and Theorem 8 (the rate at batch B decreases to pi/(pi-1) as B grows)",
        ),
    ),
    differs="Yang et al. derive the rate in the mean-field limit (infinite width; at batch B the rate is a little above its large-batch "
    "limit) and test trainability on MNIST and CIFAR-10; we measure the gradient itself at the width and batch of the setup on "
    "MNIST-1D, at depths up to {deepest}, where BN's first layer gets {bn_factor} times the last layer's gradient. Their Figure 3 "
    "shows the gradients evening out after a single step of training; claim 15's first log window (the mean over its first steps) "
    "already shows BN's ratio near balance.",
)
