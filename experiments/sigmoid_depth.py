"""Claim 1: sigmoid nets train with BN, and deeper ones without BN do not."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import describe, stats
from .claim import SEEN_UNDER_V1, STATISTICS_REVIEW, Claim, Finding, Ours, PaperNumber, Part, Rule, RuleChange
from .plots import DIVERGED_NOTE, SEED_NOTE, against, color, save

DEEPEST_AT_LEAST = 10  # the rule needs a net at least this deep
MIN_EFFECT = 5.0  # points of test accuracy
CHANCE = 0.10  # MNIST-1D's ten classes: a diverged run counts at chance


def setup(results, record) -> str:
    runs = results.runs
    return (
        f"{describe.data(runs, record.get('data_sizes'))}, sigmoid MLPs of width {describe.spread(runs, 'model.width')} and depth "
        f"{describe.spread(runs, 'model.depth')}, {describe.norms(runs)}, {describe.init(runs)}, {describe.optimiser(runs)}, "
        f"{describe.length(runs)}."
    )


def analyse(results, measurements) -> Finding:
    runs = results.runs
    depth = int(runs["config.model.depth"].max())
    by = {norm: 100 * stats.accuracy(runs, CHANCE, **{"model.norm": norm, "model.depth": depth}) for norm in ("none", "batch", "layer")}
    diff = stats.paired(by["none"], by["batch"])
    verdict = stats.superior(diff, MIN_EFFECT)
    if depth < DEEPEST_AT_LEAST:
        verdict = stats.INCONCLUSIVE
        why = f"the deepest net here has {depth} layers, fewer than the {DEEPEST_AT_LEAST} the rule asks for"
    else:
        why = f"at depth {depth} BN's final test accuracy is {by['batch'].mean():.1f}% against {by['none'].mean():.1f}% without normalisation"
    details = []
    for d in sorted(runs["config.model.depth"].unique()):
        cells = [f"{n} {100 * stats.accuracy(runs, CHANCE, **{'model.norm': n, 'model.depth': d}).mean():.1f}%" for n in ("none", "batch", "layer")]
        details.append(f"depth {d}: mean final test accuracy (a diverged run at chance) " + ", ".join(cells))
    details.append(f"LayerNorm - none at depth {depth} (reported, not judged): {stats.paired(by['none'], by['layer']).format(1, unit=' pt')}")
    part = Part(
        "",
        f"at the deepest depth BN beats no normalisation by more than {MIN_EFFECT:g} points",
        f"BN - none, final test accuracy at depth {depth} (points)",
        diff,
        verdict,
        threshold=MIN_EFFECT,
    )
    row = runs[runs["config.model.depth"] == depth]
    ours = Ours(
        "final test accuracy of the deepest sigmoid net",
        describe.model(row),
        describe.data(runs),
        describe.length(runs),
        f"BN {by['batch'].mean():.1f}%, none {by['none'].mean():.1f}%",
    )
    return Finding((part,), why + ".", details, (ours,))


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
    layers = np.arange(1, depth + 1)
    for i, (norm, group) in enumerate(rows.groupby("config.model.norm", sort=False)):
        norms = np.array([[r[f"grad_norm/hidden.{k}.layer.kernel"] for k in range(depth)] for _, r in group.iterrows()])
        for seed_norms in norms:
            b.plot(layers, seed_norms, color=color(norm, i), lw=0.6, alpha=0.35)
        b.plot(layers, norms.mean(0), "o-", color=color(norm, i), label=norm, ms=4)
    b.set_yscale("log")
    b.set_xlabel("hidden layer (1 = next to the input)")
    b.set_ylabel("gradient norm of the layer's weights")
    b.set_title(f"depth {depth}: gradient norms over steps 1-{first}")
    b.grid(alpha=0.3)
    b.legend()
    save(fig, path, f"{SEED_NOTE}; {DIVERGED_NOTE}")


RULE_V1 = (
    "supported if, at the deepest depth (at least 10), BN's mean final test accuracy exceeds none's by at least 5 points "
    "and the 95% interval of the per-seed difference lies above 0; not supported if that interval lies below +1 point; otherwise inconclusive."
)

CLAIM = Claim(
    name="sigmoid_depth",
    number=1,
    tiny=(
        "data.mnist1d_samples=500",
        "train.steps=20",
        "train.log_every=10",
        "sweep.grid.model.depth=[2,10]",
    ),  # a CI-sized run of every arm (tests/test_claims.py)
    title="Sigmoid nets train with BN",
    source="Ioffe & Szegedy 2015, §3.3 and §4.2",
    quote="Batch Normalization also makes it possible to use saturating nonlinearities by preventing the network "
    "from getting stuck in the saturated modes.",
    setup=setup,
    rule=Rule(
        version=2,
        fixed="2026-12-03",
        explored_on=SEEN_UNDER_V1,
        text=f"at the deepest depth (at least {DEEPEST_AT_LEAST}), the {stats.CI} interval of the per-seed difference BN - none in final test "
        f"accuracy (a diverged run at chance) lies wholly above +{MIN_EFFECT:g} points: supported; wholly below +{MIN_EFFECT:g}: not "
        "supported; otherwise inconclusive.",
        history=(RuleChange(1, "2026-11-27", RULE_V1, "supported on seeds 0-2 and on seeds 3-5", "2026-12-03", STATISTICS_REVIEW + "."),),
    ),
    analyse=analyse,
    figure=figure,
    paper=(
        PaperNumber(
            "max validation accuracy of sigmoid Inception with BN (BN-x5-Sigmoid)",
            "69.8%",
            "Inception, sigmoid",
            "ImageNet (ILSVRC2012 validation, single crop)",
            "batch 32",
            "Ioffe & Szegedy 2015, §4.2.2 and Figure 3",
        ),
        PaperNumber(
            "accuracy of sigmoid Inception without BN",
            "'never achieves better than 1/1000 accuracy' (chance)",
            "Inception, sigmoid",
            "ImageNet",
            "not stated",
            "Ioffe & Szegedy 2015, §4.2.2",
        ),
    ),
    differs="The paper shows this on Inception/ImageNet (sigmoid Inception trains only with BN) and MNIST; "
    "we use small MLPs on MNIST-1D at one learning rate for every arm, without tuning per arm.",
)
