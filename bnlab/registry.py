"""String-keyed registries, one per axis of ablation (datasets, models, norms, ...).

A new ablation is one function plus one `@REGISTRY.register("name")` line.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Generic, TypeVar

from .errors import ConfigError

T = TypeVar("T")


def first_paragraph(text: str) -> str:
    """The text up to its first blank line, on one line: a description is never cut mid-sentence."""
    return " ".join(text.strip().split("\n\n")[0].split())


class Registry(Generic[T]):
    def __init__(self, axis: str, key: str):
        self.axis = axis  # what the entries are, for messages: "norm"
        self.key = key  # the config key that selects an entry: "model.norm"
        self._entries: dict[str, T] = {}
        self._docs: dict[str, str] = {}

    def register(self, name: str, doc: str | None = None) -> Callable[[T], T]:
        def add(obj: T) -> T:
            if name in self._entries:
                raise ValueError(f"{self.axis} {name!r} is registered twice")
            self._entries[name] = obj
            text = doc if doc is not None else (getattr(obj, "__doc__", None) or "")
            self._docs[name] = first_paragraph(text)
            return obj

        return add

    def get(self, name: str) -> T:
        if name not in self._entries:
            raise ConfigError(f"{self.key}: unknown {self.axis} {name!r}; allowed: {', '.join(self.names())}")
        return self._entries[name]

    def names(self) -> list[str]:
        return sorted(self._entries)

    def describe(self) -> list[tuple[str, str]]:
        return [(n, self._docs[n]) for n in self.names()]

    def __contains__(self, name: Any) -> bool:
        return name in self._entries
