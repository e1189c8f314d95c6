"""Feed-forward models: MLP, a small VGG-style CNN and the deep linear network.

Every hidden layer is `dropout(act(norm(W x)))` (Ioffe & Szegedy's placement); the bias of W is
dropped when the norm absorbs it (BN). Models are called as
`model(x, train=..., rng=..., capture=False)`: `train` selects batch statistics for BN, an `rng`
key switches on the step's randomness (dropout, noisy norms; without one the model is
deterministic, as in evaluation and probes), and `capture=True` also returns every hidden layer's
pre-activation (for activation diagnostics).
"""

from __future__ import annotations

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from ..config.schema import ModelConfig
from .activations import ACTIVATIONS
from .initializers import kernel_init
from .norms import NORMS
from .traced import TakesNumbers


class Hidden(TakesNumbers, nnx.Module):
    """One hidden layer: dropout(act(norm(W x))). `layer` is a Linear or a Conv."""

    NUMBERS = {"dropout": "dropout_rate"}

    def __init__(self, layer: nnx.Module, norm: nnx.Module, cfg: ModelConfig):
        self.layer = layer
        self.norm = norm
        self.act = ACTIVATIONS.get(cfg.activation)
        self.dropout_rate = cfg.dropout  # may be replaced by a traced value (nn.traced)
        self.dropout_on = cfg.dropout > 0

    def __call__(self, x: jax.Array, *, train: bool, rng: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        """(output, pre-activation): the pre-activation is the nonlinearity's input, norm(W x)."""
        norm_rng, dropout_rng = (None, None) if rng is None else jax.random.split(rng)
        pre = self.norm(self.layer(x), train=train, rng=norm_rng)
        x = self.act(pre)
        if self.dropout_on and dropout_rng is not None:  # no key: deterministic (probes, evaluation)
            keep = 1.0 - self.dropout_rate  # inverted dropout, as nnx.Dropout (whose rate must be a Python number)
            x = jnp.where(jax.random.bernoulli(dropout_rng, keep, x.shape), x / keep, 0.0)
        return x, pre


def _split_key(key: jax.Array | None, n: int) -> list[jax.Array | None]:
    return [None] * n if key is None else list(jax.random.split(key, n))


class MLP(nnx.Module):
    """Fully connected net: flatten, `depth` hidden layers of `width` units, linear classifier."""

    def __init__(self, image_shape: tuple[int, ...], num_classes: int, cfg: ModelConfig, rngs: nnx.Rngs):
        norm = NORMS.get(cfg.norm)
        init = kernel_init(cfg)
        fan_in = 1
        for s in image_shape:
            fan_in *= s
        self.hidden = nnx.List()
        for _ in range(cfg.depth):
            dense = nnx.Linear(fan_in, cfg.width, use_bias=not norm.absorbs_bias, kernel_init=init, rngs=rngs)
            self.hidden.append(Hidden(dense, norm.build(cfg.width, False, cfg, rngs), cfg))
            fan_in = cfg.width
        self.head = nnx.Linear(fan_in, num_classes, kernel_init=init, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, rng: jax.Array | None = None, capture: bool = False):
        x = x.reshape((x.shape[0], -1))
        pres = []
        for layer, key in zip(self.hidden, _split_key(rng, len(self.hidden))):
            x, pre = layer(x, train=train, rng=key)
            pres.append(pre)
        logits = self.head(x)
        return (logits, pres) if capture else logits


def _pool_choice(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The 2x2 windows' maxima and which entry each took (0..3 in row-major order, the first on
    ties, as reduce_window's gradient), from x of shape (n, h/2, 2, w/2, 2, c)."""
    left = x[:, :, 0, :, 0] >= x[:, :, 0, :, 1]
    right = x[:, :, 1, :, 0] >= x[:, :, 1, :, 1]
    top = jnp.where(left, x[:, :, 0, :, 0], x[:, :, 0, :, 1])
    bottom = jnp.where(right, x[:, :, 1, :, 0], x[:, :, 1, :, 1])
    upper = top >= bottom
    choice = jnp.where(upper, jnp.where(left, 0, 1), jnp.where(right, 2, 3)).astype(jnp.int8)
    return jnp.where(upper, top, bottom), choice


@jax.custom_jvp
def _max_pool_windows(x: jax.Array) -> jax.Array:
    return _pool_choice(x)[0]


@_max_pool_windows.defjvp
def _max_pool_windows_jvp(primals, tangents):
    """The tangent as a masked sum over each window, so that the gradient, its transpose, is one
    broadcast and select (autodiff of the selections gives four strided pads, which XLA's CPU
    backend runs as a branch per element)."""
    (x,), (t,) = primals, tangents
    out, choice = _pool_choice(x)
    iota = functools.partial(jax.lax.broadcasted_iota, jnp.int8, (1, 1, 2, 1, 2, 1))
    mask = choice[:, :, None, :, None, :] == 2 * iota(2) + iota(4)
    return out, _computed_once(jnp.sum(jnp.where(mask, t, 0.0), axis=(2, 4)), x)


def _computed_once(v: jax.Array, x: jax.Array) -> jax.Array:
    """v, on a CPU passed through a conditional whose branches both return it (its predicate, from
    x, only has to be unknown to the compiler). In the gradient this holds the pooled output's
    cotangent: without it XLA's CPU backend fuses that cotangent's producer, the next
    convolution's col2im (nine shifted pads), into the broadcast over each window and recomputes
    it four times (measured: the largest op of the CNN's step). A conditional is a fusion boundary
    XLA keeps; `optimization_barrier` is dropped before fusion on a CPU. Elsewhere v as it is: a
    GPU would wait for the predicate on the host."""

    def held(v, x):
        return jax.lax.cond(jnp.isfinite(x.reshape(-1)[0]), lambda a: a, lambda a: a + 0.0, v)

    return jax.lax.platform_dependent(v, x, cpu=held, default=lambda v, x: v)


def max_pool_2x2(x: jax.Array) -> jax.Array:
    """2x2 max pooling with stride 2 (an odd last row or column is dropped, as with 'VALID'): the
    values and the gradient of `nnx.max_pool`, ties included (the gradient goes to the first
    maximum in row-major order, as reduce_window's does), but without XLA's select-and-scatter,
    which is slow on a CPU (measured: 5.0 vs 0.27 ms forward + backward at 60x28x28x16)."""
    n, h, w, c = x.shape
    return _max_pool_windows(x[:, : h // 2 * 2, : w // 2 * 2].reshape(n, h // 2, 2, w // 2, 2, c))


class SlicedConv(nnx.Conv):
    """A 3x3, stride-1, SAME convolution computed as the 9 shifted slices of the zero-padded input,
    concatenated on the channel axis, times the kernel as one (9 c_in, c_out) matrix. Same
    parameters, initialisation and values as `nnx.Conv` (tested against it), but on a CPU XLA
    runs this matmul faster than its own convolution and that convolution's backward pass
    (benchmarks/cnn_conv.py)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, c = x.shape
        padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        patches = jnp.concatenate([padded[:, i : i + h, j : j + w, :] for i in range(3) for j in range(3)], axis=-1)
        y = patches.reshape(n * h * w, 9 * c) @ self.kernel.value.reshape(9 * c, -1)
        if self.bias is not None:
            y = y + self.bias.value
        return y.reshape(n, h, w, -1)


class CNN(nnx.Module):
    """Small VGG-style net: `depth` stages of `convs_per_stage` 3x3 convs (width * 2**stage channels),
    each stage ending in 2x2 max pooling while the image is larger than 1 pixel, then a linear classifier."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, cfg: ModelConfig, rngs: nnx.Rngs):
        norm = NORMS.get(cfg.norm)
        init = kernel_init(cfg)
        h, w, channels = image_shape
        self.hidden = nnx.List()
        self.pool_after: list[bool] = []
        for stage in range(cfg.depth):
            out = cfg.width * 2**stage
            for i in range(cfg.convs_per_stage):
                conv = SlicedConv(channels, out, (3, 3), padding="SAME", use_bias=not norm.absorbs_bias, kernel_init=init, rngs=rngs)
                self.hidden.append(Hidden(conv, norm.build(out, True, cfg, rngs), cfg))
                channels = out
                last = i == cfg.convs_per_stage - 1
                pool = last and h > 1 and w > 1
                self.pool_after.append(pool)
                if pool:
                    h, w = h // 2, w // 2
        self.head = nnx.Linear(h * w * channels, num_classes, kernel_init=init, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, rng: jax.Array | None = None, capture: bool = False):
        pres = []
        for layer, pool, key in zip(self.hidden, self.pool_after, _split_key(rng, len(self.hidden))):
            x, pre = layer(x, train=train, rng=key)
            pres.append(pre)
            if pool:
                x = max_pool_2x2(x)
        logits = self.head(x.reshape((x.shape[0], -1)))
        return (logits, pres) if capture else logits


class DeepLinear(nnx.Module):
    """Deep linear network (Santurkar et al. 2018, Sec. 3 / App.): x -> W_k ... W_1 x, `depth`
    hidden linear layers of `width` units, no biases and no nonlinearity, optionally normalised
    (norm between the linear maps), then a linear map to the outputs."""

    def __init__(self, image_shape: tuple[int, ...], num_classes: int, cfg: ModelConfig, rngs: nnx.Rngs):
        norm = NORMS.get(cfg.norm)
        init = kernel_init(cfg)
        linear_cfg = dataclasses.replace(cfg, activation="linear")
        fan_in = math.prod(image_shape)
        self.hidden = nnx.List()
        for _ in range(cfg.depth):
            dense = nnx.Linear(fan_in, cfg.width, use_bias=False, kernel_init=init, rngs=rngs)
            self.hidden.append(Hidden(dense, norm.build(cfg.width, False, cfg, rngs), linear_cfg))
            fan_in = cfg.width
        self.head = nnx.Linear(fan_in, num_classes, use_bias=False, kernel_init=init, rngs=rngs)

    __call__ = MLP.__call__
