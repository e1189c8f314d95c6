"""The training state and the per-example loss shared by training, evaluation and measurements."""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from ..config.schema import Config

# Per-layer metric names: params are nested dicts such as hidden/0/norm/scale; BN's scale and bias
# are reported as gamma and beta so they are not mistaken for a layer's kernel bias.
_NORM_PARAM_NAMES = {"scale": "gamma", "bias": "beta"}


def param_name(path: tuple[Any, ...]) -> str:
    keys = [str(getattr(p, "key", p)) for p in path]
    if len(keys) >= 2 and keys[-2] == "norm":
        keys[-1] = _NORM_PARAM_NAMES.get(keys[-1], keys[-1])
    return ".".join(keys)


def sum_of_squares(leaf: jax.Array) -> jax.Array:
    """sum(leaf ** 2), its rows summed by a matrix-vector product with ones: XLA's CPU backend runs
    that several times faster than the reduction it makes of a plain sum, which cost ~10% of the
    MLP's training step when every layer's gradient norm is logged (README, Speed)."""
    squares = jnp.square(leaf)
    if squares.ndim == 0:
        return squares
    rows = squares.reshape(-1, squares.shape[-1])
    return jnp.sum(jnp.dot(rows, jnp.ones(rows.shape[-1], rows.dtype), precision=jax.lax.Precision.HIGHEST))


def leaf_names(tree: Any) -> list[str]:
    """The readable name of every array in a params-shaped tree, in jax's flattening order."""
    return [param_name(path) for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]]


def squared_norms(tree: Any) -> jax.Array:
    """sum(leaf ** 2) of every array in a params-shaped tree as one vector (leaf_names' order)."""
    return jnp.stack([sum_of_squares(leaf) for leaf in jax.tree.leaves(tree)])


def layer_norms(tree: Any) -> dict[str, jax.Array]:
    """l2 norm of every array in a params-shaped tree, keyed by its readable name."""
    return dict(zip(leaf_names(tree), jnp.sqrt(squared_norms(tree))))


def per_example(logits: jax.Array, y: jax.Array, task: str) -> tuple[jax.Array, jax.Array | None]:
    """Loss of each example and whether it is classified correctly (None for regression).

    classification: softmax cross-entropy; regression: squared error summed over outputs,
    ||f(x) - y||^2 (the deep linear network's ||W_k...W_1 x - A x||^2)."""
    if task == "regression":
        return jnp.sum(jnp.square(logits - y), axis=-1), None
    return optax.softmax_cross_entropy_with_integer_labels(logits, y), jnp.argmax(logits, -1) == y


class Forward(NamedTuple):
    logits: jax.Array
    batch_stats: Any  # updated running statistics in training mode, unchanged otherwise
    pre_activations: tuple[jax.Array, ...]  # per hidden layer, only when captured


class TrainState(NamedTuple):
    step: jax.Array  # int32 scalar: updates done so far
    params: Any  # pure dict of nnx.Param values
    batch_stats: Any  # pure dict of nnx.BatchStat values ({} without BN)
    opt_state: Any
    key: jax.Array  # the run's root PRNG key (raw uint32[2]), from the seed


def total_steps(cfg: Config, num_train: int) -> int:
    """train.steps, or train.epochs passes over the training split (one step per epoch with full_batch)."""
    if cfg.train.steps is not None:
        return cfg.train.steps
    batch = num_train if cfg.train.full_batch else cfg.train.batch_size
    return max(1, math.ceil(cfg.train.epochs * (num_train // batch)))
