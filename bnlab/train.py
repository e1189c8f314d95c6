"""Training as compiled chunks of steps.

The NNX model is split once into a graph definition and two pure-dict pytrees, trainable
parameters (`nnx.Param`) and BN statistics (`nnx.BatchStat`); the optimiser sees only the
parameters. A chunk of steps is one `lax.fori_loop` inside one `jax.jit` (its length is an argument, so
every chunk length shares one compilation): the
training set lives on the device and every batch is sliced from an epoch permutation inside the
program, so the host only wakes between chunks to log. Step `s` uses
  - the epoch permutation `permutation(fold_in(data_key, s // steps_per_epoch))`, and
  - the key `fold_in(fold_in(root, 2), s)` for dropout and noisy norms,
so results do not depend on where chunks start or whether a run was resumed from a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from . import models, optim
from .config import Config
from .data import Dataset

# Per-layer metric names: params are nested dicts such as hidden/0/norm/scale; BN's scale and bias
# are reported as gamma and beta so they are not mistaken for a layer's kernel bias.
_NORM_PARAM_NAMES = {"scale": "gamma", "bias": "beta"}


def param_name(path: tuple[Any, ...]) -> str:
    keys = [str(getattr(p, "key", p)) for p in path]
    if len(keys) >= 2 and keys[-2] == "norm":
        keys[-1] = _NORM_PARAM_NAMES.get(keys[-1], keys[-1])
    return ".".join(keys)


def layer_norms(tree: Any) -> dict[str, jax.Array]:
    """l2 norm of every array in a params-shaped tree, keyed by its readable name."""
    flat, _ = jax.tree_util.tree_flatten_with_path(tree)
    return {param_name(path): jnp.sqrt(jnp.sum(jnp.square(leaf))) for path, leaf in flat}


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
    if cfg.train.steps is not None:
        return cfg.train.steps
    return max(1, math.ceil(cfg.train.epochs * (num_train // cfg.train.batch_size)))


class Trainer:
    """Compiled training and evaluation for one model structure, optimiser and dataset.

    Runs that differ only in the seed share one Trainer (and so one compilation).
    """

    def __init__(self, cfg: Config, dataset: Dataset):
        self.cfg = cfg
        self.dataset = dataset
        model = models.build(cfg.model, dataset.image_shape, dataset.num_classes, seed=0)
        self.graphdef, self._param_template, self._stats_template = nnx.split(model, nnx.Param, nnx.BatchStat)
        self.task = dataset.task
        self.num_train = len(dataset.y_train)
        self.batch_size = self.num_train if cfg.train.full_batch else cfg.train.batch_size
        self.steps_per_epoch = self.num_train // self.batch_size
        self.total_steps = total_steps(cfg, self.num_train)
        self.tx, _ = optim.build(cfg.optim, self.total_steps)  # each run logs its own schedule (loop._Run)
        self.has_batch_stats = bool(jax.tree.leaves(nnx.to_pure_dict(self._stats_template)))
        self.x_train = jnp.asarray(dataset.x_train)
        self.y_train = jnp.asarray(dataset.y_train)
        self.num_hidden = len(nnx.to_pure_dict(self._param_template)["hidden"])
        zero_momentum = dataclasses.replace(cfg.model, bn_momentum=0.0)
        self._graphdef_momentum0 = nnx.split(models.build(zero_momentum, dataset.image_shape, dataset.num_classes, seed=0), nnx.Param, nnx.BatchStat)[0]
        self._population_jit = jax.jit(self._population)
        self._chunk = jax.jit(self._train_chunk, donate_argnums=0)
        self._compiled_chunk = None
        # see _host_loop_chunk: conv nets on a CPU step from the host
        self.host_loop = cfg.model.name == "cnn" and jax.default_backend() == "cpu"
        self._permutation_jit = jax.jit(self._permutation)
        self._step_jit = jax.jit(lambda st, perm, x, y, i, sums, bad: self._sgd_step(st, perm, x, y, self.tx, i, sums, bad), donate_argnums=(0, 5))
        self._summary_jit = jax.jit(self._summary)
        self._diagnostics: dict[str, list] = {}
        self._eval = jax.jit(self._evaluate_batches)

    # -- model plumbing ---------------------------------------------------------------------------
    def merge(self, params: Any, batch_stats: Any, graphdef=None) -> nnx.Module:
        p = jax.tree.map(lambda v: v, self._param_template)
        s = jax.tree.map(lambda v: v, self._stats_template)
        nnx.replace_by_pure_dict(p, params)
        nnx.replace_by_pure_dict(s, batch_stats)
        return nnx.merge(graphdef or self.graphdef, p, s)

    def apply(self, params: Any, batch_stats: Any, x: jax.Array, *, train: bool, rng=None, capture: bool = False) -> Forward:
        """Forward pass. `train` means BN uses (and updates) batch statistics; an `rng` key turns on dropout and norm noise."""
        model = self.merge(params, batch_stats)
        out = model(x, train=train, rng=rng, capture=capture)
        logits, pre = out if capture else (out, ())
        new_stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)) if train else batch_stats
        return Forward(logits, new_stats, tuple(pre))

    def loss(self, params: Any, batch_stats: Any, x: jax.Array, y: jax.Array, *, bn_mode: str = "batch", rng=None):
        """Mean cross-entropy and (logits, updated BN statistics). bn_mode: 'batch' or 'running'."""
        out = self.apply(params, batch_stats, x, train=bn_mode == "batch", rng=rng)
        return per_example(out.logits, y, self.task)[0].mean(), (out.logits, out.batch_stats)

    def init(self, seed: int, model_cfg=None) -> TrainState:
        """Initial state; `model_cfg` may differ from the trainer's in init numbers only (vmapped groups)."""
        model = models.build(model_cfg or self.cfg.model, self.dataset.image_shape, self.dataset.num_classes, seed=seed)
        _, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
        params, stats = nnx.to_pure_dict(params), nnx.to_pure_dict(stats)
        return TrainState(jnp.int32(0), params, stats, self.tx.init(params), jax.random.PRNGKey(seed))

    def diagnostics(self, cfg: Config, build) -> list:
        """The diagnostics for `cfg`, built once per diagnostics config (so their compilation is shared by seeds)."""
        key = json.dumps(dataclasses.asdict(cfg.diagnostics), sort_keys=True)
        if key not in self._diagnostics:
            self._diagnostics[key] = build()
        return self._diagnostics[key]

    # -- data order -------------------------------------------------------------------------------
    def _permutation(self, key: jax.Array, step) -> jax.Array:
        data_key = jax.random.fold_in(key, 1)
        return jax.random.permutation(jax.random.fold_in(data_key, step // self.steps_per_epoch), self.num_train)

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
    def tx_with(self, numbers: dict[str, Any]) -> optax.GradientTransformation:
        """This trainer's optimiser with some optimiser numbers replaced (traced values, for
        training a group of runs that differ only in them under vmap)."""
        return optim.build(dataclasses.replace(self.cfg.optim, **numbers), self.total_steps)[0]

    def _sgd_step(self, st: TrainState, perm, x_train, y_train, tx, i, sums, first_bad):
        """One step on the batch of step st.step (from the epoch permutation `perm`), with the
        running sums of the step metrics and the chunk index of the first non-finite loss."""
        idx = self._batch_slice(perm, st.step)
        grad_fn = jax.value_and_grad(self.loss, has_aux=True)
        (loss, (logits, new_stats)), grads = grad_fn(
            st.params, st.batch_stats, x_train[idx], y_train[idx], bn_mode="batch", rng=self.step_rng(st, st.step)
        )
        updates, opt_state = tx.update(grads, st.opt_state, st.params)
        params = optax.apply_updates(st.params, updates)
        step_metrics = {"train_loss": loss, "grad_norm": optax.global_norm(grads), "grad_norms": layer_norms(grads)}
        if self.task == "classification":
            step_metrics["train_acc"] = jnp.mean(per_example(logits, y_train[idx], self.task)[1])
        sums = jax.tree.map(jnp.add, sums, step_metrics)
        first_bad = jnp.where((first_bad < 0) & ~jnp.isfinite(loss), i, first_bad)
        return TrainState(st.step + 1, params, new_stats, opt_state, st.key), sums, first_bad

    def _zero_sums(self, params):
        zeros = {"train_loss": 0.0, "grad_norm": 0.0, "grad_norms": jax.tree.map(lambda _: 0.0, layer_norms(params))}
        if self.task == "classification":
            zeros["train_acc"] = 0.0
        return jax.tree.map(jnp.float32, zeros)

    @staticmethod
    def _summary(state, sums, first_bad, num_steps):
        summary = jax.tree.map(lambda v: v / num_steps, sums)
        summary["param_norms"] = layer_norms(state.params)
        summary["first_nonfinite"] = first_bad
        return summary

    def _train_chunk(self, state: TrainState, x_train, y_train, num_steps, numbers=None):
        """`num_steps` (a traced count, so any chunk length shares one compilation) SGD steps in one
        `lax.fori_loop`, with this trainer's optimiser or, given `numbers`, `tx_with(numbers)`."""
        tx = self.tx if numbers is None else self.tx_with(numbers)

        def body(i, carry):
            st, perm, sums, first_bad = carry
            perm = jax.lax.cond(st.step % self.steps_per_epoch == 0, lambda: self._permutation(st.key, st.step), lambda: perm)
            st, sums, first_bad = self._sgd_step(st, perm, x_train, y_train, tx, i, sums, first_bad)
            return st, perm, sums, first_bad

        carry = (state, self._permutation(state.key, state.step), self._zero_sums(state.params), jnp.int32(-1))
        state, _, sums, first_bad = jax.lax.fori_loop(0, num_steps, body, carry)
        return state, self._summary(state, sums, first_bad, num_steps)

    def _host_loop_chunk(self, state: TrainState, num_steps: int):
        """The same steps with the loop on the host: one compiled call per step. XLA's CPU backend
        runs convolutions inside a compiled loop several times slower than outside one
        (jax-ml/jax#12868; measured here: 14 vs 107 steps/s for the small CNN), so on a CPU the
        conv nets take this path."""
        start = int(state.step)
        sums, first_bad = self._zero_sums(state.params), jnp.int32(-1)
        perm = None
        for i in range(num_steps):
            step = start + i
            if perm is None or step % self.steps_per_epoch == 0:
                perm = self._permutation_jit(state.key, step)
            state, sums, first_bad = self._step_jit(state, perm, self.x_train, self.y_train, jnp.int32(i), sums, first_bad)
        return state, self._summary_jit(state, sums, first_bad, jnp.float32(num_steps))

    def compile(self, state: TrainState) -> float:
        """Compile the training program ahead of time; the seconds it took (0 if already compiled;
        small on a persistent-cache hit), so that run time can be reported without compilation."""
        if self._compiled_chunk is not None:
            return 0.0
        t0 = time.perf_counter()
        if self.host_loop:
            perm = self._permutation_jit(state.key, 0)
            self._step_jit.lower(state, perm, self.x_train, self.y_train, jnp.int32(0), self._zero_sums(state.params), jnp.int32(-1)).compile()
            self._compiled_chunk = self._host_loop_chunk
        else:
            compiled = self._chunk.lower(state, self.x_train, self.y_train, jnp.int32(1)).compile()
            self._compiled_chunk = lambda st, n: compiled(st, self.x_train, self.y_train, jnp.int32(n))
        return time.perf_counter() - t0

    def train_chunk(self, state: TrainState, num_steps: int) -> tuple[TrainState, dict[str, Any]]:
        """`num_steps` steps from `state` (whose buffers are donated); summary means are over the chunk."""
        self.compile(state)
        return self._compiled_chunk(state, num_steps)

    # -- population statistics (Ioffe & Szegedy 2015, Algorithm 2) -----------------------------------
    def _population(self, params, batch_stats, xs):
        """Each BN layer's E[mean_B] and m/(m-1) E[var_B] over training-mode passes of batches xs (nb, bs, ...).

        A copy of the network whose BN momentum is 0 stores the statistics of the batch it just
        saw as its "running" ones; m is the number of values behind each statistic (batch, or ghost
        batch, times spatial positions)."""

        def one(xb):
            model = self.merge(params, batch_stats, self._graphdef_momentum0)
            _, pres = model(xb, train=True, capture=True)
            return nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)), [p.shape for p in pres]

        per_batch = jax.lax.map(lambda xb: one(xb)[0], xs)
        shapes = one(xs[0])[1]  # traced once more for the static shapes; nothing is computed twice at run time
        ghost = self.cfg.model.ghost_batch_size if self.cfg.model.norm == "ghost_batch" else xs.shape[1]
        out = jax.tree.map(lambda v: jnp.mean(v, 0), per_batch)
        for i, shape in enumerate(shapes):
            if "var" in out["hidden"][i]["norm"]:
                m = ghost * math.prod(shape[1:-1])
                out["hidden"][i]["norm"]["var"] = out["hidden"][i]["norm"]["var"] * m / (m - 1)
        return out

    def population_stats(self, state: TrainState) -> Any:
        """Population statistics from the whole training set in batches of the training batch size
        (the trailing partial batch is left out)."""
        nb = self.num_train // self.batch_size
        xs = self.x_train[: nb * self.batch_size].reshape((nb, self.batch_size) + self.x_train.shape[1:])
        return self._population_jit(state.params, state.batch_stats, xs)

    # -- evaluation -------------------------------------------------------------------------------
    def _evaluate_batches(self, params, batch_stats, xs, ys, mask):
        def one(batch):
            x, y, m = batch
            losses, correct = per_example(self.apply(params, batch_stats, x, train=False).logits, y, self.task)
            return jnp.sum(losses * m), jnp.sum(correct * m) if correct is not None else jnp.float32(jnp.nan)

        loss_sums, correct = jax.lax.map(one, (xs, ys, mask))
        count = jnp.sum(mask)
        return jnp.sum(loss_sums) / count, jnp.sum(correct) / count

    def evaluate(self, state: TrainState, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean loss and accuracy (NaN for regression) in evaluation mode, with state's BN statistics."""
        n = len(y)
        if n == 0:
            return float("nan"), float("nan")
        bs = min(self.cfg.train.eval_batch_size, n)
        nb = -(-n // bs)
        pad = nb * bs - n
        xs = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]).reshape((nb, bs) + x.shape[1:])
        ys = np.concatenate([y, np.zeros((pad,) + y.shape[1:], y.dtype)]).reshape((nb, bs) + y.shape[1:])
        mask = (np.arange(nb * bs) < n).astype(np.float32).reshape(nb, bs)
        loss, acc = self._eval(state.params, state.batch_stats, xs, ys, mask)
        return float(loss), float(acc)


# Config numbers that change neither the program nor the shapes: runs differing only in these can be
# trained together under vmap. Seed and init numbers only enter through the initial state; the
# optimiser numbers are passed to the compiled program as traced values.
OPTIMIZER_NUMBERS = ("lr", "momentum", "b1", "b2", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "final_lr_fraction", "decay_factor")
VECTOR_KEYS = ("seed", "model.init_scale", "model.init_std") + tuple(f"optim.{k}" for k in OPTIMIZER_NUMBERS)


def group_key(cfg: Config) -> str:
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


def _trainer_key(cfg: Config, dataset: Dataset) -> str:
    """Everything that changes the compiled program or its data: the config without the seed."""
    d = dataclasses.asdict(cfg)
    d.pop("seed"), d.pop("name"), d.pop("sweep"), d.pop("diagnostics")
    d["train"].pop("checkpoint_every")
    return json.dumps(d, sort_keys=True) + f"|{id(dataset)}"


_TRAINERS: dict[str, Trainer] = {}


def get_trainer(cfg: Config, dataset: Dataset) -> Trainer:
    key = _trainer_key(cfg, dataset)
    if key not in _TRAINERS:
        if len(_TRAINERS) >= 8:  # keep memory bounded in long sweeps over structures
            _TRAINERS.pop(next(iter(_TRAINERS)))
        _TRAINERS[key] = Trainer(cfg, dataset)
    return _TRAINERS[key]
