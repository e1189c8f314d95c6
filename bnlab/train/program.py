"""The compiled training program: chunks of optimiser steps inside one `jax.jit`.

A chunk is a loop over the epochs it touches, each computing its permutation once, around a
`lax.fori_loop` over that epoch's steps (the chunk's length is an argument, so every length shares
one compilation); the training set lives on the device and every batch is sliced from the epoch
permutation inside the program, so the host only wakes between chunks to log. Step `s` uses
  - the epoch permutation `jax.random.permutation(fold_in(data_key, s // steps_per_epoch), n)`
    (computed by train.permutation, faster on a CPU, the same indices), and
  - the key `fold_in(fold_in(root, 2), s)` for dropout and noisy norms,
so results do not depend on where chunks start or whether a run was resumed from a checkpoint.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import jax.numpy as jnp
import optax

from ..config.schema import Config
from ..data.dataset import Dataset
from . import optim
from .model_fns import ModelFunctions
from .permutation import permutation
from .state import TrainState, layer_norms, leaf_names, per_example, squared_norms, total_steps
from .structure import as_arrays, split, traced_numbers


class TrainProgram:
    """Training for one model structure, optimiser and dataset. Runs that differ only in the seed,
    init numbers or the numbers of train.structure (learning rate, BN momentum, ...) share one program
    and so one compilation: those numbers are arguments of the compiled chunk."""

    def __init__(self, cfg: Config, dataset: Dataset):
        self.cfg = cfg
        self.dataset = dataset
        self.model = ModelFunctions(cfg.model, dataset.image_shape, dataset.num_classes, dataset.task)
        self.num_train = len(dataset.y_train)
        self.batch_size = self.num_train if cfg.train.full_batch else cfg.train.batch_size
        self.steps_per_epoch = self.num_train // self.batch_size
        self.total_steps = total_steps(cfg, self.num_train)
        self.tx, _ = optim.build(cfg.optim, self.total_steps, self.batch_size)  # each run logs its own schedule
        self.numbers = as_arrays(traced_numbers(cfg))  # this config's; runs of the same structure pass theirs
        self.x_train = jnp.asarray(dataset.x_train)
        self.y_train = jnp.asarray(dataset.y_train)
        self._chunk = self.model.jit(self.chunk, donate_argnums=0)
        self.compiled: jax.stages.Compiled | None = None  # the chunk, once compiled (its HLO: .as_text())

    def init(self, seed: int, model_cfg=None) -> TrainState:
        """Initial state; `model_cfg` may differ from the program's in init numbers only (vectorised groups)."""
        params, stats = self.model.init_variables(seed, model_cfg)
        return TrainState(jnp.int32(0), params, stats, self.tx.init(params), jax.random.PRNGKey(seed))

    # -- data order -------------------------------------------------------------------------------
    def _permutation(self, key: jax.Array, step) -> jax.Array:
        data_key = jax.random.fold_in(key, 1)
        return permutation(jax.random.fold_in(data_key, step // self.steps_per_epoch), self.num_train)

    def _batch_slice(self, perm: jax.Array, step) -> jax.Array:
        pos = step % self.steps_per_epoch
        return jax.lax.dynamic_slice(perm, (pos * self.batch_size,), (self.batch_size,))

    def batch_at(self, state: TrainState) -> tuple[jax.Array, jax.Array]:
        """The training batch that step `state.step` uses (probes measure on exactly this batch)."""
        idx = self._batch_slice(self._permutation(state.key, state.step), state.step)
        return self.x_train[idx], self.y_train[idx]

    def step_rng(self, state: TrainState, step) -> jax.Array:
        return jax.random.fold_in(jax.random.fold_in(state.key, 2), step)

    # -- training ---------------------------------------------------------------------------------
    def tx_with(self, optimizer_numbers: dict[str, Any]) -> optax.GradientTransformation:
        """This program's optimiser with its numbers replaced (traced values: one compilation serves
        every learning rate, momentum, ...)."""
        return optim.build(dataclasses.replace(self.cfg.optim, **optimizer_numbers), self.total_steps, self.batch_size)[0]

    def _optimizer_step(self, st: TrainState, perm, x_train, y_train, numbers, i, sums, first_bad):
        """One update on the batch of step st.step (from the epoch permutation `perm`) with the run's
        traced `numbers`, the running sums of the step metrics and the chunk index of the first
        non-finite loss."""
        optimizer_numbers, model_numbers = split(numbers)
        tx = self.tx_with(optimizer_numbers)
        idx = self._batch_slice(perm, st.step)
        grad_fn = jax.value_and_grad(self.model.loss, has_aux=True)
        (loss, (logits, new_stats)), grads = grad_fn(
            st.params, st.batch_stats, x_train[idx], y_train[idx], bn_mode="batch", rng=self.step_rng(st, st.step), numbers=model_numbers
        )
        updates, opt_state = tx.update(grads, st.opt_state, st.params)
        params = optax.apply_updates(st.params, updates)
        sums = sums + self._step_metrics(loss, grads, logits, y_train[idx])
        first_bad = jnp.where((first_bad < 0) & ~jnp.isfinite(loss), i, first_bad)
        return TrainState(st.step + 1, params, new_stats, opt_state, st.key), sums, first_bad

    # -- step metrics: one vector per step, [train_loss, grad_norm, (train_acc,) every layer's grad
    # norm], so that the running sums are one addition (a dict of scalars cost ~2% of the MLP's step)
    def _scalar_metric_names(self) -> list[str]:
        return ["train_loss", "grad_norm"] + (["train_acc"] if self.model.task == "classification" else [])

    def _step_metrics(self, loss, grads, logits, y) -> jax.Array:
        squares = squared_norms(grads)
        scalars = [loss, jnp.sqrt(jnp.sum(squares))]
        if self.model.task == "classification":
            scalars.append(jnp.mean(per_example(logits, y, self.model.task)[1]))
        return jnp.concatenate([jnp.stack(scalars).astype(jnp.float32), jnp.sqrt(squares)])

    def _zero_sums(self, params) -> jax.Array:
        return jnp.zeros(len(self._scalar_metric_names()) + len(jax.tree.leaves(params)), jnp.float32)

    def _summary(self, state, sums, first_bad, num_steps) -> dict[str, Any]:
        """The chunk's step metrics averaged over its steps, by name, and the final parameter norms."""
        means = sums / num_steps
        scalars = self._scalar_metric_names()
        summary: dict[str, Any] = dict(zip(scalars, means))
        summary["grad_norms"] = dict(zip(leaf_names(state.params), means[len(scalars) :]))
        summary["param_norms"] = layer_norms(state.params)
        summary["first_nonfinite"] = first_bad
        return summary

    def chunk(self, state: TrainState, x_train, y_train, num_steps, numbers):
        """`num_steps` (a traced count, so any chunk length shares one compilation) optimiser steps,
        with the run's traced `numbers` (train.structure). A loop over the epochs the chunk touches,
        each computing its permutation once, around a `lax.fori_loop` over that epoch's steps (no
        per-step branch). Returns the new state and the chunk's summary (step metrics averaged over
        the chunk)."""

        def epoch(carry):
            st, done, sums, first_bad = carry
            perm = self._permutation(st.key, st.step)
            steps = jnp.minimum(num_steps - done, self.steps_per_epoch - st.step % self.steps_per_epoch)

            def step(i, c):
                return self._optimizer_step(c[0], perm, x_train, y_train, numbers, done + i, c[1], c[2])

            st, sums, first_bad = jax.lax.fori_loop(0, steps, step, (st, sums, first_bad))
            return st, done + steps, sums, first_bad

        carry = (state, jnp.int32(0), self._zero_sums(state.params), jnp.int32(-1))
        state, _, sums, first_bad = jax.lax.while_loop(lambda c: c[1] < num_steps, epoch, carry)
        return state, self._summary(state, sums, first_bad, num_steps)

    def compile(self, state: TrainState) -> float:
        """Compile the training program ahead of time; the seconds it took (0 if already compiled;
        small on a persistent-cache hit), so that run time can be reported without compilation."""
        if self.compiled is not None:
            return 0.0
        t0 = time.perf_counter()
        self.compiled = self._chunk.lower(state, self.x_train, self.y_train, jnp.int32(1), self.numbers).compile()
        return time.perf_counter() - t0

    def train_chunk(self, state: TrainState, num_steps: int, numbers: dict[str, jax.Array] | None = None) -> tuple[TrainState, dict[str, Any]]:
        """`num_steps` steps from `state` (whose buffers are donated) with a run's traced numbers
        (default: this program's config's); summary means are over the chunk."""
        self.compile(state)
        return self.compiled(state, self.x_train, self.y_train, jnp.int32(num_steps), self.numbers if numbers is None else numbers)
