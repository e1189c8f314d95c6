"""Recurrent models: forward passes against manual loops, per-time-step BN, longer sequences."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_plan
from flax import nnx

from bnlab.cli import main
from bnlab.config.schema import ModelConfig
from bnlab.nn import models
from bnlab.nn.recurrent import PerStepBatchNorm
from bnlab.runner.results import RunDir


def build(name, norm="none", **kw):
    cfg = ModelConfig(name=name, depth=1, width=5, norm=norm, activation="tanh", **kw)
    m = models.build(cfg, (4, 3, 1), 10, seed=0)
    return m, nnx.to_pure_dict(nnx.state(m, nnx.Param))


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def test_simple_rnn_matches_a_manual_loop():
    m, p = build("rnn")
    x = np.random.default_rng(0).normal(size=(2, 4, 3, 1)).astype(np.float32)
    L = {
        k: np.asarray(v, np.float64)
        for k, v in (("wx", p["hidden"][0]["x"]["kernel"]), ("wh", p["hidden"][0]["h"]["kernel"]), ("b", p["hidden"][0]["bias"]))
    }
    h = np.zeros((2, 5))
    for t in range(4):
        h = np.tanh(x[:, t].reshape(2, 3) @ L["wx"] + h @ L["wh"] + L["b"])
    expected = h @ np.asarray(p["head"]["kernel"]) + np.asarray(p["head"]["bias"])
    np.testing.assert_allclose(m(jnp.asarray(x), train=False), expected, rtol=1e-4, atol=1e-5)
    wh = L["wh"]
    np.testing.assert_allclose(wh.T @ wh, np.eye(5), atol=1e-5)  # orthogonal recurrent init


def test_lstm_matches_a_manual_loop():
    m, p = build("lstm")
    x = np.random.default_rng(1).normal(size=(2, 4, 3, 1)).astype(np.float32)
    wx, wh = (np.asarray(p["hidden"][0][k]["kernel"], np.float64) for k in ("x", "h"))
    b = np.asarray(p["hidden"][0]["bias"], np.float64)
    h = c = np.zeros((2, 5))
    for t in range(4):
        i, f, g, o = np.split(x[:, t].reshape(2, 3) @ wx + h @ wh + b, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(c)
    expected = h @ np.asarray(p["head"]["kernel"]) + np.asarray(p["head"]["bias"])
    np.testing.assert_allclose(m(jnp.asarray(x), train=False), expected, rtol=1e-4, atol=1e-5)


def test_shared_bn_leaves_the_zero_hidden_state_at_t0_out_of_its_statistics():
    """At t = 0 the hidden path is W_h 0 = 0; with BN shared over time its running averages see the
    hidden path of t >= 1 only (T = 2: one update), and its value at t = 0 is β."""
    m, p = build("rnn", norm="batch", bn_momentum=0.5)
    x = jnp.asarray(np.random.default_rng(3).normal(size=(32, 2, 3, 1)), jnp.float32)
    m(x, train=True)
    stats = nnx.to_pure_dict(nnx.state(m, nnx.BatchStat))["hidden"][0]
    L = {
        k: np.asarray(v, np.float64)
        for k, v in (("wx", p["hidden"][0]["x"]["kernel"]), ("wh", p["hidden"][0]["h"]["kernel"]), ("b", p["hidden"][0]["bias"]))
    }
    bn_x, bn_h = p["hidden"][0]["norm_x"]["norm"], p["hidden"][0]["norm_h"]["norm"]
    z0 = np.asarray(x[:, 0], np.float64).reshape(32, 3) @ L["wx"]
    h1 = np.tanh(
        (z0 - z0.mean(0)) / np.sqrt(z0.var(0) + 1e-5) * np.asarray(bn_x["scale"]) + np.asarray(bn_x["bias"]) + np.asarray(bn_h["bias"]) + L["b"]
    )
    zh = h1 @ L["wh"]  # the hidden path at t = 1, the only one that counts
    np.testing.assert_allclose(stats["norm_h"]["norm"]["mean"], 0.5 * zh.mean(0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(stats["norm_h"]["norm"]["var"], 0.5 + 0.5 * zh.var(0), rtol=1e-4, atol=1e-5)


def test_lstm_with_shared_bn_in_training_mode_matches_a_manual_loop():
    """The scanned layer against the textbook loop: batch statistics at every step on both paths and
    the cell, β for the hidden path at t = 0, and the running averages updated step by step in order."""
    m, p = build("lstm", norm="batch", bn_momentum=0.5)
    x = np.random.default_rng(4).normal(size=(16, 4, 3, 1)).astype(np.float32)
    logits = m(jnp.asarray(x), train=True)
    L = p["hidden"][0]
    wx, wh, b = (np.asarray(v, np.float64) for v in (L["x"]["kernel"], L["h"]["kernel"], L["bias"]))
    running = {k: [np.zeros(w), np.ones(w)] for k, w in (("norm_x", 20), ("norm_h", 20), ("norm_c", 5))}

    def bn(z, key):
        mean, var = z.mean(0), z.var(0)
        running[key] = [0.5 * running[key][0] + 0.5 * mean, 0.5 * running[key][1] + 0.5 * var]
        gamma, beta = (np.asarray(L[key]["norm"][k], np.float64) for k in ("scale", "bias"))
        return (z - mean) / np.sqrt(var + 1e-5) * gamma + beta

    h = c = np.zeros((16, 5))
    for t in range(4):
        hidden = np.asarray(L["norm_h"]["norm"]["bias"], np.float64) if t == 0 else bn(h @ wh, "norm_h")
        i, f, g, o = np.split(bn(x[:, t].reshape(16, 3) @ wx, "norm_x") + hidden + b, 4, axis=-1)
        c = sigmoid(f) * c + sigmoid(i) * np.tanh(g)
        h = sigmoid(o) * np.tanh(bn(c, "norm_c"))
    np.testing.assert_allclose(logits, h @ np.asarray(p["head"]["kernel"]) + np.asarray(p["head"]["bias"]), rtol=1e-4, atol=1e-5)
    stats = nnx.to_pure_dict(nnx.state(m, nnx.BatchStat))["hidden"][0]
    for key, (mean, var) in running.items():
        np.testing.assert_allclose(stats[key]["norm"]["mean"], mean, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stats[key]["norm"]["var"], var, rtol=1e-4, atol=1e-5)


def test_lstm_normalises_its_cell_whenever_a_norm_is_set():
    m, _ = build("lstm", norm="layer", rnn_norm_paths="input")
    params = nnx.to_pure_dict(nnx.state(m, nnx.Param))["hidden"][0]
    assert params["norm_c"]["norm"]["scale"].shape == (5,)  # the cell is normalised ...
    assert "norm_h" not in params and params["norm_x"]["norm"]["scale"].shape == (20,)  # ... though only the input path is


def test_per_step_batchnorm_keeps_statistics_per_time_step():
    m, p = build("rnn", norm="batch_per_step", bn_momentum=0.0, rnn_norm_paths="input")
    x = jnp.asarray(np.random.default_rng(2).normal(size=(16, 4, 3, 1)) * 2 + 1, jnp.float32)
    m(x, train=True)
    stats = nnx.to_pure_dict(nnx.state(m, nnx.BatchStat))["hidden"][0]
    assert "norm_h" not in stats  # the hidden path is not normalised
    wx = np.asarray(p["hidden"][0]["x"]["kernel"], np.float64)
    for t in range(4):  # momentum 0: the running values are this batch's statistics at step t
        z = np.asarray(x[:, t], np.float64).reshape(16, 3) @ wx
        np.testing.assert_allclose(stats["norm_x"]["mean"][t], z.mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(stats["norm_x"]["var"][t], z.var(0), rtol=1e-4, atol=1e-5)
    shared, _ = build("rnn", norm="batch")
    assert nnx.to_pure_dict(nnx.state(shared, nnx.BatchStat))["hidden"][0]["norm_x"]["norm"]["mean"].shape == (5,)


def test_longer_sequences_use_the_last_trained_steps_statistics():
    bn = PerStepBatchNorm(2, 3, ModelConfig())
    bn.mean.value = jnp.array([[0.0, 0.0], [1.0, 1.0], [5.0, -5.0]])
    x = jnp.ones((4, 2))
    np.testing.assert_allclose(bn(x, t=7, train=False), bn(x, t=2, train=False))
    np.testing.assert_allclose(bn(x, t=2, train=False)[0], (1 - np.array([5.0, -5.0])) / np.sqrt(1 + 1e-5), rtol=1e-6)
    m, _ = build("lstm", norm="batch_per_step")
    longer = jnp.ones((3, 9, 3, 1))  # trained length is 4 rows; 9 rows still evaluate
    assert m(longer, train=False).shape == (3, 10)


def test_gamma_init_for_cooijmans():
    m, p = build("lstm", norm="batch_per_step", norm_gamma_init=0.1)
    np.testing.assert_allclose(p["hidden"][0]["norm_h"]["scale"], 0.1)


@pytest.mark.parametrize(
    "overrides,words",
    [
        (["model.name=rnn", "model.norm=whiten"], ["model.norm", "batch_per_step"]),
        (["model.name=mlp", "model.norm=batch_per_step"], ["model.norm", "ghost_batch"]),
        (["model.name=rnn", "diagnostics.ics.enabled=true"], ["diagnostics.ics"]),
        (["model.name=lstm", "model.rnn_norm_paths=gates"], ["model.rnn_norm_paths"]),
    ],
)
def test_recurrent_config_errors(tmp_path, capsys, overrides, words):
    assert main(["run", "/dev/null", *overrides, "train.steps=3", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert all(w in err for w in words), err


def test_recurrent_models_train_from_config(tmp_path):
    counts, out = run_plan(
        [
            "data.name=synthetic",
            "data.synthetic_shape=[4,4,1]",
            "data.synthetic_size=600",
            "model.width=8",
            "model.activation=tanh",
            "train.steps=200",
            "train.log_every=100",
            "optim.name=adam",
            "optim.lr=0.02",
            "sweep.zip.model.name=[rnn,lstm]",
            "sweep.zip.model.norm=[layer,batch_per_step]",
        ],
        tmp_path / "o",
    )
    assert counts == {"done": 2}
    for rid in ("name-rnn_norm-layer", "name-lstm_norm-batch-per-step"):
        rows = RunDir(out / "runs" / rid).metrics()
        assert rows[-1]["test_loss"] < 0.7 * rows[0]["test_loss"], rid


@pytest.mark.parametrize("norm", ["batch_per_step", "batch"])
def test_population_statistics_of_recurrent_bn(norm):
    """Cooijmans et al. evaluate with population statistics: per time step for per-step BN; over
    every time step for BN shared over time. Checked on the input path, z_t = W_x x_t."""
    from bnlab.config.schema import Config, TrainConfig
    from bnlab.data.dataset import load
    from bnlab.train.evaluation import Evaluator
    from bnlab.train.program import TrainProgram

    cfg = Config(
        model=ModelConfig(name="rnn", depth=1, width=5, norm=norm, activation="tanh", rnn_norm_paths="input"),
        train=TrainConfig(batch_size=50, steps=3),
    )
    t = TrainProgram(cfg, load(cfg.data))
    state, _ = t.train_chunk(t.init(0), 3)
    pop = Evaluator(t.model, cfg, t.dataset, t.x_train, 50).population_stats(state)["hidden"][0]["norm_x"]
    wx = np.asarray(state.params["hidden"][0]["x"]["kernel"], np.float64)
    nb = len(t.dataset.y_train) // 50
    z = (np.asarray(t.dataset.x_train[: nb * 50], np.float64).reshape(nb, 50, 8, 8) @ wx).transpose(2, 0, 1, 3)  # (T, batches, 50, F)
    means, variances = z.mean(2).mean(1), 50 / 49 * z.var(2).mean(1)  # per time step: E over batches
    if norm == "batch":
        np.testing.assert_allclose(pop["norm"]["mean"], means.mean(0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(pop["norm"]["var"], variances.mean(0), rtol=1e-4, atol=1e-5)
    else:
        np.testing.assert_allclose(pop["mean"], means, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(pop["var"], variances, rtol=1e-4, atol=1e-5)


def test_recurrent_runs_evaluate_with_population_statistics(tmp_path):
    shape = ["data.name=synthetic", "data.synthetic_shape=[4,4,1]", "data.synthetic_size=300"]
    counts, out = run_plan(shape + ["model.name=rnn", "model.width=8", "model.norm=batch_per_step", "train.steps=20", "train.log_every=10",
                                    "train.eval_bn_stats=population"], tmp_path / "o")  # fmt: skip
    assert counts == {"done": 1}
    assert {r["eval_bn_stats"] for r in RunDir(out / "runs" / "run").metrics() if "test_acc" in r} == {"population"}


def test_recurrent_gain_scales_the_orthogonal_kernel():
    _, p = build("rnn", recurrent_gain=2.5)
    wh = np.asarray(p["hidden"][0]["h"]["kernel"], np.float64)
    np.testing.assert_allclose(np.linalg.svd(wh, compute_uv=False), 2.5, rtol=1e-5)


def test_runs_are_tested_on_longer_sequences(tmp_path):
    """data.eval_lengths: every evaluation also reads the test examples at other lengths, with running
    and population statistics; per-step BN beyond the trained length uses its last step's."""
    counts, out = run_plan(
        ["data.name=evidence", "data.synthetic_shape=[4,3,1]", "data.synthetic_size=300", "data.eval_lengths=[2,9]", "model.name=lstm",
         "model.width=8", "model.norm=batch_per_step", "train.steps=20", "train.log_every=10", "train.eval_bn_stats=both"],
        tmp_path / "o",
    )  # fmt: skip
    assert counts == {"done": 1}
    last = [r for r in RunDir(out / "runs" / "run").metrics() if "test_acc" in r][-1]
    for key in ("test_len2_acc", "test_len9_acc", "population/test_len9_acc", "test_len9_loss"):
        assert np.isfinite(last[key]), key
