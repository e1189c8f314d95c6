"""Models: placement of norms, bias dropping, initialisers and their scale, dropout."""

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from bnlab.config.schema import ModelConfig
from bnlab.nn.models import build


def params(cfg, shape=(8, 8, 1), seed=0):
    m = build(cfg, shape, 10, seed)
    return m, nnx.to_pure_dict(nnx.state(m, nnx.Param))


def test_mlp_with_bn_has_no_hidden_bias_and_placement_is_act_of_bn():
    m, p = params(ModelConfig(norm="batch", depth=2, width=6, activation="sigmoid"))
    assert set(p["hidden"][0]["layer"]) == {"kernel"}
    assert set(p["hidden"][0]["norm"]) == {"scale", "bias"}
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 8, 8, 1)), jnp.float32)
    # manual forward pass in train mode: act(BN(W x))
    h = x.reshape(5, -1)
    for i in range(2):
        z = h @ p["hidden"][i]["layer"]["kernel"]
        z = (z - z.mean(0)) / jnp.sqrt(z.var(0) + 1e-5) * p["hidden"][i]["norm"]["scale"] + p["hidden"][i]["norm"]["bias"]
        h = jax.nn.sigmoid(z)
    expected = h @ p["head"]["kernel"] + p["head"]["bias"]
    np.testing.assert_allclose(m(x, train=True), expected, rtol=1e-4, atol=1e-5)


def test_mlp_without_norm_keeps_bias():
    _, p = params(ModelConfig(norm="none", depth=1, width=6))
    assert set(p["hidden"][0]["layer"]) == {"kernel", "bias"}


def test_cnn_shapes_and_pooling():
    cfg = ModelConfig(name="cnn", norm="batch", depth=2, width=4, convs_per_stage=2)
    m, p = params(cfg, shape=(8, 8, 1))
    assert p["hidden"][0]["layer"]["kernel"].shape == (3, 3, 1, 4)
    assert p["hidden"][3]["layer"]["kernel"].shape == (3, 3, 8, 8)
    assert p["head"]["kernel"].shape == (2 * 2 * 8, 10)
    assert m(jnp.ones((3, 8, 8, 1)), train=False).shape == (3, 10)


@pytest.mark.parametrize("init", ["default", "lecun_normal", "glorot_normal", "he_normal", "normal"])
def test_init_scale_multiplies_kernels_exactly(init):
    _, p1 = params(ModelConfig(init=init, norm="none", depth=1, width=32))
    _, p3 = params(ModelConfig(init=init, norm="none", depth=1, width=32, init_scale=3.0))
    np.testing.assert_allclose(p3["hidden"][0]["layer"]["kernel"], 3.0 * p1["hidden"][0]["layer"]["kernel"], rtol=1e-6)
    np.testing.assert_array_equal(p3["hidden"][0]["layer"]["bias"], 0.0)


def test_initialiser_variances():
    fan_in = 64
    stds = {}
    for init in ("normal", "lecun_normal", "he_normal"):
        _, p = params(ModelConfig(init=init, norm="none", depth=1, width=2000, init_std=0.05))
        stds[init] = float(np.std(p["hidden"][0]["layer"]["kernel"]))
    assert stds["normal"] == pytest.approx(0.05, rel=0.02)
    assert stds["lecun_normal"] == pytest.approx(np.sqrt(1 / fan_in), rel=0.03)
    assert stds["he_normal"] == pytest.approx(np.sqrt(2 / fan_in), rel=0.03)


def test_dropout_only_in_training_and_keyed():
    m, _ = params(ModelConfig(norm="none", depth=1, width=64, dropout=0.5))
    x = jnp.ones((4, 8, 8, 1))
    a = m(x, train=True, rng=jax.random.PRNGKey(0))
    b = m(x, train=True, rng=jax.random.PRNGKey(1))
    assert not np.allclose(a, b)
    np.testing.assert_array_equal(m(x, train=False), m(x, train=False))
    np.testing.assert_array_equal(m(x, train=True), m(x, train=True))  # no key: no dropout


def test_capture_returns_pre_activations():
    m, p = params(ModelConfig(norm="none", depth=2, width=5, activation="tanh"))
    x = jnp.ones((3, 8, 8, 1))
    logits, pres = m(x, train=False, capture=True)
    np.testing.assert_array_equal(logits, m(x, train=False))
    expected0 = x.reshape(3, -1) @ p["hidden"][0]["layer"]["kernel"] + p["hidden"][0]["layer"]["bias"]
    np.testing.assert_allclose(pres[0], expected0, rtol=1e-5)
    assert len(pres) == 2 and pres[1].shape == (3, 5)


@pytest.mark.parametrize("shape", [(4, 8, 8, 3), (2, 7, 5, 2)])
def test_reshape_max_pool_equals_flax_max_pool_and_its_gradient(shape):
    from bnlab.nn.kernels import max_pool_2x2

    x = jnp.round(2 * jax.random.normal(jax.random.PRNGKey(0), shape))  # many ties: the gradient must pick the same one
    flax_pool = lambda a: nnx.max_pool(a, (2, 2), strides=(2, 2))  # noqa: E731
    np.testing.assert_array_equal(max_pool_2x2(x), flax_pool(x))
    loss = lambda pool: jax.grad(lambda a: jnp.sum(jnp.sin(pool(a)) * jnp.arange(1.0, 1.0 + a.shape[-1])))(x)  # noqa: E731
    np.testing.assert_array_equal(loss(max_pool_2x2), loss(flax_pool))


@pytest.mark.parametrize("shape", [(4, 8, 1, 3), (2, 7, 1, 2), (3, 6, 2, 2)])
def test_one_dimensional_max_pool_equals_flax_max_pool_and_its_gradient(shape):
    from bnlab.nn.kernels import max_pool_2x1

    x = jnp.round(2 * jax.random.normal(jax.random.PRNGKey(0), shape))  # ties: the gradient must go to the first row, as Flax's
    flax_pool = lambda a: nnx.max_pool(a, (2, 1), strides=(2, 1))  # noqa: E731
    np.testing.assert_array_equal(max_pool_2x1(x), flax_pool(x))
    loss = lambda pool: jax.grad(lambda a: jnp.sum(jnp.sin(pool(a)) * jnp.arange(1.0, 1.0 + a.shape[-1])))(x)  # noqa: E731
    np.testing.assert_array_equal(loss(max_pool_2x1), loss(flax_pool))


def test_the_cnn_reads_a_one_pixel_wide_signal_along_its_length():
    """MNIST-1D's (40, 1, 1) signals: 3x1 kernels and 2x1 pooling, 40 -> 20 -> 10 positions."""
    from bnlab.config.load import load, to_object
    from bnlab.nn.models import build

    cfg = to_object(load(None, ["model.name=cnn", "model.width=4", "model.depth=2", "model.norm=batch"])).model
    x = jnp.asarray(np.random.default_rng(0).normal(size=(5, 40, 1, 1)), jnp.float32)
    model = build(cfg, (40, 1, 1), 10, 0)
    assert [tuple(h.layer.kernel_size) for h in model.hidden] == [(3, 1), (3, 1)]
    assert model.head.in_features == 10 * 8
    logits, pres = model(x, train=True, capture=True)
    assert logits.shape == (5, 10) and [p.shape for p in pres] == [(5, 40, 1, 4), (5, 20, 1, 8)]


def test_max_pool_forward_mode_second_order_and_vmap_match_flax_max_pool():
    """The pool's own tangent rule serves every transformation: forward mode, the Hessian-vector
    products of the curvature probes (forward over reverse) and vmapped sweeps."""
    from bnlab.nn.kernels import max_pool_2x2

    x = jnp.round(2 * jax.random.normal(jax.random.PRNGKey(0), (2, 6, 6, 3)))  # ties
    v = jax.random.normal(jax.random.PRNGKey(1), x.shape)
    flax_pool = lambda a: nnx.max_pool(a, (2, 2), strides=(2, 2))  # noqa: E731

    def values(pool, a):
        return pool(a)

    def gradient(pool, a):
        return jax.grad(lambda b: jnp.sum(jnp.sin(pool(b)) ** 2))(a)

    for fn in (values, gradient):
        ours, theirs = (jax.jvp(functools.partial(fn, pool), (x,), (v,)) for pool in (max_pool_2x2, flax_pool))
        np.testing.assert_allclose(ours[0], theirs[0], rtol=1e-6)
        np.testing.assert_allclose(ours[1], theirs[1], rtol=1e-6, atol=1e-7)
    batched = jnp.stack([x, -x])
    grads = [jax.vmap(jax.grad(functools.partial(lambda p, a: jnp.sum(jnp.sin(p(a))), pool)))(batched) for pool in (max_pool_2x2, flax_pool)]
    np.testing.assert_array_equal(*grads)


def test_max_pool_gradients_fusion_boundary_is_cpu_only():
    """The conditional that keeps XLA:CPU from recomputing the pooled gradient would make a GPU wait
    for its predicate on the host each step: lowered for a GPU or TPU, the gradient has none."""
    from bnlab.nn.kernels import max_pool_2x2

    grad = jax.jit(jax.grad(lambda a: jnp.sum(jnp.sin(max_pool_2x2(a)))))
    x = jnp.ones((2, 4, 4, 3))
    lowered = {p: jax.export.export(grad, platforms=[p])(x).mlir_module() for p in ("cpu", "cuda", "tpu")}
    assert "is_finite" in lowered["cpu"]
    assert "is_finite" not in lowered["cuda"] and "is_finite" not in lowered["tpu"]


@pytest.mark.parametrize(
    "shape,bias,kernel",
    [
        ((3, 8, 8, 2), True, (3, 3)),
        ((2, 7, 5, 3), False, (3, 3)),
        ((4, 1, 1, 6), True, (3, 3)),
        ((3, 9, 1, 2), True, (3, 1)),
        ((2, 6, 1, 4), False, (3, 1)),
    ],
)
def test_sliced_convolution_equals_flax_conv_and_its_gradients(shape, bias, kernel):
    from bnlab.nn.kernels import SlicedConv

    kw = dict(kernel_size=kernel, padding="SAME", use_bias=bias, bias_init=nnx.initializers.normal(1.0))
    sliced, flax_conv = SlicedConv(shape[-1], 5, rngs=nnx.Rngs(0), **kw), nnx.Conv(shape[-1], 5, rngs=nnx.Rngs(0), **kw)
    np.testing.assert_array_equal(sliced.kernel.value, flax_conv.kernel.value)  # same parameters, same initialisation
    x = jnp.asarray(np.random.default_rng(1).normal(size=shape), jnp.float32)
    np.testing.assert_allclose(sliced(x), flax_conv(x), rtol=1e-5, atol=1e-5)

    def grads(conv):
        params = nnx.state(conv, nnx.Param)
        graphdef = nnx.graphdef(conv)
        return jax.grad(lambda p, x: jnp.sum(jnp.sin(nnx.merge(graphdef, p)(x))), argnums=(0, 1))(params, x)

    (gp_s, gx_s), (gp_f, gx_f) = grads(sliced), grads(flax_conv)
    np.testing.assert_allclose(gx_s, gx_f, rtol=1e-5, atol=1e-5)
    for a, b in zip(jax.tree.leaves(gp_s), jax.tree.leaves(gp_f)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize(
    "kw,wrong",
    [
        ({"kernel_size": (5, 5)}, "kernel_size"),
        ({"kernel_size": (3, 3), "strides": 2}, "strides"),
        ({"kernel_size": (3, 3), "padding": "VALID"}, "padding"),
    ],
)
def test_sliced_convolution_refuses_what_it_does_not_compute(kw, wrong):
    from bnlab.nn.kernels import SlicedConv

    with pytest.raises(ValueError, match=f"3x3 or 3x1, stride-1, SAME convolution only; got {wrong}="):
        SlicedConv(2, 4, rngs=nnx.Rngs(0), **kw)


def test_plain_xla_trains_the_cnn_with_flax_layers_to_the_same_results(monkeypatch):
    """BNLAB_PLAIN_XLA=1: nnx.Conv, nnx.max_pool and no compiler options, the same training to float rounding."""
    from bnlab.config.load import load, to_object
    from bnlab.data.dataset import load as load_dataset
    from bnlab.train.program import TrainProgram
    from bnlab.train.xla_options import compiler_options

    cfg = to_object(load(None, ["model.name=cnn", "model.width=4", "model.depth=2", "train.steps=30", "train.batch_size=32"]))
    dataset = load_dataset(cfg.data)

    def train(plain: bool):
        monkeypatch.setenv("BNLAB_PLAIN_XLA", "1" if plain else "0")
        program = TrainProgram(cfg, dataset)
        convs = [type(h.layer).__name__ for h in program.model.abstract(cfg.model).hidden]
        state, _ = program.train_chunk(program.init(0), 30)
        return convs, compiler_options("cnn"), np.concatenate([np.ravel(v) for v in jax.tree.leaves(state.params)])

    (convs_ours, options_ours, ours), (convs_plain, options_plain, plain) = train(False), train(True)
    assert set(convs_ours) == {"SlicedConv"} and set(convs_plain) == {"Conv"}
    assert options_plain == {} and (options_ours or jax.default_backend() != "cpu")
    np.testing.assert_allclose(ours, plain, rtol=2e-3, atol=2e-5)


def test_an_xla_option_this_jaxlib_does_not_know_is_skipped_with_one_warning():
    from bnlab.train.xla_options import known

    with pytest.warns(UserWarning, match="xla_cpu_option_from_the_future=1 is not known to jaxlib") as record:
        assert not known("xla_cpu_option_from_the_future", 1)
        assert not known("xla_cpu_option_from_the_future", 1)  # asked again: no second warning
    assert len(record) == 1
    assert known("xla_cpu_prefer_vector_width", 512) or jax.default_backend() != "cpu"


def test_the_installed_jax_stack_is_within_the_pinned_bounds():
    """pyproject.toml pins jax, jaxlib and flax to the range this suite is tested on."""
    import tomllib
    from importlib.metadata import version

    from packaging.requirements import Requirement

    deps = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text())["project"]["dependencies"]
    pinned = {r.name: r.specifier for r in map(Requirement, deps)}
    for name in ("jax", "jaxlib", "flax"):
        spec = pinned[name]
        assert any(s.operator == "<" for s in spec) and any(s.operator == ">=" for s in spec), f"{name}: give both bounds"
        assert version(name) in spec, f"{name} {version(name)} is outside {spec}"
