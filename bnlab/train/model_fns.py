"""A network structure as pure functions of (params, batch_stats, x).

The NNX model is split once into a graph definition and two pure-dict pytrees, trainable
parameters (`nnx.Param`) and BN statistics (`nnx.BatchStat`); every function here merges them
back inside the caller's trace, so the compiled programs see plain pytrees only.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ..config.schema import ModelConfig
from ..nn.models import build
from ..nn.traced import check_taken, give_numbers
from .state import Forward, per_example
from .structure import initial_keys, model_traced_keys
from .xla_options import compiler_options


class ModelFunctions:
    """Forward pass, loss and initial variables of one model structure on one dataset's shapes."""

    def __init__(self, model_cfg: ModelConfig, image_shape: tuple[int, ...], num_classes: int, task: str):
        self.model_cfg, self.image_shape, self.num_classes, self.task = model_cfg, tuple(image_shape), num_classes, task
        # shapes only (nnx.eval_shape): building the module eagerly would compile every initialiser op
        abstract = self.abstract(model_cfg)
        check_taken(abstract, model_traced_keys(model_cfg), f"model.norm {model_cfg.norm!r} with model.name {model_cfg.name!r}")
        self.graphdef, self._param_template, self._stats_template = nnx.split(abstract, nnx.Param, nnx.BatchStat)
        self.initial = initial_keys(model_cfg)
        self._init_fn = None
        self.has_batch_stats = bool(jax.tree.leaves(nnx.to_pure_dict(self._stats_template)))
        self.num_hidden = len(nnx.to_pure_dict(self._param_template)["hidden"])

    def jit(self, fn, **kwargs):
        """`jax.jit` with this model's compiler options: every program that runs the network
        (training chunks, evaluation, probes) is compiled the same way."""
        return jax.jit(fn, compiler_options=compiler_options(self.model_cfg.name), **kwargs)

    def build(self, model_cfg: ModelConfig, seed: int) -> nnx.Module:
        return build(model_cfg, self.image_shape, self.num_classes, seed=seed)

    def abstract(self, model_cfg: ModelConfig) -> nnx.Module:
        """The module with shapes in place of arrays (for graph definitions and templates)."""
        return nnx.eval_shape(lambda: self.build(model_cfg, seed=0))

    def merge(self, params: Any, batch_stats: Any, graphdef=None) -> nnx.Module:
        p = jax.tree.map(lambda v: v, self._param_template)
        s = jax.tree.map(lambda v: v, self._stats_template)
        nnx.replace_by_pure_dict(p, params)
        nnx.replace_by_pure_dict(s, batch_stats)
        return nnx.merge(graphdef or self.graphdef, p, s)

    def apply(
        self, params: Any, batch_stats: Any, x: jax.Array, *, train: bool, rng=None, capture: bool = False, graphdef=None, numbers=None
    ) -> Forward:
        """Forward pass. `train` means BN uses (and updates) batch statistics; an `rng` key turns on
        dropout and norm noise; `numbers` (model config number -> traced value, see train.structure)
        replace the structure's own BN momentum, epsilon, dropout rate, etc."""
        model = self.merge(params, batch_stats, graphdef)
        give_numbers(model, numbers or {})
        out = model(x, train=train, rng=rng, capture=capture)
        logits, pre = out if capture else (out, ())
        new_stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)) if train else batch_stats
        return Forward(logits, new_stats, tuple(pre))

    def loss(self, params: Any, batch_stats: Any, x: jax.Array, y: jax.Array, *, bn_mode: str = "batch", rng=None, numbers=None):
        """Mean loss and (logits, updated BN statistics). bn_mode: 'batch' or 'running'."""
        out = self.apply(params, batch_stats, x, train=bn_mode == "batch", rng=rng, numbers=numbers)
        return per_example(out.logits, y, self.task)[0].mean(), (out.logits, out.batch_stats)

    def init_variables(self, seed: int, model_cfg: ModelConfig | None = None) -> tuple[Any, Any]:
        """(params, batch_stats) as pure dicts; `model_cfg` may differ from this structure's in its
        numbers only (train.structure). One compiled program per structure: the seed and the init
        numbers are traced (they only scale or fill values), instead of one compilation per
        initialiser op and shape, which dominated sweeps over many structures, or one per init config."""
        cfg = model_cfg or self.model_cfg
        numbers_only = (*self.initial, *model_traced_keys(cfg))  # the traced model numbers (BN momentum, ...) do not touch initial values
        if dataclasses.replace(cfg, **{k: getattr(self.model_cfg, k) for k in numbers_only}) != self.model_cfg:
            raise ValueError("init_variables: model_cfg differs from this structure's in more than its numbers")
        numbers = {k: jnp.float32(getattr(cfg, k)) for k in self.initial}
        if self._init_fn is None:

            def init(seed, numbers):
                traced_cfg = dataclasses.replace(self.model_cfg, **numbers)
                _, params, stats = nnx.split(self.build(traced_cfg, jax.random.key(seed)), nnx.Param, nnx.BatchStat)  # as nnx.Rngs(params=seed)
                return nnx.to_pure_dict(params), nnx.to_pure_dict(stats)

            self._init_fn = jax.jit(init)
        return self._init_fn(seed, numbers)
