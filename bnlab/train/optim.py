"""Optimisers (registry), learning-rate schedules, weight decay and clipping, all from optax.

The chain is: clipping with Keras semantics (clipnorm per parameter or global_clipnorm, then
clipvalue) -> optimiser(schedule), weight decay inside the optimiser (on kernels only).
Gradient norms are logged before this chain, i.e. before clipping.
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax

from ..config.schema import OptimConfig
from ..registry import Registry


def kernels_only(params):
    """Weight-decay mask: kernels decay; biases and norm scales/offsets do not."""
    return jax.tree_util.tree_map_with_path(lambda path, _: path[-1].key == "kernel", params)


def l2(cfg: OptimConfig) -> optax.GradientTransformation:
    """Coupled weight decay (wd * w added to the gradient), kernels only; nothing when wd is 0."""
    if isinstance(cfg.weight_decay, (int, float)) and cfg.weight_decay == 0:  # (a traced value is never skipped)
        return optax.identity()
    return optax.add_decayed_weights(cfg.weight_decay, mask=kernels_only)


Builder = Callable[[OptimConfig, optax.Schedule], optax.GradientTransformation]
OPTIMIZERS: Registry[Builder] = Registry("optimiser", "optim.name")
# the chain around every optimiser (schedule, weight decay, clipping): traced, so one program serves every value
CHAIN = ("lr", "final_lr_fraction", "decay_factor", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue")
CHAIN_OPTIONS = ("schedule", "warmup_steps", "decay_boundaries")


@OPTIMIZERS.register("sgd", options=CHAIN_OPTIONS, traced=CHAIN)
def sgd(cfg: OptimConfig, lr: optax.Schedule) -> optax.GradientTransformation:
    """plain SGD; optim.weight_decay is L2 added to the gradient"""
    return optax.chain(l2(cfg), optax.sgd(lr))


@OPTIMIZERS.register("momentum", options=CHAIN_OPTIONS + ("nesterov",), traced=CHAIN + ("momentum",))
def momentum(cfg: OptimConfig, lr: optax.Schedule) -> optax.GradientTransformation:
    """SGD with heavy-ball (or optim.nesterov) momentum optim.momentum; weight decay as L2"""
    return optax.chain(l2(cfg), optax.sgd(lr, momentum=cfg.momentum, nesterov=cfg.nesterov))


@OPTIMIZERS.register("adam", options=CHAIN_OPTIONS, traced=CHAIN + ("b1", "b2"))
def adam(cfg: OptimConfig, lr: optax.Schedule) -> optax.GradientTransformation:
    """Adam (optim.b1, optim.b2); weight decay is decoupled (AdamW)"""
    return optax.adamw(lr, b1=cfg.b1, b2=cfg.b2, weight_decay=cfg.weight_decay, mask=kernels_only)


def peak_lr(cfg: OptimConfig, batch_size: int):
    """optim.lr, or with optim.lr_reference_batch set, optim.lr x batch / reference: Goyal et al.'s
    (2017, §2.1) linear scaling rule, which keeps equal epochs at different batches comparable."""
    return cfg.lr if cfg.lr_reference_batch is None else cfg.lr * (batch_size / cfg.lr_reference_batch)


def schedule(cfg: OptimConfig, total_steps: int, batch_size: int) -> optax.Schedule:
    decay_steps = max(total_steps - cfg.warmup_steps, 1)
    peak = peak_lr(cfg, batch_size)
    if cfg.schedule == "constant":
        main = optax.constant_schedule(peak)
    elif cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(peak, decay_steps, alpha=cfg.final_lr_fraction)
    elif cfg.schedule == "linear":
        main = optax.linear_schedule(peak, peak * cfg.final_lr_fraction, decay_steps)
    elif cfg.schedule == "step":
        # optax.piecewise_constant_schedule's semantics (factor applies from its boundary on), written
        # out because optax checks the factors' signs in Python, which a traced factor cannot answer
        boundaries = jnp.asarray(sorted({int(b * decay_steps) for b in cfg.decay_boundaries}), jnp.int32)
        lr, factor = peak, cfg.decay_factor
        main = lambda count: lr * factor ** jnp.sum(count >= boundaries)  # noqa: E731
    else:  # validated in runner.validate
        raise AssertionError(cfg.schedule)
    if cfg.warmup_steps == 0:
        return main
    warmup = optax.linear_schedule(0.0, peak, cfg.warmup_steps)
    return optax.join_schedules([warmup, main], [cfg.warmup_steps])


def clip_by_variable_norm(max_norm: float) -> optax.GradientTransformation:
    """Keras `clipnorm`: each parameter's gradient is rescaled on its own to an l2 norm of at most
    `max_norm` (optax has only the global version)."""

    def update_fn(updates, state, params=None):
        def clip(g):
            norm = jnp.sqrt(jnp.sum(jnp.square(g)))
            return g * jnp.minimum(1.0, max_norm / jnp.maximum(norm, 1e-30))

        return jax.tree.map(clip, updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


def build(cfg: OptimConfig, total_steps: int, batch_size: int) -> tuple[optax.GradientTransformation, optax.Schedule]:
    lr = schedule(cfg, total_steps, batch_size)
    parts: list[optax.GradientTransformation] = []
    if cfg.clipnorm is not None:
        parts.append(clip_by_variable_norm(cfg.clipnorm))
    if cfg.global_clipnorm is not None:
        parts.append(optax.clip_by_global_norm(cfg.global_clipnorm))
    if cfg.clipvalue is not None:
        parts.append(optax.clip(cfg.clipvalue))
    parts.append(OPTIMIZERS.get(cfg.name)(cfg, lr))
    return optax.chain(*parts), lr
