"""Optimisers (registry), learning-rate schedules, weight decay and clipping, all from optax.

The chain is: clip by value -> clip by global norm -> optimiser(schedule), weight decay inside
the optimiser (on kernels only).
Gradient norms are logged before this chain, i.e. before clipping.
"""

from __future__ import annotations

from typing import Callable

import jax
import optax

from .config import OptimConfig
from .registry import Registry

def kernels_only(params):
    """Weight-decay mask: kernels decay; biases and norm scales/offsets do not."""
    return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)


def l2(cfg: OptimConfig) -> optax.GradientTransformation:
    """Coupled weight decay (wd * w added to the gradient), kernels only; nothing when wd is 0."""
    if cfg.weight_decay == 0:
        return optax.identity()
    return optax.add_decayed_weights(cfg.weight_decay, mask=kernels_only)


Builder = Callable[[OptimConfig, optax.Schedule], optax.GradientTransformation]
OPTIMIZERS: Registry[Builder] = Registry("optimiser", "optim.name")


@OPTIMIZERS.register("sgd")
def sgd(cfg: OptimConfig, lr: optax.Schedule) -> optax.GradientTransformation:
    """plain SGD; optim.weight_decay is L2 added to the gradient"""
    return optax.chain(l2(cfg), optax.sgd(lr))


@OPTIMIZERS.register("momentum")
def momentum(cfg: OptimConfig, lr: optax.Schedule) -> optax.GradientTransformation:
    """SGD with heavy-ball (or optim.nesterov) momentum optim.momentum; weight decay as L2"""
    return optax.chain(l2(cfg), optax.sgd(lr, momentum=cfg.momentum, nesterov=cfg.nesterov))


@OPTIMIZERS.register("adam")
def adam(cfg: OptimConfig, lr: optax.Schedule) -> optax.GradientTransformation:
    """Adam (optim.b1, optim.b2); weight decay is decoupled (AdamW)"""
    return optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=kernels_only)


def schedule(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    decay_steps = max(total_steps - cfg.warmup_steps, 1)
    if cfg.schedule == "constant":
        main = optax.constant_schedule(cfg.lr)
    elif cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(cfg.lr, decay_steps, alpha=cfg.final_lr_fraction)
    elif cfg.schedule == "linear":
        main = optax.linear_schedule(cfg.lr, cfg.lr * cfg.final_lr_fraction, decay_steps)
    elif cfg.schedule == "step":
        boundaries = {int(b * decay_steps): cfg.decay_factor for b in cfg.decay_boundaries}
        main = optax.piecewise_constant_schedule(cfg.lr, boundaries)
    else:  # validated in config.validate
        raise AssertionError(cfg.schedule)
    if cfg.warmup_steps == 0:
        return main
    warmup = optax.linear_schedule(0.0, cfg.lr, cfg.warmup_steps)
    return optax.join_schedules([warmup, main], [cfg.warmup_steps])


def build(cfg: OptimConfig, total_steps: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    lr = schedule(cfg, total_steps)
    parts: list[optax.GradientTransformation] = []
    if cfg.clip_value is not None:
        parts.append(optax.clip(cfg.clip_value))
    if cfg.clip_global_norm is not None:
        parts.append(optax.clip_by_global_norm(cfg.clip_global_norm))
    parts.append(OPTIMIZERS.get(cfg.name)(cfg, lr))
    return optax.chain(*parts), lr
