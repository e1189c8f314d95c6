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

from ..config.schema import ModelConfig
from ..registry import Registry


@dataclass(frozen=True)
class Norm:
    build: Callable[[int, bool, ModelConfig, nnx.Rngs], nnx.Module]
    absorbs_bias: bool  # a bias before it is redundant (it subtracts a per-feature mean), so the layer drops it
    population: bool = False  # has mean/var batch statistics, so Algorithm 2's population statistics apply


NORMS: Registry[Norm] = Registry("norm", "model.norm")


def _gamma_init(cfg: ModelConfig):
    return nnx.initializers.constant(cfg.norm_gamma_init)


class Identity(nnx.Module):
    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:
        return x


class BatchNorm(nnx.BatchNorm):
    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:  # type: ignore[override]
        return super().__call__(x, use_running_average=not train)


class LayerNorm(nnx.LayerNorm):
    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:  # type: ignore[override]
        return super().__call__(x)


class GroupNorm(nnx.GroupNorm):
    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:  # type: ignore[override]
        return super().__call__(x)


def santurkar_noise(x: jax.Array, rng: jax.Array) -> jax.Array:
    """Santurkar et al. 2018, Sec. 2.1 / Fig. 2: a <- s*a + m with, for this step and layer,
    mu ~ U(-0.5, 0.5), sigma ~ U(1, 1.25), and per element m ~ U(mu - 0.1, mu + 0.1), s ~ N(sigma, 0.1)."""
    k_mu, k_sigma, k_m, k_s = jax.random.split(rng, 4)
    mu = jax.random.uniform(k_mu, (), minval=-0.5, maxval=0.5)
    sigma = jax.random.uniform(k_sigma, (), minval=1.0, maxval=1.25)
    m = jax.random.uniform(k_m, x.shape, minval=mu - 0.1, maxval=mu + 0.1)
    s = sigma + 0.1 * jax.random.normal(k_s, x.shape)
    return s * x + m


class _RunningStats(nnx.Module):
    """γ, β and running statistics per feature, shared by the batch-statistic norms written here."""

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
    examples. The running averages take the mean over ghost batches of their means and (biased)
    variances, once per step."""

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
        self._update(self.mean, mean.reshape(-1, x.shape[-1]).mean(0))
        self._update(self.var, var.reshape(-1, x.shape[-1]).mean(0))
        return self._affine(((g - mean) / jnp.sqrt(var + self.epsilon)).reshape(x.shape))


class BatchRenorm(_RunningStats):
    """Batch Renormalization (Ioffe 2017): in training x_hat = (x - mu_B) / sigma_B * r + d with
    r = clip(sigma_B / sigma, 1/rmax, rmax) and d = clip((mu_B - mu) / sigma, -dmax, dmax), both
    treated as constants by the gradient (stop_gradient), mu and sigma the running statistics.
    rmax/dmax are constants here (`model.renorm_rmax`, `model.renorm_dmax`), not the paper's ramp."""

    def __init__(self, features: int, cfg: ModelConfig):
        super().__init__(features, cfg)
        self.rmax, self.dmax = cfg.renorm_rmax, cfg.renorm_dmax
        self.mean = nnx.BatchStat(jnp.zeros((features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((features,), jnp.float32))

    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:
        sigma = jnp.sqrt(self.var.value + self.epsilon)
        if not train:
            return self._affine((x - self.mean.value) / sigma)
        axes = tuple(range(x.ndim - 1))
        mean = x.mean(axes)
        var = jnp.mean(jnp.square(x - mean), axes)
        sigma_b = jnp.sqrt(var + self.epsilon)
        r = jax.lax.stop_gradient(jnp.clip(sigma_b / sigma, 1 / self.rmax, self.rmax))
        d = jax.lax.stop_gradient(jnp.clip((mean - self.mean.value) / sigma, -self.dmax, self.dmax))
        self._update(self.mean, mean)
        self._update(self.var, var)
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
    """Santurkar et al. 2018, Sec. 3.3: subtract the batch mean and divide by the average l_p norm
    over the batch, (mean |x - mu|^p)^(1/p), p in {1, 2, inf} (p = inf: the max). p = 2 is BN."""

    def __init__(self, features: int, cfg: ModelConfig):
        super().__init__(features, cfg)
        self.p = cfg.lp_p
        self.mean = nnx.BatchStat(jnp.zeros((features,), jnp.float32))
        self.var = nnx.BatchStat(jnp.ones((features,), jnp.float32))  # here: the running l_p "scale"

    def __call__(self, x: jax.Array, *, train: bool, rng=None) -> jax.Array:
        if not train:
            return self._affine((x - self.mean.value) / (self.var.value + self.epsilon))
        axes = tuple(range(x.ndim - 1))
        mean = x.mean(axes)
        dev = jnp.abs(x - mean)
        scale = jnp.max(dev, axes) if math.isinf(self.p) else jnp.mean(dev**self.p, axes) ** (1 / self.p)
        self._update(self.mean, mean)
        self._update(self.var, scale)
        return self._affine((x - mean) / (scale + self.epsilon))


class Whiten(_RunningStats):
    """Decorrelated BN (Huang et al. 2018): ZCA-whiten each group of `model.whiten_group_size`
    features over the batch (and space), x_hat = (x - mu) U diag(lambda + eps)^(-1/2) U^T with
    U, lambda the eigendecomposition of the group's covariance, then γ, β. Evaluation whitens
    with the running mean and running covariance."""

    def __init__(self, features: int, cfg: ModelConfig):
        super().__init__(features, cfg)
        self.group = cfg.whiten_group_size
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


NORMS.register("none", doc="no normalisation; the linear layer keeps its bias")(Norm(lambda f, spatial, cfg, rngs: Identity(), absorbs_bias=False))


def _flax_bn(cls):
    return lambda f, spatial, cfg, rngs: cls(f, momentum=cfg.bn_momentum, epsilon=cfg.norm_epsilon, scale_init=_gamma_init(cfg), rngs=rngs)


NORMS.register("batch", doc="Batch Normalization (Ioffe & Szegedy 2015); per feature/channel over the batch (and space)")(
    Norm(_flax_bn(BatchNorm), absorbs_bias=True, population=True)
)
NORMS.register("ghost_batch", doc="Ghost BN (Hoffer et al. 2017): BN statistics over virtual batches of model.ghost_batch_size")(
    Norm(lambda f, spatial, cfg, rngs: GhostBatchNorm(f, cfg), absorbs_bias=True, population=True)
)
NORMS.register("batch_renorm", doc="Batch Renormalization (Ioffe 2017); r, d clipped by model.renorm_rmax, renorm_dmax")(
    Norm(lambda f, spatial, cfg, rngs: BatchRenorm(f, cfg), absorbs_bias=True, population=True)
)
NORMS.register("noisy_batch", doc="BN followed by Santurkar et al.'s (2018) time-varying noise, in training")(
    Norm(_flax_bn(NoisyBatchNorm), absorbs_bias=True, population=True)
)
NORMS.register("noise", doc="Santurkar et al.'s (2018) noise alone, without BN, in training")(
    Norm(lambda f, spatial, cfg, rngs: Noise(), absorbs_bias=False)
)
NORMS.register("lp", doc="l_p normalisation (Santurkar et al. 2018, Sec. 3.3): divide by the batch's mean l_p deviation, p = model.lp_p")(
    Norm(lambda f, spatial, cfg, rngs: LpNorm(f, cfg), absorbs_bias=True)
)
NORMS.register("whiten", doc="ZCA whitening over the batch in groups of model.whiten_group_size (Huang et al. 2018)")(
    Norm(lambda f, spatial, cfg, rngs: Whiten(f, cfg), absorbs_bias=True)
)
NORMS.register("layer", doc="Layer Normalization (Ba et al. 2016); per example over features (and space)")(
    Norm(
        lambda f, spatial, cfg, rngs: LayerNorm(
            f, epsilon=cfg.norm_epsilon, reduction_axes=(-3, -2, -1) if spatial else -1, feature_axes=-1, scale_init=_gamma_init(cfg), rngs=rngs
        ),
        absorbs_bias=False,
    )
)
NORMS.register("group", doc="Group Normalization (Wu & He 2018); per example over model.groups channel groups (and space)")(
    Norm(
        lambda f, spatial, cfg, rngs: GroupNorm(f, num_groups=cfg.groups, epsilon=cfg.norm_epsilon, scale_init=_gamma_init(cfg), rngs=rngs),
        absorbs_bias=False,
    )
)
