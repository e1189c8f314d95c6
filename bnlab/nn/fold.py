"""Fold BN into the preceding Dense/Conv for inference.

In evaluation mode BN is an affine map per output unit, y = s (W x + b - mean) + β with
s = γ / sqrt(var + ε), so it can be absorbed into the layer below: W' = W s (each output unit's
column or channel scaled), b' = s (b - mean) + β. The folded network is the same model with
`norm: none`; its outputs equal the BN network's evaluation-mode outputs up to float rounding.
Folding works for the norms whose evaluation is plain BN, those registered with `Norm(folds=True)`:
batch, batch_renorm, ghost_batch, noisy_batch.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax.numpy as jnp
from flax import nnx

from ..config.schema import ModelConfig
from ..errors import ConfigError
from .models import RECURRENT, build
from .norms import NORMS


def foldable() -> list[str]:
    return [name for name in NORMS.names() if NORMS.get(name).folds]


def fold(cfg: ModelConfig, params: Any, batch_stats: Any) -> tuple[ModelConfig, Any]:
    """(config of the folded model, its params) from a BN model's params and (running or population) statistics."""
    if cfg.norm not in foldable() or cfg.name in RECURRENT:
        raise ConfigError(
            f"model.norm: only {', '.join(foldable())} in a feed-forward model (mlp, cnn, dln) can be folded, got {cfg.norm!r} in {cfg.name!r}"
        )
    hidden = {}
    for i, block in params["hidden"].items():
        norm, stats = block["norm"], batch_stats["hidden"][i]["norm"]
        # batch renorm keeps sigma itself (Ioffe 2017); the others the variance
        s = norm["scale"] / (stats["std"] if "std" in stats else jnp.sqrt(stats["var"] + cfg.norm_epsilon))
        kernel = block["layer"]["kernel"]
        bias = block["layer"].get("bias", jnp.zeros(kernel.shape[-1], kernel.dtype))
        hidden[i] = {"layer": {"kernel": kernel * s, "bias": s * (bias - stats["mean"]) + norm["bias"]}}
    return dataclasses.replace(cfg, norm="none"), {"hidden": hidden, "head": params["head"]}


def folded_model(cfg: ModelConfig, image_shape, num_classes: int, params: Any, batch_stats: Any):
    """The folded network as an NNX module, ready to call with `train=False`."""
    folded_cfg, folded_params = fold(cfg, params, batch_stats)
    graphdef, template = nnx.split(build(folded_cfg, image_shape, num_classes, seed=0), nnx.Param)
    nnx.replace_by_pure_dict(template, folded_params)
    return nnx.merge(graphdef, template)
