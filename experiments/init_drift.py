"""Claim 13: a careful initialisation balances the layers only at the start; without BN the
per-layer activation scale drifts during training, with BN it stays put."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from . import describe, stats
from .claim import STATISTICS_REVIEW, Claim, Finding, PaperNumber, Part, Rule, RuleChange
from .plots import color, save

MIN_EFFECT = 0.1  # mean abs log std change
CAREFUL = "he_normal"  # He et al. 2015's init for ReLU: the careful one the claim means


def stds(metrics, run_id: str):
    """Steps and a (steps x layers) array of each hidden layer's pre-activation std."""
    cols = sorted(
        (c for c in metrics.columns if c.startswith("activations/hidden.") and c.endswith("/std")), key=lambda c: int(c.split("/")[1].split(".")[1])
    )
    rows = metrics[metrics["run_id"] == run_id].dropna(subset=cols[:1])
    return rows["step"].to_numpy(), rows[cols].to_numpy(float)


def imbalance_change(metrics, run_id: str) -> float:
    """How much more unequal the layers' scales are at the end than at the start: the spread over
    layers of log std at the last measurement minus that at step 0."""
    _, s = stds(metrics, run_id)
    return float(np.std(np.log(s[-1])) - np.std(np.log(s[0])))


def weight_growth(metrics, run_id: str) -> float:
    """Mean over hidden layers of log(final ||W_l|| / first logged ||W_l||): BN's scale-invariant
    weights grow under SGD (Ioffe & Szegedy §3.3) without changing the function."""
    cols = sorted(c for c in metrics.columns if c.startswith("param_norm/hidden.") and c.endswith(".layer.kernel"))
    rows = metrics[metrics["run_id"] == run_id].dropna(subset=cols[:1])
    w = rows[cols].to_numpy(float)
    return float(np.mean(np.log(w[-1] / w[0])))


def drift(metrics, run_id: str) -> float:
    """Mean over layers of |log(std at the end / std at step 0)|: how far each layer's activation scale moved."""
    _, s = stds(metrics, run_id)
    return float(np.mean(np.abs(np.log(s[-1] / s[0]))))


def setup(results, record) -> str:
    runs = results.runs
    act = "diagnostics.activations"
    point = {"pre_norm": "W x (the norm's input; without a norm, W x + b, the nonlinearity's input)"}.get(
        describe.one(runs, act + ".point"), "pre-activations (BN nets: after BN's affine map)"
    )
    return (
        f"{describe.data(runs, record.get('data_sizes'))}, {describe.model(runs)}, {describe.init(runs)}, {describe.norms(runs)}, "
        f"{describe.optimiser(runs)}, {describe.length(runs)}; the std of every hidden layer's {point} over "
        f"{describe.number(describe.one(runs, act + '.batch_size'))} fixed validation examples at "
        f"{describe.one(runs, act + '.schedule.log_spaced')} log-spaced steps."
    )


def analyse(results, measurements) -> Finding:
    runs, metrics = results.runs, results.metrics
    inits = sorted(runs["config.model.init"].unique(), key=lambda i: (i != "he_normal", i))
    per = {}
    for init in inits:
        for norm in ("none", "batch"):
            rows = runs[(runs["config.model.init"] == init) & (runs["config.model.norm"] == norm)]
            per[(init, norm)] = {int(s): drift(metrics, r) for s, r in zip(rows["config.seed"], rows["run_id"])}
    parts, details = [], []
    for init in inits:
        a, b = per[(init, "none")], per[(init, "batch")]
        iv = stats.t_interval([a[s] - b[s] for s in sorted(set(a) & set(b))])
        if init == CAREFUL:
            parts.append(
                Part(
                    "",
                    f"{init} (the careful init for ReLU): the scale of the layers' nonlinearity inputs drifts more without BN than with "
                    f"it (by more than {MIN_EFFECT:g} in mean abs log std change)",
                    f"{init}: none - BN, mean over layers of abs(log(final std / initial std)) of the nonlinearity's input",
                    iv,
                    stats.superior(iv, MIN_EFFECT),
                    threshold=MIN_EFFECT,
                )
            )
        else:
            details.append(f"{init} (secondary, reported, not judged): none - BN, the same statistic: {iv.format(2)}")
        ids = {n: runs[(runs["config.model.init"] == init) & (runs["config.model.norm"] == n)]["run_id"] for n in ("none", "batch")}
        details.append(
            f"{init}, reported, not judged: change over training of the spread over layers of log std (cross-layer imbalance): "
            + ", ".join(f"{n} {np.mean([imbalance_change(metrics, r) for r in ids[n]]):+.2f}" for n in ids)
            + "; growth of the hidden kernels' norms, mean log(final / first logged ||W||): "
            + ", ".join(f"{n} {np.mean([weight_growth(metrics, r) for r in ids[n]]):+.2f}" for n in ids)
        )
        details.append(
            f"{init}: mean abs(log(final std / initial std)) over layers: none {np.mean(list(a.values())):.2f} "
            f"(x{np.exp(np.mean(list(a.values()))):.1f}), BN {np.mean(list(b.values())):.2f}"
        )
    reason = (
        "without BN the layers' activation scales move by a factor "
        + ", ".join(f"{np.exp(np.mean(list(per[(i, 'none')].values()))):.1f} ({i})" for i in inits)
        + " on average over training; with BN by "
        + ", ".join(f"{np.exp(np.mean(list(per[(i, 'batch')].values()))):.2f}" for i in inits)
        + "."
    )
    return Finding(tuple(parts), reason, details)


def figure(results, measurements, path) -> None:
    runs, metrics = results.runs, results.metrics
    inits = sorted(runs["config.model.init"].unique())
    fig, axes = plt.subplots(len(inits), 2, figsize=(11, 3.6 * len(inits)), sharey=True, squeeze=False)
    cmap = plt.get_cmap("viridis")
    for k, (init, norm) in enumerate((i, n) for i in inits for n in ("none", "batch")):
        ax = axes[k // 2][k % 2]
        rows = runs[(runs["config.model.init"] == init) & (runs["config.model.norm"] == norm)]
        curves = [stds(metrics, r) for r in rows["run_id"]]
        steps, values = curves[0][0], np.mean([c[1] for c in curves], 0)
        for layer in range(values.shape[1]):
            c = cmap(layer / max(values.shape[1] - 1, 1))
            for st, v in curves:
                ax.plot(np.maximum(st, 1), v[:, layer], color=c, lw=0.5, alpha=0.25)
            ax.plot(np.maximum(steps, 1), values[:, layer], color=c, label=f"layer {layer + 1}")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(f"{init}, {'BN' if norm == 'batch' else 'no BN'}", color=color(norm))
        ax.set_xlabel("step (0 drawn at 1)")
        ax.grid(alpha=0.3)
    pre_norm = describe.one(runs, "diagnostics.activations.point") == "pre_norm"
    for row in axes:
        row[0].set_ylabel("std of the layer's W x" if pre_norm else "std of the layer's pre-activations")
    axes[0][-1].legend(fontsize=7, ncol=2)
    n = describe.number(describe.one(runs, "diagnostics.activations.batch_size"))
    where = "W x, the norm's input" if pre_norm else "BN nets: after BN's affine map (gamma x-hat + beta)"
    save(fig, path, f"thick: mean over seeds, thin: each seed; over {n} fixed validation examples; {where}")


RULE_V1 = (
    "supported if, for both inits, the mean over layers of |log(final std / initial std)| is at least 0.1 larger without BN than with "
    "it (per-seed interval of none - BN above 0); not supported if that interval lies below 0 for either init; otherwise inconclusive."
)

RULE_V2 = (
    "one part per init: the 95% interval of the per-seed none - BN mean over layers of |log(final std / initial std)| lies wholly "
    "above +0.1 (supported) or wholly below it (not supported); otherwise inconclusive."
)

CLAIM = Claim(
    name="init_drift",
    fresh_seeds=tuple(range(10, 20)),  # confirmation on seeds never run before (the rule changed after earlier seeds were read)
    number=13,
    tiny=(
        "data.mnist1d_samples=500",
        "model.depth=3",
        "train.steps=20",
        "train.log_every=10",
        "diagnostics.activations.schedule.log_spaced=3",
        "diagnostics.activations.batch_size=50",
    ),  # a CI-sized run of every arm (tests/test_claims.py)
    title="Careful initialisation balances layers only at the start",
    source="Ioffe & Szegedy 2015, §1-2 (internal covariate shift); the seed material's comparison with He/Glorot initialisation",
    quote="the distribution of each layer's inputs changes during training, as the parameters of the previous layers change "
    "(Ioffe & Szegedy); careful initialisation addresses this only at the start of training (the seed material).",
    setup=setup,
    rule=Rule(
        version=3,
        fixed="2026-12-03",
        explored_on="no new runs; seeds 0-9 had been run and read under version 2 (the same statistic for both inits), and two "
        "referees' reviews of the design (W x measured at the norm's input was tried and dropped: see the rule change); seeds 10-19 "
        "are the fresh confirmation",
        text=f"one judged part, for He init (He et al. 2015's careful init for ReLU): at each hidden layer's nonlinearity input (W x + b "
        f"without a norm; gamma x-hat + beta with BN), per seed D = mean over layers of |log(std at the end / std at step 0)|; the "
        f"{stats.CI} interval of none - BN lies wholly above +{MIN_EFFECT:g} (supported) or wholly below it (not supported); otherwise "
        "inconclusive. Reported, not judged: Glorot init; the change of the cross-layer spread of log std; the growth of the hidden "
        "kernels' norms.",
        history=(
            RuleChange(
                1,
                "2026-11-27",
                RULE_V1,
                "inconclusive on seeds 0-2, supported on seeds 3-5, so reported inconclusive; the table showed the Glorot statistic while He decided",
                "2026-12-03",
                STATISTICS_REVIEW + "; each init becomes a part of its own.",
            ),
            RuleChange(
                2,
                "2026-12-03",
                RULE_V2,
                "supported on seeds 0-9 (he_normal +0.28 [+0.23, +0.34], glorot_normal +1.62 [+1.54, +1.70])",
                "2026-12-03",
                "a review of the designs (issue 'Claims, part 4') asked to measure W x, BN's input, since downstream of BN the std "
                "is set by gamma; a referee showed that BN's W x mostly tracks the growth of its scale-invariant weights (their "
                "gradient is orthogonal to them, so SGD lengthens them every step), which never reaches the function, so the judged "
                "point stays the nonlinearity's input, where He init balances the variance and where BN holding the scale near "
                "gamma is the mechanism the claim names. Version 3 judges the careful init for ReLU (He) only, and reports Glorot, the "
                "cross-layer imbalance and the weight growth.",
            ),
        ),
    ),
    paper=(
        PaperNumber(
            "activation scale over training",
            "no number: careful initialization is named among the remedies for saturation",
            "-",
            "-",
            "-",
            "Ioffe & Szegedy 2015, §1",
        ),
    ),
    analyse=analyse,
    figure=figure,
    differs="The seed material contrasts BN with initialisation schemes in words; this measures the drift directly on a small MLP, "
    "at the nonlinearity's input. With BN that scale is gamma's, which barely moves; its weights meanwhile grow (BN is invariant to "
    "their scale), which the weight growth above shows and the function does not see.",
)
