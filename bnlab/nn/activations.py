"""Activations (registry): the nonlinearity after each norm, `act(norm(W x))`."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

from ..registry import Registry

ACTIVATIONS: Registry[Callable[[jax.Array], jax.Array]] = Registry("activation", "model.activation")
ACTIVATIONS.register("sigmoid", doc="logistic sigmoid (saturates; Ioffe & Szegedy's MNIST net)")(jax.nn.sigmoid)
ACTIVATIONS.register("tanh", doc="hyperbolic tangent")(jnp.tanh)
ACTIVATIONS.register("relu", doc="rectified linear unit")(jax.nn.relu)
ACTIVATIONS.register("gelu", doc="Gaussian error linear unit")(jax.nn.gelu)
ACTIVATIONS.register("elu", doc="exponential linear unit")(jax.nn.elu)
ACTIVATIONS.register("linear", doc="identity (deep linear networks)")(lambda x: x)
