"""The claims layer: statistics and verdict rules, every claim end to end at a tiny scale (sweep,
analysis, figure, report), the report rebuilt byte for byte, other seed sets, skipped claims."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from conftest import bnlab_cmd

from experiments import claim_names, load_claims
from experiments.claim import Finding, Part
from experiments.report import part_verdicts
from experiments.reproduce import reproduce, seeds_label, write_report
from experiments.stats import (
    INCONCLUSIVE,
    NOT_SUPPORTED,
    SUPPORTED,
    Interval,
    all_of,
    equivalent,
    inferior,
    median_interval,
    not_below,
    sign_test,
    superior,
    t_interval,
)

ROOT = Path(__file__).resolve().parents[1]
MNIST_T10K = ROOT.parent / "shared" / "data" / "mnist-t10k"

# each claim's config cut to a few seconds: two seeds (for an interval), few steps, few arms


def test_claims_are_found_numbered_with_a_tiny_setup_and_a_quick_sweep():
    claims = load_claims()
    assert [c.number for c in claims] == list(range(1, len(claims) + 1)) and len(claims) >= 14
    for claim in claims:
        assert claim.tiny, f"{claim.name}: no tiny= overrides for CI"
        assert claim.config("quick").exists(), claim.config("quick")  # a paper scale may be missing: reported as not run
        assert claim.quote and claim.rule.text and claim.source and callable(claim.setup)
        assert claim.rule.version >= 1 and claim.rule.fixed and claim.rule.explored_on
        for change in claim.rule.history:  # a replaced rule keeps its text and its verdict
            assert change.version < claim.rule.version and change.text and change.verdict and change.reason


def test_quick_configs_run_ten_seeds():
    import bnlab

    for claim in load_claims():
        assert bnlab.load_config(claim.config("quick")).sweep.grid["seed"] == list(range(10)), claim.name


def test_t_interval_against_the_formula():
    iv = t_interval([1.0, 2.0, 4.0])
    mean, sd = 7 / 3, math.sqrt(((1 - 7 / 3) ** 2 + (2 - 7 / 3) ** 2 + (4 - 7 / 3) ** 2) / 2)
    half = 4.302652729911275 * sd / math.sqrt(3)  # t(0.975, 2 degrees of freedom)
    assert iv.estimate == pytest.approx(mean) and iv.low == pytest.approx(mean - half) and iv.high == pytest.approx(mean + half)
    assert math.isnan(t_interval([1.0]).low) and t_interval([]).n == 0
    assert t_interval([0.5, 0.5, 0.5]).low == pytest.approx(0.5)  # no spread: a zero-width interval


def test_superiority_needs_the_whole_interval_above_the_minimum_effect():
    assert superior(Interval(3.0, 2.5, 3.5, 10), 2.0) == SUPPORTED
    assert superior(Interval(3.0, 1.0, 5.0, 10), 2.0) == INCONCLUSIVE  # the estimate passes, the interval does not
    assert superior(Interval(1.0, 0.5, 1.5, 10), 2.0) == NOT_SUPPORTED  # above 0 but surely below the minimum effect
    assert superior(Interval(3.0, float("nan"), float("nan"), 1), 2.0) == INCONCLUSIVE  # one seed decides nothing
    assert superior(Interval(1.0, 1.0, 2.0, 10, "median"), 1.0) == INCONCLUSIVE
    assert superior(Interval(1.0, 1.0, 2.0, 10, "median"), 1.0, inclusive=True) == SUPPORTED  # a grid step reached counts
    assert inferior(Interval(-0.5, -0.8, -0.2, 10), 0.0) == SUPPORTED and inferior(Interval(0.5, 0.2, 0.8, 10), 0.0) == NOT_SUPPORTED


def test_no_difference_is_an_equivalence_test_never_an_interval_that_includes_zero():
    assert equivalent(Interval(0.1, -0.5, 0.7, 10), 1.0) == SUPPORTED
    assert equivalent(Interval(0.1, -3.0, 3.2, 3), 1.0) == INCONCLUSIVE  # includes 0, but too wide to show equivalence
    assert equivalent(Interval(0.5, -0.2, 1.2, 10), 1.0) == INCONCLUSIVE  # one end outside the margin
    assert equivalent(Interval(4.0, 1.5, 6.5, 10), 1.0) == NOT_SUPPORTED  # a difference beyond the margin is shown
    assert equivalent(Interval(-4.0, -6.5, -1.5, 10), 1.0) == NOT_SUPPORTED
    # non-inferiority: 'A is not lower by more than the margin'
    assert not_below(Interval(0.3, -0.1, 0.7, 10), 0.2) == SUPPORTED
    assert not_below(Interval(-0.3, -0.5, -0.1, 10), 0.2) == INCONCLUSIVE
    assert not_below(Interval(-0.5, -0.7, -0.3, 10), 0.2) == NOT_SUPPORTED


def test_exact_interval_of_the_median_for_quantised_outcomes():
    from scipy import stats

    values = [0.5, 1.0, 1.0, 1.0, 1.0, 1.5, 1.0, 2.0, 1.0, 1.0]
    iv = median_interval(values)
    ranked = sorted(values)
    assert (iv.low, iv.high, iv.estimate, iv.kind) == (ranked[1], ranked[8], 1.0, "median")  # n = 10: the 2nd and 9th values
    for n in range(3, 25):  # the widest rank whose two binomial tails stay within 2.5% each
        k = max([j for j in range(1, n // 2 + 1) if stats.binom.cdf(j - 1, n, 0.5) <= 0.025], default=0)
        iv = median_interval(list(range(n)))
        assert math.isnan(iv.low) if k == 0 else (iv.low, iv.high) == (k - 1, n - k), n
    # coverage: a quantised variable whose median is 1; the interval contains it at least 95% of the time
    rng = np.random.default_rng(0)
    draws = rng.choice([0.0, 1.0, 1.0, 2.0], size=(4000, 10))
    hits = [median_interval(d).low <= 1.0 <= median_interval(d).high for d in draws]
    assert np.mean(hits) >= 0.95
    t = sign_test([1.0] * 9 + [-1.0])
    assert (t.wins, t.losses, t.ties) == (9, 1, 0) and t.p == pytest.approx(11 / 1024)
    assert sign_test([0.0, 1.0, 1.0]).ties == 1


def _finding(*verdicts):
    return Finding(tuple(Part(label, "says", "stat", Interval(1.0, 0.5, 1.5, 10), v) for label, v in zip("ab", verdicts)), "reason")


def test_a_part_whose_verdict_flips_between_seed_sets_is_inconclusive():
    verdicts = part_verdicts([_finding(SUPPORTED, SUPPORTED), _finding(SUPPORTED, NOT_SUPPORTED)], ["a", "b"])
    assert verdicts["a"] == (SUPPORTED, "") and verdicts["b"][0] == INCONCLUSIVE and "seed sets" in verdicts["b"][1]
    assert _finding(SUPPORTED, INCONCLUSIVE).verdict == INCONCLUSIVE and _finding(SUPPORTED, NOT_SUPPORTED).verdict == NOT_SUPPORTED
    assert all_of(SUPPORTED, SUPPORTED) == SUPPORTED


def _static_strings(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a module (the constant parts of f-strings included), except
    docstrings, format specs, colours and metric names, the claim's title, source, quote, tiny overrides and explored_on record,
    and the arguments of PaperNumber(...) and
    RuleChange(...): a source's words and numbers and a replaced rule's text are quoted, not measured."""
    import ast
    import re

    tree = ast.parse(path.read_text())
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FormattedValue) and node.format_spec is not None:
            skip.update(id(n) for n in ast.walk(node.format_spec))
        if isinstance(node, ast.keyword) and node.arg in (
            "quote",
            "title",
            "source",
            "tiny",
            "explored_on",
        ):  # tiny: config overrides; explored_on: a record of what was looked at
            skip.update(id(n) for n in ast.walk(node.value))
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.ClassDef)) and node.body and isinstance(node.body[0], ast.Expr):
            skip.add(id(node.body[0].value))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") in ("PaperNumber", "RuleChange"):
            skip.update(id(n) for n in ast.walk(node))
        if isinstance(node, ast.Assign) and any(getattr(t, "id", "").startswith("RULE_V") for t in node.targets):  # a replaced rule, verbatim
            skip.update(id(n) for n in ast.walk(node))
    out = []
    for node in ast.walk(tree):
        key = re.fullmatch(r"#[0-9a-f]{6}|[\w./-]*[/_][\w./-]*", node.value) if isinstance(getattr(node, "value", None), str) else None
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip and not key:  # colours, metric names
            out.append((node.lineno, node.value))
    return out


# numbers that are names, citations or formulas, not measurements
ALLOWED = [
    r"\b(19|20)\d\d(-\d\d-\d\d)?\b",  # years and dates
    r"§\s?\d+(\.\d+)*",
    r"\b(Fig\.|Figure|Figures|Table|Algorithm|Alg\.|Def\.|App\.|Section)\s+[A-Z]?\.?\d+(\.\d+)*(\s*(and|,)\s*\d\b)*",
    r"MNIST-1D|CIFAR-10|ResNet-\d+|text8|log10|log2|1 - cos|2/lr|1/a²?|1/\(1 - m\)|\(1 - momentum\)|15-85|\blog\(1/|x-hat|N\^tr_BN",
    r"\b[Vv]ersion \d+|\b[Cc]laims? \d+|\bl2\b|\|\|\^2|\b3x3\b|\b8x8\b|\b100%",  # names: a rule's version, a claim, a norm, a square
    r"(?<![\d.])[01](?![\d.])",  # 0 and 1: above 0, learning rate 0, 1 - cos, layer 1
    r"\d+(\.\d+)?e[+-]?\d+",  # never allowed: caught below as a number
]


def test_no_measured_number_is_written_by_hand_in_a_claim_module():
    """Every number in a claim's setup, verdict, reason or 'where this differs' text is formatted
    from the configs or the analysis: a static string holds no digits, citations and names aside."""
    import re

    allowed = re.compile("|".join(ALLOWED[:-1]))
    found = []
    for name in claim_names():
        for line, text in _static_strings(ROOT / "experiments" / f"{name}.py"):
            if re.search(r"\d", allowed.sub("", text)):
                found.append(f"experiments/{name}.py:{line}: {text!r}")
    assert not found, "hand-written numbers:\n" + "\n".join(found)


def test_the_number_check_would_catch_a_hand_written_number(tmp_path):
    import re

    module = tmp_path / "claim.py"
    module.write_text('differs = "BN is 11 points behind"\nok = f"BN is {x:.1f} points behind, §4.2, Figure 3, 2026-12-03"\n')
    allowed = re.compile("|".join(ALLOWED[:-1]))
    flagged = [t for _, t in _static_strings(module) if re.search(r"\d", allowed.sub("", t))]
    assert flagged == ["BN is 11 points behind"]


def _saved(folder: Path):
    import json

    import bnlab

    path = folder / "measurements.json"
    measurements = json.loads(path.read_text()) if path.exists() else {}
    record = json.loads((folder / "claim.json").read_text())
    if "tuned" in record:  # as the report reads it (experiments.report.analyse_folder)
        measurements["tuned"] = record["tuned"]
    return bnlab.load_results(folder), measurements


@pytest.mark.slow
def test_every_claim_runs_end_to_end_and_the_report_rebuilds_byte_for_byte(tmp_path):
    out, report = tmp_path / "claims", tmp_path / "REPORT.md"
    for claim in load_claims():
        tiny = list(claim.tiny) + ["sweep.grid.seed=[0,1]"]
        if claim.name == "ioffe_fig1" and MNIST_T10K.exists():
            tiny = tiny[1:]  # the real MNIST images where they are
        reproduce([claim], "quick", None, out, report, progress=False, overrides=tiny, execution={"workers": 1})
        assert (out / claim.name / "figure.png").stat().st_size > 10_000, claim.name
    text = report.read_text()
    for number, claim in enumerate(load_claims(), 1):
        assert f"{claim.title}" in text and claim.rule.text in text
        labels = [p.label for p in claim.analyse(*_saved(out / claim.name)).parts]
        for label in labels if len(labels) > 1 else []:  # every part has its row in the table
            assert f"\n| {number}{label} |" in text, (claim.name, label)
    assert text.count("**Verdict: ") == len(claim_names()) and "not run" not in text
    assert "## Rule changes" in text and "## Appendix: the cost of reproducing" in text
    assert (out / "initialisation" / "measurements.json").exists() and (out / "step_cost" / "measurements.json").exists()
    first = report.read_bytes()
    figures = {p: p.read_bytes() for p in sorted(out.glob("*/figure.png"))}
    report.unlink()
    for p in figures:
        p.unlink()
    import subprocess

    r = subprocess.run(bnlab_cmd("report", str(out), "--report", str(report)), cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert report.read_bytes() == first
    assert all(p.read_bytes() == data for p, data in figures.items())  # every figure again, byte for byte


@pytest.mark.slow
def test_other_seeds_get_their_own_folder_and_both_enter_the_report(tmp_path):
    out, report = tmp_path / "claims", tmp_path / "REPORT.md"
    claim = load_claims(["sigmoid_depth"])
    tiny = list(claim[0].tiny) + ["sweep.grid.model.depth=[10]", "sweep.grid.model.norm=[none,batch]"]
    reproduce(claim, "quick", [0, 1], out, report, progress=False, overrides=tiny, execution={"workers": 1})
    reproduce(claim, "quick", [2, 3], out, report, progress=False, overrides=tiny, execution={"workers": 1})
    assert (out / "sigmoid_depth.seeds-0-1" / "claim.json").exists() and (out / "sigmoid_depth.seeds-2-3" / "claim.json").exists()
    assert seeds_label(list(range(10, 20))) == "10-19" and seeds_label([1, 3, 4, 5]) == "1_3-5"
    text = report.read_text()
    assert "**Seeds 0 and 1**" in text and "**Seeds 2 and 3**" in text


@pytest.mark.slow
def test_reproduce_also_runs_a_claims_fresh_seed_set(tmp_path):
    import dataclasses

    out, report = tmp_path / "claims", tmp_path / "REPORT.md"
    claim = dataclasses.replace(load_claims(["sigmoid_depth"])[0], fresh_seeds=(2, 3))
    tiny = list(claim.tiny) + ["sweep.grid.model.depth=[10]", "sweep.grid.model.norm=[none,batch]", "sweep.grid.seed=[0,1]"]
    reproduce([claim], "quick", None, out, report, progress=False, overrides=tiny, execution={"workers": 1})
    assert (out / "sigmoid_depth" / "claim.json").exists() and (out / "sigmoid_depth.seeds-2-3" / "claim.json").exists()
    assert "**Seeds 2 and 3**" in report.read_text()


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
        (["reproduce", "--only", "sigmoid_depth", "--readme", str(tmp_path / "missing.md")], "no verdict table block"),
    ):
        r = subprocess.run(bnlab_cmd(*args), cwd=ROOT, capture_output=True, text=True)
        assert r.returncode == 2 and message in r.stderr, (args, r.stderr)


@pytest.mark.slow
@pytest.mark.parametrize("name", claim_names())
def test_paper_scale_configs_are_wired_to_tfds(tmp_path, name):
    """Every paper-scale config plans (each of its runs validated against the data) and its first run's
    network takes training steps, on TFDS mock data of the dataset it names (the RNN claim's sequences
    are generated)."""
    tfds = pytest.importorskip("tensorflow_datasets")
    from bnlab.runner.plan import plan
    from bnlab.train.program import TrainProgram

    (claim,) = load_claims([name])
    if not claim.config("paper").exists():
        pytest.skip(f"{name} has no paper scale (reported as not run at that scale)")
    from bnlab.config.load import load

    overrides = [f"data.data_dir={tmp_path / 'tfds'}", "data.subset=null"]
    cfg = load(claim.config("paper"))
    if "train.batch_size" not in cfg.sweep.grid and "train.batch_size" not in cfg.sweep.zip and cfg.train.batch_size > 256:
        overrides.append("train.batch_size=64")  # the mock data has 300 examples: a larger batch is cut to fit
    with tfds.testing.mock_data(num_examples=300, data_dir=str(tmp_path / "tfds")):
        p = plan(claim.config("paper"), overrides, tmp_path / "o")
        spec = p.runs[0]
        program = TrainProgram(spec.config, p.datasets[spec.run_id])
        state, summary = program.train_chunk(program.init(0), 2)
    assert int(state.step) == 2 and bool(summary["train_loss"] > 0)
    assert spec.config.data.name.startswith("tfds:") or spec.config.data.name == "evidence"  # the RNN claim's task is generated


def test_the_readme_table_is_the_reports_with_its_links_rebased(tmp_path):
    from experiments.report import README_END, README_START, update_readme

    report = tmp_path / "results" / "REPORT.md"
    report.parent.mkdir()
    report.write_text(
        "# R\n\n| # | Claim | Source | Verdict | Statistic | Figure |\n|---|---|---|---|---|---|\n"
        "| 1 | [A claim](#1-a-claim) | X | **supported** | s: +1 | [figure](claims/a/figure.png) |\n\n## 1. A claim\n"
    )
    readme = tmp_path / "README.md"
    text = f"intro\n{README_START}\nold table\n{README_END}\nrest\n"
    new = update_readme(text, report.read_text(), report, readme)
    assert "old table" not in new and new.startswith("intro\n") and new.endswith("rest\n")
    assert "[A claim](results/REPORT.md#1-a-claim)" in new and "[figure](results/claims/a/figure.png)" in new
    assert update_readme(new, report.read_text(), report, readme) == new
