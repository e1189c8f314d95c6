"""Recurrent models over images read row by row (an H x W x C image is a sequence of H steps of
W*C features): a simple (Elman) RNN and an LSTM, with normalisation on the input-to-hidden and/or
hidden-to-hidden paths (`model.rnn_norm_paths`: both | input | hidden).

`model.norm` for these models (registry RNN_NORMS):
- none;
- layer: LayerNorm per example at every step (Ba et al. 2016);
- batch: one BN per path shared by all time steps: each step is normalised with the statistics
  of its own batch, and the single set of running averages is updated at every step;
- batch_per_step: Cooijmans et al. 2016: separate statistics (and running averages) for every
  time step, γ and β shared over time. A sequence longer than in training uses, for the steps
  beyond, the statistics of the last trained step (Cooijmans et al., Sec. 3). Their γ = 0.1
  initialisation is `model.norm_gamma_init: 0.1`.
The LSTM also normalises the cell state before its output tanh whenever a norm is set, whatever
`rnn_norm_paths` says (as Cooijmans et al. and Ba et al. do). At t = 0 the hidden state is zero, so
the hidden path's normalised value is its β; those zeros never enter BN statistics.
Recurrent kernels start orthogonal (times `model.recurrent_gain`); input kernels use `model.init`.
A sequence of another length than in training (`data.eval_lengths`) is read the same way, step by step.
The classifier reads the last step's hidden state.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from ..config.schema import ModelConfig
from ..registry import Registry
from .activations import ACTIVATIONS
from .initializers import kernel_init
from .norms import BN_DECLARED, BN_NUMBERS, GAMMA, BatchNorm, Identity, LayerNorm
from .traced import TakesNumbers


class PerStepBatchNorm(TakesNumbers, nnx.Module):
    """BN with separate statistics for each time step t < steps (Cooijmans et al. 2016)."""

    NUMBERS = BN_NUMBERS

    def __init__(self, features: int, steps: int, cfg: ModelConfig):
        self.scale = nnx.Param(jnp.full((features,), cfg.norm_gamma_init, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((features,), jnp.float32))
        self.mean = nnx.BatchStat(jnp.zeros((steps, features), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((steps, features), jnp.float32))
        self.steps, self.momentum, self.epsilon = steps, cfg.bn_momentum, cfg.norm_epsilon

    def of_zeros(self) -> jax.Array:
        """What normalising an all-zero input gives in training mode (β), without touching statistics."""
        return self.bias.value

    def __call__(self, x: jax.Array, *, t: int, train: bool) -> jax.Array:
        s = min(t, self.steps - 1)  # beyond the trained length: the last step's statistics
        if train:
            mean, var = x.mean(0), x.var(0)
            m = self.momentum
            self.mean.value = self.mean.value.at[s].set(m * self.mean.value[s] + (1 - m) * mean)
            self.var.value = self.var.value.at[s].set(m * self.var.value[s] + (1 - m) * var)
        else:
            mean, var = self.mean.value[s], self.var.value[s]
        return (x - mean) / jnp.sqrt(var + self.epsilon) * self.scale.value + self.bias.value


class SharedOverTime(nnx.Module):
    """Adapter giving time-independent norms the per-step call signature."""

    def __init__(self, norm: nnx.Module):
        self.norm = norm
        self.collect_batch_stats = False  # set on the copy that computes population statistics

    def of_zeros(self) -> jax.Array | float:
        """What normalising an all-zero input gives in training mode: β for BN and LayerNorm (zero
        without a norm), without touching statistics."""
        bias = getattr(self.norm, "bias", None)
        return 0.0 if bias is None else bias.value

    def __call__(self, x: jax.Array, *, t: int, train: bool) -> jax.Array:
        if train and self.collect_batch_stats:  # every step's batch statistics, for averaging over time and batches
            mean = x.mean(0)
            self.sow(nnx.Intermediate, "step_stats", jnp.stack([mean, jnp.mean(jnp.square(x - mean), 0)]))
        return self.norm(x, train=train)


RnnNormBuilder = Callable[[int, int, ModelConfig, nnx.Rngs], nnx.Module]
RNN_NORMS: Registry[RnnNormBuilder] = Registry("recurrent norm", "model.norm")
RNN_NORMS.register("none", doc="no normalisation", colour="#7f7f7f")(lambda f, T, cfg, rngs: SharedOverTime(Identity()))
RNN_NORMS.register("layer", doc="LayerNorm at every step", traced=("norm_epsilon",), initial=GAMMA, colour="#ff7f0e")(
    lambda f, T, cfg, rngs: SharedOverTime(
        LayerNorm(f, epsilon=cfg.norm_epsilon, scale_init=nnx.initializers.constant(cfg.norm_gamma_init), use_fast_variance=False, rngs=rngs)
    )
)
RNN_NORMS.register(
    "batch",
    doc="BN shared over time steps (one set of running averages)",
    **BN_DECLARED,
    colour="#1f77b4",
)(
    lambda f, T, cfg, rngs: SharedOverTime(
        BatchNorm(
            f,
            momentum=cfg.bn_momentum,
            epsilon=cfg.norm_epsilon,
            scale_init=nnx.initializers.constant(cfg.norm_gamma_init),
            use_fast_variance=False,
            rngs=rngs,
        )
    )
)
RNN_NORMS.register(
    "batch_per_step",
    doc="BN with separate statistics per time step (Cooijmans et al. 2016)",
    **BN_DECLARED,
    colour="#17becf",
)(lambda f, T, cfg, rngs: PerStepBatchNorm(f, T, cfg))


def _path_norm(cfg: ModelConfig, path: str, features: int, steps: int, rngs: nnx.Rngs) -> nnx.Module:
    on = cfg.rnn_norm_paths in ("both", path)
    return RNN_NORMS.get(cfg.norm if on else "none")(features, steps, cfg, rngs)


class RecurrentLayer(nnx.Module):
    """One recurrent layer over a (N, T, F) sequence; `gates` = 1 (simple RNN) or 4 (LSTM)."""

    def __init__(self, in_features: int, cfg: ModelConfig, steps: int, gates: int, rngs: nnx.Rngs):
        width = cfg.width
        self.gates = gates
        self.x = nnx.Linear(in_features, gates * width, use_bias=False, kernel_init=kernel_init(cfg), rngs=rngs)
        self.h = nnx.Linear(width, gates * width, use_bias=False, kernel_init=nnx.initializers.orthogonal(cfg.recurrent_gain), rngs=rngs)
        self.bias = nnx.Param(jnp.zeros((gates * width,), jnp.float32))
        self.norm_x = _path_norm(cfg, "input", gates * width, steps, rngs)
        self.norm_h = _path_norm(cfg, "hidden", gates * width, steps, rngs)
        self.norm_c = RNN_NORMS.get(cfg.norm)(width, steps, cfg, rngs) if gates == 4 else None  # the cell: whenever a norm is set
        self.act = ACTIVATIONS.get(cfg.activation)
        self.width = width

    def __call__(self, xs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """(outputs (N, T, width), pre-activations (N, T, gates*width))."""
        n, steps = xs.shape[0], xs.shape[1]
        h = jnp.zeros((n, self.width), xs.dtype)
        c = jnp.zeros((n, self.width), xs.dtype)
        outs, pres = [], []
        for t in range(steps):  # unrolled: T is small (rows of an image), and per-step norms need a static t
            # at t = 0 the hidden path is W_h 0 = 0: its normalised value is β, and zeros stay out of the statistics
            hidden = self.norm_h.of_zeros() if t == 0 else self.norm_h(self.h(h), t=t, train=train)
            pre = self.norm_x(self.x(xs[:, t]), t=t, train=train) + hidden + self.bias.value
            if self.gates == 1:
                h = self.act(pre)
            else:
                i, f, g, o = jnp.split(pre, 4, axis=-1)
                c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
                h = jax.nn.sigmoid(o) * jnp.tanh(self.norm_c(c, t=t, train=train))
            outs.append(h)
            pres.append(pre)
        return jnp.stack(outs, 1), jnp.stack(pres, 1)


class _RowReader(nnx.Module):
    gates = 1

    def __init__(self, image_shape: tuple[int, ...], num_classes: int, cfg: ModelConfig, rngs: nnx.Rngs):
        steps, features = image_shape[0], math.prod(image_shape[1:])
        self.hidden = nnx.List()
        for _ in range(cfg.depth):
            self.hidden.append(RecurrentLayer(features, cfg, steps, self.gates, rngs))
            features = cfg.width
        self.head = nnx.Linear(features, num_classes, kernel_init=kernel_init(cfg), rngs=rngs)

    def __call__(self, x: jax.Array, *, train: bool, rng: jax.Array | None = None, capture: bool = False):
        xs = x.reshape(x.shape[0], x.shape[1], -1)  # rows as time steps
        pres = []
        for layer in self.hidden:
            xs, pre = layer(xs, train=train)
            pres.append(pre)
        logits = self.head(xs[:, -1])
        return (logits, pres) if capture else logits


class SimpleRNN(_RowReader):
    """Simple (Elman) RNN reading the image row by row: h_t = act(N(W_x x_t) + N(W_h h_{t-1}) + b)."""

    gates = 1


class LSTM(_RowReader):
    """LSTM reading the image row by row; gates from N(W_x x_t) + N(W_h h_{t-1}) + b, h_t = o * tanh(N(c_t))."""

    gates = 4
