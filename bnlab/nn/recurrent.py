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
from .norms import BN_DECLARED, BN_NUMBERS, GAMMA, BatchNorm, Identity, LayerNorm, batch_normalize
from .traced import TakesNumbers


class OneStepAtATime:
    """Mixin for the norms along time: called on one step, as a test or a probe does, `step` then the
    update of its statistics (the layers call the two apart, around their scan)."""

    def __call__(self, x: jax.Array, *, t: int, train: bool) -> jax.Array:
        y, stats = self.step(x, t, train=train)
        if stats is not None:
            self.update(stats[None], t)
        return y


class PerStepBatchNorm(OneStepAtATime, TakesNumbers, nnx.Module):
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

    def step(self, x: jax.Array, t, *, train: bool) -> tuple[jax.Array, jax.Array | None]:
        """Step t's output, and in training mode the batch's (mean, variance), stacked, for `update`;
        changes nothing (t may be traced: the step runs inside a scan)."""
        if train:
            y, mean, var = batch_normalize(x, self.scale.value, self.bias.value, self.epsilon)
            return y, jnp.stack([mean, var])
        s = jnp.minimum(t, self.steps - 1)  # beyond the trained length: the last step's statistics
        return (x - self.mean.value[s]) * jax.lax.rsqrt(self.var.value[s] + self.epsilon) * self.scale.value + self.bias.value, None

    def update(self, stats: jax.Array, first: int) -> None:
        """Each step's running averages from its batch statistics (steps first, first+1, ...)."""
        last = first + stats.shape[0]
        if last > self.steps:
            raise ValueError(f"per-step BN trains on {self.steps} steps; got a sequence of {last} in training mode")
        m = self.momentum
        self.mean.value = self.mean.value.at[first:last].set(m * self.mean.value[first:last] + (1 - m) * stats[:, 0])
        self.var.value = self.var.value.at[first:last].set(m * self.var.value[first:last] + (1 - m) * stats[:, 1])


class SharedOverTime(OneStepAtATime, nnx.Module):
    """Adapter giving time-independent norms the per-step interface."""

    def __init__(self, norm: nnx.Module):
        self.norm = norm
        self.collect_batch_stats = False  # set on the copy that computes population statistics

    def of_zeros(self) -> jax.Array | float:
        """What normalising an all-zero input gives in training mode: β for BN and LayerNorm (zero
        without a norm), without touching statistics."""
        bias = getattr(self.norm, "bias", None)
        return 0.0 if bias is None else bias.value

    def step(self, x: jax.Array, t, *, train: bool) -> tuple[jax.Array, jax.Array | None]:
        """Step t's output, and for BN in training mode the batch's (mean, variance) for `update`;
        changes nothing (it runs inside a scan)."""
        if train and isinstance(self.norm, nnx.BatchNorm):
            y, mean, var = batch_normalize(x, self.norm.scale.value, self.norm.bias.value, self.norm.epsilon)
            return y, jnp.stack([mean, var])
        return self.norm(x, train=train), None  # LayerNorm, none, or BN with its running averages: no state changes

    def update(self, stats: jax.Array, first: int) -> None:
        """The running averages after every step's batch statistics in turn (one update per time step,
        in order, as a BN called at each step would); the copy that computes population statistics
        also keeps every step's."""
        if stats.shape[0] == 0:  # a one-step sequence has no hidden path to normalise
            return
        if self.collect_batch_stats:
            self.sow(nnx.Intermediate, "step_stats", stats)
        m = self.norm.momentum

        def one(running, batch):
            return m * running + (1 - m) * batch, None

        running, _ = jax.lax.scan(one, jnp.stack([self.norm.mean.value, self.norm.var.value]), stats)
        self.norm.mean.value, self.norm.var.value = running[0], running[1]


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

    def _cell(self, t, x_t, h, c, hidden, *, train: bool):
        """Step t given the hidden path's normalised value: ((h, c), pre-activation, statistics)."""
        pre_x, stats_x = self.norm_x.step(self.x(x_t), t, train=train)
        pre = pre_x + hidden + self.bias.value
        stats_c = None
        if self.gates == 1:
            h = self.act(pre)
        else:
            i, f, g, o = jnp.split(pre, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            normed_c, stats_c = self.norm_c.step(c, t, train=train)
            h = jax.nn.sigmoid(o) * jnp.tanh(normed_c)
        return (h, c), pre, (stats_x, stats_c)

    def __call__(self, xs: jax.Array, *, train: bool) -> tuple[jax.Array, jax.Array]:
        """(outputs (N, T, width), pre-activations (N, T, gates*width)). Step 0 runs on its own (its
        hidden path is W_h 0 = 0: the normalised value is β, and those zeros stay out of the statistics);
        steps 1.. run in one `jax.lax.scan`, whose body is compiled once: unrolled over 40 steps, an
        LSTM compiled 5-6.5x slower and trained 1.8-3x slower on a CPU (benchmarks/README.md). The norms only
        compute inside the scan; their running averages are updated after it, step by step in order."""
        n, steps = xs.shape[0], xs.shape[1]
        zeros = jnp.zeros((n, self.width), xs.dtype)
        (h, c), pre0, (sx0, sc0) = self._cell(0, xs[:, 0], zeros, zeros, self.norm_h.of_zeros(), train=train)

        def body(carry, inputs):
            h, c = carry
            t, x_t = inputs
            hidden, stats_h = self.norm_h.step(self.h(h), t, train=train)
            carry, pre, (stats_x, stats_c) = self._cell(t, x_t, h, c, hidden, train=train)
            return carry, (carry[0], pre, stats_x, stats_h, stats_c)

        _, (hs, pres, sx, sh, sc) = jax.lax.scan(body, (h, c), (jnp.arange(1, steps), jnp.swapaxes(xs[:, 1:], 0, 1)))
        if train:
            for norm, first, stats in ((self.norm_x, 0, _joined(sx0, sx)), (self.norm_h, 1, sh), (self.norm_c, 0, _joined(sc0, sc))):
                if stats is not None:
                    norm.update(stats, first)
        outs = jnp.concatenate([h[:, None], jnp.swapaxes(hs, 0, 1)], axis=1)
        return outs, jnp.concatenate([pre0[:, None], jnp.swapaxes(pres, 0, 1)], axis=1)


def _joined(first: jax.Array | None, rest: jax.Array | None) -> jax.Array | None:
    """Step 0's statistics followed by the scanned steps' (T, 2, features); None for a norm without."""
    return None if first is None else jnp.concatenate([first[None], rest], axis=0)


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
