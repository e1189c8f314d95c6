"""Config numbers that change neither shapes nor the program enter the compiled programs as traced
values, so runs that differ only in them share one compilation (one by one or vmapped).

A run's structure is its config without these numbers (and without the seed and init numbers, which
only enter through the initial state). Where a number being zero or unset removes a part of the
program (weight decay, dropout, an optional clipping), that much stays in the structure.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from ..config.schema import Config

OPTIMIZER_NUMBERS = ("lr", "momentum", "b1", "b2", "weight_decay", "clipnorm", "global_clipnorm", "clipvalue", "final_lr_fraction", "decay_factor")
# model number -> the attribute of the modules (norms, hidden layers) that holds it
MODEL_NUMBERS = {"bn_momentum": "momentum", "norm_epsilon": "epsilon", "dropout": "dropout_rate", "renorm_rmax": "rmax", "renorm_dmax": "dmax"}
# model numbers that only scale or fill the initial values: traced arguments of the initial state's program
INIT_NUMBERS = ("init_scale", "init_std", "norm_gamma_init", "recurrent_gain")
INIT_KEYS = ("seed",) + tuple(f"model.{k}" for k in INIT_NUMBERS)
# numbers for which zero removes a part of the program (so zero stays static)
_ZERO_IS_STRUCTURE = ("optim.weight_decay", "model.dropout")
NOT_PROGRAM = ("name", "sweep", "diagnostics", "train.checkpoint_every", "train.log_every")


def _number_keys() -> list[str]:
    return [f"optim.{k}" for k in OPTIMIZER_NUMBERS] + [f"model.{k}" for k in MODEL_NUMBERS]


def _get(d: dict, key: str) -> Any:
    section, _, name = key.rpartition(".")
    return (d[section] if section else d)[name]


def traced_numbers(cfg: Config) -> dict[str, float]:
    """The numbers of `cfg` that enter its programs as traced values (set, and non-zero where zero
    is structure), keyed like 'optim.lr'."""
    d = dataclasses.asdict(cfg)
    out = {}
    for key in _number_keys():
        value = _get(d, key)
        if value is None or (key in _ZERO_IS_STRUCTURE and value == 0):
            continue
        out[key] = float(value)
    return out


def as_arrays(numbers: dict[str, float]) -> dict[str, jax.Array]:
    return {k: jnp.float32(v) for k, v in numbers.items()}


def structure_key(cfg: Config) -> str:
    """Equal for runs that share one compiled training program: the config without the traced
    numbers (but with which are set), the init numbers, the seed and what only the host loop reads."""
    d = dataclasses.asdict(cfg)
    for key in _number_keys() + list(INIT_KEYS) + list(NOT_PROGRAM):
        section, _, name = key.rpartition(".")
        holder = d[section] if section else d
        value = holder[name]
        if key in NOT_PROGRAM or key in INIT_KEYS:
            holder.pop(name)
        elif value is None:
            holder[name] = "unset"
        else:
            holder[name] = "zero" if key in _ZERO_IS_STRUCTURE and value == 0 else "traced"
    return json.dumps(d, sort_keys=True)


def split(numbers: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """(optimiser numbers by OptimConfig field, model numbers by module attribute)."""
    optimizer = {k.partition(".")[2]: v for k, v in numbers.items() if k.startswith("optim.")}
    model = {MODEL_NUMBERS[k.partition(".")[2]]: v for k, v in numbers.items() if k.startswith("model.")}
    return optimizer, model


def set_module_numbers(model: nnx.Module, attributes: dict[str, Any]) -> None:
    """Give every module of `model` that holds one of these attributes (as a plain number) the
    given, possibly traced, value."""
    if not attributes:
        return
    for _, module in nnx.iter_modules(model):
        for name, value in attributes.items():
            if isinstance(vars(module).get(name), (int, float)):
                setattr(module, name, value)
