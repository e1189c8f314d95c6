"""Claim 5: BN degrades at small batches, where batch-independent norms (GroupNorm, LayerNorm) do not;
and whether that is training or only the estimate of the statistics used at test time."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import describe, stats, tuning
from .claim import STATISTICS_REVIEW, Claim, Finding, Ours, PaperNumber, Part, Rule, RuleChange
from .plots import DIVERGED_NOTE, SEED_NOTE, against, save
from .tuning import Tune

DEGENERATE = 2  # in the MLP, BN at this batch normalises each unit to +-1
REFERENCE = 32  # the batch each arm's lr is tuned at (Wu & He's 32 images per GPU), scaled linearly with the batch elsewhere
FIT = {"cnn": (2, 32), "mlp": (4, 32)}  # batches each model's trend is fitted over, fixed before the confirmation seeds ran
MIN_SLOPE = 0.5  # points of test accuracy per doubling of the batch (Wu & He's BN: about 1.2 over batches 4-32, GN about 0)
CHANCE = 0.1
TUNE = Tune(values=(0.0125, 0.025, 0.05, 0.1, 0.2, 0.4), at=(("train.batch_size", REFERENCE),), seeds=(100, 101, 102))


def by_batch(runs, norm: str, model: str, column: str = "test_acc") -> pd.DataFrame:
    """Seeds x batch sizes: `column` in points (test_acc: BN with running averages; population/test_acc:
    population statistics), a diverged run at chance."""
    rows = runs[(runs["config.model.norm"] == norm) & (runs["config.model.name"] == model)]
    cells = {int(b): 100 * stats.accuracy(g, CHANCE, column) for b, g in rows.groupby("config.train.batch_size")}
    return pd.DataFrame(cells).sort_index(axis=1)


def slopes(table: pd.DataFrame, lo: int, hi: int) -> pd.Series:
    """Per seed, the least-squares slope of accuracy against log2(batch) over batches lo..hi:
    points gained per doubling of the batch (positive: smaller batches do worse)."""
    cols = [b for b in table.columns if lo <= b <= hi]
    x = np.log2(np.asarray(cols, dtype=float))
    x = x - x.mean()
    return table[cols].apply(lambda row: float(np.dot(x, row.to_numpy() - row.mean()) / np.dot(x, x)), axis=1)


def last_interval(metrics, runs) -> int:
    """Steps behind the last logged training loss of these runs (the median run): since the log before, or the whole run."""
    spans = []
    for rid in runs["run_id"]:
        steps = sorted(metrics[(metrics["run_id"] == rid) & metrics["train_loss"].notna()]["step"].astype(int))
        if steps:
            spans.append(steps[-1] - (steps[-2] if len(steps) > 1 else 0))
    return int(np.median(spans)) if spans else 0


def _fit(model: str) -> str:
    lo, hi = FIT[model]
    return f"batches {lo}-{hi}"


def _arm(arm: dict) -> str:
    return f"{arm['model.name']} {describe.NORM_NAMES.get(arm['model.norm'], arm['model.norm'])}"


def setup(results, record) -> str:
    runs = results.runs
    models = " and ".join(describe.model(runs[runs["config.model.name"] == m]) for m in describe.values(runs, "model.name"))
    return (
        f"{describe.data(runs, record.get('data_sizes'))}, {models}, {describe.OPTIM_NAMES[describe.one(runs, 'optim.name')]} at each "
        f"arm's lr x batch / {describe.one(runs, 'optim.lr_reference_batch')} (linear scaling, Goyal et al. 2017), {describe.length(runs)} at "
        f"every batch size (equal epochs); {describe.norms(runs)} (GroupNorm: {describe.one(runs, 'model.groups')} groups); BN evaluated "
        f"with its running averages and with population statistics; {tuning.text(record['tuned'], _arm)}."
    )


def analyse(results, measurements) -> Finding:
    tuned = measurements["tuned"]
    runs = tuning.chosen_runs(results.runs, tuned)
    models = sorted(runs["config.model.name"].unique())
    norms = sorted(runs["config.model.norm"].unique())
    parts, details, ours = [], [], []
    labels = iter("abcdefgh")
    for model in models:
        lo, hi = FIT[model]
        table = {n: by_batch(runs, n, model) for n in norms}
        slope = {n: slopes(t, lo, hi) for n, t in table.items()}
        bn_minus_gn = stats.paired(slope["group"], slope["batch"])
        gn = stats.t_interval(slope["group"].to_numpy())
        parts.append(
            Part(
                next(labels),
                f"{model}: BN loses accuracy faster than GroupNorm as the batch shrinks, by more than {MIN_SLOPE:g} points per halving "
                f"({_fit(model)})",
                f"{model}: BN's minus GroupNorm's slope of test accuracy against log2(batch), {_fit(model)} (points per doubling)",
                bn_minus_gn,
                stats.superior(bn_minus_gn, MIN_SLOPE),
                threshold=MIN_SLOPE,
            )
        )
        parts.append(
            Part(
                next(labels),
                f"{model}: GroupNorm does not degrade: it loses less than {MIN_SLOPE:g} points per halving ({_fit(model)})",
                f"{model}: GroupNorm's slope of test accuracy against log2(batch), {_fit(model)} (points per doubling)",
                gn,
                stats.inferior(gn, MIN_SLOPE),
                threshold=MIN_SLOPE,
            )
        )
        pop = by_batch(runs, "batch", model, "population/test_acc") if "population/test_acc" in runs else None
        cells = ", ".join(f"{n} {stats.t_interval(slope[n].to_numpy()).format(2)}" for n in norms)
        details.append(f"{model}: slope over {_fit(model)} (points per doubling): {cells}; none is the control for the lr scaling and step count")
        if pop is not None:
            pop_minus_gn = stats.paired(slope["group"], slopes(pop, lo, hi))
            details.append(
                f"{model}: with population statistics (Ioffe Alg. 2) instead of running averages, BN's minus GroupNorm's slope "
                f"{pop_minus_gn.format(2)}: {stats.superior(pop_minus_gn, MIN_SLOPE)} by the same test"
            )
        batches = list(table["batch"].columns)
        for n in norms:
            accs = " / ".join(f"{table[n][b].mean():.1f}" for b in batches)
            details.append(f"{model}, {n}: test accuracy (%) at batch {' / '.join(map(str, batches))}: {accs}")
        if pop is not None:
            details.append(f"{model}, batch with population statistics: " + " / ".join(f"{pop[b].mean():.1f}" for b in batches))
        rows = runs[runs["config.model.name"] == model]
        loss = rows.groupby(["config.model.norm", "config.train.batch_size"])["train_loss"].mean()
        window = {b: last_interval(results.metrics, rows[rows["config.train.batch_size"] == b]) for b in batches}
        details.append(
            f"{model}: mean training loss over each run's last logged interval ({' / '.join(f'{window[b]:,}' for b in batches)} steps: "
            f"from the start of training where that is the whole run) at batch {' / '.join(map(str, batches))}: "
            + "; ".join(f"{n} " + " / ".join(f"{loss.get((n, b), float('nan')):.2f}" for b in batches) for n in norms)
        )
        drop = {n: table[n][REFERENCE] - table[n][min(batches)] for n in norms}
        details.append(
            f"{model}: accuracy drop from batch {REFERENCE} to {min(batches)} (reported, not judged"
            + (f"; BN's x-hat is +-1 per unit at batch {DEGENERATE}" if FIT[model][0] > DEGENERATE else "")
            + "): "
            + ", ".join(f"{n} {stats.t_interval(drop[n].to_numpy()).format(1, unit=' pt')}" for n in norms)
        )
        desc = sorted(batches, reverse=True)
        ours.append(
            Ours(
                f"test error at batch {' / '.join(str(b) for b in desc)} (BN; GroupNorm)",
                describe.model(rows),
                describe.data(runs),
                describe.length(runs),
                " / ".join(f"{100 - table['batch'][b].mean():.1f}" for b in desc)
                + "; "
                + " / ".join(f"{100 - table['group'][b].mean():.1f}" for b in desc)
                + " %",
            )
        )
    details += tuning.details(tuned, _arm, f" at batch {REFERENCE}")
    reason = (
        "; ".join(
            f"on the {m} ({_fit(m)}) BN's accuracy falls by an estimated {bn.value.estimate:+.2f} points per halving of the batch more "
            f"than GroupNorm's "
            f"(part {bn.label} {bn.verdict}), and GroupNorm's own slope is {gn.value.estimate:+.2f} (part {gn.label} {gn.verdict})"
            for m, bn, gn in zip(models, parts[0::2], parts[1::2])
        )
        + "."
    )
    return Finding(tuple(parts), reason, details, tuple(ours))


def figure(results, measurements, path) -> None:
    runs = tuning.chosen_runs(results.runs, measurements["tuned"])
    models = sorted(runs["config.model.name"].unique())
    fig, axes = plt.subplots(1, len(models), figsize=(5.5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models):
        rows = runs[(runs["config.model.name"] == model)]
        against(ax, rows, "train.batch_size", "model.norm", "test_acc", logx=True)
        pop = rows[rows["config.model.norm"] == "batch"]
        if "population/test_acc" in pop:
            g = pop[pop["status"] == "done"].groupby("config.train.batch_size")["population/test_acc"].mean()
            ax.plot(g.index, g.to_numpy(), "s--", color="#1f77b4", mfc="none", label="batch, population statistics")
        ax.axvspan(*FIT[model], color="k", alpha=0.05, lw=0)
        ax.set_xscale("log", base=2)
        ax.set_title(f"{model}: final test accuracy vs batch size (equal epochs)", fontsize=10)
        ax.set_ylabel("final test accuracy")
        ax.legend(fontsize=8)
    save(fig, path, f"{SEED_NOTE}; {DIVERGED_NOTE}; shaded: the batches the judged trend is fitted over; lr scaled with the batch, each arm's own")


RULE_V1 = (
    "supported if, for both models, BN's accuracy drop from batch 32 to batch 2 exceeds GroupNorm's by at least 3 points with the per-seed "
    "interval above 0; not supported if for either model the interval lies below +1 point; otherwise inconclusive."
)

RULE_V2 = (
    "two parts per model (the MLP and the CNN): first, the 95% interval of the per-seed difference (BN's accuracy drop from batch 32 to "
    "batch 2) - (GroupNorm's drop) lies wholly above +3 points: supported; wholly below: not supported; second, GroupNorm does not "
    "degrade: the interval of GroupNorm's own drop lies wholly below +3 points (supported) or wholly above it (not supported). Otherwise "
    "a part is inconclusive. A diverged run counts at chance."
)

CLAIM = Claim(
    name="batch_size",
    number=5,
    tune=TUNE,
    tiny=(
        "train.epochs=0.05",
        "sweep.grid.train.batch_size=[2,4,32]",
        "sweep.grid.model.norm=[batch,group]",
    ),  # a CI-sized run of every arm (tests/test_claims.py)
    title="BN degrades at small batch sizes; GroupNorm does not",
    source="Wu & He 2018, §1, §4.1 and Figure 1 / Table 2",
    quote="BN's error increases rapidly when the batch size becomes smaller, caused by inaccurate batch statistics estimation.",
    setup=setup,
    rule=Rule(
        version=3,
        fixed="2026-12-03",
        explored_on="version 3's data and models (MNIST-1D, the 1-D CNN) on seeds 100-102 only: 5 and 10 epochs, lr 0.05 x batch / 32, "
        "batches 2-64, then a referee's review; seeds 0-9 had run version 2's design (the 8x8 digits, one lr) but never this one",
        text=f"per model, two parts on the per-seed least-squares slope of final test accuracy (BN with its running averages, as Wu & He "
        f"evaluate) against log2(batch), fitted over batches {FIT['cnn'][0]}-{FIT['cnn'][1]} for the CNN and {FIT['mlp'][0]}-"
        f"{FIT['mlp'][1]} for the MLP (in the MLP, BN at batch {DEGENERATE} normalises each unit to +-1, a degenerate case reported on its "
        f"own; the largest batch runs at twice the tuned lr on few steps and is reported, not fitted): (a) the {stats.CI} interval of "
        f"BN's slope minus GroupNorm's lies wholly above +{MIN_SLOPE:g} points per doubling: supported; wholly below: not supported; "
        f"(b) GroupNorm does not degrade: the interval of its own slope lies wholly below +{MIN_SLOPE:g} (supported; a negative "
        "slope counts) or wholly above it (not supported). Otherwise a part is inconclusive. Each norm and model runs at its own base "
        f"lr, chosen at batch {REFERENCE} by mean final validation accuracy over tuning seeds {describe.seeds(TUNE.seeds)} and "
        "scaled linearly with the batch; equal epochs at every batch. A diverged run counts at chance.",
        history=(
            RuleChange(
                1,
                "2026-11-27",
                RULE_V1,
                "inconclusive on seeds 0-2, not supported on seeds 3-5 (the CNN's part), so reported inconclusive; the table showed the "
                "CNN's number while the MLP's part was supported",
                "2026-12-03",
                STATISTICS_REVIEW + ".",
            ),
            RuleChange(
                2,
                "2026-12-03",
                RULE_V2,
                "not supported on seeds 0-9: the CNN's BN lost -0.33 [-0.68, +0.01] points more than GroupNorm from batch 32 to 2 (part a), "
                "the MLP's +33.29 [+28.41, +38.16] (part c); every arm was at 97-99% on the 8x8 digits",
                "2026-12-03",
                "a review of the design (issue 'Claims, part 4'): on the 8x8 digits every arm sat near its ceiling; one lr for every batch "
                "size made equal epochs unequal in lr x steps; and the drop to batch 2 alone judged the degenerate case where BN's "
                "x-hat is +-1 per unit. Version 3 uses MNIST-1D with a 1-D CNN, scales the lr with the batch (Wu & He §4.1, Goyal et "
                "al. 2017), tunes each arm's base lr, and judges the trend over batch sizes.",
            ),
        ),
    ),
    paper=(
        PaperNumber(
            "validation error at 32 / 16 / 8 / 4 / 2 images per GPU (BN; GroupNorm)",
            "23.6 / 23.7 / 24.8 / 27.3 / 34.7; 24.1 / 24.2 / 24.0 / 24.2 / 24.1 %",
            "ResNet-50",
            "ImageNet",
            "8 GPUs, 100 epochs, lr 0.1 x batch / 32",
            "Wu & He 2018, Table 2 (Figure 1)",
        ),
    ),
    analyse=analyse,
    figure=figure,
    differs="Wu & He train ResNet-50 on ImageNet (their batch sizes per GPU in the table above); our nets and signals are far smaller. "
    "The two models differ in how many values stand behind each BN statistic at a small batch: per unit, only the batch's examples "
    "in the MLP; per channel, the batch times every position of a feature map in the CNN. On MNIST-1D's few thousand training "
    "signals BN's batch noise may also act as a regulariser, which ImageNet-scale training does not show.",
)
