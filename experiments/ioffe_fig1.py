"""Claim 2: Ioffe & Szegedy's Figure 1 - the 3x100 sigmoid MNIST net trains faster with BN (1a),
and its last hidden layer's input distribution is far more stable (1b, 1c)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import describe, stats
from .claim import STATISTICS_REVIEW, Claim, Finding, Ours, PaperNumber, Part, Rule, RuleChange
from .plots import color, metric_curves, save, seed_curves

PERCENTILES = (15, 50, 85)
LOW, MID, HIGH = PERCENTILES
TARGET = 0.80  # test accuracy both nets reach: 'faster' is the number of steps to it
FASTER = 0.5  # BN needs fewer than half the plain net's steps
SENSITIVITY = (0.70, 0.85)  # other targets, reported
CHANCE = 0.10  # ten classes: a diverged run counts at chance


def steps_to(metrics, run_id: str, target: float = TARGET) -> tuple[float, bool]:
    """The first logged step at which the run's test accuracy reached `target`, and whether it did;
    a run that never does counts one log interval past its last step (in its favour)."""
    rows = metrics[metrics["run_id"] == run_id].dropna(subset=["test_acc"])
    hit = rows[rows["test_acc"] >= target]["step"]
    if len(hit):
        return float(hit.min()), True
    steps = rows["step"].to_numpy()
    return float(steps[-1] + (steps[-1] - steps[-2] if len(steps) > 1 else 1)), False


def _layer(metrics) -> str:
    layers = sorted({c.split("/")[1] for c in metrics.columns if c.startswith("activations/hidden.") and c.endswith("/p50")})
    return layers[-1]  # the last hidden layer


def drift(metrics, run_id: str, after: float = 0) -> float:
    """How far a unit's 15/50/85th percentiles move over training (max - min over the measured steps
    after `after`, 0 by default), relative to the unit's final 15-85 spread; mean over the three
    percentiles and the followed units of the last hidden layer."""
    layer = _layer(metrics)
    rows = metrics[(metrics["run_id"] == run_id) & (metrics["step"] > 0) & (metrics["step"] >= after)].dropna(subset=[f"activations/{layer}/u0/p50"])
    units = sorted({c.split("/")[2] for c in metrics.columns if c.startswith(f"activations/{layer}/u") and c.endswith("/p50")})
    if len(rows) < 2:  # no window to move in (the later net reached the target at the end, or never)
        return float("nan")
    values = []
    for u in units:
        path = {p: rows[f"activations/{layer}/{u}/p{p}"].to_numpy() for p in PERCENTILES}
        spread = path[HIGH][-1] - path[LOW][-1]
        values.append(np.mean([(path[p].max() - path[p].min()) / spread for p in PERCENTILES]))
    return float(np.mean(values))


def setup(results, record) -> str:
    runs = results.runs
    act = "diagnostics.activations"
    return (
        f"{describe.data(runs, record.get('data_sizes'))}, {describe.model(runs)} (Ioffe & Szegedy's MNIST net), {describe.init(runs)}, "
        f"{describe.optimiser(runs)}, {describe.length(runs)}; {describe.norms(runs)}; the {LOW}th, {MID}th and {HIGH}th percentiles of "
        "the last hidden "
        f"layer's first {describe.number(describe.one(runs, act + '.units'))} units over {describe.number(describe.one(runs, act + '.batch_size'))} "
        f"validation examples every {describe.number(describe.one(runs, act + '.schedule.every'))} steps "
        f"(BN in {describe.one(runs, act + '.bn_mode')}-statistics mode, as the paper's training-mode network N^tr_BN)."
    )


def analyse(results, measurements) -> Finding:
    runs, metrics = results.runs, results.metrics
    acc = {n: 100 * stats.accuracy(runs, CHANCE, **{"model.norm": n}) for n in ("none", "batch")}
    gain = stats.paired(acc["none"], acc["batch"])
    ids = {n: runs[runs["config.model.norm"] == n].set_index("config.seed")["run_id"] for n in ("none", "batch")}
    reach = {n: {s: steps_to(metrics, r) for s, r in ids[n].items()} for n in ids}
    log_ratio = stats.t_interval([np.log(reach["batch"][s][0] / reach["none"][s][0]) for s in sorted(set(reach["batch"]) & set(reach["none"]))]).map(
        np.exp
    )
    missed = {n: sum(not ok for _, ok in reach[n].values()) for n in reach}
    # per seed, the late window: from the step where the later of the two nets reached the target
    late = {s: max(reach["batch"][s][0], reach["none"][s][0]) for s in sorted(set(reach["batch"]) & set(reach["none"]))}
    drifts = {n: {s: drift(metrics, ids[n][s], late[s]) for s in late} for n in ("none", "batch")}
    whole = {n: {s: drift(metrics, ids[n][s]) for s in late} for n in ("none", "batch")}
    calmer = stats.paired(drifts["batch"], drifts["none"])  # none's drift - BN's
    parts = (
        Part(
            "a",
            f"BN trains faster: it reaches {100 * TARGET:g}% test accuracy in fewer than {FASTER:g} of the plain net's steps",
            f"BN / none, steps to {100 * TARGET:g}% test accuracy (ratio, geometric mean over seeds)",
            log_ratio,
            stats.inferior(log_ratio.map(np.log), np.log(FASTER)),
            signed=False,
            threshold=FASTER,
        ),
        Part(
            "b",
            f"the distribution of the last hidden layer's inputs is more stable with BN as training progresses, once both nets "
            f"have reached {100 * TARGET:g}%",
            f"none - BN, percentile drift from the step the later net reached {100 * TARGET:g}% (in final {LOW}-{HIGH} spreads)",
            calmer,
            stats.superior(calmer, 0.0),
            threshold=0.0,
        ),
    )
    reason = (
        f"BN reaches {100 * TARGET:g}% test accuracy after {np.mean([v for v, _ in reach['batch'].values()]):,.0f} steps on average, "
        f"the plain net after {np.mean([v for v, _ in reach['none'].values()]):,.0f} (part a {parts[0].verdict}); "
        f"percentile drift of the last hidden layer's inputs after that, BN {np.mean(list(drifts['batch'].values())):.2f} vs none "
        f"{np.mean(list(drifts['none'].values())):.2f} (part b {parts[1].verdict})."
    )
    details = [
        f"runs that never reached {100 * TARGET:g}% (counted one log interval past their end): BN {missed['batch']}, none {missed['none']}",
        f"BN - none, final test accuracy after {describe.length(runs)} (reported, not judged: the plain net may still be rising): "
        f"{gain.format(2, unit=' pt')}; BN {acc['batch'].mean():.1f}%, none {acc['none'].mean():.1f}%",
        f"percentile drift over the whole run (reported; with a small init the plain net's spread grows from about 0, so this "
        f"mostly measures the start): none {np.mean(list(whole['none'].values())):.2f}, BN {np.mean(list(whole['batch'].values())):.2f}; "
        f"part b's window starts on average at step {np.mean(list(late.values())):,.0f}",
    ]
    for target in SENSITIVITY:  # how much the verdict leans on the chosen target
        r = {n: {s: steps_to(metrics, rid, target)[0] for s, rid in ids[n].items()} for n in ids}
        iv = stats.t_interval([np.log(r["batch"][s] / r["none"][s]) for s in sorted(set(r["batch"]) & set(r["none"]))]).map(np.exp)
        details.append(f"BN / none, steps to {100 * target:g}% (reported, not judged): {iv.format(2, signed=False)}")
    ours = Ours(
        "final test accuracy",
        describe.model(runs),
        describe.data(runs),
        describe.length(runs),
        f"BN {acc['batch'].mean():.1f}%, none {acc['none'].mean():.1f}%",
    )
    return Finding(parts, reason, details, (ours,))


def figure(results, measurements, path) -> None:
    runs, metrics = results.runs, results.metrics
    layer = _layer(metrics)
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for i, norm in enumerate(("none", "batch")):
        ids = runs[runs["config.model.norm"] == norm]["run_id"]
        seed_curves(axes[0], metric_curves(metrics, ids, "test_acc"), color(norm), "BN" if norm == "batch" else "without BN")
        ax = axes[1 + i]
        for k, run_id in enumerate(ids):
            act = metrics[metrics["run_id"] == run_id].dropna(subset=[f"activations/{layer}/u0/p50"])
            for p in PERCENTILES:
                style = dict(color=color(norm), alpha=0.9 if k == 0 else 0.35, lw=1.2 if p == 50 else 0.8)
                ax.plot(act["step"], act[f"activations/{layer}/u0/p{p}"], **style)
        ax.set_title(f"({'b' if norm == 'none' else 'c'}) {'without BN' if norm == 'none' else 'with BN'}: {layer}, unit 0")
        ax.set_xlabel("step")
        ax.set_ylabel(f"input to the sigmoid: {LOW}/{MID}/{HIGH}th percentile")
        ax.grid(alpha=0.3)
    axes[0].axhline(TARGET, color="k", ls=":", lw=1, label=f"{100 * TARGET:g}%: steps to it decide 'faster'")
    axes[0].set_title("(a) test accuracy")
    axes[0].set_xlabel("step")
    axes[0].legend()
    axes[0].grid(alpha=0.3)
    lo = min(a.get_ylim()[0] for a in axes[1:])
    hi = max(a.get_ylim()[1] for a in axes[1:])
    for a in axes[1:]:
        a.set_ylim(lo, hi)
    seeds = runs["config.seed"]
    save(fig, path, f"(a) thin lines: each of {seeds.nunique()} seeds, thick: their mean; (b, c) one line set per seed (seed {seeds.min()} darker)")


RULE_V1 = (
    "two parts, both needed: (a) BN's final test accuracy exceeds none's by at least 1 point, its per-seed interval above 0; "
    "(b) the percentile drift (range over training divided by the final 15-85 spread) is smaller with BN, its per-seed interval "
    "of none - BN above 0. Not supported if either interval lies wholly on the wrong side; otherwise inconclusive."
)

RULE_V2 = (
    "two parts: (a) the 95% interval of the per-seed difference BN - none in final test accuracy (a diverged run at chance) lies "
    "wholly above +1 point (supported) or wholly below it (not supported); (b) the percentile drift (each followed unit's range of its "
    "15th, 50th and 85th percentiles over training, divided by its final 15-85 spread) is smaller with BN: the interval of none - BN "
    "lies wholly above 0 (supported) or wholly below 0 (not supported); a minimum effect of 0 is weaker than the paper's 'much more "
    "stable'. Otherwise a part is inconclusive."
)

CLAIM = Claim(
    name="ioffe_fig1",
    fresh_seeds=tuple(range(10, 20)),  # confirmation on seeds never run before (the rule changed after earlier seeds were read)
    number=2,
    tiny=(
        "data.name=digits",
        "train.steps=30",
        "train.log_every=10",
        "diagnostics.activations.schedule.every=10",
        "diagnostics.activations.batch_size=50",
    ),  # a CI-sized run of every arm (tests/test_claims.py)
    title="Ioffe & Szegedy Fig. 1: faster and stabler with BN",
    source="Ioffe & Szegedy 2015, §4.1, Figure 1 (caption)",
    quote="Batch Normalization helps the network train faster and achieve higher accuracy. ... Batch Normalization makes the "
    "distribution more stable and reduces the internal covariate shift.",
    setup=setup,
    rule=Rule(
        version=3,
        fixed="2026-12-03",
        explored_on="seeds 100-104 under a draft of version 3 (the plain net reached 80% after 5,000-6,000 steps, BN after 250-500), "
        "and a referee's review; seeds 0-9 had been run and their final accuracies read under version 2, so seeds 10-19 are the "
        "fresh confirmation",
        text=f"two parts: (a) 'faster': per seed, the steps to {100 * TARGET:g}% test accuracy (the first log point at or above it; a "
        f"run that never reaches it counts one log interval past its end), BN / none; the {stats.CI} interval of the geometric mean "
        f"ratio lies wholly below {FASTER:g} (supported: BN at least twice as fast) or wholly above it (not supported); (b) 'more "
        f"stable as training progresses': per seed, from the step where the later of the two nets reached {100 * TARGET:g}%, each "
        f"followed unit's range of its {LOW}th, {MID}th and {HIGH}th percentiles divided by its final {LOW}-{HIGH} spread; the interval "
        "of none - BN lies wholly above 0 (supported) or wholly below 0 (not supported); a minimum effect of 0 is weaker than the "
        "paper's 'much more stable'. Otherwise a part is inconclusive. 'Higher' final accuracy, the drift over the whole run, and the "
        "steps to other targets are reported, not judged: the plain net is not trained to convergence here.",
        history=(
            RuleChange(1, "2026-11-27", RULE_V1, "supported on seeds 0-2 and on seeds 3-5", "2026-12-03", STATISTICS_REVIEW + "."),
            RuleChange(
                2,
                "2026-12-03",
                RULE_V2,
                "supported on seeds 0-9 (part a: BN - none final test accuracy +5.22 [+4.77, +5.67] points; part b supported)",
                "2026-12-03",
                "a review of the designs (issue 'Claims, part 4'): 'higher' after a fixed number of steps favours the arm that "
                "trains faster while the plain net is still rising; the paper's figure shows both faster and higher, so 'faster' "
                "(steps to a fixed accuracy) is judged and the final accuracy reported.",
            ),
        ),
    ),
    paper=(
        PaperNumber(
            "test accuracy",
            "no number in the text: the BN net 'enjoys the higher test accuracy' (plotted)",
            "MLP 3x100, sigmoid",
            "MNIST",
            "50,000 steps, batch 60",
            "Ioffe & Szegedy 2015, §4.1 and Figure 1(a)",
        ),
        PaperNumber(
            "stability of the 15/50/85th percentiles",
            "no number: 'much more stable' with BN (plotted)",
            "MLP 3x100, sigmoid",
            "MNIST",
            "50,000 steps, batch 60",
            "Ioffe & Szegedy 2015, §4.1 and Figure 1(b, c)",
        ),
    ),
    analyse=analyse,
    figure=figure,
    differs="The paper trains far longer on MNIST's full training set; we have its test images only (split into our own training, "
    "validation and test sets, sizes in the setup), so accuracies are lower and the nets are compared after fewer steps. The paper "
    "initialises with 'small random Gaussian values'; the standard deviation in the setup is our reading of that. One lr is "
    "shared by both nets, not tuned for the plain one.",
)
