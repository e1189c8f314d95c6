"""Every committed results folder replots from what is committed: `bnlab plot` on a copy without its
figures makes each committed figure again, from the committed runs' config, status and metrics."""

import shutil

import numpy as np
import pytest
from conftest import ROOT

from bnlab.report.plot import plot_all
from bnlab.runner.results import RunDir, read_summary

FOLDERS = sorted(p for p in (ROOT / "results").glob("*") if (p / "summary.csv").exists())


def test_there_are_committed_results():
    assert len(FOLDERS) >= 6


@pytest.mark.parametrize("folder", FOLDERS, ids=[p.name for p in FOLDERS])
def test_committed_figures_are_made_again_from_committed_runs(tmp_path, folder):
    import matplotlib.image

    for row in read_summary(folder):  # every run of the summary is committed whole
        rd = RunDir(folder / "runs" / row["run_id"])
        assert rd.config_path.exists() and rd.metrics() and rd.status()["status"] == row["status"], rd.path
    copy = tmp_path / folder.name
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("figures"))
    made = sorted(p.name for p in plot_all(copy))
    committed = sorted(p.name for p in (folder / "figures").iterdir())
    assert made == committed
    for name in committed:
        old, new = matplotlib.image.imread(folder / "figures" / name), matplotlib.image.imread(copy / "figures" / name)
        assert old.shape == new.shape, name
        assert np.mean(np.abs(old - new)) < 0.02, name  # the same picture (small slack for another matplotlib's text rendering)


def test_no_two_parameters_share_a_colour_and_style_in_the_gradient_figure():
    from bnlab.report.figures import parameter_styles

    mlp = (
        [f"hidden.{i}.layer.kernel" for i in range(3)]
        + [f"hidden.{i}.norm.{k}" for i in range(3) for k in ("gamma", "beta")]
        + ["head.kernel", "head.bias"]
    )
    lstm = ["hidden.0.x.kernel", "hidden.0.h.kernel", "hidden.0.bias", "head.kernel", "head.bias"]
    lstm += [f"hidden.0.norm_{p}.{k}" for p in "xhc" for k in ("norm.gamma", "norm.beta", "scale", "bias")]  # layer norm and per-step BN
    for names in (mlp, lstm):
        styles = parameter_styles(names)
        assert len({(tuple(c), str(s)) for c, s in styles.values()}) == len(names)
        assert list(styles)[-1].startswith("head")  # legend order follows the layers, head last


def test_learning_curves_draw_no_validation_panels_without_a_validation_split(tmp_path):
    from conftest import run_plan

    from bnlab.report.figure_helpers import group_runs
    from bnlab.report.figures import learning_curve_panels
    from bnlab.runner.results import load_runs

    _, out = run_plan(["model.width=8", "model.depth=1", "train.steps=10", "train.log_every=5", "data.val_fraction=0"], tmp_path / "o")
    assert [m for m, _ in learning_curve_panels(group_runs(load_runs(out), []))] == ["train_loss", "test_acc"]


def test_the_committed_report_is_rebuilt_byte_for_byte_from_the_committed_claims(tmp_path):
    """results/REPORT.md is what `bnlab report results/claims` writes from the committed runs, and
    every claim's figure comes out again: byte for byte with the matplotlib that drew it (named in
    the PNG), the same picture with another."""
    import matplotlib
    import matplotlib.image
    from PIL import Image

    from experiments.reproduce import write_report

    claims = ROOT / "results" / "claims"
    copy = tmp_path / "results" / "claims"
    shutil.copytree(claims, copy, ignore=shutil.ignore_patterns("figure.png"))
    report = write_report(copy, tmp_path / "results" / "REPORT.md")
    assert report.read_bytes() == (ROOT / "results" / "REPORT.md").read_bytes()
    figures = sorted(claims.glob("*/figure.png"))
    assert len(figures) >= 14
    for figure in figures:
        new = copy / figure.parent.name / "figure.png"
        if Image.open(figure).text.get("Software") == f"matplotlib {matplotlib.__version__}":
            assert new.read_bytes() == figure.read_bytes(), figure
        else:
            old, again = matplotlib.image.imread(figure), matplotlib.image.imread(new)
            assert old.shape == again.shape and np.mean(np.abs(old - again)) < 0.02, figure


def test_the_readme_verdict_table_is_the_committed_reports():
    """README.md's verdict table is generated from results/REPORT.md (bnlab report --readme), never copied by hand."""
    from experiments.report import README_END, README_START, update_readme

    readme = (ROOT / "README.md").read_text()
    assert README_START in readme and README_END in readme
    report = ROOT / "results" / "REPORT.md"
    assert update_readme(readme, report.read_text(), report, ROOT / "README.md") == readme
