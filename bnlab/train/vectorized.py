"""Vectorised groups: runs that differ only in numbers train as one `vmap`ped program.

Seed and init numbers enter through the initial states (stacked along a leading axis); the
optimiser numbers that differ between the runs are passed to the compiled program as traced values.
The step counter is shared, not batched: the runs advance in lockstep, and an unbatched step keeps
the epoch's `lax.cond` a real branch instead of computing a permutation per step.
"""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import jax
import jax.numpy as jnp

from ..config.schema import Config
from .program import TrainProgram
from .state import TrainState

# Config numbers that change neither the program nor the shapes.
OPTIMIZER_NUMBERS = ("lr", "momentum", "b1", "b2", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "final_lr_fraction", "decay_factor")
VECTOR_KEYS = ("seed", "model.init_scale", "model.init_std") + tuple(f"optim.{k}" for k in OPTIMIZER_NUMBERS)


def shared_program_key(cfg: Config) -> str:
    """Equal for runs that can share one vmapped program: the config without the numbers in
    VECTOR_KEYS (except whether an optional one is set, and whether weight decay is on)."""
    d = dataclasses.asdict(cfg)
    for key in VECTOR_KEYS:
        section, _, name = key.rpartition(".")
        holder = d[section] if section else d
        value = holder[name]
        holder[name] = "unset" if value is None else ("zero" if name == "weight_decay" and value == 0 else "number")
    d.pop("name"), d.pop("sweep")
    d["train"].pop("checkpoint_every")
    return json.dumps(d, sort_keys=True)


def stack(states: list[TrainState]) -> TrainState:
    """K states as one, each leaf with a leading run axis; the step stays a shared scalar."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states)._replace(step=states[0].step)


def pick(tree: Any, k: int) -> Any:
    """Run k's slice of a stacked state (its shared step kept) or of a stacked summary."""
    if isinstance(tree, TrainState):
        return jax.tree.map(lambda a: a[k], tree._replace(step=None))._replace(step=tree.step)
    return jax.tree.map(lambda a: a[k], tree)


class VectorizedProgram:
    """Compiled chunks for K runs at once: vmap over stacked states and the optimiser numbers
    that differ between the runs."""

    def __init__(self, program: TrainProgram, cfgs: list[Config]):
        varying = [k for k in OPTIMIZER_NUMBERS if len({getattr(c.optim, k) for c in cfgs}) > 1]
        self.program = program
        self.numbers = {k: jnp.asarray([getattr(c.optim, k) for c in cfgs], jnp.float32) for k in varying}
        axes = TrainState(step=None, params=0, batch_stats=0, opt_state=0, key=0)
        self._fn = jax.jit(jax.vmap(program.chunk, in_axes=(axes, None, None, None, 0), out_axes=(axes, 0)), donate_argnums=0)
        self._compiled = None

    def compile(self, state: TrainState) -> float:
        if self._compiled is not None:
            return 0.0
        t0 = time.perf_counter()
        self._compiled = self._fn.lower(state, self.program.x_train, self.program.y_train, jnp.int32(1), self.numbers).compile()
        return time.perf_counter() - t0

    def train_chunk(self, state: TrainState, num_steps: int):
        self.compile(state)
        return self._compiled(state, self.program.x_train, self.program.y_train, jnp.int32(num_steps), self.numbers)
