"""Claim 8: BN's running averages with momentum >= 0.9 evaluate as well as population statistics;
a momentum near 0 (the last batches only) hurts at small batches, a momentum near 1 after short training."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np

from . import describe, stats
from .claim import SEEN_UNDER_V1, STATISTICS_REVIEW, Claim, Finding, PaperNumber, Part, Rule, RuleChange
from .plots import save, seed_dots

ADVISED = (0.9, 0.99)
MARGIN = 1.0  # points: 'as good as' means not worse than population statistics by more than this
MIN_LOSS = 1.0  # points


def shortfall(runs, momentum: float, batch: int, steps: int) -> dict[int, float]:
    """Per seed: population-statistics test accuracy minus running-average test accuracy, in points."""
    rows = runs[(runs["config.model.bn_momentum"] == momentum) & (runs["config.train.batch_size"] == batch) & (runs["config.train.steps"] == steps)]
    rows = rows[rows["status"] == "done"]
    return {int(s): 100 * float(p - r) for s, p, r in zip(rows["config.seed"], rows["population/test_acc"], rows["test_acc"])}


def setup(results, record) -> str:
    runs = results.runs
    return (
        f"{describe.data(runs, record.get('data_sizes'))}, {describe.model(runs)} with BN, {describe.optimiser(runs)}, batch "
        f"{describe.listed(describe.values(runs, 'train.batch_size'))}, {describe.listed(describe.values(runs, 'train.steps'))} steps, BN momentum "
        f"{describe.listed(describe.values(runs, 'model.bn_momentum'))} (running = momentum x running + (1 - momentum) x batch); every run "
        "evaluated both with its running averages and with population statistics (Algorithm 2, train.eval_bn_stats=both)."
    )


def analyse(results, measurements) -> Finding:
    runs = results.runs
    batches, lengths = sorted(runs["config.train.batch_size"].unique()), sorted(runs["config.train.steps"].unique())
    advised = {(m, b, t): stats.t_interval(list(shortfall(runs, m, b, t).values())) for m, b, t in itertools.product(ADVISED, batches, lengths)}
    # running averages not worse than population statistics by more than the margin: population - running below +MARGIN
    cell_verdicts = {k: stats.inferior(iv, MARGIN) for k, iv in advised.items()}
    fine = stats.all_of(*cell_verdicts.values())
    # the cell that decides: one shown beyond the margin if any, else the one whose interval reaches furthest up
    worst_key = max(advised, key=lambda k: (cell_verdicts[k] == stats.NOT_SUPPORTED, advised[k].high))
    worst = advised[worst_key]
    last_batch = stats.t_interval(list(shortfall(runs, 0.0, batches[0], lengths[-1]).values()))
    small_hurts = stats.superior(last_batch, MIN_LOSS)
    m, b, t = worst_key
    parts = (
        Part(
            "a",
            f"with momentum {describe.listed(ADVISED)}, running averages evaluate as well as population statistics (not worse by more "
            f"than {MARGIN:g} point) at every batch size and length",
            f"population - running test accuracy, the deciding cell of {len(advised)} (points: momentum {m:g}, batch {b}, {t} steps)",
            worst,
            fine,
            threshold=MARGIN,
        ),
        Part(
            "b",
            f"momentum 0 (the last batch's statistics) at the smallest batch after the longer training loses more than {MIN_LOSS:g} point",
            f"population - running test accuracy, momentum 0, batch {batches[0]}, {lengths[-1]} steps (points)",
            last_batch,
            small_hurts,
            threshold=MIN_LOSS,
        ),
    )
    details = []
    for mom in sorted(runs["config.model.bn_momentum"].unique()):
        cells = [f"batch {bb}, {tt} steps {np.mean(list(shortfall(runs, mom, bb, tt).values())):+.1f}" for bb in batches for tt in lengths]
        details.append(f"momentum {mom:g}: population - running (points): " + "; ".join(cells))
    for (mm, bb, tt), iv in advised.items():
        details.append(
            f"not worse by more than {MARGIN:g} point, momentum {mm:g}, batch {bb}, {tt} steps: {iv.format(1, unit=' pt')} -> "
            f"{cell_verdicts[(mm, bb, tt)]}"
        )
    reason = (
        f"with momentum {describe.listed(ADVISED)} the running averages are shown to be at most {MARGIN:g} point worse than population "
        f"statistics in {sum(v == stats.SUPPORTED for v in cell_verdicts.values())} of {len(advised)} settings and shown worse than that in "
        f"{sum(v == stats.NOT_SUPPORTED for v in cell_verdicts.values())} (deciding cell: momentum {m:g}, batch {b}, {t} steps, "
        f"{worst.estimate:+.1f} points; part a {fine}); the last batch's statistics alone (momentum 0) at batch {batches[0]} lose "
        f"{last_batch.estimate:.1f} points (part b {small_hurts})."
    )
    lag = {mm: 1 / (1 - mm) for mm in ADVISED}
    facts = {"lags": ", ".join(f"{lag[mm]:.0f} steps for {mm:g}" for mm in ADVISED), "lengths": describe.listed(lengths)}
    return Finding(parts, reason, details, (), facts)


def figure(results, measurements, path) -> None:
    runs = results.runs
    batches, lengths = sorted(runs["config.train.batch_size"].unique()), sorted(runs["config.train.steps"].unique())
    momenta = sorted(runs["config.model.bn_momentum"].unique())
    fig, axes = plt.subplots(1, len(batches), figsize=(5.5 * len(batches), 4), sharey=True, squeeze=False)
    for ax, b in zip(axes[0], batches):
        for k, t in enumerate(lengths):
            means = [np.mean(list(shortfall(runs, m, b, t).values())) for m in momenta]
            x = np.arange(len(momenta)) + (k - (len(lengths) - 1) / 2) * 0.15
            c = ["#1f77b4", "#d62728", "#2ca02c"][k % 3]
            ax.plot(x, means, "o-", color=c, label=f"{t} steps")
            for xi, m in zip(x, momenta):
                seed_dots(ax, xi, shortfall(runs, m, b, t).values(), c, width=0.05)
        ax.axhline(0, color="k", lw=0.8)
        ax.axhspan(-MARGIN, MARGIN, color="k", alpha=0.06, lw=0)
        ax.set_xticks(np.arange(len(momenta)), [f"{m:g}" for m in momenta])
        ax.set_xlabel("BN momentum (running = m * running + (1 - m) * batch)")
        ax.set_title(f"batch {b}")
        ax.grid(alpha=0.3)
        ax.legend()
    axes[0][0].set_ylabel("test accuracy: population - running (points)")
    save(fig, path, "lines: mean over seeds; dots: each seed; grey: +-the margin; above 0: the running averages evaluate worse")


RULE_V1 = (
    "two parts, both needed: (a) for momentum 0.9 and 0.99 at every batch size and length, population minus running test accuracy "
    "stays below 1 point (each per-seed interval's upper end below +1; not supported if any interval lies above +1); (b) momentum 0 "
    "at the smallest batch after the longer training loses at least 1 point against population statistics, interval above 0."
)

CLAIM = Claim(
    name="inference_stats",
    number=8,
    tiny=(
        "data.mnist1d_samples=500",
        "train.log_every=10",
        "sweep.grid.train.steps=[20,40]",
        "sweep.grid.model.bn_momentum=[0.0,0.9,0.99]",
        "sweep.grid.train.batch_size=[8]",
    ),  # a CI-sized run of every arm (tests/test_claims.py)
    title="Running averages with momentum >= 0.9 are as good as population statistics",
    source="Ioffe & Szegedy 2015, Algorithm 2; the seed material's EMA advice",
    quote="Use an exponential moving average of the batch statistics with momentum >= 0.9 (larger for small batches and large datasets); "
    "Algorithm 2 computes E[x] and Var[x] over the training set after training.",
    setup=setup,
    rule=Rule(
        version=2,
        fixed="2026-12-03",
        explored_on=SEEN_UNDER_V1,
        text=f"two parts: (a) 'as good as' is a non-inferiority test (one side of TOST: running averages better than population "
        f"statistics would not contradict it) in every setting of momentum {describe.listed(ADVISED)} x batch size x length: the "
        f"{stats.CI} interval of the per-seed population - running test accuracy lies wholly below +{MARGIN:g} point; supported if every "
        f"setting's does, not supported if any lies wholly above +{MARGIN:g}, otherwise inconclusive; (b) momentum 0 at the "
        f"smallest batch after the longer training: the interval of population - running lies wholly above +{MIN_LOSS:g} point "
        f"(supported) or wholly below it (not supported).",
        history=(
            RuleChange(
                1,
                "2026-11-27",
                RULE_V1,
                "not supported on seeds 0-2 and on seeds 3-5; on three seeds never used before it went to inconclusive (worst cell "
                "+6.3 [-0.3, +12.9])",
                "2026-12-03",
                STATISTICS_REVIEW + "; part a was already a non-inferiority test and stays one, its deciding cell now the one that "
                "decides (version 1 showed the largest estimate).",
            ),
        ),
    ),
    paper=(
        PaperNumber(
            "inference statistics",
            "no accuracy number: population mean E_B[mu_B] and unbiased variance m/(m-1) E_B[sigma_B^2]; 'using moving averages instead, "
            "we can track the accuracy of a model as it trains'",
            "-",
            "-",
            "-",
            "Ioffe & Szegedy 2015, §3.1 and Algorithm 2",
        ),
    ),
    analyse=analyse,
    figure=figure,
    differs="The advice is about long ImageNet-scale training. A running average with momentum m lags about 1/(1 - m) steps behind "
    "the network ({lags}), and our runs are {lengths} steps long while the weights still move fast (most at small batches, where each "
    "step is noisy), so a large momentum describes an earlier network.",
)
