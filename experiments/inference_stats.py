"""Claim 8: BN's running averages with momentum >= 0.9 evaluate as well as population statistics;
a momentum near 0 (the last batches only) hurts at small batches, a momentum near 1 after short training."""

from __future__ import annotations

import itertools

import matplotlib.pyplot as plt
import numpy as np

from . import describe, stats
from .claim import STATISTICS_REVIEW, Claim, Finding, PaperNumber, Part, Rule, RuleChange
from .plots import save, seed_dots

ADVISED = (0.9, 0.99)
MARGIN = 1.0  # points: 'as good as' means not worse than population statistics by more than this
MIN_LOSS = 1.0  # points
TIME_CONSTANTS = 10  # a running average is judged only after this many time constants 1/(1 - momentum) of training


def settled(momentum: float, steps: int) -> bool:
    """Trained for at least TIME_CONSTANTS time constants of the running average (momentum < 1)."""
    return steps >= TIME_CONSTANTS / (1 - momentum)


def _rows(runs, momentum: float, batch: int, steps: int):
    rows = runs[(runs["config.model.bn_momentum"] == momentum) & (runs["config.train.batch_size"] == batch) & (runs["config.train.steps"] == steps)]
    return rows[rows["status"] == "done"]


def shortfall(runs, momentum: float, batch: int, steps: int, reference: str = "population") -> dict[int, float]:
    """Per seed: the test accuracy with `reference` statistics (population: Algorithm 2's; population_biased: the
    same without Bessel's correction) minus that with the running averages, in points."""
    rows = _rows(runs, momentum, batch, steps)
    return {int(s): 100 * float(p - r) for s, p, r in zip(rows["config.seed"], rows[f"{reference}/test_acc"], rows["test_acc"])}


def running(runs, momentum: float, batch: int, steps: int) -> dict[int, float]:
    """Per seed: the test accuracy with the running averages, in points."""
    rows = _rows(runs, momentum, batch, steps)
    return {int(s): 100 * float(a) for s, a in zip(rows["config.seed"], rows["test_acc"])}


def setup(results, record) -> str:
    runs = results.runs
    return (
        f"{describe.data(runs, record.get('data_sizes'))}, {describe.model(runs)} with BN, {describe.optimiser(runs)}, batch "
        f"{describe.listed(describe.values(runs, 'train.batch_size'))}, {describe.listed(describe.values(runs, 'train.steps'))} steps, BN momentum "
        f"{describe.listed(describe.values(runs, 'model.bn_momentum'))} (running = momentum x running + (1 - momentum) x batch); every run "
        "evaluated with its running averages, with population statistics (Algorithm 2) and with population statistics whose variance "
        "keeps the batches' biased estimator, as the running averages do (train.eval_bn_stats=all)."
    )


def analyse(results, measurements) -> Finding:
    runs = results.runs
    batches, lengths = sorted(runs["config.train.batch_size"].unique()), sorted(runs["config.train.steps"].unique())
    cells = [(m, b, t) for m, b, t in itertools.product(ADVISED, batches, lengths) if settled(m, t)]
    lagging = [(m, b, t) for m, b, t in itertools.product(ADVISED, batches, lengths) if not settled(m, t)]
    advised = {k: stats.t_interval(list(shortfall(runs, *k).values())) for k in cells}
    # running averages not worse than population statistics by more than the margin: population - running below +MARGIN
    cell_verdicts = {k: stats.inferior(iv, MARGIN) for k, iv in advised.items()}
    fine = stats.all_of(*cell_verdicts.values()) if advised else stats.INCONCLUSIVE  # no setting trained long enough: nothing judged
    # the cell that decides: one shown beyond the margin if any, else the one whose interval reaches furthest up
    worst_key = max(advised, key=lambda k: (cell_verdicts[k] == stats.NOT_SUPPORTED, advised[k].high)) if advised else lagging[0]
    worst = advised.get(worst_key) or stats.t_interval(list(shortfall(runs, *worst_key).values()))
    last_batch = stats.t_interval(list(shortfall(runs, 0.0, batches[0], lengths[-1]).values()))
    small_hurts = stats.superior(last_batch, MIN_LOSS)
    m, b, t = worst_key

    def gain(batch: int) -> dict[int, float]:  # per seed: running-average test accuracy, the larger momentum minus the smaller
        lo, hi = running(runs, ADVISED[0], batch, lengths[-1]), running(runs, ADVISED[1], batch, lengths[-1])
        return {s: hi[s] - lo[s] for s in sorted(set(lo) & set(hi))}

    small_gain, large_gain = gain(batches[0]), gain(batches[-1])
    larger = stats.paired(large_gain, small_gain)  # the interaction: the gain at the small batch minus that at the large one
    parts = (
        Part(
            "a",
            f"with momentum {describe.listed(ADVISED)}, running averages evaluate as well as population statistics (not worse by more "
            f"than {MARGIN:g} point) at every batch size and length of at least {TIME_CONSTANTS} time constants",
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
        Part(
            "c",
            f"a larger momentum suits small batches: after {lengths[-1]} steps, momentum {ADVISED[1]:g} gains more over {ADVISED[0]:g} "
            f"at batch {batches[0]} than at batch {batches[-1]}",
            f"running-average test accuracy, (momentum {ADVISED[1]:g} - {ADVISED[0]:g}) at batch {batches[0]} minus the same at batch "
            f"{batches[-1]}, {lengths[-1]} steps (points)",
            larger,
            stats.superior(larger, 0.0),
            threshold=0.0,
        ),
    )
    details = []
    biased = "population_biased/test_acc" in runs
    for mom in sorted(runs["config.model.bn_momentum"].unique()):
        row = [f"batch {bb}, {tt} steps {np.mean(list(shortfall(runs, mom, bb, tt).values())):+.1f}" for bb in batches for tt in lengths]
        details.append(f"momentum {mom:g}: population - running (points): " + "; ".join(row))
        if biased:
            row = [
                f"batch {bb}, {tt} steps {np.mean(list(shortfall(runs, mom, bb, tt, 'population_biased').values())):+.1f}"
                for bb in batches
                for tt in lengths
            ]
            details.append(f"momentum {mom:g}: population with the biased variance - running (points; the lag alone): " + "; ".join(row))
    for mm, bb, tt in lagging:
        iv = stats.t_interval(list(shortfall(runs, mm, bb, tt).values()))
        details.append(
            f"momentum {mm:g}, batch {bb}, {tt} steps: fewer than {TIME_CONSTANTS} time constants ({TIME_CONSTANTS / (1 - mm):.0f} steps), "
            f"the known lag, not judged: population - running {iv.format(1, unit=' pt')}"
        )
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
        f"{last_batch.estimate:.1f} points (part b {small_hurts}); momentum {ADVISED[1]:g} evaluates "
        f"{np.mean(list(small_gain.values())):+.1f} points from {ADVISED[0]:g} at batch {batches[0]} and "
        f"{np.mean(list(large_gain.values())):+.1f} at batch {batches[-1]} (part c {parts[2].verdict})."
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

RULE_V2 = (
    "two parts: (a) 'as good as' is a non-inferiority test (one side of TOST: running averages better than population statistics "
    "would not contradict it) in every setting of momentum 0.9 and 0.99 x batch size x length: the 95% interval of the per-seed "
    "population - running test accuracy lies wholly below +1 point; supported if every setting's does, not supported if any lies "
    "wholly above +1, otherwise inconclusive; (b) momentum 0 at the smallest batch after the longer training: the interval of "
    "population - running lies wholly above +1 point (supported) or wholly below it (not supported)."
)

CLAIM = Claim(
    name="inference_stats",
    fresh_seeds=tuple(range(20, 40)),  # confirmation on seeds never run before (the rule changed after earlier seeds were read)
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
        version=3,
        fixed="2026-12-03",
        explored_on="seeds 100-104 under a draft of version 3, and a referee's review; seeds 0-19 had been run and read under version "
        "2 (every cell version 3 judges was visible), so seeds 20-39 are the fresh confirmation, twenty for the power part a needs",
        text=f"three parts: (a) 'as good as' is a non-inferiority test (one side of TOST: running averages better than population "
        f"statistics would not contradict it) in every setting of momentum {describe.listed(ADVISED)} x batch size x length that trained "
        f"for at least {TIME_CONSTANTS} time constants 1/(1 - momentum) (a starting bias of e^-{TIME_CONSTANTS}; a cut chosen after "
        f"version 2's results; shorter settings are the known lag, reported): the {stats.CI} interval of the per-seed population - "
        f"running test accuracy lies wholly below +{MARGIN:g} point; supported if every judged setting's does, not supported if any "
        f"lies wholly above +{MARGIN:g}, otherwise inconclusive; (b) momentum 0 at the smallest batch after the longer training: the "
        f"interval of population - running lies wholly above +{MIN_LOSS:g} point (supported) or wholly below it (not supported); (c) "
        f"'larger for small batches', an interaction: after the longer training, the running-average test accuracy with momentum "
        f"{ADVISED[1]:g} minus that with {ADVISED[0]:g}, at the smallest batch minus at the largest; the interval lies wholly above 0 "
        "(supported) or wholly below it (not supported). Population statistics with the biased variance are reported beside them.",
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
            RuleChange(
                2,
                "2026-12-03",
                RULE_V2,
                "not supported on seeds 0-9 (part a not supported: deciding cell momentum 0.99, batch 8, 300 steps, +6.41 [+4.33, +8.49] "
                "points; part b supported)",
                "2026-12-03",
                "a review of the designs (issue 'Claims, part 4'): a momentum-0.99 average after 300 steps has seen 3 time constants, "
                "so its shortfall is the known lag, not a failure of the advice; version 3 judges settings of at least 10 time "
                "constants, reports the rest, adds the biased-variance population statistics to tell the estimator from the lag, and "
                "tests the advice's 'larger for small batches'.",
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
