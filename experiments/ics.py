"""Claim 10: internal covariate shift is not why BN works (Santurkar et al. 2018, §2)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import describe, stats
from .claim import STATISTICS_REVIEW, Claim, Finding, PaperNumber, Part, Rule, RuleChange
from .plots import color, metric_curves, save, seed_curves

NOISY_MARGIN = 2.0  # points: 'nearly as well'
ICS_FACTOR = 1.25  # 'does not reduce': BN's ICS is at least 1/ICS_FACTOR of the plain net's
CHANCE = 0.10  # MNIST-1D's ten classes
CONVERGED = 0.99  # training accuracy after which the plain net's ICS mostly measures its convergence
MEASURES = (("l2", "||G - G'|| (Def. 2.1)", lambda v: v), ("cos", "1 - cos(G, G') (Figure 3's second row)", lambda v: 1.0 - v))


def ics(metrics, run_id: str, kind: str = "cos", before: float = float("inf")) -> float:
    """Mean over the layers and the measurements after step 0 and before step `before` of
    ||G - G'|| (kind 'l2', Santurkar Def. 2.1) or 1 - cos(G, G') (kind 'cos', their Figure 3)."""
    rows = metrics[(metrics["run_id"] == run_id) & (metrics["step"] > 0) & (metrics["step"] < before)]
    cols = [c for c in metrics.columns if c.startswith("ics/") and c.endswith(f"/{kind}")]
    values = rows[cols].dropna(how="all").to_numpy(dtype=float)
    transform = dict((k, f) for k, _, f in MEASURES)[kind]
    return float(np.nanmean(transform(values))) if values.size else float("nan")


def converged_at(metrics, run_id: str) -> float:
    """The first logged step at which the run's training accuracy reached CONVERGED (inf if never)."""
    rows = metrics[(metrics["run_id"] == run_id)].dropna(subset=["train_acc"])
    hit = rows[rows["train_acc"] >= CONVERGED]["step"]
    return float(hit.min()) if len(hit) else float("inf")


def mean_train_acc(metrics, run_id: str) -> float:
    """Training accuracy averaged over the run's log points: higher for the arm that trains faster."""
    rows = metrics[(metrics["run_id"] == run_id)].dropna(subset=["train_acc"])
    return float(rows["train_acc"].mean())


def activation_drift(metrics, run_id: str) -> float:
    """Mean over layers of the std over training of the per-layer mean pre-activation (how much the
    distribution each layer sees moves)."""
    rows = metrics[(metrics["run_id"] == run_id) & (metrics["step"] > 0)]
    cols = [c for c in metrics.columns if c.startswith("activations/hidden.") and c.endswith("/mean")]
    return float(np.nanmean(rows[cols].dropna(how="all").to_numpy(dtype=float).std(0)))


def setup(results, record) -> str:
    runs = results.runs
    return (
        f"{describe.data(runs, record.get('data_sizes'))}, {describe.model(runs)}, {describe.optimiser(runs)}, {describe.length(runs)}; "
        f"{describe.norms(runs)} (noisy BN: Santurkar's Algorithm 1 noise after BN, drawn per unit and step); ICS (Def. 2.1: G against G' "
        f"after the lower layers' update, BN in {describe.one(runs, 'diagnostics.ics.bn_mode')}-statistics mode) and activation statistics "
        f"every {describe.number(describe.one(runs, 'diagnostics.ics.schedule.every'))} steps."
    )


def analyse(results, measurements) -> Finding:
    runs, metrics = results.runs, results.metrics
    acc = {n: 100 * stats.accuracy(runs, CHANCE, **{"model.norm": n}) for n in runs["config.model.norm"].unique()}
    fit = {n: 100 * stats.accuracy(runs, CHANCE, "train_acc", **{"model.norm": n}) for n in acc}  # training accuracy, training mode
    ids = {n: runs[runs["config.model.norm"] == n].set_index("config.seed")["run_id"] for n in acc}
    speed = {n: 100 * ids[n].map(lambda r: mean_train_acc(metrics, r)) for n in ("none", "batch")}
    faster = stats.paired(speed["none"], speed["batch"])  # BN - none: the premise, BN trains faster
    noisy_gap = stats.paired(fit["noisy_batch"], fit["batch"])  # BN - noisy BN
    nearly = stats.inferior(noisy_gap, NOISY_MARGIN)  # noisy BN not worse than BN by more than the margin
    until = ids["none"].map(lambda r: converged_at(metrics, r))  # per seed: both arms' ICS before the plain net converges
    parts = [
        Part(
            "a",
            "the premise: BN trains faster than the plain net (higher training accuracy averaged over the run)",
            "BN - none, training accuracy averaged over the log points (points)",
            faster,
            stats.superior(faster, 0.0),
            threshold=0.0,
        ),
        Part(
            "b",
            f"BN with Santurkar's noise trains nearly as well as BN (its training accuracy not lower by more than {NOISY_MARGIN:g} points)",
            "BN - noisy BN, final training accuracy (the last log window's batches, in training mode; points; a diverged run at chance)",
            noisy_gap,
            nearly,
            threshold=NOISY_MARGIN,
        ),
    ]
    shift, ratios = {}, {}
    for label, (kind, name, _) in zip("cd", MEASURES):
        shift[kind] = {n: pd.Series({s: ics(metrics, ids[n][s], kind, until[s]) for s in ids[n].index}) for n in ("none", "batch")}
        ratios[kind] = stats.t_interval(stats.paired_differences(np.log(shift[kind]["none"]), np.log(shift[kind]["batch"])))  # log(BN/none)
        parts.append(
            Part(
                label,
                f"BN does not reduce ICS measured as {name}: BN's is at least 1/{ICS_FACTOR:g} of the plain net's (similar, or worse)",
                f"BN / none, mean {name} over layers and the measurements before the plain net's training accuracy reaches "
                f"{100 * CONVERGED:g}% (ratio)",
                ratios[kind].map(np.exp),
                stats.not_below(ratios[kind], np.log(ICS_FACTOR)),
                signed=False,
                threshold=1 / ICS_FACTOR,
            )
        )
    parts = tuple(parts)
    drift = {n: np.mean([activation_drift(metrics, r) for r in runs[runs["config.model.norm"] == n]["run_id"]]) for n in acc}
    noise_alone = stats.paired(acc["noise"], acc["noisy_batch"])
    train_acc = {n: v.mean() for n, v in fit.items()}
    log_ratio = ratios["cos"]
    loss = {n: stats.per_seed(runs, "train_loss", **{"model.norm": n}).mean() for n in acc}
    details = [
        "final training accuracy (mean over the last log window's batches): " + ", ".join(f"{n} {v:.1f}%" for n, v in train_acc.items()),
        "final training loss (the same batches): " + ", ".join(f"{n} {v:.3f}" for n, v in loss.items()),
        f"BN - noisy BN, final test accuracy (reported, not judged): {stats.paired(acc['noisy_batch'], acc['batch']).format(1, unit=' pt')}; "
        "final test accuracy: " + ", ".join(f"{n} {acc[n].mean():.1f}%" for n in ("none", "batch", "noisy_batch", "noise") if n in acc),
        f"noisy BN - noise without BN: {noise_alone.format(1, unit=' pt')}",
        *(
            f"ICS, mean {name} over layers before the plain net converges: none {shift[kind]['none'].mean():.4f}, "
            f"BN {shift[kind]['batch'].mean():.4f}; over the whole run: none "
            f"{np.mean([ics(metrics, r, kind) for r in ids['none']]):.4f}, BN {np.mean([ics(metrics, r, kind) for r in ids['batch']]):.4f}"
            for kind, name, _ in MEASURES
        ),
        f"BN / none, mean 1 - cos(G, G') over the measurements before convergence, equivalence within a factor {ICS_FACTOR:g} either "
        f"way (reported, not judged): {stats.equivalent(log_ratio, np.log(ICS_FACTOR))}",
        "movement of the per-layer mean pre-activation over training (std over measurements): " + ", ".join(f"{n} {v:.3f}" for n, v in drift.items()),
    ]
    reason = (
        f"BN's training accuracy averaged over the run is {faster.estimate:+.1f} points from the plain net's (the premise, part a "
        f"{parts[0].verdict}); noisy BN's final training accuracy ends {noisy_gap.estimate:+.1f} points from BN's (part b {nearly}); "
        f"BN's ICS is {np.exp(ratios['l2'].estimate):.2f}x the plain net's as ||G - G'|| and {np.exp(ratios['cos'].estimate):.2f}x as "
        f"1 - cos(G, G') (parts c, d {parts[2].verdict}, {parts[3].verdict})."
    )
    facts = {
        "noisy_gap": f"{noisy_gap.estimate:+.1f}",
        "noisy_train": f"{train_acc.get('noisy_batch', float('nan')):.1f}%",
        "noise_train": f"{train_acc.get('noise', float('nan')):.1f}%",
    }
    return Finding(parts, reason, details, (), facts)


def figure(results, measurements, path) -> None:
    runs, metrics = results.runs, results.metrics
    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for i, (norm, group) in enumerate(runs.groupby("config.model.norm", sort=False)):
        seed_curves(a, metric_curves(metrics, group["run_id"], "test_acc"), color(norm, i), norm)
        if norm in ("none", "batch"):
            cols = [c for c in metrics.columns if c.startswith("ics/") and c.endswith("/cos")]
            curves = []
            for rid in group["run_id"]:
                m = metrics[metrics["run_id"] == rid].dropna(subset=cols[:1])
                curves.append((m["step"].to_numpy(), (1 - m[cols].astype(float)).mean(1).to_numpy()))
            seed_curves(b, curves, color(norm, i), norm, marker="o")
    a.set_xlabel("step")
    a.set_ylabel("test accuracy")
    a.set_title("training: BN, noisy BN, noise alone, none")
    a.legend()
    a.grid(alpha=0.3)
    b.set_yscale("log")
    b.set_xlabel("step")
    b.set_ylabel("ICS: 1 - cos(G, G'), mean over layers")
    b.set_title("ICS as 1 - cos(G, G') (Santurkar Fig. 3)")
    b.legend()
    b.grid(alpha=0.3)
    save(fig, path, "thin lines: each seed; thick: the mean over seeds")


RULE_V1 = (
    "two parts, both needed: (a) noisy BN trains nearly as well as BN: BN minus noisy BN final test accuracy below 2 points (interval's "
    "upper end; not supported if its lower end is above 2); (b) BN does not reduce ICS: the per-seed interval of none's minus BN's mean "
    "1 - cos(G, G') does not lie above 0 (not supported if it does)."
)

RULE_V2 = (
    "two parts: (a) 'nearly as well' is a non-inferiority test (one side of TOST: noisy BN doing better would not contradict it): the "
    "95% interval of the per-seed BN - noisy BN final test accuracy (a diverged run at chance) lies wholly below +2 points (supported) "
    "or wholly above it (not supported); (b) 'does not reduce ICS' is a non-inferiority test on the per-seed log(BN's / none's mean "
    "1 - cos(G, G')): the interval lies wholly above log(1/1.25) (supported: BN's ICS is not lower by more than that factor) or wholly "
    "below it (not supported). Otherwise a part is inconclusive."
)

CLAIM = Claim(
    name="ics",
    fresh_seeds=tuple(range(10, 20)),  # confirmation on seeds never run before (the rule changed after earlier seeds were read)
    number=10,
    tiny=(
        "data.mnist1d_samples=500",
        "model.depth=3",
        "train.steps=20",
        "train.log_every=10",
        "diagnostics.ics.schedule.every=10",
        "diagnostics.activations.schedule.every=10",
    ),  # a CI-sized run of every arm (tests/test_claims.py)
    title="Internal covariate shift is not why BN works",
    source="Santurkar et al. 2018, §2, Figures 2 and 3",
    quote="the performance gain of BatchNorm [is not] stemming from increased stability of layer input distributions ... "
    "BatchNorm might not even be reducing internal covariate shift.",
    setup=setup,
    rule=Rule(
        version=3,
        fixed="2026-12-03",
        explored_on="seeds 100-104 under version 3, and a referee's review of the design; seeds 0-9 had been run and read under version "
        "2 (their training accuracies were printed), so seeds 10-19 are the fresh confirmation",
        text=f"four parts. (a) The premise, that BN trains faster here: the {stats.CI} interval of the per-seed BN - none training "
        f"accuracy averaged over the log points lies wholly above 0 (supported) or wholly below it (not supported). (b) 'Trains nearly "
        f"as well' is a non-inferiority test on training accuracy (Santurkar et al.'s Figure 2 is about training; noisy BN doing better "
        f"would not contradict it): the interval of the per-seed BN - noisy BN final training accuracy (the last log window's batches, "
        f"training mode; a diverged run at chance) lies wholly below +{NOISY_MARGIN:g} points (supported) or wholly above it (not "
        f"supported). (c, d) 'Does not reduce ICS' ('similar, or even worse') is a non-inferiority test on the per-seed log(BN's / "
        f"none's ICS), as ||G - G'|| (Def. 2.1) and as 1 - cos(G, G'), each the mean over layers and the measurements before the plain "
        f"net's training accuracy first reaches {100 * CONVERGED:g}% (after that its ICS mostly measures convergence): the interval lies "
        f"wholly above log(1/{ICS_FACTOR:g}) (supported) or wholly below it (not supported). Otherwise a part is inconclusive.",
        history=(
            RuleChange(
                1,
                "2026-11-27",
                RULE_V1,
                "not supported on seeds 0-2 and on seeds 3-5 (part a not supported, part b supported)",
                "2026-12-03",
                STATISTICS_REVIEW + "; part b counted 'the interval does not lie above 0' as support, so too few seeds read as agreement: "
                "version 2 asks for a non-inferiority margin.",
            ),
            RuleChange(
                2,
                "2026-12-03",
                RULE_V2,
                "not supported on seeds 0-9 (part a not supported: BN - noisy BN +10.33 [+8.47, +12.19] points of test accuracy; "
                "part b inconclusive: 0.90 [0.80, 1.01])",
                "2026-12-03",
                "a review of the designs (issue 'Claims, part 4') and a referee's review: Santurkar et al.'s Figure 2 is about "
                "training, so 'trains nearly as well' is judged on training accuracy, once the premise (BN trains faster) holds; ICS "
                "is judged as Def. 2.1's ||G - G'|| and as 1 - cos, before the plain net converges. The issue asked for an equivalence "
                "test on ICS; the paper's words are 'similar, or even worse', so BN having more ICS agrees with it and the test stays "
                "one-sided (the equivalence result is reported).",
            ),
        ),
    ),
    paper=(
        PaperNumber(
            "noisy BN against BN",
            "no number in the text: both perform almost identically and better than the standard net (plotted)",
            "VGG",
            "CIFAR-10",
            "not stated",
            "Santurkar et al. 2018, §2.1 and Figure 2",
        ),
        PaperNumber(
            "ICS with BN",
            "no number: 'similar, or even worse, internal covariate shift' (plotted)",
            "VGG; deep linear network",
            "CIFAR-10; synthetic",
            "not stated",
            "Santurkar et al. 2018, §2.2 and Figure 3",
        ),
    ),
    analyse=analyse,
    figure=figure,
    differs="Santurkar et al. use VGG on CIFAR-10 and a deep linear network; ours is a small MLP on MNIST-1D. The injected noise "
    "(their App. A.2.1, Algorithm 1: per unit a mean offset and a scale drawn each step around per-unit constants) moves the final "
    "training accuracy by {noisy_gap} points (BN - noisy BN); the noise alone, without BN, trains to {noise_train} (noisy BN "
    "{noisy_train}). Training accuracy is that of the training batches in training mode, noise on, as a training curve shows it.",
)
