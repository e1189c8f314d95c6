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


@pytest.mark.parametrize("shape", [(32, 7), (4, 6, 6, 3)])
def test_batchnorm_keeps_flax_values_and_its_own_gradient_rule_matches_autodiff(shape):
    """bnlab's BN gives nnx.BatchNorm's outputs and running averages bit for bit; its gradient, from
    `batch_normalize`'s own rule, equals autodiff of Flax's forward pass to rounding, and so do the
    Hessian-vector products (forward over reverse) and the vmapped gradient."""
    from bnlab.nn.norms import batch_normalize

    features = shape[-1]
    x, w, v = random(shape), random(shape, 1, 1.0, 0.0), random(shape, 2, 1.0, 0.0)
    scale, bias = random((features,), 3, 0.5, 1.0), random((features,), 4)
    ours = build("batch", features, bn_momentum=0.9)
    theirs = nnx.BatchNorm(features, momentum=0.9, epsilon=EPS, use_fast_variance=False, rngs=nnx.Rngs(0))
    for bn in (ours, theirs):
        bn.scale.value, bn.bias.value = scale, bias
    np.testing.assert_array_equal(ours(x, train=True), theirs(x, use_running_average=False))
    np.testing.assert_array_equal(ours.mean.value, theirs.mean.value)
    np.testing.assert_array_equal(ours.var.value, theirs.var.value)

    def flax_bn(x, scale, bias):
        bn = nnx.BatchNorm(features, epsilon=EPS, use_fast_variance=False, rngs=nnx.Rngs(0))
        bn.scale.value, bn.bias.value = scale, bias
        return bn(x, use_running_average=False)

    def loss(normalise, x, scale, bias):
        return jnp.sum(jnp.sin(normalise(x, scale, bias)) * w)

    rule = lambda x, scale, bias: batch_normalize(x, scale, bias, EPS)[0]  # noqa: E731
    for ours_, theirs_ in zip(*(jax.grad(loss, argnums=(1, 2, 3))(f, x, scale, bias) for f in (rule, flax_bn))):
        np.testing.assert_allclose(ours_, theirs_, rtol=1e-5, atol=1e-6)
    hvp = [jax.jvp(lambda a, f=f: jax.grad(loss, argnums=1)(f, a, scale, bias), (x,), (v,))[1] for f in (rule, flax_bn)]
    np.testing.assert_allclose(*hvp, rtol=1e-4, atol=1e-5)
    batched = jnp.stack([x, 2 * x + 1])
    grads = [jax.vmap(lambda a, f=f: jax.grad(loss, argnums=1)(f, a, scale, bias))(batched) for f in (rule, flax_bn)]
    np.testing.assert_allclose(*grads, rtol=1e-5, atol=1e-6)


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
    # running averages: one update per ghost batch, in order, as Hoffer et al.'s code runs them
    mean, var = np.zeros(6), np.ones(6)
    for j in range(4):
        mean, var = 0.9 * mean + 0.1 * m[j, 0], 0.9 * var + 0.1 * v[j, 0]
    np.testing.assert_allclose(gbn.mean.value, mean, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gbn.var.value, var, rtol=1e-5)
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


def _per_unit_fit(a, y):
    """Least-squares slope and intercept of y on a, unit by unit (columns)."""
    a, y = np.asarray(a, np.float64), np.asarray(y, np.float64)
    am, ym = a.mean(0), y.mean(0)
    slope = ((a - am) * (y - ym)).sum(0) / ((a - am) ** 2).sum(0)
    return slope, ym - slope * am


def test_noisy_batchnorm_is_bn_plus_noise_drawn_per_unit():
    """Santurkar et al. (2018) App. A.2.1, Algorithm 1: y = s * BN(x) + m, with each unit's own
    mu_j ~ U(-0.5, 0.5) and sigma_j ~ U(1, 1.25) at this step, and per example m ~ U(mu_j +- 0.1),
    s ~ N(sigma_j, 0.1)."""
    x = random((4000, 64))
    bn_out = np.asarray(build("batch", 64)(x, train=True))
    y = np.asarray(build("noisy_batch", 64)(x, train=True, rng=jax.random.PRNGKey(0)))
    sigma, mu = _per_unit_fit(bn_out, y)
    assert sigma.min() > 1.0 - 0.03 and sigma.max() < 1.25 + 0.03
    assert mu.min() > -0.5 - 0.02 and mu.max() < 0.5 + 0.02
    assert np.ptp(mu) > 0.6 and np.ptp(sigma) > 0.12  # independent draws per unit spread over their ranges (per layer: ~0)
    resid = y - (sigma * bn_out + mu)  # (s - sigma_j) a + (m - mu_j): variance 0.01 a^2 + 0.2^2 / 12
    np.testing.assert_allclose(resid.var(0).mean(), 0.01 * (bn_out**2).mean() + 0.04 / 12, rtol=0.1)
    other_step = np.asarray(build("noisy_batch", 64)(x, train=True, rng=jax.random.PRNGKey(1)))
    assert np.abs(_per_unit_fit(bn_out, other_step)[1] - mu).mean() > 0.1  # drawn afresh at every step
    np.testing.assert_allclose(build("noisy_batch", 64)(x, train=False), build("batch", 64)(x, train=False), rtol=1e-6)  # no noise in evaluation
    np.testing.assert_allclose(build("noisy_batch", 64)(x, train=True, rng=None), bn_out, rtol=1e-5, atol=1e-5)  # no key, no noise
    z = np.asarray(build("noise", 64)(x, train=True, rng=jax.random.PRNGKey(0)))  # the same noise without BN
    np.testing.assert_allclose(_per_unit_fit(np.asarray(x), z)[1], mu, atol=0.15)


def test_santurkar_noise_on_conv_maps_counts_space_as_batch():
    from bnlab.nn.norms import santurkar_noise

    x = jnp.asarray(np.random.default_rng(0).normal(size=(64, 8, 8, 16)), jnp.float32)
    y = np.asarray(santurkar_noise(x, jax.random.PRNGKey(3)))
    sigma, mu = _per_unit_fit(np.asarray(x).reshape(-1, 16), y.reshape(-1, 16))  # one (mu, sigma) per channel over N x H x W
    assert np.ptp(mu) > 0.3 and sigma.min() > 0.97 and sigma.max() < 1.28
    corner = _per_unit_fit(np.asarray(x)[:, 0, 0], y[:, 0, 0])[1]  # the same mu_j at every position
    np.testing.assert_allclose(corner, mu, atol=0.06)


@pytest.mark.parametrize("p", [1.0, 2.0, float("inf")])
def test_lp_norm_formula(p):
    x = random((50, 4))
    y = np.asarray(build("lp", 4, lp_p=p)(x, train=True))
    xn = np.asarray(x, np.float64)
    dev = np.abs(xn - xn.mean(0))
    scale = dev.max(0) + EPS if np.isinf(p) else ((dev**p).mean(0) + EPS) ** (1 / p)  # epsilon where BN puts it
    np.testing.assert_allclose(y, (xn - xn.mean(0)) / scale, rtol=1e-4, atol=1e-5)


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


def test_batch_renorm_limits_relax_as_in_the_paper():
    """Ioffe (2017) Sec. 4: r = 1, d = 0 until relax_from, then rmax and dmax grow linearly to their
    full values at rmax_at and dmax_at."""
    bn = build("batch_renorm", 2, renorm_rmax=3.0, renorm_dmax=5.0, renorm_relax_from=10, renorm_rmax_at=50, renorm_dmax_at=30)
    for steps, (rmax, dmax) in {0: (1.0, 0.0), 10: (1.0, 0.0), 20: (1.5, 2.5), 30: (2.0, 5.0), 50: (3.0, 5.0), 90: (3.0, 5.0)}.items():
        bn.steps.value = jnp.float32(steps)
        assert [float(v) for v in bn._limits()] == pytest.approx([rmax, dmax]), steps
    x = random((30, 2))
    bn.steps.value = jnp.float32(0)
    bn(x, train=True)
    assert float(bn.steps.value) == 1.0  # counted in the batch statistics, so it is checkpointed with them
    assert not hasattr(build("batch_renorm", 2), "steps")  # constant limits: no counter


@pytest.mark.parametrize("name,offset,features", [("batch", 100.0, 4), ("layer", 1000.0, 64), ("group", 1000.0, 64)])
def test_variance_is_two_pass_at_large_offsets(name, offset, features):
    """E[x^2] - E[x]^2 in float32 loses the variance of data far from zero (Flax's fast variance)."""
    x = jnp.asarray(offset + np.random.default_rng(0).normal(size=(256, features)), jnp.float32)
    xn = np.asarray(x, np.float64)
    axis = 0 if name == "batch" else 1
    if name == "group":
        g = xn.reshape(256, 4, features // 4)
        expected = ((g - g.mean(2, keepdims=True)) / np.sqrt(g.var(2, keepdims=True) + EPS)).reshape(256, features)
    else:
        expected = (xn - xn.mean(axis, keepdims=True)) / np.sqrt(xn.var(axis, keepdims=True) + EPS)
    np.testing.assert_allclose(build(name, features, groups=4)(x, train=True), expected, atol=5e-3)


def test_lp_norm_with_p_2_is_bn_even_at_tiny_scales():
    x = random((60, 5), scale=3e-3)
    lp, bn = build("lp", 5, lp_p=2.0), build("batch", 5)
    np.testing.assert_allclose(lp(x, train=True), bn(x, train=True), rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(lp(x, train=False), bn(x, train=False), rtol=1e-4, atol=1e-4)


def test_gamma_init_option():
    for name in ("batch", "ghost_batch", "layer", "lp", "whiten"):
        assert float(build(name, 16, norm_gamma_init=0.1).scale.value[0]) == pytest.approx(0.1)


def test_new_norms_absorb_the_bias():
    assert all(NORMS.get(n).absorbs_bias for n in ("ghost_batch", "noisy_batch", "lp", "whiten"))
    assert not NORMS.get("noise").absorbs_bias


def test_batch_renorm_formula_and_gradient_treats_r_d_as_constants():
    x = random((40, 3))
    bn = build("batch_renorm", 3, renorm_rmax=1.5, renorm_dmax=0.5, bn_momentum=0.9)
    mu, s = np.array([0.0, 2.0, 10.0]), np.array([1.0, 3.0, 10.0])
    bn.mean.value, bn.std.value = jnp.asarray(mu, jnp.float32), jnp.asarray(s, jnp.float32)
    xn = np.asarray(x, np.float64)
    m, v = xn.mean(0), xn.var(0)
    sb = np.sqrt(v + EPS)
    r, d = np.clip(sb / s, 1 / 1.5, 1.5), np.clip((m - mu) / s, -0.5, 0.5)
    y = np.asarray(bn(x, train=True))
    np.testing.assert_allclose(y, (xn - m) / sb * r + d, rtol=1e-4, atol=1e-4)
    # Ioffe (2017), Algorithm 1: moving averages of mu_B and of sigma_B itself (not of the variance)
    np.testing.assert_allclose(bn.mean.value, 0.9 * mu + 0.1 * m, rtol=1e-5)
    np.testing.assert_allclose(bn.std.value, 0.9 * s + 0.1 * sb, rtol=1e-5)
    np.testing.assert_allclose(bn(x, train=False), (xn - bn.mean.value) / bn.std.value, rtol=1e-4, atol=1e-4)  # inference: (x - mu) / sigma
    # with r = 1 and d = 0 (running = batch statistics) it is BN; the gradient sees r, d as constants
    fresh = build("batch_renorm", 3)
    fresh.mean.value, fresh.std.value = jnp.asarray(m, jnp.float32), jnp.asarray(sb, jnp.float32)
    np.testing.assert_allclose(fresh(x, train=True), build("batch", 3)(x, train=True), rtol=1e-4, atol=1e-4)

    def loss(module, x):
        return jnp.sum(module(x, train=True) ** 2 * jnp.arange(3.0))

    g_renorm = jax.grad(lambda x: loss(build("batch_renorm", 3, renorm_rmax=1.0, renorm_dmax=0.0), x))(x)
    g_bn = jax.grad(lambda x: loss(build("batch", 3), x))(x)  # rmax=1, dmax=0: r = 1, d = 0 exactly
    np.testing.assert_allclose(g_renorm, g_bn, rtol=1e-3, atol=1e-4)


def test_whitening_group_size_zero_whitens_all_features_together():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(400, 8)) @ rng.normal(size=(8, 8)) + 1.0, jnp.float32)
    y = np.asarray(build("whiten", 8, whiten_group_size=0, norm_epsilon=1e-6)(x, train=True), np.float64)
    np.testing.assert_allclose(np.cov(y, rowvar=False, bias=True), np.eye(8), atol=3e-3)  # across the former groups too
