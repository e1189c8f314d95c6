"""Prepared datasets: loaded whole into memory, split, subset and standardised.

`prepare` carves the splits a source lacks deterministically (`data.split_seed`, the same for every
run seed), takes the optional subset and standardises with statistics fitted on the training split
only. Shuffling and batching happen later, on device, inside the compiled training loop.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from ..config.schema import DataConfig
from ..errors import ConfigError
from .sources import DATASETS, Source, Split, parse_name


@dataclass(frozen=True)
class Dataset:
    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int  # classes, or for regression the dimension of the target
    task: str = "classification"  # or "regression" (float targets)
    extra_tests: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # name -> (x, y), e.g. test_len80

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(self.x_train.shape[1:])  # type: ignore[return-value]

    def sizes(self) -> dict[str, int]:
        return {"train": len(self.y_train), "val": len(self.y_val), "test": len(self.y_test)}


def _carve(split: Split, fraction: float, rng: np.random.Generator) -> tuple[Split, Split]:
    """Shuffle and cut off `fraction` of a split: (rest, cut)."""
    x, y = split
    order = rng.permutation(len(y))
    n_cut = int(round(fraction * len(y)))
    cut, rest = order[:n_cut], order[n_cut:]
    return (x[rest], y[rest]), (x[cut], y[cut])


def _standardize(kind: str, x_train: np.ndarray, *others: np.ndarray) -> list[np.ndarray]:
    if kind == "none":
        return [x_train, *others]
    axes = (0,) if kind == "feature" else (0, 1, 2)
    mean = x_train.mean(axis=axes, keepdims=True, dtype=np.float64)
    std = x_train.std(axis=axes, keepdims=True, dtype=np.float64)
    std = np.where(std < 1e-8, 1.0, std)  # constant pixels (MNIST borders) stay centred, not blown up
    return [((x - mean) / std).astype(np.float32) for x in (x_train, *others)]


def prepare(source: Source, cfg: DataConfig, name: str) -> Dataset:
    rng = np.random.default_rng(cfg.split_seed)
    train, test, val = source.train, source.test, source.val
    if test is None:
        train, test = _carve(train, cfg.test_fraction, rng)
    if val is None:
        train, val = _carve(train, cfg.val_fraction, rng)
    if cfg.subset is not None:
        if cfg.subset > len(train[1]):
            raise ConfigError(f"data.subset: {cfg.subset} is larger than the training split ({len(train[1])} examples); allowed: 1..{len(train[1])}")
        train = (train[0][: cfg.subset], train[1][: cfg.subset])
    names = list(source.extra_tests)
    x_train, x_val, x_test, *x_extra = _standardize(cfg.standardize, train[0], val[0], test[0], *(source.extra_tests[n][0] for n in names))
    extra = {n: (x, source.extra_tests[n][1]) for n, x in zip(names, x_extra)}
    if np.issubdtype(train[1].dtype, np.floating):  # regression targets (N, outputs)
        return Dataset(name, x_train, train[1], x_val, val[1], x_test, test[1], num_classes=train[1].shape[1], task="regression", extra_tests=extra)
    labels = np.concatenate([train[1], val[1], test[1]])
    return Dataset(name, x_train, train[1], x_val, val[1], x_test, test[1], num_classes=int(labels.max()) + 1, extra_tests=extra)


@lru_cache(maxsize=8)
def _load_cached(key: str) -> Dataset:
    cfg = DataConfig(**json.loads(key))
    kind, arg = parse_name(cfg.name)
    return prepare(DATASETS.get(kind)(arg, cfg), cfg, cfg.name)


def load(cfg: DataConfig) -> Dataset:
    """The prepared dataset for a data config (cached: runs of a sweep share one copy)."""
    return _load_cached(json.dumps(dataclasses.asdict(cfg), sort_keys=True))
