"""The CPU kernels of the conv net: a 3x3 convolution as one matmul of shifted slices, and 2x2 max
pooling whose gradient avoids XLA's select-and-scatter; on a one-pixel-wide image (a 1-D signal
such as MNIST-1D, stored as height x 1) the same with a 3x1 kernel and 2x1 pooling. Both give `nnx.Conv`'s and `nnx.max_pool`'s
values and gradients (tested against them); they exist because XLA's CPU backend runs them faster
(benchmarks/cnn_conv.py). `BNLAB_PLAIN_XLA=1` in the environment trains with the plain
`nnx.Conv` and `nnx.max_pool` instead (and no extra XLA options: train.xla_options).
"""

from __future__ import annotations

import functools
import os

import jax
import jax.numpy as jnp
from flax import nnx


def plain() -> bool:
    """`BNLAB_PLAIN_XLA=1`: XLA's defaults and the framework's own layers, no speed choices of ours
    (these kernels here, the compiler options in train.xla_options)."""
    return os.environ.get("BNLAB_PLAIN_XLA", "") not in ("", "0")


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


def max_pool_2x1(x: jax.Array) -> jax.Array:
    """Max pooling of windows of 2 along the height (a 1-D signal) with stride 2, an odd last row
    dropped: `nnx.max_pool`'s values and gradient, which on a tie goes to the first row as here."""
    n, h, w, c = x.shape
    pairs = x[:, : h // 2 * 2].reshape(n, h // 2, 2, w, c)
    first, second = pairs[:, :, 0], pairs[:, :, 1]
    return jnp.where(first >= second, first, second)


KERNELS = ((3, 3), (3, 1))  # what SlicedConv computes: 3x3 on images, 3x1 along a 1-D signal


class SlicedConv(nnx.Conv):
    """A 3x3 (or 3x1), stride-1, SAME convolution computed as the 9 (or 3) shifted slices of the
    zero-padded input, concatenated on the channel axis, times the kernel as one (9 c_in, c_out)
    matrix. Same
    parameters, initialisation and values as `nnx.Conv` (tested against it), but on a CPU XLA
    runs this matmul faster than its own convolution and that convolution's backward pass
    (benchmarks/cnn_conv.py). Anything else is refused: it computes no other convolution."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)

        def ones(v) -> bool:
            return v is None or v == 1 or (isinstance(v, (tuple, list)) and all(e == 1 for e in v))

        checks = [
            ("kernel_size", tuple(self.kernel_size) in KERNELS, "(3, 3) or (3, 1)"),
            ("strides", ones(self.strides), "1"),
            ("padding", self.padding == "SAME", "'SAME'"),
            ("input_dilation", ones(self.input_dilation), "1"),
            ("kernel_dilation", ones(self.kernel_dilation), "1"),
            ("feature_group_count", self.feature_group_count == 1, "1"),
        ]
        bad = [f"{name}={getattr(self, name)!r} (allowed: {allowed})" for name, ok, allowed in checks if not ok]
        if bad:
            raise ValueError(f"SlicedConv computes a 3x3 or 3x1, stride-1, SAME convolution only; got {', '.join(bad)}: use nnx.Conv")

    def __call__(self, x: jax.Array) -> jax.Array:
        n, h, w, c = x.shape
        kh, kw = self.kernel_size
        padded = jnp.pad(x, ((0, 0), (kh // 2, kh // 2), (kw // 2, kw // 2), (0, 0)))
        patches = jnp.concatenate([padded[:, i : i + h, j : j + w, :] for i in range(kh) for j in range(kw)], axis=-1)
        y = patches.reshape(n * h * w, kh * kw * c) @ self.kernel.value.reshape(kh * kw * c, -1)
        if self.bias is not None:
            y = y + self.bias.value
        return y.reshape(n, h, w, -1)


def conv(in_features: int, out_features: int, kernel_size: tuple[int, int], **kwargs) -> nnx.Conv:
    """The conv net's 3x3 (3x1 on a 1-D signal), stride-1, SAME convolution: SlicedConv, or `nnx.Conv`
    itself in plain mode."""
    cls = nnx.Conv if plain() else SlicedConv
    return cls(in_features, out_features, kernel_size, padding="SAME", **kwargs)


def pool(x: jax.Array, window: tuple[int, int]) -> jax.Array:
    """The conv net's 2x2 (2x1 on a 1-D signal) max pooling with stride = window: ours, or
    `nnx.max_pool` itself in plain mode."""
    if plain():
        return nnx.max_pool(x, window, strides=window, padding="VALID")
    return max_pool_2x2(x) if window == (2, 2) else max_pool_2x1(x)
