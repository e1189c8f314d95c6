"""Each arm's own lr (experiments.tuning): chosen on the tuning seeds from their saved runs, then
the confirmation seeds run every arm at its choice (and at the fixed values kept as a part)."""

from __future__ import annotations

import pandas as pd
import pytest

from experiments import tuning
from experiments.tuning import Tune


def _runs(rows):
    return pd.DataFrame(rows, columns=["config.model.norm", "config.optim.lr", "config.seed", "status", "val_acc"])


def test_each_arm_gets_the_value_with_the_best_mean_validation_accuracy():
    tune = Tune(values=(0.01, 0.1, 1.0), seeds=(100, 101))
    runs = _runs(
        [
            ("none", 0.01, 100, "done", 0.80),
            ("none", 0.01, 101, "done", 0.82),
            ("none", 0.1, 100, "done", 0.90),
            ("none", 0.1, 101, "diverged", None),  # counts at chance: mean 0.5, below 0.01's 0.81
            ("none", 1.0, 100, "diverged", None),
            ("none", 1.0, 101, "diverged", None),
            ("batch", 0.01, 100, "done", 0.70),
            ("batch", 0.01, 101, "done", 0.70),
            ("batch", 0.1, 100, "done", 0.85),
            ("batch", 0.1, 101, "done", 0.87),
            ("batch", 1.0, 100, "done", 0.86),
            ("batch", 1.0, 101, "done", 0.86),
        ]
    )
    chosen = tuning.choose(runs, tune, ["model.norm"], chance=0.1)
    assert [(c["arm"]["model.norm"], c["value"]) for c in chosen] == [("none", 0.01), ("batch", 0.1)]
    assert chosen[0]["means"] == {"0.01": 0.81, "0.1": 0.5, "1.0": 0.1}


def test_a_tie_goes_to_the_value_listed_first():
    tune = Tune(values=(0.1, 0.01), seeds=(100,))
    runs = _runs([("batch", 0.01, 100, "done", 0.9), ("batch", 0.1, 100, "done", 0.9)])
    assert tuning.choose(runs, tune, ["model.norm"], chance=0.1)[0]["value"] == 0.1


def test_the_confirmation_sweep_runs_each_arm_at_its_choice_and_at_the_kept_values():
    import bnlab
    from bnlab.config.load import load
    from bnlab.config.sweep import expand

    cfg = load({"name": "t", "train": {"steps": 10}, "sweep": {"grid": {"model.norm": ["none", "batch"], "seed": [0, 1]}}})
    tune = Tune(values=(0.01, 0.1), also=(0.1,), seeds=(100,))
    chosen = [{"arm": {"model.norm": "none"}, "value": 0.01}, {"arm": {"model.norm": "batch"}, "value": 0.1}]
    source = tuning.confirmation(cfg, tune, chosen, [3, 4])
    points = sorted((s.config.model.norm, s.config.optim.lr, s.config.seed) for s in expand(load(source)))
    assert points == sorted([("none", 0.01, 3), ("none", 0.1, 3), ("batch", 0.1, 3), ("none", 0.01, 4), ("none", 0.1, 4), ("batch", 0.1, 4)])
    assert bnlab.load_config(source)  # every run validates
    runs = pd.DataFrame([(n, lr, s) for n, lr, s in points], columns=["config.model.norm", "config.optim.lr", "config.seed"])
    kept = tuning.chosen_runs(runs, tuning.record(tune, chosen))
    assert sorted(zip(kept["config.model.norm"], kept["config.optim.lr"])) == [("batch", 0.1), ("batch", 0.1), ("none", 0.01), ("none", 0.01)]


def test_an_arm_told_apart_by_an_unset_value_keeps_it_unset():
    """Claim 18's arms differ in which clipping is set (null elsewhere); the runs table reads null as NaN,
    which must go back into the confirmation sweep as null and match the runs it made."""
    import math

    from bnlab.config.load import load
    from bnlab.config.sweep import expand

    nan = math.nan
    rows = [(clip, lr, 100, "done", acc) for clip, lr, acc in ((nan, 0.01, 0.5), (nan, 0.1, 0.2), (1.0, 0.01, 0.3), (1.0, 0.1, 0.6))]
    runs = pd.DataFrame(rows, columns=["config.optim.global_clipnorm", "config.optim.lr", "config.seed", "status", "val_acc"])
    tune = Tune(values=(0.01, 0.1), seeds=(100,))
    chosen = tuning.choose(runs, tune, ["optim.global_clipnorm"], chance=0.1)
    assert [(c["arm"]["optim.global_clipnorm"], c["value"]) for c in chosen] == [(None, 0.01), (1.0, 0.1)]
    cfg = load({"name": "t", "train": {"steps": 10}, "sweep": {"zip": {"optim.global_clipnorm": [None, 1.0]}, "grid": {"seed": [0]}}})
    points = sorted(((s.config.optim.global_clipnorm or 0.0), s.config.optim.lr) for s in expand(load(tuning.confirmation(cfg, tune, chosen, [0]))))
    assert points == [(0.0, 0.01), (1.0, 0.1)]
    confirmed = pd.DataFrame(
        [(nan, 0.01, 0), (1.0, 0.1, 0), (nan, 0.1, 0)], columns=["config.optim.global_clipnorm", "config.optim.lr", "config.seed"]
    )
    kept = tuning.chosen_runs(confirmed, tuning.record(tune, chosen))
    assert list(kept["config.optim.lr"]) == [0.01, 0.1]


def test_a_choice_made_at_one_value_of_an_axis_holds_for_all_its_values():
    from bnlab.config.load import load
    from bnlab.config.sweep import expand

    cfg = load(
        {"name": "t", "train": {"steps": 10}, "sweep": {"grid": {"model.init_scale": [0.1, 1.0, 10.0], "model.norm": ["none", "batch"], "seed": [0]}}}
    )
    tune = Tune(values=(0.01, 0.1), seeds=(100,), at=(("model.init_scale", 1.0),))
    tuning_runs = expand(load(cfg, tuning.overrides(tune)))
    assert {s.config.model.init_scale for s in tuning_runs} == {1.0} and len(tuning_runs) == 4
    assert tuning.arm_axes(cfg, tune) == ["model.norm"]
    chosen = [{"arm": {"model.norm": "none"}, "value": 0.01}, {"arm": {"model.norm": "batch"}, "value": 0.1}]
    points = {(s.config.model.init_scale, s.config.model.norm, s.config.optim.lr) for s in expand(load(tuning.confirmation(cfg, tune, chosen, [0])))}
    assert points == {(a, "none", 0.01) for a in (0.1, 1.0, 10.0)} | {(a, "batch", 0.1) for a in (0.1, 1.0, 10.0)}


def test_only_the_tuning_seeds_count_and_only_an_accuracy_can_decide():
    tune = Tune(values=(0.01, 0.1), seeds=(100,))
    runs = _runs([("batch", 0.01, 100, "done", 0.8), ("batch", 0.1, 100, "done", 0.7), ("batch", 0.1, 101, "done", 0.99)])
    assert tuning.choose(runs, tune, ["model.norm"], chance=0.1)[0]["value"] == 0.01  # seed 101 is left from another tuning
    with pytest.raises(ValueError, match="accuracy"):
        Tune(values=(0.1,), by="val_loss")  # the highest loss would win


def test_tuning_seeds_stay_apart_from_the_confirmation_seeds():
    with pytest.raises(ValueError, match=">= 100"):
        Tune(values=(0.1,), seeds=(0, 1, 2))


@pytest.mark.slow
def test_a_tuned_claim_confirms_each_arms_choice_and_other_seeds_reuse_the_tuning(tmp_path):
    import json

    import bnlab
    from experiments import load_claims
    from experiments.reproduce import reproduce

    out, report = tmp_path / "claims", tmp_path / "REPORT.md"
    claim = load_claims(["deep_cnn"])[0]
    tiny = list(claim.tiny) + ["model.width=4"]
    reproduce([claim], "quick", [0, 1], out, report, progress=False, overrides=tiny, execution={"workers": 1})
    tuned = bnlab.load_results(out / "deep_cnn.tuning")
    assert sorted(tuned.runs["config.seed"].unique()) == list(claim.tune.seeds)
    axes = ["model.init", "model.norm"]
    chosen = tuning.choose(tuned.runs, claim.tune, axes, chance=0.1)
    assert len(tuned.runs) == len(claim.tune.seeds) * len(claim.tune.values) * len(chosen) and len(chosen) == 4
    record = json.loads((out / "deep_cnn.seeds-0-1" / "claim.json").read_text())["tuned"]
    assert [(c["arm"], c["value"]) for c in record["chosen"]] == [(c["arm"], c["value"]) for c in chosen]
    confirmed = bnlab.load_results(out / "deep_cnn.seeds-0-1").runs
    for c in chosen:  # each arm at its choice and at the standard lr, on the confirmation seeds only
        arm = (confirmed["config.model.norm"] == c["arm"]["model.norm"]) & (confirmed["config.model.init"] == c["arm"]["model.init"])
        lrs = set(confirmed[arm]["config.optim.lr"])
        assert lrs == {c["value"], *claim.tune.also}
    assert set(confirmed["config.seed"]) == {0, 1}
    reproduce([claim], "quick", [2, 3], out, report, progress=False, overrides=tiny, execution={"workers": 1})
    assert len(bnlab.load_results(out / "deep_cnn.tuning").runs) == len(tuned.runs)  # tuned once
    assert set(bnlab.load_results(out / "deep_cnn.seeds-2-3").runs["config.seed"]) == {2, 3}
    assert "lr per arm, the best of" in report.read_text()
