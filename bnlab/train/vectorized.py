"""Vectorised groups: runs that differ only in numbers train as one `vmap`ped program.

Seed and init numbers enter through the initial states (stacked along a leading axis); the traced
numbers of each run (train.structure: learning rate, BN momentum, ...) are stacked the same way.
The step counter is shared, not batched: the runs advance in lockstep, and an unbatched step keeps
the chunk's epoch loop a loop with one trip count for all runs (a batched bound would make vmap run
every run's steps under a mask).
"""

from __future__ import annotations

import time
from typing import Any

import jax
import jax.numpy as jnp

from ..config.schema import Config
from .program import TrainProgram
from .state import TrainState
from .structure import traced_numbers


def stack(states: list[TrainState]) -> TrainState:
    """K states as one, each leaf with a leading run axis; the step stays a shared scalar."""
    return jax.tree.map(lambda *xs: jnp.stack(xs), *states)._replace(step=states[0].step)


def pick(tree: Any, k: int) -> Any:
    """Run k's slice of a stacked state (its shared step kept) or of a stacked summary."""
    if isinstance(tree, TrainState):
        return jax.tree.map(lambda a: a[k], tree._replace(step=None))._replace(step=tree.step)
    return jax.tree.map(lambda a: a[k], tree)


class VectorizedProgram:
    """Compiled chunks for K runs of one structure at once: vmap over stacked states and numbers."""

    def __init__(self, program: TrainProgram, cfgs: list[Config]):
        per_run = [traced_numbers(c) for c in cfgs]
        self.program = program
        self.numbers = {k: jnp.asarray([n[k] for n in per_run], jnp.float32) for k in per_run[0]}
        axes = TrainState(step=None, params=0, batch_stats=0, opt_state=0, key=0)
        self._fn = program.model.jit(jax.vmap(program.chunk, in_axes=(axes, None, None, None, 0), out_axes=(axes, 0)), donate_argnums=0)
        self._compiled = None

    def compile(self, state: TrainState) -> float:
        if self._compiled is not None:
            return 0.0
        t0 = time.perf_counter()
        p = self.program
        self._compiled = self._fn.lower(state, p.x_train, p.y_train, jnp.int32(1), self.numbers).compile()
        return time.perf_counter() - t0

    def train_chunk(self, state: TrainState, num_steps: int):
        self.compile(state)
        return self._compiled(state, self.program.x_train, self.program.y_train, jnp.int32(num_steps), self.numbers)
