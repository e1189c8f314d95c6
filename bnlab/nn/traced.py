"""How a module receives the config numbers its component declares as traced (`Declaration.traced`).

A module that holds such a number says so in `NUMBERS` (config number -> its attribute); the
training and evaluation programs then hand every run its own values, possibly traced, through
`give_numbers`. Nothing is matched by attribute name: a module's own attribute that happens to be
called `epsilon` is never touched, and a declared number that no module takes is an error
(`check_taken`), not a silently stale value.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

from flax import nnx

from ..errors import ConfigError


class TakesNumbers:
    """Mixin: `NUMBERS` maps a model config number (e.g. 'norm_epsilon') to the attribute it sets."""

    NUMBERS: ClassVar[dict[str, str]] = {}

    def take_numbers(self, numbers: Mapping[str, Any]) -> None:
        for key, attribute in self.NUMBERS.items():
            if key in numbers:
                setattr(self, attribute, numbers[key])


def give_numbers(model: nnx.Module, numbers: Mapping[str, Any]) -> None:
    """Every module of `model` that takes one of `numbers` (config name -> value) gets its value."""
    if not numbers:
        return
    for _, module in nnx.iter_modules(model):
        if isinstance(module, TakesNumbers):
            module.take_numbers(numbers)


def numbers_taken(model: nnx.Module) -> set[str]:
    return {key for _, module in nnx.iter_modules(model) if isinstance(module, TakesNumbers) for key in module.NUMBERS}


def check_taken(model: nnx.Module, traced: list[str], where: str) -> None:
    """Raise if a number declared traced reaches no module: its sweeps would all train with the
    first run's value."""
    missing = sorted(set(traced) - numbers_taken(model))
    if missing:
        raise ConfigError(
            f"{where} declares {', '.join('model.' + k for k in missing)} as traced, but none of its modules takes "
            f"{'it' if len(missing) == 1 else 'them'}: list each in the module's NUMBERS (bnlab.nn.traced.TakesNumbers), "
            "or leave it out of traced= (it then recompiles for each value)"
        )
