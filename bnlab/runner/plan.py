"""A sweep, planned: loaded, expanded, validated for every run (including the checks that need the
data) and checked against what its results folder already holds. Nothing is written here."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from omegaconf import OmegaConf

from ..config.load import flatten, load, to_dict, to_object
from ..config.schema import Config
from ..config.sweep import RunSpec, expand
from ..data.dataset import Dataset
from ..data.dataset import load as load_dataset
from ..errors import ConfigError
from .folder import check_same_sweep, check_writable
from .results import RunDir
from .validate import validate, validate_against_data


@dataclass
class Plan:
    """A validated sweep, ready to run."""

    out_dir: Path
    runs: list[RunSpec]
    datasets: dict[str, Dataset]  # run id -> its prepared dataset (runs with one data config share it)
    source: dict[str, Any]  # the merged config, sweep included, as plain data: how worker processes re-plan it


def plan(source: Any = None, overrides: list[str] | tuple[str, ...] = (), out: str | Path | None = None, check_busy: bool = True) -> Plan:
    """Load (a YAML path, a mapping or a Config), expand and validate. Raises ConfigError.
    `check_busy=False` is for worker processes, which re-plan a sweep their parent is running."""
    cfg = load(source, overrides)
    runs = expand(cfg)
    out_dir = Path(out) if out is not None else Path("results") / runs[0].config.name
    if check_busy:
        check_writable(out_dir)  # before the slow part: refuse a busy folder or a file at once
    for spec in runs:
        try:
            validate(spec.config)
        except ConfigError as err:
            raise ConfigError(f"{err}\n(in run {spec.run_id})" if spec.varying else str(err)) from None
    datasets: dict[str, Dataset] = {}
    for spec in runs:
        dataset = load_dataset(spec.config.data)
        validate_against_data(spec.config, len(dataset.y_train), dataset.task)
        datasets[spec.run_id] = dataset
    source = OmegaConf.to_container(cfg)
    check_same_sweep(out_dir, source, [spec.run_id for spec in runs])
    for spec in runs:
        _check_same_config(RunDir(out_dir / "runs" / spec.run_id), spec.config)
    return Plan(out_dir, runs, datasets, source)


def _check_same_config(rd: RunDir, cfg: Config) -> None:
    """Refuse to mix results of different configs under one run id."""
    if not rd.config_path.exists():
        return
    old = flatten(to_dict(to_object(load(rd.config_path))))
    new = flatten(to_dict(cfg))
    diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        raise ConfigError(
            f"{rd.path} holds results of a different config ({'; '.join(diff[:5])}); give another --out, or delete that folder to start over"
        )
