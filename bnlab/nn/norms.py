"""Normalisation layers (registry). Each is built as `build(features, spatial, model_cfg, rngs)`
and called as `layer(x, train=..., rng=None)`; they sit between the linear map and the
nonlinearity, `act(norm(W x))`, as in Ioffe & Szegedy. `rng` (a key, or None) is the step's
randomness, used only by the noisy norms.

Batch-statistic norms compute their statistics per feature over every axis but the last: the
batch, and for convolutions also space. All of them keep running averages with the Flax/Keras
convention `running = momentum * running + (1 - momentum) * batch_stat` and use them in
evaluation. Their parameters are named `scale` (γ) and `bias` (β), their statistics `mean` and
`var` (whitening: `cov`), so population statistics and folding treat them alike.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
from flax import nnx

from ..config.schema import Config, ModelConfig
from ..registry import Registry
from .traced import TakesNumbers


@dataclass(frozen=True)
class Norm:
    build: Callable[[int, bool, ModelConfig, nnx.Rngs], nnx.Module]
    absorbs_bias: bool  # a bias before it is redundant (it subtracts a per-feature mean), so the layer drops it
    population: bool = False  # has mean/var batch statistics, so Algorithm 2's population statistics apply
    folds: bool = False  # its evaluation is plain BN's affine map, so it folds into the layer below (nn.fold)


NORMS: Registry[Norm] = Registry("norm", "model.norm")


def _gamma_init(cfg: ModelConfig):
    return nnx.initializers.constant(cfg.norm_gamma_init)


class Identity(nnx.Module):
    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:
        return x


@jax.custom_jvp
def batch_normalize(x: jax.Array, scale: jax.Array, bias: jax.Array, epsilon) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Training-mode BN over every axis but the last, in the operations of Flax's (two-pass variance,
    as `nnx.BatchNorm(use_fast_variance=False)`; bit for bit, tested): (output, batch mean, batch
    variance)."""
    axes = tuple(range(x.ndim - 1))
    mean = x.mean(axes)
    var = jnp.square(x - mean).mean(axes)
    return (x - mean) * (jax.lax.rsqrt(var + epsilon) * scale) + bias, mean, var


@batch_normalize.defjvp
def _batch_normalize_jvp(primals, tangents):
    """dy = gamma s (dx - mean(dx) - x_hat mean(x_hat dx)) + x_hat dgamma + dbeta, s = 1/sqrt(var + eps),
    written so that its transpose, the gradient, takes two reductions of the output's gradient
    (sum dy, sum x_hat dy: the same two that give dgamma and dbeta, so XLA computes them once) and one
    elementwise pass, where autodiff of the forward pass took four reductions and more passes."""
    x, scale, bias, epsilon = primals
    tx, tscale, tbias, _ = tangents
    y, mean, var = batch_normalize(x, scale, bias, epsilon)
    axes = tuple(range(x.ndim - 1))
    s = jax.lax.rsqrt(var + epsilon)
    x_hat = (x - mean) * s
    u = tx * (scale * s)
    c1, c2 = -u.mean(axes), -(x_hat * u).mean(axes)
    ty = u + c1 + x_hat * c2 + x_hat * tscale + tbias
    return (y, mean, var), (ty, tx.mean(axes), 2 * ((x - mean) * tx).mean(axes))


BN_NUMBERS = {"bn_momentum": "momentum", "norm_epsilon": "epsilon"}


class BatchNorm(TakesNumbers, nnx.BatchNorm):
    """`nnx.BatchNorm`, whose values and running averages it keeps bit for bit, with the gradient of
    training mode from `batch_normalize`'s own rule (the same to rounding; faster on a CPU)."""

    NUMBERS = BN_NUMBERS

    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:  # type: ignore[override]
        if not train or self.use_fast_variance:  # batch_normalize is the two-pass variance's
            return super().__call__(x, use_running_average=not train)
        y, mean, var = batch_normalize(x, self.scale.value, self.bias.value, self.epsilon)
        self.mean.value = self.momentum * self.mean.value + (1 - self.momentum) * mean
        self.var.value = self.momentum * self.var.value + (1 - self.momentum) * var
        return y


class LayerNorm(TakesNumbers, nnx.LayerNorm):
    NUMBERS = {"norm_epsilon": "epsilon"}

    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:  # type: ignore[override]
        return super().__call__(x)


class GroupNorm(TakesNumbers, nnx.GroupNorm):
    NUMBERS = {"norm_epsilon": "epsilon"}

    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:  # type: ignore[override]
        return super().__call__(x)


def santurkar_noise(x: jax.Array, rng: jax.Array) -> jax.Array:
    """Santurkar et al. 2018, App. A.2.1, Algorithm 1: a <- s*a + m where, at this step, every unit j
    draws mu_j ~ U(-0.5, 0.5) and sigma_j ~ U(1, 1.25), then every example (and, for convolutions,
    every position: height and width count as batch) draws m ~ U(mu_j - 0.1, mu_j + 0.1) and
    s ~ N(sigma_j, 0.1)."""
    k_mu, k_sigma, k_m, k_s = jax.random.split(rng, 4)
    units = x.shape[-1:]
    mu = jax.random.uniform(k_mu, units, minval=-0.5, maxval=0.5)
    sigma = jax.random.uniform(k_sigma, units, minval=1.0, maxval=1.25)
    m = mu + jax.random.uniform(k_m, x.shape, minval=-0.1, maxval=0.1)
    s = sigma + 0.1 * jax.random.normal(k_s, x.shape)
    return s * x + m


class _RunningStats(TakesNumbers, nnx.Module):
    """γ, β and running statistics per feature, shared by the batch-statistic norms written here."""

    NUMBERS = BN_NUMBERS

    def __init__(self, features: int, cfg: ModelConfig):
        self.scale = nnx.Param(jnp.full((features,), cfg.norm_gamma_init, jnp.float32))
        self.bias = nnx.Param(jnp.zeros((features,), jnp.float32))
        self.momentum = cfg.bn_momentum
        self.epsilon = cfg.norm_epsilon

    def _update(self, stat: nnx.BatchStat, batch_value: jax.Array) -> None:
        stat.value = self.momentum * stat.value + (1 - self.momentum) * batch_value

    def _affine(self, x_hat: jax.Array) -> jax.Array:
        return x_hat * self.scale.value + self.bias.value


class GhostBatchNorm(_RunningStats):
    """Hoffer et al. 2017: BN statistics over virtual sub-batches of `model.ghost_batch_size`
    examples. As their code (`eladhoffer/bigBatch`, main_gbn.py) runs the ghost batches through the
    model one after another, the running averages take one update per ghost batch, in order: k
    updates per step (with this suite's convention, the biased variance)."""

    def __init__(self, features: int, cfg: ModelConfig):
        super().__init__(features, cfg)
        self.ghost = cfg.ghost_batch_size
        self.mean = nnx.BatchStat(jnp.zeros((features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((features,), jnp.float32))

    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:
        if not train:
            return self._affine((x - self.mean.value) / jnp.sqrt(self.var.value + self.epsilon))
        n = x.shape[0]
        if n % self.ghost:
            raise ValueError(f"ghost_batch: a batch of {n} is not a multiple of model.ghost_batch_size={self.ghost}")
        g = x.reshape((n // self.ghost, self.ghost) + x.shape[1:])
        axes = tuple(range(1, g.ndim - 1))
        mean = g.mean(axes, keepdims=True)
        var = jnp.mean(jnp.square(g - mean), axes, keepdims=True)
        self._update_in_turn(self.mean, mean.reshape(-1, x.shape[-1]))
        self._update_in_turn(self.var, var.reshape(-1, x.shape[-1]))
        return self._affine(((g - mean) / jnp.sqrt(var + self.epsilon)).reshape(x.shape))

    def _update_in_turn(self, stat: nnx.BatchStat, ghost_values: jax.Array) -> None:
        """k updates running <- m running + (1 - m) s_j, j = 1..k, in closed form:
        m^k running + sum_j (1 - m) m^(k - j) s_j."""
        k = ghost_values.shape[0]
        weights = (1 - self.momentum) * self.momentum ** jnp.arange(k - 1, -1, -1, dtype=jnp.float32)
        stat.value = self.momentum**k * stat.value + jnp.einsum("k,kf->f", weights, ghost_values)


class BatchRenorm(_RunningStats):
    """Batch Renormalization (Ioffe 2017, Algorithm 1): in training x_hat = (x - mu_B) / sigma_B * r + d
    with sigma_B = sqrt(var_B + eps), r = clip(sigma_B / sigma, 1/rmax, rmax) and
    d = clip((mu_B - mu) / sigma, -dmax, dmax), both constants to the gradient (stop_gradient), where
    mu and sigma are moving averages of mu_B and of sigma_B itself (not of the variance); evaluation
    uses (x - mu) / sigma. The limits are constant, or, as in the paper's Sec. 4, r = 1 and d = 0
    (plain BN) until step `renorm_relax_from`, then relaxed linearly to reach rmax at step
    `renorm_rmax_at` and dmax at step `renorm_dmax_at`; a `steps` statistic counts the updates."""

    NUMBERS = {**BN_NUMBERS, "renorm_rmax": "rmax", "renorm_dmax": "dmax"}

    def __init__(self, features: int, cfg: ModelConfig):
        super().__init__(features, cfg)
        self.rmax, self.dmax = cfg.renorm_rmax, cfg.renorm_dmax
        self.relax_from, self.rmax_at, self.dmax_at = cfg.renorm_relax_from, cfg.renorm_rmax_at, cfg.renorm_dmax_at
        self.mean = nnx.BatchStat(jnp.zeros((features,), jnp.float32))
        self.std = nnx.BatchStat(jnp.ones((features,), jnp.float32))
        if self.rmax_at or self.dmax_at:
            self.steps = nnx.BatchStat(jnp.zeros((), jnp.float32))

    def _limits(self) -> tuple[jax.Array, jax.Array]:
        if not (self.rmax_at or self.dmax_at):
            return jnp.float32(self.rmax), jnp.float32(self.dmax)

        def relaxed(full_at: int) -> jax.Array:
            return jnp.clip((self.steps.value - self.relax_from) / max(full_at - self.relax_from, 1), 0.0, 1.0)

        return 1 + (self.rmax - 1) * relaxed(self.rmax_at or self.relax_from), self.dmax * relaxed(self.dmax_at or self.relax_from)

    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:
        if not train:
            return self._affine((x - self.mean.value) / self.std.value)
        axes = tuple(range(x.ndim - 1))
        mean = x.mean(axes)
        sigma_b = jnp.sqrt(jnp.mean(jnp.square(x - mean), axes) + self.epsilon)
        rmax, dmax = self._limits()
        r = jax.lax.stop_gradient(jnp.clip(sigma_b / self.std.value, 1 / rmax, rmax))
        d = jax.lax.stop_gradient(jnp.clip((mean - self.mean.value) / self.std.value, -dmax, dmax))
        self._update(self.mean, mean)
        self._update(self.std, sigma_b)
        if hasattr(self, "steps"):
            self.steps.value = self.steps.value + 1
        return self._affine((x - mean) / sigma_b * r + d)


class NoisyBatchNorm(BatchNorm):
    """BN followed by Santurkar et al.'s time-varying, non-i.i.d. noise (training only)."""

    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:  # type: ignore[override]
        y = super().__call__(x, train=train)
        return santurkar_noise(y, rng) if train and rng is not None else y


class Noise(nnx.Module):
    """Santurkar et al.'s noise alone, without BN (training only)."""

    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:
        return santurkar_noise(x, rng) if train and rng is not None else x


class LpNorm(_RunningStats):
    """Santurkar et al. 2018, Sec. 3.3: subtract the batch mean and divide by the average l_p
    deviation over the batch, with epsilon where BN puts it: (mean |x - mu|^p + eps)^(1/p) for
    p in {1, 2}, max |x - mu| + eps for p = inf. So p = 2 is BN exactly (its running statistic,
    `var`, is then the variance; for other p it is the p-th moment, or the max)."""

    def __init__(self, features: int, cfg: ModelConfig):
        super().__init__(features, cfg)
        self.p = cfg.lp_p
        self.mean = nnx.BatchStat(jnp.zeros((features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((features,), jnp.float32))  # running p-th moment (the max for p = inf)

    def _scale(self, moment: jax.Array) -> jax.Array:
        return moment + self.epsilon if math.isinf(self.p) else (moment + self.epsilon) ** (1 / self.p)

    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:
        if not train:
            return self._affine((x - self.mean.value) / self._scale(self.var.value))
        axes = tuple(range(x.ndim - 1))
        mean = x.mean(axes)
        dev = jnp.abs(x - mean)
        moment = jnp.max(dev, axes) if math.isinf(self.p) else jnp.mean(dev**self.p, axes)
        self._update(self.mean, mean)
        self._update(self.var, moment)
        return self._affine((x - mean) / self._scale(moment))


class Whiten(_RunningStats):
    """Decorrelated BN (Huang et al. 2018): ZCA-whiten each group of `model.whiten_group_size`
    features over the batch (and space), x_hat = (x - mu) U diag(lambda + eps)^(-1/2) U^T with
    U, lambda the eigendecomposition of the group's covariance, then γ, β. Evaluation whitens
    with the running mean and running covariance."""

    def __init__(self, features: int, cfg: ModelConfig):
        super().__init__(features, cfg)
        self.group = cfg.whiten_group_size or features  # 0: all features together (full ZCA)
        groups = features // self.group
        self.mean = nnx.BatchStat(jnp.zeros((features,), jnp.float32))
        self.cov = nnx.BatchStat(jnp.broadcast_to(jnp.eye(self.group), (groups, self.group, self.group)).astype(jnp.float32))

    def _whiten(self, xc: jax.Array, cov: jax.Array) -> jax.Array:
        """xc: (M, groups, group) centred; cov: (groups, group, group)."""
        lam, U = jnp.linalg.eigh(cov)
        W = jnp.einsum("gij,gj,gkj->gik", U, 1.0 / jnp.sqrt(lam + self.epsilon), U)
        return jnp.einsum("mgi,gij->mgj", xc, W)

    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:
        flat = x.reshape(-1, x.shape[-1])
        grouped_shape = (flat.shape[0], flat.shape[1] // self.group, self.group)
        if train:
            mean = flat.mean(0)
            xc = (flat - mean).reshape(grouped_shape)
            cov = jnp.einsum("mgi,mgj->gij", xc, xc) / flat.shape[0]
            self._update(self.mean, mean)
            self._update(self.cov, cov)
        else:
            xc = (flat - self.mean.value).reshape(grouped_shape)
            cov = self.cov.value
        return self._affine(self._whiten(xc, cov).reshape(x.shape))


BN_TRACED = ("bn_momentum", "norm_epsilon")  # every norm with running statistics
GAMMA = ("norm_gamma_init",)
BN_DECLARED = {"traced": BN_TRACED, "initial": GAMMA}  # what the norms with running statistics and a γ declare


def _divides_width(key: str, zero_means_all: bool = False):
    """A check that model.<key> divides the width (for convolutions every stage's channels are a
    multiple of it)."""

    def check(cfg: Config):
        m, value = cfg.model, getattr(cfg.model, key)
        if not ((zero_means_all and value == 0) or (value >= 1 and m.width % value == 0)):
            yield f"model.{key}: must divide model.width ({m.width}){', or be 0 (all features)' if zero_means_all else ''}, got {value}"

    return check


def _ghost_divides_batch(cfg: Config):
    m, t = cfg.model, cfg.train
    if not t.full_batch and not (m.ghost_batch_size >= 1 and t.batch_size % m.ghost_batch_size == 0):
        yield f"model.ghost_batch_size: must divide train.batch_size ({t.batch_size}), got {m.ghost_batch_size}"


def _lp_p(cfg: Config):
    if cfg.model.lp_p not in (1.0, 2.0, float("inf")):
        yield f"model.lp_p: allowed 1, 2, inf; got {cfg.model.lp_p}"


def _renorm_limits(cfg: Config):
    m = cfg.model
    if not (m.renorm_relax_from >= 0 and all(at == 0 or at > m.renorm_relax_from for at in (m.renorm_rmax_at, m.renorm_dmax_at))):
        yield (
            f"model.renorm_rmax_at, model.renorm_dmax_at: 0 (no ramp) or steps after model.renorm_relax_from ({m.renorm_relax_from}), "
            f"got {m.renorm_rmax_at}, {m.renorm_dmax_at}"
        )
    if not (m.renorm_rmax >= 1 and m.renorm_dmax >= 0):
        yield f"model.renorm_rmax, model.renorm_dmax: need rmax >= 1 and dmax >= 0, got {m.renorm_rmax}, {m.renorm_dmax}"


NORMS.register("none", doc="no normalisation; the linear layer keeps its bias", colour="#7f7f7f")(
    Norm(lambda f, spatial, cfg, rngs: Identity(), absorbs_bias=False)
)


def _flax_bn(cls):
    return lambda f, spatial, cfg, rngs: cls(
        f, momentum=cfg.bn_momentum, epsilon=cfg.norm_epsilon, scale_init=_gamma_init(cfg), use_fast_variance=False, rngs=rngs
    )


NORMS.register(
    "batch",
    doc="Batch Normalization (Ioffe & Szegedy 2015); per feature/channel over the batch (and space)",
    **BN_DECLARED,
    colour="#1f77b4",
)(Norm(_flax_bn(BatchNorm), absorbs_bias=True, population=True, folds=True))
NORMS.register(
    "ghost_batch",
    doc="Ghost BN (Hoffer et al. 2017): BN statistics over virtual batches of model.ghost_batch_size",
    options=("ghost_batch_size",),
    **BN_DECLARED,
    check=_ghost_divides_batch,
    colour="#9467bd",
)(Norm(lambda f, spatial, cfg, rngs: GhostBatchNorm(f, cfg), absorbs_bias=True, population=True, folds=True))
NORMS.register(
    "batch_renorm",
    doc="Batch Renormalization (Ioffe 2017); r, d clipped by model.renorm_rmax, renorm_dmax",
    options=("renorm_relax_from", "renorm_rmax_at", "renorm_dmax_at"),
    traced=BN_TRACED + ("renorm_rmax", "renorm_dmax"),
    initial=GAMMA,
    check=_renorm_limits,
)(Norm(lambda f, spatial, cfg, rngs: BatchRenorm(f, cfg), absorbs_bias=True, population=True, folds=True))
NORMS.register(
    "noisy_batch",
    doc="BN followed by Santurkar et al.'s (2018) time-varying noise, in training",
    **BN_DECLARED,
    colour="#d62728",
)(Norm(_flax_bn(NoisyBatchNorm), absorbs_bias=True, population=True, folds=True))
NORMS.register("noise", doc="Santurkar et al.'s (2018) noise alone, without BN, in training", colour="#8c564b")(
    Norm(lambda f, spatial, cfg, rngs: Noise(), absorbs_bias=False)
)
NORMS.register(
    "lp",
    doc="l_p normalisation (Santurkar et al. 2018, Sec. 3.3): divide by the batch's mean l_p deviation, p = model.lp_p",
    options=("lp_p",),
    **BN_DECLARED,
    check=_lp_p,
)(Norm(lambda f, spatial, cfg, rngs: LpNorm(f, cfg), absorbs_bias=True))
NORMS.register(
    "whiten",
    doc="ZCA whitening over the batch in groups of model.whiten_group_size (Huang et al. 2018)",
    options=("whiten_group_size",),
    **BN_DECLARED,
    check=_divides_width("whiten_group_size", zero_means_all=True),
)(Norm(lambda f, spatial, cfg, rngs: Whiten(f, cfg), absorbs_bias=True))
NORMS.register(
    "layer",
    doc="Layer Normalization (Ba et al. 2016); per example over features (and space)",
    traced=("norm_epsilon",),
    initial=GAMMA,
    colour="#ff7f0e",
)(
    Norm(
        lambda f, spatial, cfg, rngs: LayerNorm(
            f,
            epsilon=cfg.norm_epsilon,
            reduction_axes=(-3, -2, -1) if spatial else -1,
            feature_axes=-1,
            scale_init=_gamma_init(cfg),
            use_fast_variance=False,
            rngs=rngs,
        ),
        absorbs_bias=False,
    )
)
NORMS.register(
    "group",
    doc="Group Normalization (Wu & He 2018); per example over model.groups channel groups (and space)",
    options=("groups",),
    traced=("norm_epsilon",),
    initial=GAMMA,
    check=_divides_width("groups"),
    colour="#2ca02c",
)(
    Norm(
        lambda f, spatial, cfg, rngs: GroupNorm(
            f, num_groups=cfg.groups, epsilon=cfg.norm_epsilon, scale_init=_gamma_init(cfg), use_fast_variance=False, rngs=rngs
        ),
        absorbs_bias=False,
    )
)
