"""Claim 17: BN is all but essential in CNNs: a deeper plain CNN (no skip connections) trains only
with BN at a standard learning rate and initialisation. Judged at the BN-era reference lr, with each
arm at its own best lr (where "essential" would mean the plain net cannot catch up), and with the
small fixed-std init under which He et al. found deep plain nets hard to train."""

from __future__ import annotations

import matplotlib.pyplot as plt

from . import describe, stats, tuning
from .claim import Claim, Finding, Ours, PaperNumber, Part, Rule
from .plots import DIVERGED_NOTE, SEED_NOTE, against, color, save
from .tuning import Tune

MIN_EFFECT = 20.0  # points of test accuracy: a net that trains against one that does not
CHANCE = 0.10  # ten digit classes: a diverged run counts at chance
CAREFUL, NAIVE = "he_normal", "normal"  # He et al. 2015's init, and a fixed small std (model.init_std)
GOYAL_LR, GOYAL_BATCH = 0.1, 256  # Goyal et al. 2017's reference: lr 0.1 for a batch of 256, scaled linearly
TUNE = Tune(values=(0.001, 0.003, 0.01, 0.03, 0.1), also=(0.025,), seeds=(100, 101, 102))


def convs(runs) -> int:
    return int(describe.one(runs, "model.depth")) * int(describe.one(runs, "model.convs_per_stage"))


def _init_name(init: str, runs=None) -> str:
    if init == NAIVE and runs is not None:
        return f"N(0, {describe.number(describe.one(runs, 'model.init_std'))}²) init"
    return {CAREFUL: "He init", NAIVE: "small fixed-std init"}.get(init, init)


def _arm(arm: dict) -> str:
    return f"{describe.NORM_NAMES.get(arm['model.norm'], arm['model.norm'])} ({_init_name(arm['model.init'])})"


def setup(results, record) -> str:
    runs = results.runs
    inits = " and ".join(_init_name(i, runs) for i in describe.values(runs, "model.init"))
    return (
        f"{describe.data(runs, record.get('data_sizes'))}, a plain {describe.model(runs)} of {convs(runs)} 3x3 conv layers (no skip "
        f"connections), {describe.norms(runs)}, {inits}, {describe.OPTIM_NAMES[describe.one(runs, 'optim.name')]} (momentum "
        f"{describe.number(describe.one(runs, 'optim.momentum'))}), {describe.length(runs)}; the reference lr "
        f"{describe.number(TUNE.also[0])} (Goyal et al. 2017's rule for BN ResNets, {GOYAL_LR:g} x batch / {GOYAL_BATCH}, gives "
        f"{describe.number(GOYAL_LR * float(describe.one(runs, 'train.batch_size')) / GOYAL_BATCH)} at this batch) for every arm, and "
        f"{tuning.text(record['tuned'], _arm)}."
    )


def accuracies(results, tuned: dict, init: str) -> tuple[dict, dict]:
    """norm -> seed -> final test accuracy (points) with `init`, at the reference lr and at each arm's chosen lr."""
    runs = results.runs[results.runs["config.model.init"] == init]
    reference = runs[runs["config.optim.lr"].astype(float) == TUNE.also[0]]
    chosen = tuning.chosen_runs(runs, tuned)
    at = lambda rows: {n: 100 * stats.accuracy(rows, CHANCE, **{"model.norm": n}) for n in ("none", "batch")}  # noqa: E731
    return at(reference), at(chosen)


def analyse(results, measurements) -> Finding:
    runs, tuned = results.runs, measurements["tuned"]
    reference, best = accuracies(results, tuned, CAREFUL)
    _, naive = accuracies(results, tuned, NAIVE)
    lr = {(c["arm"]["model.init"], c["arm"]["model.norm"]): c["value"] for c in tuned["chosen"]}
    diffs = {k: stats.paired(v["none"], v["batch"]) for k, v in (("reference", reference), ("best", best), ("naive", naive))}
    ref = describe.number(TUNE.also[0])
    parts = (
        Part(
            "a",
            f"He init, at the BN-era reference lr {ref}: the plain CNN trains far worse than with BN (by more than {MIN_EFFECT:g} points)",
            f"BN - none, final test accuracy, He init, lr {ref} (points; a diverged run at chance)",
            diffs["reference"],
            stats.superior(diffs["reference"], MIN_EFFECT),
            threshold=MIN_EFFECT,
        ),
        Part(
            "b",
            f"He init, each arm at its own best lr: the plain CNN still trains far worse (by more than {MIN_EFFECT:g} points)",
            f"BN - none, final test accuracy, He init, each at its chosen lr (BN {describe.number(lr[(CAREFUL, 'batch')])}, none "
            f"{describe.number(lr[(CAREFUL, 'none')])}; points)",
            diffs["best"],
            stats.superior(diffs["best"], MIN_EFFECT),
            threshold=MIN_EFFECT,
        ),
        Part(
            "c",
            f"{_init_name(NAIVE, runs)}, each arm at its own best lr: the plain CNN trains far worse (by more than {MIN_EFFECT:g} points)",
            f"BN - none, final test accuracy, {_init_name(NAIVE, runs)}, each at its chosen lr (BN {describe.number(lr[(NAIVE, 'batch')])}, "
            f"none {describe.number(lr[(NAIVE, 'none')])}; points)",
            diffs["naive"],
            stats.superior(diffs["naive"], MIN_EFFECT),
            threshold=MIN_EFFECT,
        ),
    )
    mean = {k: {n: v[n].mean() for n in v} for k, v in (("reference", reference), ("best", best), ("naive", naive))}
    reason = (
        f"with He init the plain CNN reaches {mean['reference']['none']:.1f}% at lr {ref} against BN's {mean['reference']['batch']:.1f}%, "
        f"and {mean['best']['none']:.1f}% at its own lr against BN's {mean['best']['batch']:.1f}%; with {_init_name(NAIVE, runs)} it "
        f"reaches {mean['naive']['none']:.1f}% at its best lr against BN's {mean['naive']['batch']:.1f}%."
    )
    details = tuning.details(tuned, _arm)
    ours = Ours(
        "final test accuracy of a plain deep CNN, BN / none",
        f"{describe.model(runs)}, {convs(runs)} conv layers",
        describe.data(runs),
        describe.length(runs),
        f"He init, lr {ref}: {mean['reference']['batch']:.1f}% / {mean['reference']['none']:.1f}%; own lr: {mean['best']['batch']:.1f}% / "
        f"{mean['best']['none']:.1f}%; {_init_name(NAIVE, runs)}, own lr: {mean['naive']['batch']:.1f}% / {mean['naive']['none']:.1f}%",
    )
    return Finding(parts, reason, details, (ours,), {"convs": str(convs(runs))})


def figure(results, measurements, path) -> None:
    runs = results.runs
    inits = describe.values(runs, "model.init")
    fig, axes = plt.subplots(1, len(inits) + 1, figsize=(5.2 * (len(inits) + 1), 4), squeeze=False)
    for ax, init in zip(axes[0], inits):
        against(ax, runs[runs["config.model.init"] == init], "optim.lr", "model.norm", "test_acc", logx=True)
        ax.set_ylabel("final test accuracy")
        ax.set_title(f"{_init_name(init, runs)}: confirmation seeds", fontsize=10)
        ax.legend()
    b = axes[0][-1]
    for i, c in enumerate(measurements["tuned"]["chosen"]):
        lrs = [float(v) for v in c["means"]]
        style = "-" if c["arm"]["model.init"] == CAREFUL else "--"
        b.plot(lrs, list(c["means"].values()), "o" + style, color=color(c["arm"]["model.norm"], i), label=_arm(c["arm"]), ms=4)
    b.set_xscale("log")
    b.set_xlabel("optim.lr")
    b.set_ylabel("mean final validation accuracy")
    b.set_title("tuning seeds: each arm's lr is its best", fontsize=10)
    b.grid(alpha=0.3)
    b.legend(fontsize=7)
    save(fig, path, f"{SEED_NOTE}; {DIVERGED_NOTE}; the reference lr and each arm's own lr, on the confirmation seeds")


CLAIM = Claim(
    name="deep_cnn",
    number=17,
    tune=TUNE,
    tiny=("train.steps=20", "train.log_every=10", "model.convs_per_stage=2", "model.width=4"),  # a CI-sized run of every arm
    title="BN is all but essential in deeper plain CNNs",
    source="the seed material; Ioffe & Szegedy 2015, §4.2.1-4.2.2; He et al. 2015, §2.2 and Figures 2-3; Goyal et al. 2017, §5.1",
    quote="a deeper plain CNN (no skip connections) trains only with BN at a standard learning rate and initialisation (the seed material).",
    setup=setup,
    rule=Rule(
        version=1,
        fixed="2026-12-03",
        explored_on="seeds 100-102: momentum SGD at lr 0.01, 0.05 and 0.1, batch 60, width 16, 1,500 steps; then lr 0.001-0.1, He "
        "and N(0, 0.01²) init, batch 64, width 16, 600 steps, and at width 8, 400 steps (the frozen setting); a referee's review. "
        "No confirmation seed had been run",
        text=f"three parts, each the {stats.CI} interval of the per-seed difference BN - none in final test accuracy (a diverged run at "
        f"chance): (a) He init, both arms at the reference lr; (b) He init, each arm at its own lr, chosen from the grid by mean final "
        f"validation accuracy over the tuning seeds {describe.seeds(TUNE.seeds)}; (c) the small fixed-std init, each arm at its own lr "
        f"chosen the same way. A part is supported if its interval lies wholly above +{MIN_EFFECT:g} points, not supported if wholly "
        "below, otherwise inconclusive; the claim is supported only if all three parts are.",
    ),
    analyse=analyse,
    figure=figure,
    paper=(
        PaperNumber(
            "deep plain nets without BN",
            "a 30-layer plain ReLU net converges with He init while Xavier init stalls (Figure 3); 22 layers train with either (Figure 2); "
            "nets of more than 8 conv layers with fixed-std 0.01 Gaussian init have difficulties converging (§2.2)",
            "plain VGG-style nets, no BN",
            "ImageNet",
            "full",
            "He et al. 2015 (Delving deep into rectifiers), §2.2, Figures 2 and 3",
        ),
        PaperNumber(
            "Inception without BN",
            "ReLU Inception trains to 72.2% at its own lr; BN-x5 and BN-x30 use 5x and 30x that lr; only sigmoid Inception fails",
            "Inception",
            "ImageNet",
            "full",
            "Ioffe & Szegedy 2015, §4.2.1 and §4.2.2",
        ),
    ),
    differs="The seed material states this without a scale; we test a {convs}-layer plain CNN on the 8x8 digits, an easy task: the "
    "question is whether the plain net trains at all, which an accuracy near the task's ceiling does not hide.",
)
