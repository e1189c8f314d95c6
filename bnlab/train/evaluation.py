"""Evaluation-mode metrics, with the running averages or population statistics (Ioffe & Szegedy
2015, Algorithm 2) as BN statistics."""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from ..config.schema import Config
from ..data.dataset import Dataset
from ..nn.models import RECURRENT
from ..nn.norms import NORMS
from ..nn.recurrent import SharedOverTime
from ..nn.traced import give_numbers
from . import structure
from .model_fns import ModelFunctions
from .state import TrainState, per_example


def _step_stats(intermediates: Any, path: tuple = ()):
    """(path of the module, (T, 2, features) array) for every module that sowed its per-step statistics."""
    for key, value in intermediates.items():
        if key == "step_stats":
            yield path, jnp.concatenate(value)
        elif isinstance(value, dict):
            yield from _step_stats(value, path + (key,))


def _at(tree: Any, path: tuple) -> Any:
    for key in path:
        tree = tree[key]
    return tree


class Evaluator:
    """Validation and test metrics of one model structure on one dataset; a run's model numbers
    (epsilon, ...) are traced arguments, so the runs of one structure share its compilations."""

    def __init__(self, model: ModelFunctions, cfg: Config, dataset: Dataset, x_train: jax.Array, train_batch_size: int):
        self.model, self.cfg, self.dataset = model, cfg, dataset
        self.x_train, self.train_batch_size = x_train, train_batch_size
        # a copy of the network whose BN momentum is 0 keeps the statistics of the batch it just saw;
        # BN shared over the time steps of a recurrent net also reports every step's statistics
        copy = model.abstract(dataclasses.replace(cfg.model, bn_momentum=0.0))
        for _, module in nnx.iter_modules(copy):
            if isinstance(module, SharedOverTime) and isinstance(module.norm, nnx.BatchNorm):
                module.collect_batch_stats = True
        self._graphdef_momentum0 = nnx.split(copy, nnx.Param, nnx.BatchStat)[0]
        self._recurrent = cfg.model.name in RECURRENT
        self.numbers = structure.as_arrays(structure.traced_numbers(cfg))
        self._population_jit = {unbiased: model.jit(functools.partial(self._population, unbiased=unbiased)) for unbiased in (True, False)}
        self._eval = model.jit(self._evaluate_batch)
        # one batch shape for every split, so that they share one compiled program
        sizes = [len(dataset.y_val), len(dataset.y_test)] + [len(y) for _, y in dataset.extra_tests.values()]
        sizes += [len(dataset.y_train)] if cfg.train.eval_train else []
        self.eval_batch_size = max(1, min(cfg.train.eval_batch_size, max(sizes)))

    # -- population statistics (Ioffe & Szegedy 2015, Algorithm 2) -----------------------------------
    def _model_numbers(self, numbers):
        """The model numbers to give the modules; BN momentum stays 0 in the copy that collects statistics."""
        model_numbers = structure.split(self.numbers if numbers is None else numbers)[1]
        model_numbers.pop("bn_momentum", None)
        return model_numbers

    def _population(self, params, batch_stats, xs, attributes, unbiased=True):
        """Each BN layer's E[mean_B] and m/(m-1) E[var_B] over training-mode passes of batches xs
        (nb, bs, ...); m is the number of values behind each statistic (batch, or ghost batch, times
        spatial positions). Recurrent nets: per time step for per-step BN (Cooijmans et al.), over
        all time steps for BN shared over time; m is the batch. `unbiased=False` keeps E[var_B], the
        biased estimator the running averages follow: beside Algorithm 2's it tells the estimator's
        share of a gap from the running averages' lag."""

        def one(xb):
            net = self.model.merge(params, batch_stats, self._graphdef_momentum0)
            give_numbers(net, attributes)
            _, pres = net(xb, train=True, capture=True)
            stats = nnx.to_pure_dict(nnx.state(net, nnx.BatchStat))
            for path, steps in _step_stats(nnx.to_pure_dict(nnx.state(net, nnx.Intermediate))):
                target = _at(stats, path)["norm"]
                if "var" in target:  # a BN shared over time: the mean over its time steps
                    target["mean"], target["var"] = jnp.mean(steps[:, 0], 0), jnp.mean(steps[:, 1], 0)
            return stats, [p.shape for p in pres]

        per_batch = jax.lax.map(lambda xb: one(xb)[0], xs)
        shapes = one(xs[0])[1]  # traced once more for the static shapes; nothing is computed twice at run time
        out = jax.tree.map(lambda v: jnp.mean(v, 0), per_batch)
        m = xs.shape[1]
        if not unbiased:
            return out
        if self._recurrent:
            return jax.tree_util.tree_map_with_path(lambda path, v: v * m / (m - 1) if str(getattr(path[-1], "key", "")) == "var" else v, out)
        for i, shape in enumerate(shapes):
            if "var" in out["hidden"][i]["norm"]:
                positions = m * math.prod(shape[1:-1])
                out["hidden"][i]["norm"]["var"] = out["hidden"][i]["norm"]["var"] * positions / (positions - 1)
        return out

    def population_stats(self, state: TrainState, numbers=None, unbiased: bool = True) -> Any:
        """Population statistics from the whole training set in batches of the training batch size
        (ghost BN: of the ghost batch size, so that every pass sees one ghost batch; the trailing
        partial batch is left out); `unbiased=False`: the variance without Bessel's correction."""
        bs = self.cfg.model.ghost_batch_size if self.cfg.model.norm == "ghost_batch" else self.train_batch_size
        nb = len(self.x_train) // bs
        xs = self.x_train[: nb * bs].reshape((nb, bs) + self.x_train.shape[1:])
        return self._population_jit[unbiased](state.params, state.batch_stats, xs, self._model_numbers(numbers))

    # -- evaluation -------------------------------------------------------------------------------
    def _evaluate_batch(self, params, batch_stats, x, y, mask, attributes):
        logits = self.model.apply(params, batch_stats, x, train=False, numbers=attributes).logits
        losses, correct = per_example(logits, y, self.model.task)
        return jnp.sum(losses * mask), jnp.sum(correct * mask) if correct is not None else jnp.float32(jnp.nan)

    def evaluate(self, state: TrainState, x: np.ndarray, y: np.ndarray, numbers=None) -> tuple[float, float]:
        """Mean loss and accuracy (NaN for regression) in evaluation mode, with state's BN statistics,
        in batches of `eval_batch_size` (the last one zero-padded and masked); sums stay on the device."""
        n = len(y)
        if n == 0:
            return float("nan"), float("nan")
        bs, attributes = self.eval_batch_size, self._model_numbers(numbers)
        loss_sum = correct_sum = 0.0
        for start in range(0, n, bs):
            xb, yb, pad = x[start : start + bs], y[start : start + bs], max(start + bs - n, 0)
            if pad:
                xb = np.concatenate([xb, np.zeros((pad,) + x.shape[1:], x.dtype)])
                yb = np.concatenate([yb, np.zeros((pad,) + y.shape[1:], y.dtype)])
            mask = (np.arange(bs) < bs - pad).astype(np.float32)
            loss, correct = self._eval(state.params, state.batch_stats, xb, yb, mask, attributes)
            loss_sum, correct_sum = loss_sum + loss, correct_sum + correct
        return float(loss_sum) / n, float(correct_sum) / n

    def metrics(self, state: TrainState, bn_stats: str, numbers=None) -> dict[str, Any]:
        """Validation and test metrics with running or population BN statistics; BN nets record which.
        `both`: running averages as usual and population statistics as population/<metric> (norms
        with mean/variance statistics only; others record the running-average metrics alone).
        `numbers`: the run's traced numbers (default: this evaluator's config's)."""
        if bn_stats in ("both", "all"):
            row = self.metrics(state, "running", numbers)
            if self.model.has_batch_stats and (self._recurrent or NORMS.get(self.cfg.model.norm).population):
                for kind in ("population",) + (("population_biased",) if bn_stats == "all" else ()):
                    row.update({f"{kind}/{k}": v for k, v in self.metrics(state, kind, numbers).items() if k != "eval_bn_stats"})
                row["eval_bn_stats"] = bn_stats
            return row
        ds = self.dataset
        if self.model.has_batch_stats and bn_stats in ("population", "population_biased"):
            state = state._replace(batch_stats=self.population_stats(state, numbers, unbiased=bn_stats == "population"))
        row: dict[str, Any] = {}
        splits = [("val", ds.x_val, ds.y_val), ("test", ds.x_test, ds.y_test)] + [(n, x, y) for n, (x, y) in ds.extra_tests.items()]
        if self.cfg.train.eval_train:
            splits.append(("train_eval", ds.x_train, ds.y_train))
        for split, x, y in splits:
            loss, acc = self.evaluate(state, x, y, numbers)
            row[f"{split}_loss"] = loss
            if self.model.task == "classification":
                row[f"{split}_acc"] = acc
        if self.model.has_batch_stats:
            row["eval_bn_stats"] = bn_stats  # which BN statistics the evaluation used
        return row
