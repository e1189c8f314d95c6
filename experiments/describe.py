"""Setup text formatted from the configs that actually ran (overrides included), so that a report
never states a length, a width or a learning rate that the runs did not use.

Every function reads the `config.<key>` columns of a results table (bnlab.load_results(...).runs).
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

MODEL_NAMES = {"mlp": "MLP", "cnn": "CNN", "lstm": "LSTM", "rnn": "tanh RNN", "dln": "deep linear net"}
OPTIM_NAMES = {"sgd": "SGD", "momentum": "SGD with momentum", "adam": "Adam"}
NORM_NAMES = {
    "none": "no normalisation",
    "batch": "BN",
    "layer": "LayerNorm",
    "group": "GroupNorm",
    "ghost_batch": "ghost BN",
    "noisy_batch": "noisy BN",
    "noise": "the noise alone",
    "batch_per_step": "BN per time step",
    "whiten": "ZCA whitening",
}


def number(v: Any) -> str:
    """3000 -> '3,000', 0.5 -> '0.5', 1e-05 -> '1e-05', True -> 'true'."""
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, float) and v.is_integer() and abs(v) < 1e6:
        v = int(v)
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def listed(values, unit: str = "") -> str:
    """'8', '8 and 64', '0, 0.5 and 0.9'."""
    items = [number(v) + unit for v in values]
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def hashable(v: Any) -> Any:
    """A config value as a key: lists as tuples, and NaN (an unset value as a table reads it) as None."""
    if isinstance(v, float) and math.isnan(v):
        return None
    return tuple(v) if isinstance(v, list) else v


def values(runs: pd.DataFrame, key: str) -> list:
    """The distinct values of config `key` over the runs: numbers sorted, names in the order the
    runs first use them (the sweep's order), None last."""
    seen = {}
    for v in runs[f"config.{key}"]:
        if isinstance(v, float) and math.isnan(v):
            v = None
        seen.setdefault(hashable(v), v)
    present = [v for v in seen.values() if v is not None]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in present):
        present = sorted(present)
    return present + ([None] if None in seen.values() else [])


def one(runs: pd.DataFrame, key: str) -> Any:
    """The value of config `key` if every run has the same, else the list of values."""
    vs = values(runs, key)
    return vs[0] if len(vs) == 1 else vs


def spread(runs: pd.DataFrame, key: str, unit: str = "") -> str:
    """'0.5', or '0.01 to 30' for a swept number with more than three values, else '8 and 64'."""
    vs = [v for v in values(runs, key) if v is not None]
    if len(vs) > 3 and all(isinstance(v, (int, float)) for v in vs):
        return f"{number(vs[0])}{unit} to {number(vs[-1])}{unit}"
    return listed(vs, unit)


def seeds(seed_list) -> str:
    """'0-9', '0, 2 and 5', '10-19'."""
    s = sorted(int(x) for x in seed_list)
    if len(s) > 2 and s == list(range(s[0], s[-1] + 1)):
        return f"{s[0]}-{s[-1]}"
    return listed(s)


def norms(runs: pd.DataFrame, key: str = "model.norm") -> str:
    return " / ".join(NORM_NAMES.get(n, n) for n in values(runs, key))


def data(runs: pd.DataFrame, sizes: dict | None = None) -> str:
    """The dataset and its splits: 'MNIST-1D (3,600 train / 400 validation / 1,000 test)'."""
    name = one(runs, "data.name")
    names = name if isinstance(name, list) else [name]
    texts = []
    for n in names:
        if n == "mnist1d":
            text = "MNIST-1D"
        elif n == "digits":
            text = "the embedded 8x8 digits"
        elif n.startswith("idx:"):
            text = f"real MNIST-format images (the IDX files in {n[4:]})"
        elif n == "evidence":
            rows = runs[runs["config.data.name"] == n]
            length, features, _ = one(rows, "data.synthetic_shape")
            text = (
                f"the evidence task ({number(one(rows, 'data.synthetic_classes'))} classes; each step a noisy glimpse of the class's "
                f"template, {number(features)} features, noise {number(one(rows, 'data.evidence_noise'))}; {number(length)}-step sequences)"
            )
        elif n.startswith("tfds:"):
            text = f"TFDS {n[5:]}"
        else:
            text = n
        split = (sizes or {}).get(n)
        if split:
            text += f" ({number(split['train'])} train / {number(split['val'])} validation / {number(split['test'])} test)"
        texts.append(text)
    subset = one(runs, "data.subset")
    out = " and ".join(texts)
    if subset is not None and not isinstance(subset, list):
        out += f", training split cut to {number(subset)} examples"
    return out


def chance(runs: pd.DataFrame, record: dict) -> float:
    """Chance accuracy of the (first) dataset the runs use: 1 / its class count, from claim.json."""
    sizes = record.get("data_sizes") or {}
    name = values(runs, "data.name")[0]
    return 1.0 / sizes[name]["classes"] if name in sizes and "classes" in sizes[name] else float("nan")


def model(row: pd.Series | pd.DataFrame) -> str:
    """'MLP 3x100, sigmoid', 'CNN of 2 stages (16/32 channels), ReLU', 'LSTM of 64 units'; for
    several runs, the first run's shape with every activation they use."""
    acts = values(row, "model.activation") if isinstance(row, pd.DataFrame) else [row["config.model.activation"]]
    if isinstance(row, pd.DataFrame):
        row = row.iloc[0]
    name, depth, width = row["config.model.name"], int(row["config.model.depth"]), int(row["config.model.width"])
    act = " and ".join({"relu": "ReLU", "tanh": "tanh"}.get(a, a) for a in acts)
    if name == "cnn":
        channels = "/".join(str(width * 2**s) for s in range(depth))
        return f"CNN of {depth} stages ({channels} channels), {act}"
    if name in ("lstm", "rnn"):
        return f"{MODEL_NAMES[name]} of {width} units"
    return f"{MODEL_NAMES.get(name, name)} {depth}x{width}, {act}"


def optimiser(row: pd.Series | pd.DataFrame) -> str:
    """'SGD lr 0.5', 'Adam lr 0.003', 'SGD lr 0.05 x batch / 32'."""
    if isinstance(row, pd.DataFrame):
        row = row.iloc[0]
    reference = row.get("config.optim.lr_reference_batch")
    scaled = "" if reference is None or pd.isna(reference) else f" x batch / {int(reference)} (linear scaling, Goyal et al. 2017)"
    return f"{OPTIM_NAMES.get(row['config.optim.name'], row['config.optim.name'])} lr {number(row['config.optim.lr'])}{scaled}"


def length(runs: pd.DataFrame) -> str:
    """'batch 64, 3,000 steps' (or epochs), over every length and batch size that ran."""
    batch = spread(runs, "train.batch_size")
    steps = [v for v in values(runs, "train.steps") if v is not None]
    epochs = [v for v in values(runs, "train.epochs") if v is not None]
    parts = [f"batch {batch}"]
    if steps:
        parts.append(f"{listed(steps)} steps")
    if epochs:
        parts.append(f"{listed(epochs)} epoch{'s' * (epochs != [1])}")
    return ", ".join(parts)


def init(runs: pd.DataFrame) -> str:
    kind = one(runs, "model.init")
    if kind == "normal":
        return f"N(0, {number(one(runs, 'model.init_std'))}²) init"
    if kind == "default":
        return "default (LeCun normal) init"
    if isinstance(kind, list):
        return " and ".join(k.replace("_", " ") for k in kind) + " init"
    return kind.replace("_", " ") + " init"
