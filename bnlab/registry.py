"""String-keyed registries, one per axis of ablation (datasets, models, norms, ...).

A new ablation is one function (or class) plus one `REGISTRY.register("name", ...)` line, which
also declares what the component needs from the config (`Declaration`): validation, `bnlab list`,
the structure key that decides which runs share a compiled program, folding and the figures' colours
all read that one declaration.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from .config import schema
from .errors import ConfigError

T = TypeVar("T")
SECTIONS = {"data": schema.DataConfig(), "model": schema.ModelConfig(), "optim": schema.OptimConfig()}  # where components' options live


def first_paragraph(text: str) -> str:
    """The text up to its first blank line, on one line: a description is never cut mid-sentence."""
    return " ".join(text.strip().split("\n\n")[0].split())


@dataclass(frozen=True)
class Declaration:
    """What one component reads from its config section, besides its own name.

    A number the component does not declare as `traced` or `initial` is part of the structure: runs
    that differ in it compile their own programs, so a new component never trains with another
    run's value. A traced number reaches the modules through their `take_numbers` method
    (`bnlab.nn.traced.TakesNumbers`), never by matching attribute names."""

    options: tuple[str, ...] = ()  # the other keys of its section it reads: structure (shown by `bnlab list`)
    traced: tuple[str, ...] = ()  # numbers given to its modules as traced values at every call: sweeps over them share one program
    initial: tuple[str, ...] = ()  # numbers that only fill initial values: traced in the initial state's program
    check: Callable[[Any], Iterable[str]] | None = None  # the problems of a config (the whole Config) that selects it
    colour: str | None = None  # its colour in the claims' figures

    def numbers(self) -> tuple[str, ...]:
        return self.traced + self.initial


class Registry(Generic[T]):
    def __init__(self, axis: str, key: str):
        self.axis = axis  # what the entries are, for messages: "norm"
        self.key = key  # the config key that selects an entry: "model.norm"
        self._entries: dict[str, T] = {}
        self._docs: dict[str, str] = {}
        self._declarations: dict[str, Declaration] = {}

    def register(self, name: str, doc: str | None = None, **declaration: Any) -> Callable[[T], T]:
        """`declaration`: the fields of `Declaration` (options, traced, initial, check, colour)."""
        declared = Declaration(**{k: tuple(v) if isinstance(v, (list, tuple)) else v for k, v in declaration.items()})
        self._check_declaration(name, declared)

        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.axis} {name!r} is registered twice")
            self._entries[name] = obj
            text = doc if doc is not None else (getattr(obj, "__doc__", None) or "")
            self._docs[name] = first_paragraph(text)
            self._declarations[name] = declared
            return obj

        return add

    def _check_declaration(self, name: str, declared: Declaration) -> None:
        """Declared keys must be keys of the registry's config section, and declared numbers numbers
        (a typo would silently leave a number in the structure, or trace one nobody reads)."""
        section = self.key.partition(".")[0]
        defaults = SECTIONS.get(section)
        if defaults is None:
            if declared.options or declared.numbers():
                raise ValueError(f"{self.axis} {name!r}: {self.key} has no config section of options to declare")
            return
        twice = set(declared.options) & set(declared.numbers())
        if twice:
            raise ValueError(f"{self.axis} {name!r} declares {', '.join(sorted(twice))} as an option and as a number; declare each once")
        for key in declared.options + declared.numbers():
            if not hasattr(defaults, key):
                allowed = ", ".join(f.name for f in dataclasses.fields(defaults))
                raise ValueError(f"{self.axis} {name!r} declares {section}.{key}, which is not a config key; allowed: {allowed}")
        for key in declared.numbers():
            value = getattr(defaults, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise ValueError(f"{self.axis} {name!r} declares {section}.{key} as a number, but it is a {type(value).__name__}")

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ConfigError(f"{self.key}: unknown {self.axis} {name!r}; allowed: {', '.join(self.names())}")
        return self._entries[name]

    def declaration(self, name: str) -> Declaration:
        self.get(name)
        return self._declarations[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def describe(self) -> list[tuple[str, str]]:
        return [(n, self._docs[n]) for n in self.names()]

    def __contains__(self, name: Any) -> bool:
        return name in self._entries
