"""Normalisation layers (registry). Each is built as `build(features, spatial, model_cfg, rngs)`
and called as `layer(x, train=...)`; they sit between the linear map and the nonlinearity,
`act(norm(W x))`, as in Ioffe & Szegedy.

- batch: statistics per feature over the batch (and, for convolutions, over space too), biased
  variance in training (Algorithm 1); running averages
  `running = momentum * running + (1 - momentum) * batch_stat` for evaluation.
- layer: statistics per example over the features (and space, for convolutions).
- group: statistics per example over groups of channels (and space).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import jax
from flax import nnx

from .config import ModelConfig
from .registry import Registry


@dataclass(frozen=True)
class Norm:
    build: Callable[[int, bool, ModelConfig, nnx.Rngs], nnx.Module]
    absorbs_bias: bool  # a bias before it is redundant (BN's beta replaces it), so the layer drops it


NORMS: Registry[Norm] = Registry("norm", "model.norm")


class Identity(nnx.Module):
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:
        return x


class BatchNorm(nnx.BatchNorm):
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:  # type: ignore[override]
        return super().__call__(x, use_running_average=not train)


class LayerNorm(nnx.LayerNorm):
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:  # type: ignore[override]
        return super().__call__(x)


class GroupNorm(nnx.GroupNorm):
    def __call__(self, x: jax.Array, *, train: bool) -> jax.Array:  # type: ignore[override]
        return super().__call__(x)


NORMS.register("none", doc="no normalisation; the linear layer keeps its bias")(
    Norm(lambda f, spatial, cfg, rngs: Identity(), absorbs_bias=False)
)
NORMS.register("batch", doc="Batch Normalization (Ioffe & Szegedy 2015); per feature/channel over the batch (and space)")(
    Norm(
        lambda f, spatial, cfg, rngs: BatchNorm(f, momentum=cfg.bn_momentum, epsilon=cfg.norm_epsilon, rngs=rngs),
        absorbs_bias=True,
    )
)
NORMS.register("layer", doc="Layer Normalization (Ba et al. 2016); per example over features (and space)")(
    Norm(
        lambda f, spatial, cfg, rngs: LayerNorm(
            f, epsilon=cfg.norm_epsilon, reduction_axes=(-3, -2, -1) if spatial else -1, feature_axes=-1, rngs=rngs
        ),
        absorbs_bias=False,
    )
)
NORMS.register("group", doc="Group Normalization (Wu & He 2018); per example over model.groups channel groups (and space)")(
    Norm(lambda f, spatial, cfg, rngs: GroupNorm(f, num_groups=cfg.groups, epsilon=cfg.norm_epsilon, rngs=rngs), absorbs_bias=False)
)
