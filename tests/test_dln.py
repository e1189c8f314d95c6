"""Deep linear network and the regression task."""

import jax.numpy as jnp
import numpy as np
import pytest
from conftest import run_plan
from flax import nnx

from bnlab.cli import main
from bnlab.config.schema import Config, DataConfig, ModelConfig, TrainConfig
from bnlab.data.dataset import load
from bnlab.nn.models import build
from bnlab.runner.results import RunDir
from bnlab.train.program import TrainProgram


def test_linear_regression_targets_are_a_linear_map():
    ds = load(DataConfig(name="linear_regression", synthetic_size=300, synthetic_shape=[6, 1, 1], regression_outputs=3, standardize="none"))
    assert ds.task == "regression" and ds.num_classes == 3 and ds.y_train.shape[1] == 3
    x = np.concatenate([ds.x_train, ds.x_val, ds.x_test]).reshape(-1, 6)
    y = np.concatenate([ds.y_train, ds.y_val, ds.y_test])
    A, *_ = np.linalg.lstsq(x, y, rcond=None)
    np.testing.assert_allclose(x @ A, y, atol=1e-4)  # exactly linear, no noise


def test_dln_is_a_product_of_matrices_and_loss_is_squared_error():
    cfg = ModelConfig(name="dln", depth=4, width=5, norm="none")
    m = build(cfg, (6, 1, 1), 3, seed=0)
    p = nnx.to_pure_dict(nnx.state(m, nnx.Param))
    assert all(set(p["hidden"][i]["layer"]) == {"kernel"} for i in range(4)) and set(p["head"]) == {"kernel"}
    x = jnp.asarray(np.random.default_rng(0).normal(size=(7, 6, 1, 1)), jnp.float32)
    W = np.eye(6)
    for i in range(4):
        W = W @ np.asarray(p["hidden"][i]["layer"]["kernel"])
    W = W @ np.asarray(p["head"]["kernel"])
    np.testing.assert_allclose(m(x, train=False), np.asarray(x).reshape(7, 6) @ W, rtol=1e-4, atol=1e-5)
    full = Config(
        data=DataConfig(name="linear_regression", synthetic_size=200, synthetic_shape=[6, 1, 1], regression_outputs=3),
        model=cfg,
        train=TrainConfig(full_batch=True, steps=3),
    )
    t = TrainProgram(full, load(full.data))
    assert t.batch_size == t.num_train  # full batch
    state = t.init(0)
    x, y = jnp.asarray(t.dataset.x_train), jnp.asarray(t.dataset.y_train)
    pred = np.asarray(t.model.apply(state.params, state.batch_stats, x, train=True).logits)
    loss = float(t.model.loss(state.params, state.batch_stats, x, y)[0])
    assert loss == pytest.approx(np.mean(np.sum((pred - np.asarray(y)) ** 2, 1)), rel=1e-5)


def test_dln_with_bn_trains_full_batch(tmp_path):
    counts, out = run_plan(
        [
            "data.name=linear_regression",
            "data.standardize=none",
            "data.synthetic_shape=[8,1,1]",
            "data.synthetic_size=400",
            "model.name=dln",
            "model.activation=linear",
            "model.depth=4",
            "model.width=8",
            "train.full_batch=true",
            "train.steps=200",
            "train.log_every=100",
            "optim.lr=0.02",
            "sweep.grid.model.norm=[none,batch]",
        ],
        tmp_path / "o",
    )
    assert counts == {"done": 2}
    for rid in ("norm-none", "norm-batch"):
        rows = RunDir(out / "runs" / rid).metrics()
        assert "test_acc" not in rows[-1] and rows[-1]["train_loss"] < 0.5 * rows[1]["train_loss"]


def test_regression_data_refuses_the_cnn(tmp_path, capsys):
    assert main(["run", "/dev/null", "data.name=linear_regression", "model.name=cnn", "--out", str(tmp_path / "o"), "train.steps=3"]) == 2
    assert "regression" in capsys.readouterr().err


def test_the_regression_task_is_exactly_linear_so_standardising_is_refused(tmp_path, capsys):
    """Santurkar et al. App. A.1 fit ||W_k...W_1 x - A x||^2 with the same x: a bias-free linear map
    reaches zero loss. Standardised inputs make the target affine in them: a loss floor above zero."""
    raw = load(DataConfig(name="linear_regression", synthetic_size=300, synthetic_shape=[6, 1, 1], regression_outputs=3, standardize="none"))
    scaled = load(DataConfig(name="linear_regression", synthetic_size=300, synthetic_shape=[6, 1, 1], regression_outputs=3, standardize="feature"))

    def floor(ds):
        x = ds.x_train.reshape(len(ds.y_train), -1).astype(np.float64)
        A, *_ = np.linalg.lstsq(x, ds.y_train, rcond=None)
        return np.mean(np.sum((x @ A - ds.y_train) ** 2, 1))

    assert floor(raw) < 1e-10 and floor(scaled) > 1e-4
    assert main(["run", "/dev/null", "data.name=linear_regression", "model.name=dln", "model.activation=linear", "--out", str(tmp_path / "o")]) == 2
    assert "data.standardize" in capsys.readouterr().err and not (tmp_path / "o").exists()
