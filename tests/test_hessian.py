"""Curvature routines against the dense Hessian of a tiny model (jnp.linalg.eigh)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bnlab.config.schema import Config, DataConfig, ModelConfig, TrainConfig
from bnlab.data.dataset import load
from bnlab.measure.diagnostics import Hessian
from bnlab.measure.hessian import density, flat_hvp, gradient_share, hutchinson_trace, slq, top_eigen_lanczos, top_eigen_power
from bnlab.train.program import TrainProgram

jax.config.update("jax_enable_x64", False)


def tiny_program(norm="batch", **diag):
    cfg = Config()
    cfg.data = DataConfig(name="synthetic", synthetic_size=300, synthetic_shape=[2, 2, 1], synthetic_classes=3)
    cfg.model = ModelConfig(depth=1, width=4, norm=norm, activation="tanh")
    cfg.train = TrainConfig(batch_size=32, steps=10)
    for k, v in diag.items():
        setattr(cfg.diagnostics.hessian, k, v)
    return cfg, TrainProgram(cfg, load(cfg.data))


@pytest.fixture(scope="module")
def problem():
    cfg, t = tiny_program()
    state = t.init(0)
    state, _ = t.train_chunk(state, 10)  # away from the symmetric initial point
    x, y = jnp.asarray(t.dataset.x_train[:64]), jnp.asarray(t.dataset.y_train[:64])

    def loss(p):
        return t.model.loss(p, state.batch_stats, x, y, bn_mode="batch")[0]

    matvec, x0, unravel = flat_hvp(loss, state.params)
    dense = jax.hessian(lambda v: loss(unravel(v)))(x0)
    dense = (dense + dense.T) / 2
    evals, evecs = np.linalg.eigh(np.asarray(dense, np.float64))
    return dict(t=t, state=state, loss=loss, matvec=jax.jit(matvec), x0=x0, unravel=unravel, H=np.asarray(dense), evals=evals, evecs=evecs)


def test_hvp_is_dense_hessian_times_vector(problem):
    v = jax.random.normal(jax.random.PRNGKey(1), problem["x0"].shape)
    np.testing.assert_allclose(problem["matvec"](v), problem["H"] @ np.asarray(v), rtol=1e-3, atol=1e-5)


def test_lanczos_top_eigenvalues_and_vectors(problem):
    n = problem["x0"].shape[0]
    values, vectors = top_eigen_lanczos(problem["matvec"], n, 3, n, jax.random.PRNGKey(0))
    np.testing.assert_allclose(values, problem["evals"][::-1][:3], rtol=2e-3, atol=1e-5)
    overlap = abs(float(np.dot(np.asarray(vectors[0]), problem["evecs"][:, -1])))
    assert overlap > 0.999
    # a short run still finds the top eigenvalue (Lanczos converges to the extremes first)
    v20, _ = top_eigen_lanczos(problem["matvec"], n, 1, 20, jax.random.PRNGKey(0))
    assert float(v20[0]) == pytest.approx(problem["evals"][-1], rel=1e-2)


def test_power_iteration_finds_largest_magnitude(problem):
    n = problem["x0"].shape[0]
    value, _ = top_eigen_power(problem["matvec"], n, 500, jax.random.PRNGKey(0))
    largest = problem["evals"][np.argmax(np.abs(problem["evals"]))]
    assert float(value[0]) == pytest.approx(largest, rel=1e-2)


def test_hutchinson_trace_within_its_standard_error(problem):
    Hm, n = problem["H"].astype(np.float64), problem["x0"].shape[0]
    probes = 3000
    est = float(hutchinson_trace(problem["matvec"], n, probes, jax.random.PRNGKey(3)))
    se = np.sqrt(2 * (np.sum(Hm**2) - np.sum(np.diag(Hm) ** 2)) / probes)  # Rademacher variance
    assert abs(est - np.trace(Hm)) < 4 * se + 1e-4


def test_slq_quadrature_is_exact_for_low_moments_and_has_unit_mass(problem):
    Hm, n = problem["H"].astype(np.float64), problem["x0"].shape[0]
    key = jax.random.PRNGKey(5)
    nodes, weights = slq(problem["matvec"], n, 4, 12, key)
    nodes, weights = np.asarray(nodes, np.float64), np.asarray(weights, np.float64)
    np.testing.assert_allclose(weights.sum(1), 1.0, rtol=1e-5)
    for k, th, w in zip(jax.random.split(key, 4), nodes, weights):
        v = np.asarray(jax.random.normal(k, (n,)), np.float64)
        v /= np.linalg.norm(v)
        assert np.sum(w * th) == pytest.approx(v @ Hm @ v, rel=1e-3, abs=1e-6)  # first moment
        assert np.sum(w * th**2) == pytest.approx(v @ Hm @ Hm @ v, rel=1e-3, abs=1e-6)  # second moment
    grid = np.linspace(nodes.min() - 1, nodes.max() + 1, 4001)
    mass = np.trapezoid(np.asarray(density(nodes, weights, grid, 0.05)), grid)
    assert mass == pytest.approx(1.0, abs=1e-3)


def test_slq_density_mass_matches_eigenvalue_counts(problem):
    evals, n = problem["evals"], problem["x0"].shape[0]
    nodes, weights = slq(problem["matvec"], n, 400, n, jax.random.PRNGKey(7))
    nodes, weights = np.asarray(nodes), np.asarray(weights)
    cut = np.median(evals)
    estimated = float(np.mean(np.sum(weights * (nodes > cut + 1e-6), axis=1)))
    actual = float(np.mean(evals > cut + 1e-6))
    assert estimated == pytest.approx(actual, abs=0.06)


def test_gradient_share_matches_dense_projection(problem):
    g = jax.grad(lambda v: problem["loss"](problem["unravel"](v)))(problem["x0"])
    top = problem["evecs"][:, -2:].T
    expected = np.sum((top @ np.asarray(g)) ** 2) / np.sum(np.asarray(g) ** 2)
    assert float(gradient_share(g, jnp.asarray(top))) == pytest.approx(expected, rel=1e-4)


@pytest.mark.parametrize("bn_mode", ["batch", "running"])
def test_hessian_diagnostic_against_dense(bn_mode):
    cfg, t = tiny_program(enabled=True, top_k=2, iterations=60, trace_probes=2000, density_probes=2, density_steps=10, batch_size=50, bn_mode=bn_mode)
    state, _ = t.train_chunk(t.init(0), 10)
    out = Hessian(cfg, t).measure(state)
    x, y = jnp.asarray(t.dataset.x_train[:50]), jnp.asarray(t.dataset.y_train[:50])
    x0, unravel = jax.flatten_util.ravel_pytree(state.params)
    dense = np.asarray(jax.hessian(lambda v: t.model.loss(unravel(v), state.batch_stats, x, y, bn_mode=bn_mode)[0])(x0), np.float64)
    evals = np.linalg.eigvalsh((dense + dense.T) / 2)
    assert out["hessian/eig_1"] == pytest.approx(evals[-1], rel=2e-3)
    assert out["hessian/eig_2"] == pytest.approx(evals[-2], rel=2e-3)
    se = np.sqrt(2 * (np.sum(dense**2) - np.sum(np.diag(dense) ** 2)) / 2000)
    assert abs(out["hessian/trace"] - np.trace(dense)) < 4 * se + 1e-4
    assert np.asarray(out["hessian/density_weights"]).shape == (2, 10)
    assert out["hessian/bn_mode"] == bn_mode
    evecs = np.linalg.eigh((dense + dense.T) / 2)[1][:, -2:]  # the dense top-2 eigenspace
    g = np.asarray(jax.grad(lambda v: t.model.loss(unravel(v), state.batch_stats, x, y, bn_mode=bn_mode)[0])(x0), np.float64)
    assert out["hessian/grad_share_top2"] == pytest.approx(np.sum((evecs.T @ g) ** 2) / np.sum(g**2), rel=1e-2, abs=1e-4)
