"""Claim 14: full whitening costs far more per step than BN, more so as the width grows.

The cost of a step is measured after training by bnlab.measure.step_time: every arm at every width
in interleaved blocks in one process, at learning rate 0, so an arm whose training diverges is timed
all the same. Accuracy comes from the training runs and is reported, not judged."""

from __future__ import annotations

import dataclasses

import matplotlib.pyplot as plt
import numpy as np

from . import describe, stats
from .claim import SEEN_UNDER_V1, STATISTICS_REVIEW, Claim, Finding, Ours, PaperNumber, Part, Rule, RuleChange
from .plots import against, save, seed_dots

BN, FULL = "BN", "whitening, all features"
MIN_RATIO = 2.0  # full whitening / BN seconds per step at the largest width
ROUNDS = 12  # even: each arm runs before each other equally often
CHANCE = 0.10  # MNIST-1D's ten classes: a diverged run counts at chance in the accuracies


def arm_name(norm: str, group: int) -> str:
    if norm == "batch":
        return BN
    return f"whitening, groups of {group}" if group else FULL


def arm(row) -> str:
    return arm_name(row["config.model.norm"], int(row["config.model.whiten_group_size"]))


def arm_names(runs) -> list[str]:
    """BN first, then whitening by group size, all features last."""
    names = {arm(r) for _, r in runs.iterrows()}
    return sorted(names, key=lambda n: (n != BN, n == FULL, n))


def arm_color(name: str) -> str:
    return {BN: "#1f77b4", FULL: "#d62728"}.get(name, "#9467bd")


def key(name: str, width: int) -> str:
    return f"{name} @ {width}"


def round_ratios(timing: dict, a: str, b: str) -> list[float]:
    """Per round: seconds per step of timing arm a / of arm b (both timed within the round)."""
    return [x / y for x, y in zip(timing["seconds_per_step"][a], timing["seconds_per_step"][b])]


def setup(results, record) -> str:
    runs = results.runs
    groups = [g for g in describe.values(runs[runs["config.model.norm"] == "whiten"], "model.whiten_group_size") if g]
    return (
        f"{describe.data(runs, record.get('data_sizes'))}, ReLU MLP with {describe.one(runs, 'model.depth')} hidden layers of width "
        f"{describe.listed(describe.values(runs, 'model.width'))}, {describe.optimiser(runs)}, {describe.length(runs)}; BN / ZCA whitening "
        f"in groups of {describe.listed(groups)} features (Huang et al.) / ZCA whitening of all features. After training, every arm at "
        "every width timed in "
        f"{ROUNDS} interleaved rounds in one process at learning rate 0 (bnlab.measure.step_time), whether or not its training converged."
    )


def analyse(results, measurements) -> Finding:
    runs = results.runs.copy()
    runs["arm"] = runs.apply(arm, axis=1)
    widths = sorted(runs["config.model.width"].unique())
    narrow, wide = widths[0], widths[-1]
    timing = measurements.get("timing")
    full, bn = FULL, BN
    if timing:
        costly_iv = stats.median_interval(round_ratios(timing, key(full, wide), key(bn, wide)))
        growth = [
            x / y for x, y in zip(round_ratios(timing, key(full, wide), key(bn, wide)), round_ratios(timing, key(full, narrow), key(bn, narrow)))
        ]
        grows_iv = stats.median_interval(growth)
    else:
        costly_iv = grows_iv = stats.Interval(float("nan"), float("nan"), float("nan"), 0, "median")
    parts = (
        Part(
            "",
            f"at the largest width a step of full whitening costs at least {MIN_RATIO:g}x BN's",
            f"full whitening / BN, seconds per step at width {wide} (ratio within each round; median over rounds)",
            costly_iv,
            stats.superior(costly_iv, MIN_RATIO),
            signed=False,
            threshold=MIN_RATIO,
        ),
    )
    details = [f"(full whitening / BN at width {wide}) / (the same at width {narrow}), reported, not judged: {grows_iv.format(2, signed=False)}"]
    if timing:
        for name in (n for n in arm_names(runs) if n != bn):
            cells = [f"width {w} {np.median(round_ratios(timing, key(name, w), key(bn, w))):.2f}x" for w in widths]
            details.append(f"{name} / BN seconds per step (median of {timing['rounds']} rounds): " + ", ".join(cells))
        details.append(
            "XLA's FLOPs of a forward and backward pass, millions (library calls such as the eigendecomposition count 0): "
            + "; ".join(f"width {w}: " + ", ".join(f"{n} {timing['flops_per_step'][key(n, w)] / 1e6:.1f}" for n in arm_names(runs)) for w in widths)
        )
    diverged = runs[runs["status"] == "diverged"]
    for name in arm_names(runs):
        for w in widths:
            d = diverged[(diverged["arm"] == name) & (diverged["config.model.width"] == w)]
            if len(d):
                at = ", ".join(f"seed {s} at step {int(st)}" for s, st in zip(d["config.seed"], d["diverged_step"]))
                details.append(f"training diverged: {name}, width {w}: {at}")
    for name in arm_names(runs):
        acc = runs[(runs["arm"] == name) & (runs["status"] == "done")].groupby("config.model.width")["test_acc"]
        details.append(
            f"{name}: final test accuracy (reported, not judged) "
            + ", ".join(f"width {w} {100 * a:.1f}% ({acc.size()[w]} runs)" for w, a in acc.mean().items())
        )
    reason = (
        f"a step of full whitening costs {costly_iv.estimate:.1f}x BN's at width {wide}, and that ratio is {grows_iv.estimate:.1f}x "
        f"the one at width {narrow} (reported)."
    )
    batch = int(describe.one(runs, "train.batch_size"))
    acc = {
        (name, w): 100 * stats.accuracy(runs[(runs["arm"] == name) & (runs["config.model.width"] == w)], CHANCE).mean()
        for name in arm_names(runs)
        for w in widths
    }
    groups = [n for n in arm_names(runs) if n not in (bn, full)]
    facts = {
        "batch": describe.number(batch),
        "wide": str(wide),
        "narrow": str(narrow),
        "backend": (timing or {}).get("backend", "?"),
        "accuracy": "; ".join(f"{g} {acc[(g, wide)]:.1f}% against BN's {acc[(bn, wide)]:.1f}% at width {wide}" for g in groups)
        + f"; whitening all features {acc[(full, narrow)]:.1f}% at width {narrow} and {acc[(full, wide)]:.1f}% at width {wide}",
    }
    ours = tuple(
        Ours(
            f"final test accuracy, {name}",
            f"ReLU MLP, width {narrow} / {wide}",
            describe.data(runs),
            describe.length(runs),
            f"{acc[(name, narrow)]:.1f}% / {acc[(name, wide)]:.1f}%",
        )
        for name in arm_names(runs)
    )
    return Finding(parts, reason, details, ours, facts)


def measure(base, seeds: list[int]) -> dict:
    """Every arm at every width of the claim's sweep, timed in interleaved rounds (bnlab.measure.step_time)."""
    import bnlab
    from bnlab.data.dataset import load
    from bnlab.measure.step_time import interleaved_step_seconds

    specs = {}
    cfg = bnlab.load_config(base)
    arms = list(zip(cfg.sweep.zip["model.norm"], cfg.sweep.zip["model.whiten_group_size"]))
    for w in cfg.sweep.grid["model.width"]:
        for norm, group in arms:
            model = dataclasses.replace(cfg.model, width=int(w), norm=norm, whiten_group_size=int(group))
            specs[key(arm_name(norm, int(group)), int(w))] = dataclasses.replace(cfg, model=model)
    return {"timing": interleaved_step_seconds(specs, load(cfg.data), rounds=ROUNDS)}


def figure(results, measurements, path) -> None:
    runs = results.runs.copy()
    runs["arm"] = runs.apply(arm, axis=1)
    timing = measurements.get("timing")
    widths = sorted(runs["config.model.width"].unique())
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name in arm_names(runs):
        if timing:
            per_round = [1e3 * np.asarray(timing["seconds_per_step"][key(name, w)]) for w in widths]
            a.plot(widths, [np.median(v) for v in per_round], "o-", color=arm_color(name), label=name)
            for w, v in zip(widths, per_round):
                seed_dots(a, w, v, arm_color(name), logx=True, width=0.03)
    rows = runs.assign(**{"config.arm": runs["arm"]})
    against(b, rows, "model.width", "arm", "test_acc", logx=True)
    for ax in (a, b):
        ax.set_xscale("log", base=2)
        ax.set_xlabel("width")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    a.set_yscale("log")
    a.set_ylabel("ms per training step")
    a.set_title("cost per step (interleaved rounds, learning rate 0)")
    b.set_ylabel("final test accuracy")
    b.set_title("accuracy")
    for line in b.get_lines():
        if line.get_label() in arm_names(runs):
            line.set_color(arm_color(line.get_label()))
    save(fig, path, "left: lines the median over rounds, dots each round; right: lines the mean over seeds, dots each seed, x a diverged run")


RULE_V1 = (
    "supported if whitening all features costs at least 2x BN's seconds per step at the largest width on every seed, and that ratio is "
    "larger at the largest width than at the smallest on every seed; not supported if it is below 2x on every seed; otherwise inconclusive."
)

CLAIM = Claim(
    name="whitening",
    ceiling=False,  # a claim about time, not accuracy
    number=14,
    tiny=(
        "data.mnist1d_samples=500",
        "train.steps=20",
        "train.log_every=10",
        "train.batch_size=64",
        "sweep.grid.model.width=[32,64]",
    ),  # a CI-sized run of every arm (tests/test_claims.py)
    title="Full whitening is far more expensive than BN",
    source="Ioffe & Szegedy 2015, §2; Huang et al. 2018 (decorrelated BN)",
    quote="whitening the layer inputs is expensive, as it requires computing the covariance matrix ... and its inverse square root, "
    "as well as the derivatives of these transforms for backpropagation.",
    setup=setup,
    rule=Rule(
        version=2,
        fixed="2026-12-03",
        explored_on=SEEN_UNDER_V1,
        text="from step times measured after training in interleaved rounds (every arm at every width in each round, at learning rate 0, "
        f"so that a diverging arm is timed too): the exact {stats.CI} interval of the median over rounds of (full whitening / BN seconds "
        f"per step at the largest width) lies wholly above {MIN_RATIO:g} (supported) or wholly below it (not supported); otherwise "
        "inconclusive. How the ratio grows with the width is reported, not judged (the quote does not state it).",
        history=(
            RuleChange(
                1,
                "2026-11-27",
                RULE_V1,
                "inconclusive on seeds 0-2 and on seeds 3-5: whitening all features diverged at the largest width before its first timed "
                "chunk, so the ratio was never measured (n=0); on three seeds never used before it came out supported with n=2",
                "2026-12-03",
                STATISTICS_REVIEW + "; and version 1 read step costs from the training logs, so a run that diverged was never timed and the "
                "deciding ratio rested on a different number of seeds each time: version 2 times every arm after training, whether or "
                "not it converged.",
            ),
        ),
    ),
    paper=(
        PaperNumber(
            "cost of whitening",
            "no number: it needs the covariance matrix, its inverse square root and their derivatives; with fewer examples than "
            "activations the covariance is singular",
            "-",
            "-",
            "-",
            "Ioffe & Szegedy 2015, §2 and §3",
        ),
    ),
    analyse=analyse,
    figure=figure,
    measure=measure,
    differs="The paper argues from the cost of the computation; we time it on this machine's {backend} backend, where an "
    "eigendecomposition per layer and step is the cost. The batch of {batch} examples is larger than the widest layer, so the batch "
    "covariance that full whitening inverts has full rank at every width. Accuracy, reported and not judged (a diverged run at chance): "
    "{accuracy}; Huang et al. whiten in groups because whitening all features degrades as the width grows.",
)
