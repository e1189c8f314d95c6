"""Each norm's train and eval behaviour against its formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnlab.config.schema import ModelConfig
from bnlab.nn.norms import NORMS

EPS = 1e-5


def build(name, features, spatial=False, **kw):
    return NORMS.get(name).build(features, spatial, ModelConfig(norm=name, **kw), nnx.Rngs(0))


def random(shape, seed=0, scale=3.0, shift=2.0):
    return jnp.asarray(np.random.default_rng(seed).normal(size=shape) * scale + shift, jnp.float32)


def test_batchnorm_train_mode_is_per_feature_over_batch_with_biased_variance():
    x = random((32, 7))
    bn = build("batch", 7)
    bn.scale.value = random((7,), 1)
    bn.bias.value = random((7,), 2)
    y = bn(x, train=True)
    xn = np.asarray(x, np.float64)
    mean, var = xn.mean(0), xn.var(0)  # biased (divide by m), Algorithm 1
    expected = (xn - mean) / np.sqrt(var + EPS) * np.asarray(bn.scale.value) + np.asarray(bn.bias.value)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4)


def test_batchnorm_running_average_follows_flax_convention():
    x = random((32, 5))
    bn = build("batch", 5, bn_momentum=0.9)
    bn(x, train=True)
    xn = np.asarray(x, np.float64)
    # running = momentum * running + (1 - momentum) * batch ; initial mean 0, var 1
    np.testing.assert_allclose(bn.mean.value, 0.1 * xn.mean(0), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(bn.var.value, 0.9 * 1.0 + 0.1 * xn.var(0), rtol=1e-5)
    x2 = random((32, 5), seed=3)
    bn(x2, train=True)
    np.testing.assert_allclose(bn.mean.value, 0.9 * 0.1 * xn.mean(0) + 0.1 * np.asarray(x2, np.float64).mean(0), rtol=1e-5, atol=1e-6)


def test_batchnorm_eval_uses_running_statistics_and_leaves_them():
    bn = build("batch", 4)
    bn.mean.value = jnp.array([1.0, 2.0, 3.0, 4.0])
    bn.var.value = jnp.array([4.0, 1.0, 0.25, 9.0])
    x = random((6, 4))
    y = bn(x, train=False)
    expected = (np.asarray(x) - np.array([1, 2, 3, 4])) / np.sqrt(np.array([4, 1, 0.25, 9]) + EPS)
    np.testing.assert_allclose(y, expected, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(bn.mean.value, [1.0, 2.0, 3.0, 4.0])


def test_batchnorm_conv_is_per_channel_over_batch_and_space():
    x = random((4, 5, 6, 3))
    y = build("batch", 3, spatial=True)(x, train=True)
    xn = np.asarray(x, np.float64)
    mean, var = xn.mean((0, 1, 2)), xn.var((0, 1, 2))
    np.testing.assert_allclose(y, (xn - mean) / np.sqrt(var + EPS), rtol=1e-4, atol=1e-4)


def test_layernorm_is_per_example_over_features_and_same_in_both_modes():
    x = random((5, 9))
    ln = build("layer", 9)
    xn = np.asarray(x, np.float64)
    expected = (xn - xn.mean(1, keepdims=True)) / np.sqrt(xn.var(1, keepdims=True) + EPS)
    np.testing.assert_allclose(ln(x, train=True), expected, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(ln(x, train=False), expected, rtol=1e-4, atol=1e-4)
    # one example's output does not depend on the rest of the batch
    np.testing.assert_allclose(ln(x[:1], train=True), expected[:1], rtol=1e-4, atol=1e-4)


def test_layernorm_conv_is_per_example_over_space_and_channels():
    x = random((3, 4, 4, 6))
    xn = np.asarray(x, np.float64)
    m = xn.mean((1, 2, 3), keepdims=True)
    v = xn.var((1, 2, 3), keepdims=True)
    np.testing.assert_allclose(build("layer", 6, spatial=True)(x, train=True), (xn - m) / np.sqrt(v + EPS), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("spatial", [False, True])
def test_groupnorm_is_per_example_per_group(spatial):
    shape = (3, 4, 4, 8) if spatial else (3, 8)
    x = random(shape)
    y = build("group", 8, spatial=spatial, groups=2)(x, train=True)
    xn = np.asarray(x, np.float64)
    g = xn.reshape(shape[:-1] + (2, 4))
    axes = (1, 2, 4) if spatial else (2,)
    m, v = g.mean(axes, keepdims=True), g.var(axes, keepdims=True)
    np.testing.assert_allclose(y, ((g - m) / np.sqrt(v + EPS)).reshape(shape), rtol=1e-4, atol=1e-4)


def test_none_is_identity():
    x = random((3, 5))
    np.testing.assert_array_equal(build("none", 5)(x, train=True), x)


def test_only_batchnorm_absorbs_the_bias():
    assert NORMS.get("batch").absorbs_bias
    assert not any(NORMS.get(n).absorbs_bias for n in ("none", "layer", "group"))


def test_ghost_batchnorm_normalises_each_virtual_batch():
    x = random((32, 6))
    gbn = build("ghost_batch", 6, ghost_batch_size=8, bn_momentum=0.9)
    y = np.asarray(gbn(x, train=True))
    xn = np.asarray(x, np.float64).reshape(4, 8, 6)
    m, v = xn.mean(1, keepdims=True), xn.var(1, keepdims=True)
    np.testing.assert_allclose(y, ((xn - m) / np.sqrt(v + EPS)).reshape(32, 6), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(gbn.mean.value, 0.1 * m.mean((0, 1)), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gbn.var.value, 0.9 + 0.1 * v.mean((0, 1)), rtol=1e-5)
    # with one ghost batch it is plain BN
    bn = build("batch", 6)
    np.testing.assert_allclose(build("ghost_batch", 6, ghost_batch_size=32)(x, train=True), bn(x, train=True), rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="not a multiple"):
        gbn(x[:30], train=True)


def test_ghost_batchnorm_conv_statistics_include_space():
    x = random((8, 3, 3, 2))
    y = np.asarray(build("ghost_batch", 2, spatial=True, ghost_batch_size=4)(x, train=True))
    g = np.asarray(x, np.float64).reshape(2, 4, 3, 3, 2)
    m, v = g.mean((1, 2, 3), keepdims=True), g.var((1, 2, 3), keepdims=True)
    np.testing.assert_allclose(y, ((g - m) / np.sqrt(v + EPS)).reshape(x.shape), rtol=1e-4, atol=1e-4)


def test_noisy_batchnorm_is_bn_plus_santurkar_noise():
    x = random((4000, 3))
    nbn = build("noisy_batch", 3)
    bn_out = np.asarray(build("batch", 3)(x, train=True))
    key = jax.random.PRNGKey(0)
    y = np.asarray(nbn(x, train=True, rng=key))
    # recover this step's mu_t, sigma_t from the same key and check the noise model
    k_mu, k_sigma, _, _ = jax.random.split(key, 4)
    mu = float(jax.random.uniform(k_mu, (), minval=-0.5, maxval=0.5))
    sigma = float(jax.random.uniform(k_sigma, (), minval=1.0, maxval=1.25))
    assert -0.5 <= mu <= 0.5 and 1.0 <= sigma <= 1.25
    residual = y - sigma * bn_out  # = (s - sigma) * a + m
    assert residual.mean() == pytest.approx(mu, abs=0.02)
    s_hat = np.sum((y - mu) * bn_out, 0) / np.sum(bn_out**2, 0)  # least squares slope ~ sigma
    np.testing.assert_allclose(s_hat, sigma, atol=0.02)
    np.testing.assert_allclose(build("noisy_batch", 3)(x, train=False), build("batch", 3)(x, train=False), rtol=1e-6)  # no noise in evaluation
    np.testing.assert_allclose(nbn(x, train=True, rng=None), bn_out, rtol=1e-5, atol=1e-5)  # no key, no noise
    noise_only = build("noise", 3)
    z = np.asarray(noise_only(x, train=True, rng=key))
    assert (z - sigma * np.asarray(x)).mean() == pytest.approx(mu, abs=0.05)


@pytest.mark.parametrize("p", [1.0, 2.0, float("inf")])
def test_lp_norm_formula(p):
    x = random((50, 4))
    y = np.asarray(build("lp", 4, lp_p=p)(x, train=True))
    xn = np.asarray(x, np.float64)
    dev = np.abs(xn - xn.mean(0))
    scale = dev.max(0) if np.isinf(p) else (dev**p).mean(0) ** (1 / p)
    np.testing.assert_allclose(y, (xn - xn.mean(0)) / (scale + EPS), rtol=1e-4, atol=1e-5)
    if p == 2.0:  # the l_2 version is BN (up to where epsilon sits)
        np.testing.assert_allclose(y, build("batch", 4, norm_epsilon=1e-12)(x, train=True), rtol=1e-3, atol=1e-3)


def test_whitening_decorrelates_each_group():
    rng = np.random.default_rng(0)
    mix = rng.normal(size=(8, 8))
    x = jnp.asarray(rng.normal(size=(500, 8)) @ mix + 3.0, jnp.float32)
    w = build("whiten", 8, whiten_group_size=4, norm_epsilon=1e-6)
    y = np.asarray(w(x, train=True), np.float64)
    for g in (slice(0, 4), slice(4, 8)):
        cov = np.cov(y[:, g], rowvar=False, bias=True)
        np.testing.assert_allclose(cov, np.eye(4), atol=2e-3)
        np.testing.assert_allclose(y[:, g].mean(0), 0.0, atol=1e-4)
    # ZCA: the whitening matrix is symmetric, so it is Sigma^(-1/2) applied to the centred input
    xn = np.asarray(x, np.float64)[:, :4]
    xc = xn - xn.mean(0)
    lam, U = np.linalg.eigh(xc.T @ xc / len(xc))
    np.testing.assert_allclose(y[:, :4], xc @ U @ np.diag(1 / np.sqrt(lam + 1e-6)) @ U.T, rtol=1e-3, atol=1e-3)
    # across groups nothing is decorrelated
    assert abs(np.corrcoef(y[:, 0], y[:, 4])[0, 1]) > 0.01
    # evaluation whitens with the running mean and covariance: one update at momentum 0.99 from (0, I)
    y_eval = np.asarray(w(x, train=False), np.float64)
    xa = np.asarray(x, np.float64)
    mean = 0.01 * xa.mean(0)
    for g in (slice(0, 4), slice(4, 8)):
        xc_g = xa[:, g] - xa[:, g].mean(0)
        cov = 0.99 * np.eye(4) + 0.01 * xc_g.T @ xc_g / len(xc_g)
        lam, U = np.linalg.eigh(cov)
        expected = (xa[:, g] - mean[g]) @ U @ np.diag(1 / np.sqrt(lam + 1e-6)) @ U.T
        np.testing.assert_allclose(y_eval[:, g], expected, rtol=1e-3, atol=1e-3)


def test_gamma_init_option():
    for name in ("batch", "ghost_batch", "layer", "lp", "whiten"):
        assert float(build(name, 16, norm_gamma_init=0.1).scale.value[0]) == pytest.approx(0.1)


def test_new_norms_absorb_the_bias():
    assert all(NORMS.get(n).absorbs_bias for n in ("ghost_batch", "noisy_batch", "lp", "whiten"))
    assert not NORMS.get("noise").absorbs_bias


def test_batch_renorm_formula_and_gradient_treats_r_d_as_constants():
    x = random((40, 3))
    bn = build("batch_renorm", 3, renorm_rmax=1.5, renorm_dmax=0.5, bn_momentum=0.9)
    bn.mean.value = jnp.array([0.0, 2.0, 10.0])
    bn.var.value = jnp.array([1.0, 9.0, 100.0])
    mu, var = np.array([0.0, 2.0, 10.0]), np.array([1.0, 9.0, 100.0])
    xn = np.asarray(x, np.float64)
    m, v = xn.mean(0), xn.var(0)
    sb, s = np.sqrt(v + EPS), np.sqrt(var + EPS)
    r, d = np.clip(sb / s, 1 / 1.5, 1.5), np.clip((m - mu) / s, -0.5, 0.5)
    y = np.asarray(bn(x, train=True))
    np.testing.assert_allclose(y, (xn - m) / sb * r + d, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(bn.mean.value, 0.9 * mu + 0.1 * m, rtol=1e-5)
    # with r = 1 and d = 0 (running = batch statistics) it is BN; the gradient sees r, d as constants
    fresh = build("batch_renorm", 3)
    fresh.mean.value, fresh.var.value = jnp.asarray(m, jnp.float32), jnp.asarray(v, jnp.float32)
    np.testing.assert_allclose(fresh(x, train=True), build("batch", 3)(x, train=True), rtol=1e-4, atol=1e-4)

    def loss(module, x):
        return jnp.sum(module(x, train=True) ** 2 * jnp.arange(3.0))

    g_renorm = jax.grad(lambda x: loss(build("batch_renorm", 3, renorm_rmax=1.0, renorm_dmax=0.0), x))(x)
    g_bn = jax.grad(lambda x: loss(build("batch", 3), x))(x)  # rmax=1, dmax=0: r = 1, d = 0 exactly
    np.testing.assert_allclose(g_renorm, g_bn, rtol=1e-3, atol=1e-4)
