"""BN at inference: population statistics (Ioffe & Szegedy Algorithm 2) and folding BN into the layer below."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_plan

from bnlab.cli import main
from bnlab.config.schema import Config, ModelConfig, TrainConfig
from bnlab.data.dataset import load
from bnlab.errors import ConfigError
from bnlab.nn.fold import fold, folded_model
from bnlab.runner.results import RunDir
from bnlab.train.evaluation import Evaluator
from bnlab.train.program import TrainProgram


@functools.cache  # trained states are shared between tests; nothing here changes them
def trained(norm="batch", name="mlp", steps=20, ghost_batch_size=16):
    cfg = Config()
    cfg.model = ModelConfig(name=name, depth=2, width=8, norm=norm, activation="sigmoid", ghost_batch_size=ghost_batch_size)
    cfg.train = TrainConfig(batch_size=50, steps=steps)
    t = TrainProgram(cfg, load(cfg.data))
    state, _ = t.train_chunk(t.init(0), steps)
    return cfg, t, state, Evaluator(t.model, cfg, t.dataset, t.x_train, t.batch_size)


def test_population_statistics_match_a_manual_pass():
    cfg, t, state, ev = trained()
    pop = ev.population_stats(state)
    p = jax.tree.map(np.asarray, state.params)
    x = np.asarray(t.dataset.x_train, np.float64).reshape(len(t.dataset.y_train), -1)
    nb = len(x) // 50
    means, variances = [[], []], [[], []]
    for b in range(nb):
        h = x[b * 50 : (b + 1) * 50]
        for i in range(2):
            z = h @ p["hidden"][i]["layer"]["kernel"]
            mu, var = z.mean(0), z.var(0)
            means[i].append(mu)
            variances[i].append(var)
            zn = (z - mu) / np.sqrt(var + 1e-5) * p["hidden"][i]["norm"]["scale"] + p["hidden"][i]["norm"]["bias"]
            h = 1 / (1 + np.exp(-zn))
    for i in range(2):
        np.testing.assert_allclose(pop["hidden"][i]["norm"]["mean"], np.mean(means[i], 0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(pop["hidden"][i]["norm"]["var"], 50 / 49 * np.mean(variances[i], 0), rtol=1e-4, atol=1e-6)
    biased = ev.population_stats(state, unbiased=False)  # the running averages' estimator: no Bessel correction
    np.testing.assert_allclose(biased["hidden"][0]["norm"]["var"], np.mean(variances[0], 0), rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(biased["hidden"][0]["norm"]["mean"], pop["hidden"][0]["norm"]["mean"])
    # the running averages are something else (momentum 0.99 after 20 steps)
    assert not np.allclose(pop["hidden"][0]["norm"]["mean"], state.batch_stats["hidden"][0]["norm"]["mean"], rtol=1e-2)


def test_population_statistics_for_conv_count_space():
    cfg, t, state, ev = trained(name="cnn", steps=5)
    pop = ev.population_stats(state)
    p = jax.tree.map(np.asarray, state.params)
    m = 50 * 8 * 8  # values behind each channel's statistic: batch x positions
    nb = len(t.dataset.y_train) // 50
    variances = []
    for b in range(nb):
        xb = t.dataset.x_train[b * 50 : (b + 1) * 50]
        z = np.asarray(
            jax.lax.conv_general_dilated(
                jnp.asarray(xb), jnp.asarray(p["hidden"][0]["layer"]["kernel"]), (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
            ),
            np.float64,
        )
        variances.append(z.var((0, 1, 2)))
    np.testing.assert_allclose(pop["hidden"][0]["norm"]["var"], m / (m - 1) * np.mean(variances, 0), rtol=1e-4)


def test_population_evaluation_is_recorded(tmp_path, tiny_overrides):
    _, out = run_plan(tiny_overrides + ["train.eval_bn_stats=population"], tmp_path / "o")
    rows = RunDir(out / "runs" / "run").metrics()
    assert {r["eval_bn_stats"] for r in rows if "test_acc" in r} == {"population"}


def test_population_is_refused_for_norms_without_mean_and_variance(tmp_path, capsys):
    assert (
        main(
            [
                "run",
                "/dev/null",
                "model.norm=whiten",
                "model.width=16",
                "train.steps=5",
                "train.eval_bn_stats=population",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 2
    )
    assert "population" in capsys.readouterr().err


@pytest.mark.parametrize("name,norm", [("mlp", "batch"), ("cnn", "batch"), ("mlp", "ghost_batch"), ("cnn", "noisy_batch"), ("mlp", "batch_renorm")])
@pytest.mark.parametrize("stats", ["running", "population"])
def test_folded_outputs_equal_evaluation_outputs(name, norm, stats):
    cfg, t, state, ev = trained(norm=norm, name=name, steps=30, ghost_batch_size=10)
    bs = state.batch_stats if stats == "running" else ev.population_stats(state)
    folded = folded_model(cfg.model, t.dataset.image_shape, t.dataset.num_classes, state.params, bs)
    _, folded_params = fold(cfg.model, state.params, bs)
    x = jnp.asarray(t.dataset.x_test)
    expected = np.asarray(t.model.apply(state.params, bs, x, train=False).logits, np.float64)
    got = np.asarray(folded(x, train=False), np.float64)
    rel = np.max(np.abs(got - expected)) / np.max(np.abs(expected))
    print(f"{name} {norm} {stats}: max relative difference {rel:.1e}")
    assert rel < 5e-6
    assert "norm" not in folded_params["hidden"][0]


def test_folding_refuses_other_norms():
    cfg, t, state, _ = trained(norm="layer")
    with pytest.raises(ConfigError, match="folded"):
        fold(cfg.model, state.params, state.batch_stats)


def test_both_statistics_are_recorded_side_by_side(tmp_path, tiny_overrides):
    """eval_bn_stats=both: the running-average metrics as usual, the population ones beside them,
    each equal to what a run with that setting alone records."""
    rows = {}
    for stats in ("running", "population", "population_biased", "both", "all"):
        _, out = run_plan(tiny_overrides + [f"train.eval_bn_stats={stats}"], tmp_path / stats)
        rows[stats] = RunDir(out / "runs" / "run").metrics()[-1]
    both = rows["both"]
    assert both["eval_bn_stats"] == "both"
    assert both["test_acc"] == pytest.approx(rows["running"]["test_acc"]) and both["test_loss"] == pytest.approx(rows["running"]["test_loss"])
    assert both["population/test_loss"] == pytest.approx(rows["population"]["test_loss"], rel=1e-6)
    assert both["population/test_loss"] != pytest.approx(both["test_loss"], rel=1e-4)
    every = rows["all"]
    assert every["eval_bn_stats"] == "all" and every["population/test_loss"] == pytest.approx(rows["population"]["test_loss"], rel=1e-6)
    assert every["population_biased/test_loss"] == pytest.approx(rows["population_biased"]["test_loss"], rel=1e-6)
    assert every["population_biased/test_loss"] != pytest.approx(every["population/test_loss"], rel=1e-6)


def test_eval_train_measures_the_training_split_in_evaluation_mode(tmp_path, tiny_overrides):
    """train.eval_train adds train_eval_loss/acc: the whole training split through the
    evaluation-mode net (running statistics), computed here directly."""
    import dataclasses

    from bnlab.train.state import per_example

    cfg, t, state, _ = trained()
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, eval_train=True, eval_batch_size=128))
    row = Evaluator(t.model, cfg, t.dataset, t.x_train, t.batch_size).metrics(state, "running")
    logits = t.model.apply(state.params, state.batch_stats, jnp.asarray(t.dataset.x_train), train=False).logits
    losses, correct = per_example(logits, jnp.asarray(t.dataset.y_train), "classification")
    assert row["train_eval_loss"] == pytest.approx(float(losses.mean()), rel=1e-5)
    assert row["train_eval_acc"] == pytest.approx(float(correct.mean()), abs=1e-6)
    _, out = run_plan(tiny_overrides + ["train.eval_train=true"], tmp_path / "o")
    assert all("train_eval_acc" in r for r in RunDir(out / "runs" / "run").metrics() if "test_acc" in r)
