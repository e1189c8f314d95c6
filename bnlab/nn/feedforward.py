"""Feed-forward models: MLP, a small VGG-style CNN and the deep linear network.

Every hidden layer is `dropout(act(norm(W x)))` (Ioffe & Szegedy's placement); the bias of W is
dropped when the norm absorbs it (BN). Models are called as
`model(x, train=..., rng=..., capture=False)`: `train` selects batch statistics for BN, an `rng`
key switches on the step's randomness (dropout, noisy norms; without one the model is
deterministic, as in evaluation and probes), and `capture=True` also returns every hidden layer's
pre-activation (for activation diagnostics), `capture="linear"` every hidden layer's W x instead.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
from flax import nnx

from ..config.schema import ModelConfig
from .activations import ACTIVATIONS
from .initializers import kernel_init
from .kernels import conv, pool
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

    def __call__(self, x: jax.Array, *, train: bool, rng: jax.Array | None, linear: bool = False) -> tuple[jax.Array, jax.Array]:
        """(output, pre-activation): the pre-activation is the nonlinearity's input, norm(W x), or
        with `linear` the norm's input W x (what a norm's own statistics cannot hold still)."""
        norm_rng, dropout_rng = (None, None) if rng is None else jax.random.split(rng)
        wx = self.layer(x)
        pre = self.norm(wx, train=train, rng=norm_rng)
        x = self.act(pre)
        if self.dropout_on and dropout_rng is not None:  # no key: deterministic (probes, evaluation)
            keep = 1.0 - self.dropout_rate  # inverted dropout, as nnx.Dropout (whose rate must be a Python number)
            x = jnp.where(jax.random.bernoulli(dropout_rng, keep, x.shape), x / keep, 0.0)
        return x, wx if linear else pre


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
            x, pre = layer(x, train=train, rng=key, linear=capture == "linear")
            pres.append(pre)
        logits = self.head(x)
        return (logits, pres) if capture else logits


class CNN(nnx.Module):
    """Small VGG-style net: `depth` stages of `convs_per_stage` 3x3 convs (width * 2**stage channels),
    each stage ending in 2x2 max pooling while the image is larger than 1 pixel, then a linear classifier.
    A one-pixel-wide image is a 1-D signal (MNIST-1D): 3x1 convs and 2x1 pooling along its length."""

    def __init__(self, image_shape: tuple[int, int, int], num_classes: int, cfg: ModelConfig, rngs: nnx.Rngs):
        norm = NORMS.get(cfg.norm)
        init = kernel_init(cfg)
        h, w, channels = image_shape
        one_d = w == 1 and h > 1
        kernel, self.window = ((3, 1), (2, 1)) if one_d else ((3, 3), (2, 2))
        self.hidden = nnx.List()
        self.pool_after: list[bool] = []
        for stage in range(cfg.depth):
            out = cfg.width * 2**stage
            for i in range(cfg.convs_per_stage):
                layer = conv(channels, out, kernel, use_bias=not norm.absorbs_bias, kernel_init=init, rngs=rngs)
                self.hidden.append(Hidden(layer, norm.build(out, True, cfg, rngs), cfg))
                channels = out
                last = i == cfg.convs_per_stage - 1
                pooled = last and h > 1 and (w > 1 or one_d)
                self.pool_after.append(pooled)
                if pooled:
                    h, w = h // self.window[0], w // self.window[1]
        self.head = nnx.Linear(h * w * channels, num_classes, kernel_init=init, rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, rng: jax.Array | None = None, capture: bool = False):
        pres = []
        for layer, pooled, key in zip(self.hidden, self.pool_after, _split_key(rng, len(self.hidden))):
            x, pre = layer(x, train=train, rng=key, linear=capture == "linear")
            pres.append(pre)
            if pooled:
                x = pool(x, self.window)
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
