"""Kernel initialisers (registry), and `model.init_scale` applied on top of any of them."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
from flax import nnx

from ..config.schema import ModelConfig
from ..registry import Registry

Initializer = Callable[..., jax.Array]

INITIALIZERS: Registry[Callable[[ModelConfig], Initializer]] = Registry("initialiser", "model.init")
SCALE = ("init_scale",)  # kernel_init multiplies every initialiser by it
INITIALIZERS.register("default", doc="the framework default (Flax: LeCun normal)", initial=SCALE)(lambda cfg: nnx.initializers.lecun_normal())
INITIALIZERS.register("lecun_normal", doc="truncated normal, variance 1/fan_in", initial=SCALE)(lambda cfg: nnx.initializers.lecun_normal())
INITIALIZERS.register("glorot_normal", doc="truncated normal, variance 2/(fan_in+fan_out)", initial=SCALE)(
    lambda cfg: nnx.initializers.glorot_normal()
)
INITIALIZERS.register("he_normal", doc="truncated normal, variance 2/fan_in", initial=SCALE)(lambda cfg: nnx.initializers.he_normal())
INITIALIZERS.register("normal", doc="normal with std model.init_std (Ioffe's small random Gaussian)", initial=SCALE + ("init_std",))(
    lambda cfg: nnx.initializers.normal(cfg.init_std)
)


def kernel_init(cfg: ModelConfig) -> Initializer:
    """The configured initialiser times `model.init_scale` (a deliberately bad init when far from 1).
    The init numbers may be traced (one initial-state program per structure), so no branch on them."""
    if cfg.init == "normal":  # one std: the values XLA gave when it folded the two constant factors
        return nnx.initializers.normal(cfg.init_std * cfg.init_scale)
    base = INITIALIZERS.get(cfg.init)(cfg)
    return lambda key, shape, dtype=jnp.float32: cfg.init_scale * base(key, shape, dtype)
