"""Loss surface around the trained weights along filter-normalised random directions (Li et al.
2018, "Visualizing the Loss Landscape of Neural Nets", Sec. 4).

A direction d has the shape of the parameters, with entries N(0, 1), rescaled filter by filter so
that each filter of d has the norm of the same filter of w (for a Dense kernel a filter is one
output unit's column; for a Conv kernel one output channel over kh x kw x c_in; recurrent kernels
likewise per output unit). Biases and BN's γ/β either do not move (`bn_params: zero`, Li et al.'s
ignore='biasbn') or move along a copy of themselves (`bn_params: copy`, their d.copy_(w)). BN's
running statistics are either kept as trained (`bn_stats: running`, evaluation mode) or replaced
by the statistics of the evaluation batch at every point (`batch`). The result is written to the
run folder as surface.json; `bnlab plot` draws it.
"""

from __future__ import annotations

import json
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from ..config.schema import SurfaceConfig
from ..train.program import TrainProgram
from ..train.state import TrainState, per_example


def _filter_norms(a: jax.Array) -> jax.Array:
    """The l2 norm of each filter (output unit or channel: the last axis) over all other axes."""
    return jnp.sqrt(jnp.sum(jnp.square(a), axis=tuple(range(a.ndim - 1)), keepdims=True))


def filter_normalized_direction(key: jax.Array, params: Any, bn_params: str) -> Any:
    """A random direction shaped like `params`, filter by filter of the weights' norms (Li et al.,
    `net_plotter.normalize_directions_for_weights`): a kernel's filter is one output unit or channel
    (its last axis, over every other axis: a Dense column, or kh x kw x c_in of a Conv); 1-D
    parameters (biases, γ, β) are zero (`bn_params: zero`, their ignore='biasbn') or a copy of the
    weights (`bn_params: copy`, their d.copy_(w))."""
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    keys = jax.random.split(key, len(leaves))
    out = []
    for k, (_, w) in zip(keys, leaves):
        if w.ndim >= 2:
            d = jax.random.normal(k, w.shape, w.dtype)
            d = d * _filter_norms(w) / (_filter_norms(d) + 1e-10)
        elif bn_params == "copy":
            d = w
        else:
            d = jnp.zeros_like(w)
        out.append(d)
    return jax.tree_util.tree_unflatten(treedef, out)


def loss_surface(program: TrainProgram, state: TrainState, cfg: SurfaceConfig) -> dict[str, Any]:
    x = jnp.asarray(program.dataset.x_train[: cfg.batch_size])
    y = jnp.asarray(program.dataset.y_train[: cfg.batch_size])
    k1, k2 = jax.random.split(jax.random.PRNGKey(cfg.seed))
    d1 = filter_normalized_direction(k1, state.params, cfg.bn_params)
    d2 = filter_normalized_direction(k2, state.params, cfg.bn_params)
    coords = jnp.linspace(-cfg.span, cfg.span, cfg.points)

    def at(a, b):
        p = jax.tree.map(lambda w, u, v: w + a * u + b * v, state.params, d1, d2)
        loss, (logits, _) = program.model.loss(p, state.batch_stats, x, y, bn_mode=cfg.bn_stats)
        correct = per_example(logits, y, program.model.task)[1]
        return loss, jnp.mean(correct) if correct is not None else jnp.nan

    if cfg.dims == 1:
        loss, acc = program.model.jit(jax.vmap(lambda a: at(a, 0.0)))(coords)
    else:
        A, B = jnp.meshgrid(coords, coords, indexing="ij")
        loss, acc = program.model.jit(lambda A, B: jax.lax.map(lambda ab: jax.vmap(at)(*ab), (A, B)))(A, B)
    return {
        "step": int(state.step),
        "dims": cfg.dims,
        "coords": np.asarray(coords).tolist(),
        "loss": np.asarray(loss).tolist(),
        "acc": np.asarray(acc).tolist(),
        "bn_params": cfg.bn_params,
        "bn_stats": cfg.bn_stats,
        "batch_size": int(x.shape[0]),
    }


def to_json(result: dict[str, Any]) -> str:
    return json.dumps(result)  # a diverging surface point is written as NaN, which Python's json reads back
