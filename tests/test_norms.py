"""Each norm's train and eval behaviour against its formula."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnlab.config import ModelConfig
from bnlab.norms import NORMS

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
