"""The claims layer: statistics and verdict rules, every claim end to end at a tiny scale (sweep,
analysis, figure, report), the report rebuilt byte for byte, other seed sets, skipped claims."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from conftest import bnlab_cmd

from experiments import CLAIM_MODULES, load_claims
from experiments.claim import Finding
from experiments.report import combined
from experiments.reproduce import reproduce, write_report
from experiments.stats import INCONCLUSIVE, NOT_SUPPORTED, SUPPORTED, Interval, all_of, t_interval, three_way

ROOT = Path(__file__).resolve().parents[1]
MNIST_T10K = ROOT.parent / "shared" / "data" / "mnist-t10k"

# each claim's config cut to a few seconds: two seeds (for an interval), few steps, few arms
TINY = {
    "sigmoid_depth": ["data.mnist1d_samples=500", "train.steps=20", "train.log_every=10", "sweep.grid.model.depth=[2,10]"],
    "ioffe_fig1": [
        "data.name=digits",
        "train.steps=30",
        "train.log_every=10",
        "diagnostics.activations.schedule.every=10",
        "diagnostics.activations.batch_size=50",
    ],
    "learning_rate": ["data.mnist1d_samples=500", "train.steps=20", "train.log_every=10", "sweep.grid.optim.lr=[0.1,1.0,1000.0]"],
    "initialisation": ["data.mnist1d_samples=500", "train.steps=20", "train.log_every=10", "sweep.grid.model.init_scale=[0.1,1.0]"],
    "batch_size": ["train.epochs=0.05", "sweep.grid.train.batch_size=[2,32]", "sweep.grid.model.norm=[batch,group]"],
    "regularisation": ["data.subset=200", "train.epochs=2", "sweep.grid.model.dropout=[0.0,0.3]"],
    "step_cost": ["data.mnist1d_samples=500", "train.steps=30", "train.log_every=10"],
    "inference_stats": [
        "data.mnist1d_samples=500",
        "train.log_every=10",
        "sweep.grid.train.steps=[20,40]",
        "sweep.grid.model.bn_momentum=[0.0,0.9,0.99]",
        "sweep.grid.train.batch_size=[8]",
    ],
    "rnn": [
        "data.synthetic_shape=[4,8,1]",
        "data.synthetic_size=300",
        "data.eval_lengths=[8]",
        "model.width=8",
        "sweep.zip.train.steps=[20,20,20,20,20,20,20]",
        "sweep.zip.train.log_every=[10,10,10,10,10,10,10]",
    ],
    "ics": [
        "data.mnist1d_samples=500",
        "model.depth=3",
        "train.steps=20",
        "train.log_every=10",
        "diagnostics.ics.schedule.every=10",
        "diagnostics.activations.schedule.every=10",
    ],
    "landscape": ["data.mnist1d_samples=500", "train.steps=20", "train.log_every=10", "diagnostics.landscape.schedule.every=10"],
    "curvature": [
        "data.mnist1d_samples=500",
        "model.width=16",
        "train.steps=20",
        "train.log_every=10",
        "sweep.grid.model.depth=[2,3]",
        "diagnostics.hessian.schedule.log_spaced=3",
        "diagnostics.hessian.iterations=5",
        "diagnostics.hessian.trace_probes=3",
        "diagnostics.hessian.batch_size=64",
    ],
    "init_drift": [
        "data.mnist1d_samples=500",
        "model.depth=3",
        "train.steps=20",
        "train.log_every=10",
        "diagnostics.activations.schedule.log_spaced=3",
        "diagnostics.activations.batch_size=50",
    ],
    "whitening": ["data.mnist1d_samples=500", "train.steps=20", "train.log_every=10", "train.batch_size=64", "sweep.grid.model.width=[32,64]"],
}


def test_every_claim_has_a_tiny_setup_and_both_scales():
    assert set(TINY) == set(CLAIM_MODULES)
    for claim in load_claims():
        for scale in ("quick", "paper"):
            assert claim.config(scale).exists(), claim.config(scale)
        assert claim.quote and claim.rule and claim.source and claim.setup


def test_t_interval_against_the_formula():
    iv = t_interval([1.0, 2.0, 4.0])
    mean, sd = 7 / 3, math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert iv.estimate == pytest.approx(mean) and iv.low == pytest.approx(mean - half) and iv.high == pytest.approx(mean + half)
    assert math.isnan(t_interval([1.0]).low) and t_interval([]).n == 0
    assert t_interval([0.5, 0.5, 0.5]).low == pytest.approx(0.5)  # no spread: a zero-width interval


def test_three_way_rule_and_parts():
    assert three_way(Interval(3.0, 1.0, 5.0, 3), 2.0, 0.5) == SUPPORTED
    assert three_way(Interval(3.0, -1.0, 7.0, 3), 2.0, 0.5) == INCONCLUSIVE  # the interval includes 0
    assert three_way(Interval(1.0, 0.5, 1.5, 3), 2.0, 0.5) == INCONCLUSIVE  # above 0, but too small
    assert three_way(Interval(-1.0, -2.0, 0.4, 3), 2.0, 0.5) == NOT_SUPPORTED
    assert three_way(Interval(3.0, float("nan"), float("nan"), 1), 2.0, 0.5) == INCONCLUSIVE  # one seed decides nothing
    assert all_of(SUPPORTED, SUPPORTED) == SUPPORTED and all_of(SUPPORTED, INCONCLUSIVE) == INCONCLUSIVE
    assert all_of(INCONCLUSIVE, NOT_SUPPORTED) == NOT_SUPPORTED


def test_a_verdict_that_flips_between_seed_sets_is_inconclusive():
    iv = Interval(1.0, 0.5, 1.5, 3)
    verdict, reason = combined([Finding("s", iv, SUPPORTED, "a"), Finding("s", iv, NOT_SUPPORTED, "b")])
    assert verdict == INCONCLUSIVE and "seed sets" in reason
    assert combined([Finding("s", iv, SUPPORTED, "a"), Finding("s", iv, SUPPORTED, "b")]) == (SUPPORTED, "a")


@pytest.mark.slow
def test_every_claim_runs_end_to_end_and_the_report_rebuilds_byte_for_byte(tmp_path):
    out, report = tmp_path / "claims", tmp_path / "REPORT.md"
    for claim in load_claims():
        tiny = TINY[claim.name] + ["sweep.grid.seed=[0,1]"]
        if claim.name == "ioffe_fig1" and MNIST_T10K.exists():
            tiny = tiny[1:]  # the real MNIST images where they are
        reproduce([claim], "quick", None, out, report, progress=False, overrides=tiny, workers=1)
        assert (out / claim.name / "figure.png").stat().st_size > 10_000, claim.name
    text = report.read_text()
    for claim in load_claims():
        assert f"{claim.title}" in text and claim.rule in text
    assert text.count("**Verdict: ") == len(CLAIM_MODULES) and "not run" not in text
    assert (out / "initialisation" / "measurements.json").exists() and (out / "step_cost" / "measurements.json").exists()
    first = report.read_bytes()
    report.unlink()
    import subprocess

    r = subprocess.run(bnlab_cmd("report", str(out), "--report", str(report)), cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert report.read_bytes() == first


@pytest.mark.slow
def test_other_seeds_get_their_own_folder_and_both_enter_the_report(tmp_path):
    out, report = tmp_path / "claims", tmp_path / "REPORT.md"
    claim = load_claims(["sigmoid_depth"])
    tiny = TINY["sigmoid_depth"] + ["sweep.grid.model.depth=[10]", "sweep.grid.model.norm=[none,batch]"]
    reproduce(claim, "quick", [0, 1], out, report, progress=False, overrides=tiny, workers=1)
    reproduce(claim, "quick", [2, 3], out, report, progress=False, overrides=tiny, workers=1)
    assert (out / "sigmoid_depth.seeds-0-1" / "claim.json").exists() and (out / "sigmoid_depth.seeds-2-3" / "claim.json").exists()
    text = report.read_text()
    assert "seeds 0, 1" in text and "seeds 2, 3" in text


def test_a_claim_that_cannot_run_here_is_reported_as_skipped(tmp_path):
    out, report = tmp_path / "claims", tmp_path / "REPORT.md"
    reproduce(load_claims(["ioffe_fig1"]), "quick", None, out, report, progress=False, overrides=["data.name=idx:/nonexistent/mnist"])
    assert "does not exist" in (out / "ioffe_fig1" / "skipped.txt").read_text()
    assert "| not run |" in report.read_text()
    assert write_report(out, report) == report


def test_reproduce_and_report_refuse_bad_input(tmp_path):
    import subprocess

    for args, message in (
        (["reproduce", "--only", "no_such_claim"], "no claim named no_such_claim"),
        (["reproduce", "--seeds", "1,1"], "distinct"),
        (["report", str(tmp_path / "missing")], "is not a folder"),
    ):
        r = subprocess.run(bnlab_cmd(*args), cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("name", CLAIM_MODULES)
def test_paper_scale_configs_are_wired_to_tfds(tmp_path, name):
    """Every paper-scale config plans (each of its runs validated against the data) and its first run's
    network takes training steps, on TFDS mock data of the dataset it names (the RNN claim's sequences
    are generated)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from bnlab.runner.plan import plan
    from bnlab.train.program import TrainProgram

    (claim,) = load_claims([name])
    with tfds.testing.mock_data(num_examples=300, data_dir=str(tmp_path / "tfds")):
        p = plan(claim.config("paper"), [f"data.data_dir={tmp_path / 'tfds'}", "data.subset=null"], tmp_path / "o")  # mock data: 300 examples
        spec = p.runs[0]
        program = TrainProgram(spec.config, p.datasets[spec.run_id])
        state, summary = program.train_chunk(program.init(0), 2)
    assert int(state.step) == 2 and bool(summary["train_loss"] > 0)
    assert spec.config.data.name.startswith("tfds:") or spec.config.data.name == "evidence"  # the RNN claim's task is generated
