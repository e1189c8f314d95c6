"""Training: determinism, chunking, divergence, checkpoint resume, optimiser pieces."""

import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from conftest import run_plan

from bnlab.config.schema import Config, OptimConfig
from bnlab.data.dataset import load
from bnlab.runner.results import RunDir
from bnlab.train import optim
from bnlab.train.program import TrainProgram
from bnlab.train.state import layer_norms, squared_norms


def run(tmp_path, overrides, name="out"):
    """The results folder of a run trained in this process."""
    return run_plan(overrides, tmp_path / name)[1]


def metrics(out, run_id="run"):
    return RunDir(out / "runs" / run_id).metrics()


def strip_time(rows):
    return [{k: v for k, v in r.items() if k not in ("wall_time", "steps_per_sec")} for r in rows]


def test_same_config_and_seed_give_same_numbers(tmp_path, tiny_overrides):
    a = metrics(run(tmp_path, tiny_overrides + ["model.dropout=0.2"], "a"))
    b = metrics(run(tmp_path, tiny_overrides + ["model.dropout=0.2"], "b"))
    assert strip_time(a) == strip_time(b)
    c = metrics(run(tmp_path, tiny_overrides + ["model.dropout=0.2", "seed=1"], "c"))
    assert strip_time(a)[-1]["train_loss"] != strip_time(c)[-1]["train_loss"]


def test_chunk_length_does_not_change_training(tmp_path, tiny_overrides):
    """log_every only changes where the host looks, not the steps taken (data order, dropout keys)."""
    a = metrics(run(tmp_path, tiny_overrides + ["train.log_every=40", "model.dropout=0.1"], "a"))
    b = metrics(run(tmp_path, tiny_overrides + ["train.log_every=8", "model.dropout=0.1"], "b"))
    assert a[-1]["step"] == b[-1]["step"] == 40
    assert a[-1]["test_loss"] == pytest.approx(b[-1]["test_loss"], rel=1e-5)
    assert a[-1]["param_norm/head.kernel"] == pytest.approx(b[-1]["param_norm/head.kernel"], rel=1e-5)


def test_epochs_cover_the_data_once_per_epoch():
    cfg = Config()
    cfg.train.steps, cfg.train.epochs, cfg.train.batch_size = None, 2, 100
    cfg.model.width, cfg.model.depth = 8, 1
    t = TrainProgram(cfg, load(cfg.data))
    assert t.total_steps == 2 * (1294 // 100)
    state = t.init(0)
    rows = {x.tobytes() for x in np.asarray(t.dataset.x_train)}
    for epoch in range(2):  # the batches the steps of one epoch train on are disjoint training examples
        seen = [x.tobytes() for s in range(epoch * 12, (epoch + 1) * 12) for x in np.asarray(t.batch_at(state._replace(step=jnp.int32(s)))[0])]
        assert len(set(seen)) == len(seen) == 1200 and set(seen) <= rows
    first = np.asarray(t.batch_at(state)[0])
    assert not np.array_equal(first, np.asarray(t.batch_at(state._replace(step=jnp.int32(12)))[0]))  # reshuffled per epoch


def test_divergence_is_recorded_and_sweep_goes_on(tmp_path, tiny_overrides):
    p = run(tmp_path, tiny_overrides + ["model.norm=none", "model.init_scale=30", "model.activation=relu", "sweep.grid.optim.lr=[1e6,0.01]"])
    bad = RunDir(p / "runs" / "lr-1000000.0").status()
    good = RunDir(p / "runs" / "lr-0.01").status()
    assert bad["status"] == "diverged" and 0 <= bad["diverged_step"] < 40
    assert good["status"] == "done"
    rows = metrics(p, "lr-1000000.0")
    assert rows[-1]["train_loss"] is None and rows[-1]["step"] == bad["diverged_step"]
    summary = (p / "summary.csv").read_text()
    assert "diverged" in summary and "done" in summary


def test_a_chunk_across_epochs_takes_the_steps_of_a_manual_loop():
    """A chunk that starts mid-epoch and crosses two epoch boundaries trains step by step on
    batch_at's batches with step_rng's keys, and its summary is the mean of each step's metrics."""
    cfg = Config()
    cfg.train.steps, cfg.train.batch_size, cfg.model.width, cfg.model.depth, cfg.model.dropout = 100, 100, 8, 2, 0.1
    t = TrainProgram(cfg, load(cfg.data))
    assert t.steps_per_epoch == 12
    state, _ = t.train_chunk(t.init(0), 5)
    st = jax.tree.map(jnp.copy, state)
    rows = []
    for _ in range(22):  # steps 5..26: the rest of epoch 0, all of epoch 1, three of epoch 2
        x, y = t.batch_at(st)
        rng = t.step_rng(st, st.step)
        loss_fn = lambda p, s, x, y, rng: t.model.loss(p, s, x, y, bn_mode="batch", rng=rng)
        (loss, (logits, stats)), g = jax.value_and_grad(loss_fn, has_aux=True)(st.params, st.batch_stats, x, y, rng)
        updates, opt_state = t.tx.update(g, st.opt_state, st.params)
        norms = {k: float(v) for k, v in layer_norms(g).items()}
        rows.append(
            {"train_loss": float(loss), "grad_norm": float(optax.global_norm(g)), "train_acc": float(jnp.mean(jnp.argmax(logits, -1) == y)), **norms}
        )
        st = st._replace(step=st.step + 1, params=optax.apply_updates(st.params, updates), batch_stats=stats, opt_state=opt_state)
    after, summary = t.train_chunk(state, 22)
    assert int(after.step) == 27
    for a, b in zip(jax.tree.leaves(after.params), jax.tree.leaves(st.params)):
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=1e-6)
    for k in ("train_loss", "grad_norm", "train_acc"):
        assert float(summary[k]) == pytest.approx(np.mean([r[k] for r in rows]), rel=1e-5)
    assert set(summary["grad_norms"]) == set(norms)
    for k, v in summary["grad_norms"].items():
        assert float(v) == pytest.approx(np.mean([r[k] for r in rows]), rel=1e-5)
    assert int(summary["first_nonfinite"]) == -1


def test_checkpoint_resume_gives_same_final_numbers(tmp_path, tiny_overrides, monkeypatch):
    overrides = tiny_overrides + ["train.steps=60", "train.checkpoint_every=20", "model.dropout=0.1"]
    reference = metrics(run(tmp_path, overrides, "ref"))

    class Killed(BaseException):
        """Stands in for SIGKILL: no `except Exception` handler sees it."""

    original = RunDir.append_metrics
    calls = {"n": 0}

    def dying_append(self, row):
        original(self, row)
        calls["n"] += 1
        if row.get("step") == 40:
            raise Killed

    monkeypatch.setattr(RunDir, "append_metrics", dying_append)
    with pytest.raises(Killed):
        run(tmp_path, overrides, "resumed")
    monkeypatch.setattr(RunDir, "append_metrics", original)
    rd = RunDir(tmp_path / "resumed" / "runs" / "run")
    assert rd.status()["status"] == "running"
    assert [r["step"] for r in rd.metrics()] == [0, 20, 40]  # step 40 was logged, but its checkpoint not saved
    run(tmp_path, overrides, "resumed")
    resumed = rd.metrics()
    assert [r["step"] for r in resumed] == [0, 20, 40, 60]
    assert strip_time(resumed) == strip_time(reference)
    assert rd.status()["status"] == "done"


def test_gradient_norms_are_logged_before_clipping(tmp_path, tiny_overrides):
    rows = metrics(run(tmp_path, tiny_overrides + ["optim.global_clipnorm=1e-3"]))
    assert rows[-1]["grad_norm"] > 1e-2
    names = [k for k in rows[-1] if k.startswith("grad_norm/")]
    assert "grad_norm/hidden.0.norm.gamma" in names and "grad_norm/hidden.0.layer.kernel" in names
    per_layer = np.sqrt(sum(rows[1][k] ** 2 for k in names))
    assert per_layer == pytest.approx(rows[1]["grad_norm"], rel=0.3)  # means of norms, so not exact


def test_layer_norms_match_numpy():
    tree = {"a": {"kernel": jnp.arange(6.0).reshape(2, 3)}, "b": {"norm": {"scale": jnp.ones(4)}}}
    out = layer_norms(tree)
    assert out["a.kernel"] == pytest.approx(np.linalg.norm(np.arange(6.0)))
    assert out["b.norm.gamma"] == pytest.approx(2.0)


def test_layer_and_global_norms_of_every_leaf_shape_match_numpy():
    rng = np.random.default_rng(0)
    shapes = {"scalar": (), "bias": (100,), "kernel": (784, 100), "conv": (3, 3, 16, 32)}
    tree = {k: jnp.asarray(rng.normal(size=s) * 10 ** rng.uniform(-3, 3), jnp.float32) for k, s in shapes.items()}
    out = layer_norms(tree)
    for k, v in tree.items():
        assert float(out[k]) == pytest.approx(np.linalg.norm(np.asarray(v, np.float64)), rel=1e-6)
    assert float(jnp.sqrt(jnp.sum(squared_norms(tree)))) == pytest.approx(float(optax.global_norm(tree)), rel=1e-6)


def _grads():
    return {"l": {"kernel": jnp.array([3.0, -4.0]), "bias": jnp.array([12.0])}}


def test_clipping_with_keras_semantics():
    cfg = OptimConfig(name="sgd", lr=1.0, clipvalue=2.0)
    tx, _ = optim.build(cfg, 10, 32)
    params = jax.tree.map(jnp.zeros_like, _grads())
    upd, _ = tx.update(_grads(), tx.init(params), params)
    np.testing.assert_allclose(upd["l"]["kernel"], [-2.0, 2.0])
    cfg = OptimConfig(name="sgd", lr=1.0, global_clipnorm=1.3)
    tx, _ = optim.build(cfg, 10, 32)
    upd, _ = tx.update(_grads(), tx.init(params), params)
    np.testing.assert_allclose(optax.global_norm(upd), 1.3, rtol=1e-6)  # |g| = 13 -> 1.3
    # clipnorm: each variable on its own; kernel |(3,-4)| = 5 -> 2, bias |12| -> 2
    cfg = OptimConfig(name="sgd", lr=1.0, clipnorm=2.0)
    tx, _ = optim.build(cfg, 10, 32)
    upd, _ = tx.update(_grads(), tx.init(params), params)
    np.testing.assert_allclose(upd["l"]["kernel"], [-1.2, 1.6], rtol=1e-6)
    np.testing.assert_allclose(upd["l"]["bias"], [-2.0], rtol=1e-6)
    # a gradient already below the threshold is untouched
    tx, _ = optim.build(OptimConfig(name="sgd", lr=1.0, clipnorm=100.0), 10, 32)
    upd, _ = tx.update(_grads(), tx.init(params), params)
    np.testing.assert_allclose(upd["l"]["kernel"], [-3.0, 4.0], rtol=1e-6)
    # norm clipping happens before value clipping (Keras order)
    tx, _ = optim.build(OptimConfig(name="sgd", lr=1.0, clipnorm=2.0, clipvalue=1.5), 10, 32)
    upd, _ = tx.update(_grads(), tx.init(params), params)
    np.testing.assert_allclose(upd["l"]["kernel"], [-1.2, 1.5], rtol=1e-6)


def test_weight_decay_hits_kernels_only():
    cfg = OptimConfig(name="sgd", lr=1.0, weight_decay=0.5)
    tx, _ = optim.build(cfg, 10, 32)
    params = {"l": {"kernel": jnp.array([2.0, 2.0]), "bias": jnp.array([2.0])}}
    zeros = jax.tree.map(jnp.zeros_like, params)
    upd, _ = tx.update(zeros, tx.init(params), params)
    np.testing.assert_allclose(upd["l"]["kernel"], [-1.0, -1.0])
    np.testing.assert_allclose(upd["l"]["bias"], [0.0])


@pytest.mark.parametrize(
    "kw,checks",
    [
        (dict(schedule="constant"), {0: 1.0, 99: 1.0}),
        (dict(schedule="cosine"), {0: 1.0, 50: 0.5, 100: 0.0}),
        (dict(schedule="linear", final_lr_fraction=0.1), {0: 1.0, 100: 0.1}),
        (dict(schedule="step", decay_boundaries=[0.5], decay_factor=0.1), {49: 1.0, 51: 0.1}),
        (dict(schedule="constant", warmup_steps=10), {0: 0.0, 5: 0.5, 10: 1.0, 50: 1.0}),
    ],
)
def test_schedules(kw, checks):
    sched = optim.schedule(OptimConfig(lr=1.0, **kw), 100, 32)
    for step, value in checks.items():
        assert float(sched(step)) == pytest.approx(value, abs=1e-6), step


@pytest.mark.parametrize("kind", ["constant", "cosine"])
def test_linear_scaling_rule_sets_the_peak_lr_from_the_batch(kind):
    """optim.lr_reference_batch: lr x batch / reference, the whole schedule scaled (Goyal et al. 2017)."""
    plain = optim.schedule(OptimConfig(lr=0.25, schedule=kind), 100, 8)
    scaled = optim.schedule(OptimConfig(lr=1.0, schedule=kind, lr_reference_batch=32), 100, 8)
    for step in (0, 30, 99):
        assert float(scaled(step)) == pytest.approx(float(plain(step)), abs=1e-7)


def test_a_run_with_the_linear_scaling_rule_trains_as_one_given_the_scaled_lr(tmp_path):
    common = ["train.steps=20", "train.log_every=10", "train.batch_size=8", "model.norm=batch"]
    scaled = metrics(run(tmp_path, common + ["optim.lr=0.4", "optim.lr_reference_batch=32"], "scaled"))
    plain = metrics(run(tmp_path, common + ["optim.lr=0.1"], "plain"))
    assert strip_time(scaled) == strip_time(plain)


def test_cnn_trains_from_config(tmp_path):
    p = run(
        tmp_path,
        [
            "model.name=cnn",
            "model.width=4",
            "model.depth=2",
            "model.norm=batch",
            "model.activation=relu",
            "train.steps=30",
            "train.log_every=15",
            "train.batch_size=32",
            "optim.lr=0.2",
        ],
    )
    rows = metrics(p)
    assert rows[-1]["step"] == 30 and rows[-1]["test_loss"] < 0.6 * rows[0]["test_loss"] and rows[-1]["test_acc"] > 0.5
    assert "grad_norm/hidden.1.layer.kernel" in rows[-1] and "param_norm/hidden.0.norm.gamma" in rows[-1]


def _library_dots(hlo: str) -> int:
    """Dots that XLA:CPU hands to YNNPACK (inside a kCustom fusion's computation) in compiled HLO."""
    called = set(re.findall(r"kind=kCustom, calls=(%[\w.-]+)", hlo))
    bodies = {m.group(1): m.group(2) for m in re.finditer(r"^(%[\w.-]+) .*?\{\n(.*?)\n\}", hlo, re.S | re.M)}
    return sum(bodies[c].count(" dot(") for c in called if c in bodies)


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="XLA:CPU's matmul libraries")
def test_conv_nets_run_with_eigen_matmuls_and_dense_nets_with_ynnpack():
    """The model's compiler options reach its programs, the training chunk and (through
    ModelFunctions.jit, as evaluation and the probes) a gradient: the CNN's matmuls leave YNNPACK
    (Eigen runs them faster here), the MLP's stay in it."""
    dots = {}
    for name in ("cnn", "mlp"):
        cfg = Config()
        cfg.model.name, cfg.model.width, cfg.model.depth, cfg.train.batch_size, cfg.train.steps = name, 4, 1, 32, 10
        t = TrainProgram(cfg, load(cfg.data))
        state = t.init(0)
        t.compile(state)
        x, y = t.batch_at(state)
        grad = t.model.jit(jax.grad(lambda p, s, x, y, t=t: t.model.loss(p, s, x, y)[0]))
        dots[name] = (_library_dots(t.compiled.as_text()), _library_dots(grad.lower(state.params, state.batch_stats, x, y).compile().as_text()))
    assert dots["cnn"] == (0, 0) and min(dots["mlp"]) > 0, dots


def test_a_failing_run_is_recorded_and_the_sweep_goes_on(tmp_path, tiny_overrides, monkeypatch):
    original = TrainProgram.train_chunk

    def flaky(self, state, num_steps, numbers):
        if abs(float(numbers["optim.lr"]) - 0.2) < 1e-6:  # runs share the program; the lr is the run's
            raise RuntimeError("simulated failure")
        return original(self, state, num_steps, numbers)

    monkeypatch.setattr(TrainProgram, "train_chunk", flaky)
    overrides = tiny_overrides + ["sweep.grid.optim.lr=[0.2,0.1]"]
    counts, out = run_plan(overrides, tmp_path / "o")
    assert counts == {"failed": 1, "done": 1}
    status = RunDir(out / "runs" / "lr-0.2").status()
    assert status["status"] == "failed" and "simulated failure" in status["error"]
    monkeypatch.setattr(TrainProgram, "train_chunk", original)
    assert run_plan(overrides, out)[0] == {"done": 2}  # failed runs are retried on rerun


def test_the_summary_table_rereads_only_the_run_that_changed(tmp_path):
    """A sweep rewrites summary.csv as its runs end; refreshing one run's row gives the same table
    as reading every run's folder again, and the other rows are not read again."""
    from conftest import run_plan

    from bnlab.runner.plan import plan
    from bnlab.runner.results import RunDir, Summary, write_summary

    overrides = ["model.width=8", "model.depth=1", "train.steps=10", "train.log_every=5", "sweep.grid.seed=[0,1,2]"]
    _, out = run_plan(overrides, tmp_path / "o")
    p = plan(None, overrides, out, check_busy=False)
    full = write_summary(out, p.runs).read_bytes()
    summary = Summary(out, p.runs)
    reads = []
    original = RunDir.status
    RunDir.status = lambda self: reads.append(self.run_id) or original(self)
    try:
        summary.refresh(p.runs[1].run_id)
    finally:
        RunDir.status = original
    assert reads == [p.runs[1].run_id]
    assert summary.write().read_bytes() == full
