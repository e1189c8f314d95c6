"""Which runs share one compiled program: a run's structure, and the numbers it passes as traced values.

Every registered component declares the config numbers it takes traced (`Declaration.traced`: BN
momentum and epsilon for BN, the dropout rate for the feed-forward models, the lr and the chain's
numbers for an optimiser) and the numbers that only fill initial values (`Declaration.initial`).
A run's structure is its config without those numbers, its seed and what only the host loop reads;
every other number stays in it, so runs that differ in an undeclared number compile their own
programs and never train with another run's value. Where a number being zero removes a part of the
program (weight decay, dropout), zero stays in the structure.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp

from ..config.schema import Config, ModelConfig
from ..nn.models import components
from .optim import OPTIMIZERS

ZERO_IS_STRUCTURE = ("optim.weight_decay", "model.dropout")
NOT_PROGRAM = ("name", "sweep", "diagnostics", "train.checkpoint_every", "train.log_every")


def traced_keys(cfg: Config) -> list[str]:
    """The numbers its components take traced, keyed like 'optim.lr', in a fixed order."""
    keys = [f"optim.{k}" for k in OPTIMIZERS.declaration(cfg.optim.name).traced]
    return keys + [f"model.{k}" for k in model_traced_keys(cfg.model)]


def model_traced_keys(model: ModelConfig) -> list[str]:
    return list(dict.fromkeys(k for registry, name in components(model) for k in registry.declaration(name).traced))


def initial_keys(model: ModelConfig) -> list[str]:
    """The model numbers that only fill initial values (traced in the initial state's program)."""
    return list(dict.fromkeys(k for registry, name in components(model) for k in registry.declaration(name).initial))


def _get(d: dict, key: str) -> Any:
    section, _, name = key.rpartition(".")
    return (d[section] if section else d)[name]


def traced_numbers(cfg: Config) -> dict[str, float]:
    """The numbers of `cfg` that enter its programs as traced values (set, and non-zero where zero
    is structure), keyed like 'optim.lr'."""
    d = dataclasses.asdict(cfg)
    out = {}
    for key in traced_keys(cfg):
        value = _get(d, key)
        if value is None or (key in ZERO_IS_STRUCTURE and value == 0):
            continue
        out[key] = float(value)
    return out


def as_arrays(numbers: dict[str, float]) -> dict[str, jax.Array]:
    return {k: jnp.float32(v) for k, v in numbers.items()}


def structure_key(cfg: Config) -> str:
    """Equal for runs that share one compiled training program: the config without the traced
    numbers (but with which are set), the initial numbers, the seed and what only the host loop reads."""
    d = dataclasses.asdict(cfg)
    dropped = list(NOT_PROGRAM) + ["seed"] + [f"model.{k}" for k in initial_keys(cfg.model)]
    for key in dropped:
        section, _, name = key.rpartition(".")
        (d[section] if section else d).pop(name)
    for key in traced_keys(cfg):
        section, _, name = key.rpartition(".")
        value = d[section][name]
        d[section][name] = "unset" if value is None else "zero" if key in ZERO_IS_STRUCTURE and value == 0 else "traced"
    return json.dumps(d, sort_keys=True)


def split(numbers: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(optimiser numbers, model numbers), each keyed by its config field ('lr', 'bn_momentum')."""
    optimizer = {k.partition(".")[2]: v for k, v in numbers.items() if k.startswith("optim.")}
    model = {k.partition(".")[2]: v for k, v in numbers.items() if k.startswith("model.")}
    return optimizer, model
