"""Diagnostics against independent computations; they never change the training state."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import run_plan

from bnlab.config.schema import Config, ModelConfig, OptimConfig, Schedule, SurfaceConfig, TrainConfig
from bnlab.data.dataset import load
from bnlab.measure.diagnostics import Activations, InternalCovariateShift, Landscape, schedule_steps
from bnlab.measure.surface import filter_normalized_direction, loss_surface
from bnlab.report.plot import plot_all
from bnlab.runner.results import RunDir
from bnlab.train.program import TrainProgram


def make(norm="batch", activation="sigmoid", opt="momentum", dropout=0.0, **diag):
    """A config, its program and the state after 7 steps (diagnostics never change a state, so tests may share it)."""
    cfg = Config()
    cfg.model = ModelConfig(depth=3, width=12, norm=norm, activation=activation, dropout=dropout)
    cfg.optim = OptimConfig(name=opt, lr=0.3)
    cfg.train = TrainConfig(batch_size=40, steps=30)
    for section, values in diag.items():
        for k, v in values.items():
            setattr(getattr(cfg.diagnostics, section), k, v)
    t = TrainProgram(cfg, load(cfg.data))
    state, _ = t.train_chunk(t.init(0), 7)
    return cfg, t, state


def snapshot(state):
    return jax.tree.map(lambda a: np.array(a, copy=True), state)


def assert_same(a, b):
    jax.tree.map(np.testing.assert_array_equal, a, b)


@pytest.mark.parametrize("bn_mode", ["batch", "running"])
def test_landscape_matches_direct_re_evaluation(bn_mode):
    cfg, t, state = make(landscape={"bn_mode": bn_mode, "eta_multipliers": [0.5, 1.0, 4.0]})
    before = snapshot(state)
    out = Landscape(cfg, t).measure(state)
    assert_same(before, snapshot(state))
    x, y = t.batch_at(state)
    f = lambda p: t.model.loss(p, state.batch_stats, x, y, bn_mode=bn_mode)[0]
    g = jax.grad(f)(state.params)
    gnorm = float(optax.global_norm(g))
    losses, diffs, ratios = [], [], []
    for m in (0.5, 1.0, 4.0):
        eta = 0.3 * m
        moved = jax.tree.map(lambda w, d, eta=eta: w - eta * d, state.params, g)
        losses.append(float(f(moved)))
        d = float(optax.global_norm(jax.tree.map(jnp.subtract, g, jax.grad(f)(moved))))
        diffs.append(d)
        ratios.append(d / (eta * gnorm))
    assert out["landscape/loss_min"] == pytest.approx(min(losses), rel=1e-4)
    assert out["landscape/loss_max"] == pytest.approx(max(losses), rel=1e-4)
    assert out["landscape/grad_pred_min"] == pytest.approx(min(diffs), rel=1e-3)
    assert out["landscape/grad_pred_max"] == pytest.approx(max(diffs), rel=1e-3)
    assert out["landscape/beta_smoothness"] == pytest.approx(max(ratios), rel=1e-3)
    assert out["landscape/bn_mode"] == bn_mode


def test_landscape_probes_the_batch_this_step_trains_on():
    """With plain SGD a step moves the weights by lr * g of its batch: the probe's g is that g."""
    cfg, t, state = make(opt="sgd")
    out = Landscape(cfg, t).measure(state)
    after, summary = t.train_chunk(jax.tree.map(jnp.copy, state), 1)
    moved = float(optax.global_norm(jax.tree.map(jnp.subtract, after.params, state.params)))
    assert out["landscape/grad_norm"] == pytest.approx(moved / cfg.optim.lr, rel=1e-4)
    assert out["landscape/loss"] == pytest.approx(float(summary["train_loss"]), rel=1e-5)


@pytest.mark.parametrize("opt,dropout", [("momentum", 0.0), ("adam", 0.2)])
def test_ics_matches_a_manual_layer_by_layer_update(opt, dropout):
    cfg, t, state = make(opt=opt, dropout=dropout)
    before = snapshot(state)
    out = InternalCovariateShift(cfg, t).measure(state)
    assert_same(before, snapshot(state))
    x, y = t.batch_at(state)
    # the real update of this step, computed the way training computes it
    train_loss = lambda p: t.model.loss(p, state.batch_stats, x, y, bn_mode="batch", rng=t.step_rng(state, state.step))[0]
    updates, _ = t.tx.update(jax.grad(train_loss)(state.params), state.opt_state, state.params)
    new = optax.apply_updates(state.params, updates)
    probe = lambda p: t.model.loss(p, state.batch_stats, x, y, bn_mode="batch")[0]
    G = jax.grad(probe)(state.params)
    for i, name in ((1, "hidden.1"), (2, "hidden.2"), (3, "head")):
        mixed = {"hidden": {j: (new if j < i else state.params)["hidden"][j] for j in range(3)}, "head": state.params["head"]}
        G2 = jax.grad(probe)(mixed)
        k1 = G["hidden"][i] if i < 3 else G["head"]
        k2 = G2["hidden"][i] if i < 3 else G2["head"]
        a, b = (
            np.asarray(k1["layer"]["kernel"] if i < 3 else k1["kernel"]).ravel(),
            np.asarray(k2["layer"]["kernel"] if i < 3 else k2["kernel"]).ravel(),
        )
        assert out[f"ics/{name}/l2"] == pytest.approx(np.linalg.norm(a - b), rel=1e-3, abs=1e-7)
        assert out[f"ics/{name}/cos"] == pytest.approx(a @ b / np.linalg.norm(a) / np.linalg.norm(b), abs=1e-5)
    assert "ics/hidden.0/l2" not in out  # nothing below the first layer moves


@pytest.mark.parametrize("bn_mode", ["batch", "running"])
def test_activation_percentiles_match_numpy(bn_mode):
    cfg, t, state = make(activations={"bn_mode": bn_mode, "units": 2, "batch_size": 100})
    before = snapshot(state)
    out = Activations(cfg, t).measure(state)
    assert_same(before, snapshot(state))
    x = t.dataset.x_val[:100]
    pres = t.model.apply(state.params, state.batch_stats, jnp.asarray(x), train=bn_mode == "batch", capture=True).pre_activations
    for i, pre in enumerate(pres):
        pre = np.asarray(pre)
        for u in range(2):
            for p in (15, 50, 85):
                assert out[f"activations/hidden.{i}/u{u}/p{p}"] == pytest.approx(np.percentile(pre[:, u], p), rel=1e-4, abs=1e-5)
        assert out[f"activations/hidden.{i}/std"] == pytest.approx(pre.std(), rel=1e-4)
        assert out[f"activations/hidden.{i}/saturated"] == pytest.approx(np.mean(np.abs(2 / (1 + np.exp(-pre)) - 1) > 0.98))
    if bn_mode == "batch":  # BN's output over the batch it normalises: mean beta, std gamma (both near 0, 1 here)
        assert abs(out["activations/hidden.0/mean"]) < 0.2


@pytest.mark.parametrize("norm", ["batch", "none"])
def test_pre_norm_activations_are_w_x_computed_by_hand(norm):
    """point=pre_norm measures each hidden layer's W x (plus its bias without a norm): for BN nets
    the scale BN's statistics cannot hold still; for a plain net the nonlinearity's input itself."""
    cfg, t, state = make(norm=norm, activations={"point": "pre_norm", "units": 2, "batch_size": 100})
    out = Activations(cfg, t).measure(state)
    p = jax.tree.map(lambda v: np.asarray(v, np.float64), state.params)
    h = np.asarray(t.dataset.x_val[:100], np.float64).reshape(100, -1)
    for i in range(3):
        layer = p["hidden"][i]["layer"]
        z = h @ layer["kernel"] + layer.get("bias", 0.0)
        assert out[f"activations/hidden.{i}/std"] == pytest.approx(z.std(), rel=1e-4)
        assert out[f"activations/hidden.{i}/u1/p85"] == pytest.approx(np.percentile(z[:, 1], 85), rel=1e-4, abs=1e-5)
        if norm == "batch":  # the training-mode BN of the probe batch, then the sigmoid
            scale, bias = p["hidden"][i]["norm"]["scale"], p["hidden"][i]["norm"]["bias"]
            z = (z - z.mean(0)) / np.sqrt(z.var(0) + 1e-5) * scale + bias
        h = 1 / (1 + np.exp(-z))
    default = Activations(make(norm=norm, activations={"units": 2, "batch_size": 100})[0], t).measure(state)
    same = default["activations/hidden.2/std"] == pytest.approx(out["activations/hidden.2/std"], rel=1e-5)
    assert same == (norm == "none")  # without a norm W x + b is the nonlinearity's input


def test_schedules():
    assert schedule_steps(Schedule(every=50), 120) == {0, 50, 100}
    assert schedule_steps(Schedule(at=[3, 7, 500]), 120) == {3, 7}
    steps = schedule_steps(Schedule(log_spaced=5), 10_000)
    assert steps == {0, 1, 10, 100, 1000, 10_000}


def test_diagnostics_do_not_change_training(tmp_path, tiny_overrides):
    """The same run with every diagnostic on gives the same training numbers as without."""
    on = [
        "diagnostics.activations.enabled=true",
        "diagnostics.landscape.enabled=true",
        "diagnostics.ics.enabled=true",
        "diagnostics.hessian.enabled=true",
        "diagnostics.hessian.iterations=5",
        "diagnostics.hessian.trace_probes=2",
        "diagnostics.activations.schedule.every=7",
        "diagnostics.landscape.schedule.every=5",
        "diagnostics.ics.schedule.at=[3,11]",
        "diagnostics.hessian.schedule.log_spaced=3",
        "model.dropout=0.1",
    ]
    for name, extra in (("off", []), ("on", on)):
        run_plan(tiny_overrides + ["model.dropout=0.1"] + extra[:-1], tmp_path / name)
    rows = {n: RunDir(tmp_path / n / "runs" / "run").metrics() for n in ("off", "on")}
    keep = lambda rs, prefixes: [{k: v for k, v in r.items() if k.startswith(prefixes)} for r in rs if "test_acc" in r]
    # weights and evaluations are identical; training means are averaged over differently cut chunks
    assert keep(rows["off"], ("test_", "val_", "param_norm")) == keep(rows["on"], ("test_", "val_", "param_norm"))
    for a, b in zip(keep(rows["off"], ("train_",)), keep(rows["on"], ("train_",))):
        assert a == pytest.approx(b, rel=1e-6)
    steps = [r["step"] for r in rows["on"]]
    assert {3, 5, 7, 11, 35}.issubset(steps) and steps == sorted(steps)
    ls = [r for r in rows["on"] if "landscape/loss_min" in r]
    assert [r["step"] for r in ls] == [0, 5, 10, 15, 20, 25, 30, 35, 40]
    assert all("hessian/eig_1" in r for r in rows["on"] if r["step"] in (0, 1, 40))


def test_filter_normalized_direction():
    cfg, t, state = make()
    d = filter_normalized_direction(jax.random.PRNGKey(0), state.params, "zero")
    w = state.params["hidden"][1]["layer"]["kernel"]
    np.testing.assert_allclose(jnp.linalg.norm(d["hidden"][1]["layer"]["kernel"], axis=0), jnp.linalg.norm(w, axis=0), rtol=1e-5)
    np.testing.assert_array_equal(d["hidden"][1]["norm"]["scale"], 0.0)
    np.testing.assert_array_equal(d["head"]["bias"], 0.0)
    d2 = filter_normalized_direction(jax.random.PRNGKey(0), state.params, "copy")  # Li et al.'s d.copy_(w) for 1-D parameters
    np.testing.assert_array_equal(d2["hidden"][1]["norm"]["scale"], state.params["hidden"][1]["norm"]["scale"])
    np.testing.assert_array_equal(d2["head"]["bias"], state.params["head"]["bias"])


def test_filter_normalized_direction_on_conv_kernels():
    """A Conv filter is one output channel over kh x kw x c_in (the audit's crash: a 4-D kernel)."""
    w = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 2, 4)) * jnp.arange(1.0, 5.0)
    d = filter_normalized_direction(jax.random.PRNGKey(0), {"c": {"kernel": w, "bias": jnp.ones(4)}}, "zero")
    np.testing.assert_allclose(
        np.linalg.norm(np.asarray(d["c"]["kernel"]).reshape(-1, 4), axis=0), np.linalg.norm(np.asarray(w).reshape(-1, 4), axis=0), rtol=1e-5
    )
    np.testing.assert_array_equal(d["c"]["bias"], 0.0)


@pytest.mark.parametrize("name,norm", [("cnn", "batch"), ("lstm", "batch_per_step"), ("rnn", "batch")])
def test_loss_surface_on_conv_and_recurrent_models(name, norm):
    cfg = Config()
    cfg.model = ModelConfig(name=name, depth=1, width=4, norm=norm, activation="tanh")
    cfg.train = TrainConfig(batch_size=32, steps=5)
    t = TrainProgram(cfg, load(cfg.data))
    state, _ = t.train_chunk(t.init(0), 5)
    s = loss_surface(t, state, SurfaceConfig(enabled=True, dims=1, points=5, batch_size=100))
    x, y = jnp.asarray(t.dataset.x_train[:100]), jnp.asarray(t.dataset.y_train[:100])
    assert s["loss"][2] == pytest.approx(float(t.model.loss(state.params, state.batch_stats, x, y, bn_mode="running")[0]), rel=1e-5)
    assert np.all(np.isfinite(s["loss"])) and s["loss"][0] != s["loss"][2]


@pytest.mark.parametrize("dims,bn_stats", [(1, "running"), (2, "batch")])
def test_loss_surface_centre_is_the_trained_loss(dims, bn_stats):
    cfg, t, state = make()
    before = snapshot(state)
    s = loss_surface(t, state, SurfaceConfig(enabled=True, dims=dims, points=5, batch_size=200, bn_stats=bn_stats))
    assert_same(before, snapshot(state))
    x, y = jnp.asarray(t.dataset.x_train[:200]), jnp.asarray(t.dataset.y_train[:200])
    centre = float(t.model.loss(state.params, state.batch_stats, x, y, bn_mode=bn_stats)[0])
    loss = np.asarray(s["loss"])
    assert loss.shape == (5,) * dims
    assert loss[(2,) * dims] == pytest.approx(centre, rel=1e-5)
    assert loss.min() <= centre + 1e-6 or dims == 2


@pytest.mark.slow
@pytest.mark.parametrize("dims", [1, 2])
def test_every_diagnostic_is_drawn(tmp_path, tiny_overrides, dims):
    on = [
        "diagnostics.activations.enabled=true",
        "diagnostics.landscape.enabled=true",
        "diagnostics.ics.enabled=true",
        "diagnostics.hessian.enabled=true",
        "diagnostics.hessian.density_probes=2",
        "diagnostics.hessian.density_steps=8",
        "diagnostics.hessian.iterations=6",
        "diagnostics.surface.enabled=true",
        f"diagnostics.surface.dims={dims}",
        "diagnostics.surface.points=5",
        "model.activation=tanh",
        "model.norm=batch",
        "sweep.grid.seed=[0,1]",
        "diagnostics.landscape.schedule.every=10",
        "diagnostics.ics.schedule.every=10",
        "diagnostics.activations.schedule.every=10",
    ]
    counts, out = run_plan(tiny_overrides + on, tmp_path / "o")
    assert counts == {"done": 2}
    names = {path.name for path in plot_all(out)}
    assert {"landscape.png", "activations.png", "saturation.png", "ics.png", "hessian.png", "spectral_density.png", "surface.png"} <= names
    assert (out / "runs" / "seed-0" / "surface.json").exists()
