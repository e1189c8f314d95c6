"""Every registry with what each entry declares: `bnlab list` prints it, and the component tables
of docs/norms-and-models.md are this module's Markdown, checked by a test (never written by hand)."""

from __future__ import annotations

from .data.sources import DATASETS
from .measure.diagnostics import DIAGNOSTICS
from .nn.activations import ACTIVATIONS
from .nn.initializers import INITIALIZERS
from .nn.models import MODELS
from .nn.norms import NORMS
from .nn.recurrent import RNN_NORMS
from .registry import Registry
from .train.optim import OPTIMIZERS

REGISTRIES: list[tuple[str, Registry]] = [
    ("datasets (data.name)", DATASETS),
    ("models (model.name)", MODELS),
    ("norms (model.norm) for mlp, cnn, dln", NORMS),
    ("recurrent norms (model.norm) for rnn, lstm", RNN_NORMS),
    ("activations (model.activation)", ACTIVATIONS),
    ("initialisers (model.init)", INITIALIZERS),
    ("optimisers (optim.name)", OPTIMIZERS),
    ("diagnostics (diagnostics.<name>.enabled)", DIAGNOSTICS),
]
SHOWN = {"idx": "idx:<folder>", "tfds": "tfds:<name>"}


def _flags(registry: Registry, name: str) -> list[str]:
    entry = registry.get(name)
    return [label for attr, label in (("folds", "folds"), ("population", "population statistics")) if getattr(entry, attr, False)]


def text() -> str:
    lines = []
    for title, registry in REGISTRIES:
        lines.append(title)
        for name, doc in registry.describe():
            lines.append(f"  {SHOWN.get(name, name):<18} {doc}")
            d = registry.declaration(name)
            section = registry.key.partition(".")[0]
            details = [f"traced: {', '.join(d.traced)}"] if d.traced else []
            details += [f"initial: {', '.join(d.initial)}"] if d.initial else []
            details += [f"options: {', '.join(d.options)}"] if d.options else []
            details += _flags(registry, name)
            if details:
                lines.append(f"  {'':<18} [{section}] " + "; ".join(details))
    lines.append("surface (diagnostics.surface.enabled): loss along filter-normalised random directions after training (Li et al. 2018)")
    return "\n".join(lines)


def markdown(titles: tuple[str, ...] = ("models", "norms", "recurrent norms", "initialisers", "optimisers")) -> str:
    """One table per registry: its options, which numbers are traced (sweeps over them share one
    compiled program; any other option recompiles) or only fill initial values, and its flags."""
    out = []
    for title, registry in REGISTRIES:
        if title.split(" (")[0] not in titles:
            continue
        section = registry.key.partition(".")[0]
        out += [f"**{title}**", "", "| name | what | traced | initial | other options | |", "|---|---|---|---|---|---|"]
        for name, doc in registry.describe():
            d = registry.declaration(name)
            cells = [", ".join(f"`{section}.{k}`" for k in keys) for keys in (d.traced, d.initial, d.options)]
            out.append(f"| `{name}` | {doc} | {' | '.join(cells)} | {', '.join(_flags(registry, name))} |")
        out.append("")
    return "\n".join(out).rstrip() + "\n"
