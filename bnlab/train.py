"""Training as compiled chunks of steps.

The NNX model is split once into a graph definition and two pure-dict pytrees, trainable
parameters (`nnx.Param`) and BN statistics (`nnx.BatchStat`); the optimiser sees only the
parameters. A chunk of `train.log_every` steps is one `lax.scan` inside one `jax.jit`: the
training set lives on the device and every batch is sliced from an epoch permutation inside the
program, so the host only wakes between chunks to log. Step `s` uses
  - the epoch permutation `permutation(fold_in(data_key, s // steps_per_epoch))`, and
  - the dropout key `fold_in(dropout_key, s)`,
so results do not depend on where chunks start or whether a run was resumed from a checkpoint.
"""

from __future__ import annotations

import dataclasses
import json
import math
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
        self.num_train = len(dataset.y_train)
        self.batch_size = cfg.train.batch_size
        self.steps_per_epoch = self.num_train // self.batch_size
        self.total_steps = total_steps(cfg, self.num_train)
        self.tx, self.lr_schedule = optim.build(cfg.optim, self.total_steps)
        self.has_batch_stats = bool(jax.tree.leaves(nnx.to_pure_dict(self._stats_template)))
        self.x_train = jnp.asarray(dataset.x_train)
        self.y_train = jnp.asarray(dataset.y_train)
        self._chunk = jax.jit(self._train_chunk, static_argnames="num_steps", donate_argnums=0)
        self._eval = jax.jit(self._evaluate_batches)

    # -- model plumbing ---------------------------------------------------------------------------
    def merge(self, params: Any, batch_stats: Any) -> nnx.Module:
        p = jax.tree.map(lambda v: v, self._param_template)
        s = jax.tree.map(lambda v: v, self._stats_template)
        nnx.replace_by_pure_dict(p, params)
        nnx.replace_by_pure_dict(s, batch_stats)
        return nnx.merge(self.graphdef, p, s)

    def apply(self, params: Any, batch_stats: Any, x: jax.Array, *, train: bool, dropout_key=None):
        """Logits and (in training mode) the updated BN statistics."""
        model = self.merge(params, batch_stats)
        logits = model(x, train=train, dropout_key=dropout_key)
        new_stats = nnx.to_pure_dict(nnx.state(model, nnx.BatchStat)) if train else batch_stats
        return logits, new_stats

    def init(self, seed: int) -> TrainState:
        model = models.build(self.cfg.model, self.dataset.image_shape, self.dataset.num_classes, seed=seed)
        _, params, stats = nnx.split(model, nnx.Param, nnx.BatchStat)
        params, stats = nnx.to_pure_dict(params), nnx.to_pure_dict(stats)
        return TrainState(jnp.int32(0), params, stats, self.tx.init(params), jax.random.PRNGKey(seed))

    # -- training ---------------------------------------------------------------------------------
    def _loss(self, params, batch_stats, x, y, dropout_key):
        logits, new_stats = self.apply(params, batch_stats, x, train=True, dropout_key=dropout_key)
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return loss, (logits, new_stats)

    def _train_chunk(self, state: TrainState, x_train, y_train, *, num_steps: int):
        data_key, dropout_key = jax.random.fold_in(state.key, 1), jax.random.fold_in(state.key, 2)
        spe, bs, n = self.steps_per_epoch, self.batch_size, self.num_train

        def permutation(step):
            return jax.random.permutation(jax.random.fold_in(data_key, step // spe), n)

        def body(carry, _):
            st, perm = carry
            pos = st.step % spe
            perm = jax.lax.cond(pos == 0, lambda: permutation(st.step), lambda: perm)
            idx = jax.lax.dynamic_slice(perm, (pos * bs,), (bs,))
            xb, yb = x_train[idx], y_train[idx]
            grad_fn = jax.value_and_grad(self._loss, has_aux=True)
            (loss, (logits, new_stats)), grads = grad_fn(st.params, st.batch_stats, xb, yb, jax.random.fold_in(dropout_key, st.step))
            updates, opt_state = self.tx.update(grads, st.opt_state, st.params)
            params = optax.apply_updates(st.params, updates)
            out = {
                "loss": loss,
                "acc": jnp.mean(jnp.argmax(logits, -1) == yb),
                "grad_norm": optax.global_norm(grads),
                "grad_norms": layer_norms(grads),
            }
            return (TrainState(st.step + 1, params, new_stats, opt_state, st.key), perm), out

        (state, _), per_step = jax.lax.scan(body, (state, permutation(state.step)), None, length=num_steps)
        finite = jnp.isfinite(per_step["loss"])
        summary = {
            "train_loss": jnp.mean(per_step["loss"]),
            "train_acc": jnp.mean(per_step["acc"]),
            "grad_norm": jnp.mean(per_step["grad_norm"]),
            "grad_norms": jax.tree.map(jnp.mean, per_step["grad_norms"]),
            "param_norms": layer_norms(state.params),
            "first_nonfinite": jnp.where(jnp.all(finite), -1, jnp.argmin(finite)),
        }
        return state, summary

    def train_chunk(self, state: TrainState, num_steps: int) -> tuple[TrainState, dict[str, Any]]:
        """`num_steps` steps from `state` (whose buffers are donated); summary means are over the chunk."""
        return self._chunk(state, self.x_train, self.y_train, num_steps=num_steps)

    # -- evaluation -------------------------------------------------------------------------------
    def _evaluate_batches(self, params, batch_stats, xs, ys, mask):
        def one(batch):
            x, y, m = batch
            logits, _ = self.apply(params, batch_stats, x, train=False)
            losses = optax.softmax_cross_entropy_with_integer_labels(logits, y)
            return jnp.sum(losses * m), jnp.sum((jnp.argmax(logits, -1) == y) * m)

        loss_sums, correct = jax.lax.map(one, (xs, ys, mask))
        count = jnp.sum(mask)
        return jnp.sum(loss_sums) / count, jnp.sum(correct) / count

    def evaluate(self, state: TrainState, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """Mean loss and accuracy in evaluation mode (BN uses its running statistics)."""
        n = len(y)
        if n == 0:
            return float("nan"), float("nan")
        bs = min(self.cfg.train.eval_batch_size, n)
        nb = -(-n // bs)
        pad = nb * bs - n
        xs = np.concatenate([x, np.zeros((pad,) + x.shape[1:], x.dtype)]).reshape((nb, bs) + x.shape[1:])
        ys = np.concatenate([y, np.zeros(pad, y.dtype)]).reshape(nb, bs)
        mask = (np.arange(nb * bs) < n).astype(np.float32).reshape(nb, bs)
        loss, acc = self._eval(state.params, state.batch_stats, xs, ys, mask)
        return float(loss), float(acc)


def _trainer_key(cfg: Config, dataset: Dataset) -> str:
    """Everything that changes the compiled program or its data: the config without the seed."""
    d = dataclasses.asdict(cfg)
    d.pop("seed"), d.pop("name"), d.pop("sweep")
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
