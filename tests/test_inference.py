"""BN at inference: population statistics (Ioffe & Szegedy Algorithm 2) and folding BN into the layer below."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnlab import config as C
from bnlab import data, runner
from bnlab.results import RunDir
from bnlab.train import Trainer


def trained(norm="batch", name="mlp", steps=20, **model):
    cfg = C.Config()
    cfg.model = C.ModelConfig(name=name, depth=2, width=8, norm=norm, activation="sigmoid", **model)
    cfg.train = C.TrainConfig(batch_size=50, steps=steps)
    t = Trainer(cfg, data.load(cfg.data))
    state, _ = t.train_chunk(t.init(0), steps)
    return cfg, t, state


def test_population_statistics_match_a_manual_pass():
    cfg, t, state = trained()
    pop = t.population_stats(state)
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
    # the running averages are something else (momentum 0.99 after 20 steps)
    assert not np.allclose(pop["hidden"][0]["norm"]["mean"], state.batch_stats["hidden"][0]["norm"]["mean"], rtol=1e-2)


def test_population_statistics_for_conv_count_space():
    cfg, t, state = trained(name="cnn", steps=5)
    pop = t.population_stats(state)
    p = jax.tree.map(np.asarray, state.params)
    m = 50 * 8 * 8  # values behind each channel's statistic: batch x positions
    nb = len(t.dataset.y_train) // 50
    variances = []
    for b in range(nb):
        xb = t.dataset.x_train[b * 50 : (b + 1) * 50]
        z = np.asarray(jax.lax.conv_general_dilated(jnp.asarray(xb), jnp.asarray(p["hidden"][0]["layer"]["kernel"]), (1, 1), "SAME",
                                                    dimension_numbers=("NHWC", "HWIO", "NHWC")), np.float64)
        variances.append(z.var((0, 1, 2)))
    np.testing.assert_allclose(pop["hidden"][0]["norm"]["var"], m / (m - 1) * np.mean(variances, 0), rtol=1e-4)


def test_population_evaluation_is_recorded(tmp_path, tiny_overrides):
    p = runner.plan(None, tiny_overrides + ["train.eval_bn_stats=population"], tmp_path / "o")
    runner.execute(p)
    rows = RunDir(p.out_dir / "runs" / "run").metrics()
    assert {r["eval_bn_stats"] for r in rows if "test_acc" in r} == {"population"}


def test_population_is_refused_for_norms_without_mean_and_variance(tmp_path, capsys):
    from bnlab.cli import main

    assert main(["run", "/dev/null", "model.norm=whiten", "model.width=16", "train.steps=5", "train.eval_bn_stats=population", "--out", str(tmp_path / "o")]) == 2
    assert "population" in capsys.readouterr().err


@pytest.mark.parametrize("name,norm", [("mlp", "batch"), ("cnn", "batch"), ("mlp", "ghost_batch"), ("cnn", "noisy_batch"), ("mlp", "batch_renorm")])
@pytest.mark.parametrize("stats", ["running", "population"])
def test_folded_outputs_equal_evaluation_outputs(name, norm, stats):
    from bnlab.fold import fold, folded_model

    cfg, t, state = trained(norm=norm, name=name, steps=30, ghost_batch_size=10)
    bs = state.batch_stats if stats == "running" else t.population_stats(state)
    folded = folded_model(cfg.model, t.dataset.image_shape, t.dataset.num_classes, state.params, bs)
    _, folded_params = fold(cfg.model, state.params, bs)
    x = jnp.asarray(t.dataset.x_test)
    expected = np.asarray(t.apply(state.params, bs, x, train=False).logits, np.float64)
    got = np.asarray(folded(x, train=False), np.float64)
    rel = np.max(np.abs(got - expected)) / np.max(np.abs(expected))
    print(f"{name} {norm} {stats}: max relative difference {rel:.1e}")
    assert rel < 5e-6
    assert "norm" not in folded_params["hidden"][0]


def test_folding_refuses_other_norms():
    from bnlab.errors import ConfigError
    from bnlab.fold import fold

    cfg, t, state = trained(norm="layer")
    with pytest.raises(ConfigError, match="folded"):
        fold(cfg.model, state.params, state.batch_stats)
