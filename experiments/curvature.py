"""Claim 12: BN lowers the curvature of the loss (top Hessian eigenvalue and trace), in deep nets;
PyHessian found the effect can flip for shallow ones."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from . import describe, stats
from .claim import SEEN_UNDER_V1, STATISTICS_REVIEW, Claim, Finding, PaperNumber, Part, Rule, RuleChange
from .plots import color, save, seed_curves

QUANTITIES = {"hessian/eig_1": "top Hessian eigenvalue", "hessian/trace": "Hessian trace (Hutchinson)"}


def series(metrics, run_id: str, key: str):
    rows = metrics[(metrics["run_id"] == run_id) & (metrics["step"] > 0)].dropna(subset=[key])
    return rows["step"].to_numpy(), rows[key].to_numpy(float)


def log_ratio(runs, metrics, depth: int, key: str) -> stats.Interval:
    """Per seed, mean over the measurements after step 0 of log(BN / none), joined on the step."""

    def by_seed(norm):
        rows = runs[(runs["config.model.norm"] == norm) & (runs["config.model.depth"] == depth)]
        return {int(s): pd.Series(series(metrics, r, key)[1], index=series(metrics, r, key)[0]) for s, r in zip(rows["config.seed"], rows["run_id"])}

    bn, none = by_seed("batch"), by_seed("none")
    values = []
    for s in sorted(set(bn) & set(none)):
        both = pd.concat([bn[s].abs(), none[s].abs()], axis=1, join="inner").dropna()
        both = both[(both > 0).all(axis=1)]
        values.append(float(np.mean(np.log(both.iloc[:, 0]) - np.log(both.iloc[:, 1]))) if len(both) else float("nan"))
    return stats.t_interval(values)


def setup(results, record) -> str:
    runs = results.runs
    h = "diagnostics.hessian"
    return (
        f"{describe.data(runs, record.get('data_sizes'))}, ReLU MLPs of width {describe.one(runs, 'model.width')} and depth "
        f"{describe.listed(describe.values(runs, 'model.depth'))}, {describe.optimiser(runs)}, {describe.length(runs)}, {describe.norms(runs)}; "
        f"at {describe.one(runs, h + '.schedule.log_spaced')} log-spaced steps on a fixed batch of "
        f"{describe.number(describe.one(runs, h + '.batch_size'))} "
        f"training examples (BN in {describe.one(runs, h + '.bn_mode')}-statistics mode, i.e. train mode): the top Hessian eigenvalue "
        f"({describe.one(runs, h + '.iterations')} Lanczos steps with full reorthogonalisation) and the Hutchinson trace "
        f"({describe.one(runs, h + '.trace_probes')} Rademacher probes)."
    )


def analyse(results, measurements) -> Finding:
    runs, metrics = results.runs, results.metrics
    depths = sorted(runs["config.model.depth"].unique())
    deep, shallow = depths[-1], depths[0]
    details = []
    for depth in depths:
        for key, label in QUANTITIES.items():
            iv = log_ratio(runs, metrics, depth, key)
            details.append(
                f"depth {depth}, {label} (reported, not judged unless the top eigenvalue at depth {deep}): BN / none = "
                f"{np.exp(iv.estimate):.2f}x (log ratio {iv.format(2)})"
            )
    crossing = {}
    for depth in depths:  # reported, not judged: the last measurement alone, and from where none's is above BN's
        rows = runs[runs["config.model.depth"] == depth]
        curves = {n: [series(metrics, r, "hessian/eig_1") for r in rows[rows["config.model.norm"] == n]["run_id"]] for n in ("none", "batch")}
        last = {n: np.mean([c[1][-1] for c in cs]) for n, cs in curves.items()}
        details.append(f"depth {depth}, top eigenvalue at the last measurement: none {last['none']:.1f}, BN {last['batch']:.1f}")
        steps = curves["none"][0][0]
        mean = {n: np.mean([np.abs(c[1]) for c in cs], 0) for n, cs in curves.items()}
        above = [int(s) for k, s in enumerate(steps) if all(mean["none"][j] > mean["batch"][j] for j in range(k, len(steps)))]
        crossing[depth] = above[0] if above else None
    head = log_ratio(runs, metrics, deep, "hessian/eig_1")
    verdict = stats.inferior(head, 0.0)
    flat = log_ratio(runs, metrics, shallow, "hessian/eig_1")
    part = Part(
        "",
        f"BN's top Hessian eigenvalue is lower than the plain net's at depth {deep}, over training",
        f"BN / none, top Hessian eigenvalue at depth {deep} (ratio, geometric mean over the measurements)",
        head.map(np.exp),
        verdict,
        signed=False,
        threshold=1.0,
    )
    reason = (
        f"at depth {deep} BN's top Hessian eigenvalue is {np.exp(head.estimate):.2f}x the plain net's over training; "
        f"at depth {shallow} it is {np.exp(flat.estimate):.2f}x (reported)."
    )
    c = crossing[deep]
    facts = {
        "crossing": f"from step {c} on the plain net's mean top eigenvalue stays above BN's"
        if c
        else "the plain net's mean top eigenvalue never stays above BN's",
        "trace": f"{np.exp(log_ratio(runs, metrics, deep, 'hessian/trace').estimate):.1f}",
    }
    return Finding((part,), reason, details, (), facts)


def figure(results, measurements, path) -> None:
    runs, metrics = results.runs, results.metrics
    depths = sorted(runs["config.model.depth"].unique())
    fig, axes = plt.subplots(len(QUANTITIES), len(depths), figsize=(5.5 * len(depths), 3.6 * len(QUANTITIES)), squeeze=False)
    for row, (key, label) in zip(axes, QUANTITIES.items()):
        for ax, depth in zip(row, depths):
            for i, norm in enumerate(("none", "batch")):
                ids = runs[(runs["config.model.norm"] == norm) & (runs["config.model.depth"] == depth)]["run_id"]
                curves = [series(metrics, r, key) for r in ids]
                seed_curves(ax, [(st, np.abs(v)) for st, v in curves], color(norm, i), norm, marker="o")
            ax.set_xscale("log")
            ax.set_yscale("log")
            ax.set_title(f"depth {depth}: {label}", fontsize=9)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
            ax.legend()
    batch = describe.number(describe.one(runs, "diagnostics.hessian.batch_size"))
    save(fig, path, f"thin lines: each seed, thick: their mean; on a fixed batch of {batch} training examples, BN in training mode")


RULE_V1 = (
    "supported if, for the deeper net, the per-seed interval of the mean log ratio BN / none of the top eigenvalue over training lies "
    "below 0; not supported if it lies above 0; otherwise inconclusive. The shallow net and the trace are reported, not judged."
)

CLAIM = Claim(
    name="curvature",
    number=12,
    tiny=(
        "data.mnist1d_samples=500",
        "model.width=16",
        "train.steps=20",
        "train.log_every=10",
        "sweep.grid.model.depth=[2,3]",
        "diagnostics.hessian.schedule.log_spaced=3",
        "diagnostics.hessian.iterations=5",
        "diagnostics.hessian.trace_probes=3",
        "diagnostics.hessian.batch_size=64",
    ),  # a CI-sized run of every arm (tests/test_claims.py)
    title="BN lowers the loss curvature (deep nets)",
    source="Ghorbani et al. 2019, §4; Yao et al. 2020 (PyHessian), §4",
    quote="Batch normalization ... suppresses the outlier eigenvalues of the Hessian (Ghorbani et al.); "
    "PyHessian: BN makes the landscape smoother for deep nets, but without BN shallow nets can have a flatter landscape.",
    setup=setup,
    rule=Rule(
        version=2,
        fixed="2026-12-03",
        explored_on=SEEN_UNDER_V1,
        text=f"for the deeper net, the {stats.CI} interval of the per-seed mean log ratio BN / none of the top Hessian eigenvalue over the "
        "measurements (joined on the step) lies wholly below 0 (supported) or wholly above 0 (not supported), a minimum effect of 0; "
        "otherwise inconclusive. The shallow net and the trace are reported, not judged.",
        history=(RuleChange(1, "2026-11-27", RULE_V1, "not supported on seeds 0-2 and on seeds 3-5", "2026-12-03", STATISTICS_REVIEW + "."),),
    ),
    paper=(
        PaperNumber(
            "outlier Hessian eigenvalues",
            "no number checked: 'large isolated eigenvalues' without BN, 'almost absent' with it",
            "ResNet",
            "CIFAR-10 / ImageNet",
            "not stated",
            "Ghorbani et al. 2019, abstract and §4",
        ),
        PaperNumber(
            "smoothness with BN",
            "no number checked: BN 'does not necessarily make the loss landscape smoother, especially for shallower networks'",
            "ResNet",
            "CIFAR-10",
            "not stated",
            "Yao et al. 2020 (PyHessian), abstract and §4",
        ),
    ),
    analyse=analyse,
    figure=figure,
    differs="Ghorbani et al. and PyHessian study ResNets on CIFAR-10/ImageNet; ours are small MLPs, and the Hessian is taken in train mode "
    "(batch statistics of the probe batch). BN's scale invariance makes its Hessian depend on the weight norms, which grow during "
    "training, so the comparison is at equal steps, not at equal weight norms. The rule averages over log-spaced measurement steps, so most "
    "measurements fall early in training; {crossing} (the last measurements are listed above). BN's Hessian trace "
    "at the deep depth is {trace}x the plain net's (geometric mean over the measurements).",
)
