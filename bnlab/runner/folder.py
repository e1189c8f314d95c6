"""A results folder belongs to one sweep: one `bnlab run` writes there at a time (a lock), and it
holds the results of one config, sweep included (`sweep.yaml`, written by the first run).

Nothing here imports JAX, so the command line can refuse a busy or foreign folder at once."""

from __future__ import annotations

import contextlib
import fcntl
from pathlib import Path
from typing import Any

import yaml

from ..config.load import flatten, load
from ..errors import ConfigError
from .results import RunDir, atomic_write

LOCK, SWEEP = "sweep.lock", "sweep.yaml"


def check_writable(out_dir: Path) -> None:
    """`--out` must be a folder (or not exist yet), and no other `bnlab run` may be writing there."""
    if out_dir.exists() and not out_dir.is_dir():
        raise ConfigError(f"--out {out_dir}: a file is there; give a folder (it is created if missing)")
    lock = out_dir / LOCK
    if lock.exists():
        with open(lock) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConfigError(f"{out_dir}: another `bnlab run` is writing here; wait for it or use another --out") from None


@contextlib.contextmanager
def hold(out_dir: Path):
    """Exclusive use of the folder while a sweep runs (an advisory lock, released even on SIGKILL)."""
    check_writable(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / LOCK, "a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigError(f"{out_dir}: another `bnlab run` is writing here; wait for it or use another --out") from None
        yield


def _comparable(source: dict[str, Any]) -> dict[str, Any]:
    """The config as dotted keys; `name` only picks the default folder, so it does not count."""
    return {k: v for k, v in flatten(source).items() if k != "name"}


def _with_defaults(recorded: dict[str, Any]) -> dict[str, Any]:
    """A recorded config merged onto today's schema, so that keys added since it was written count
    at their defaults (as the runs that wrote it had them); as written if it no longer loads."""
    from omegaconf import OmegaConf

    try:
        return OmegaConf.to_container(load(recorded))  # type: ignore[return-value]
    except ConfigError:
        return recorded


def check_same_sweep(out_dir: Path, source: dict[str, Any], run_ids: list[str]) -> None:
    """Refuse a folder that holds results of another config or sweep, naming what differs."""
    recorded = out_dir / SWEEP
    if recorded.exists():
        old, new = _comparable(_with_defaults(yaml.safe_load(recorded.read_text()) or {})), _comparable(source)
        diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
        if diff:
            raise ConfigError(
                f"{out_dir} holds the results of a different config ({'; '.join(diff[:6])}{'; ...' if len(diff) > 6 else ''}); "
                "give another --out, or delete that folder to start over"
            )
        return
    runs = out_dir / "runs"  # a folder written before sweep.yaml existed: its runs must all belong to this sweep
    foreign = sorted(p.name for p in runs.iterdir() if RunDir(p).config_path.exists() and p.name not in run_ids) if runs.is_dir() else []
    if foreign:
        raise ConfigError(
            f"{out_dir} holds runs of another sweep ({', '.join(foreign[:5])}); give another --out, or delete that folder to start over"
        )


def record_sweep(out_dir: Path, source: dict[str, Any]) -> None:
    if not (out_dir / SWEEP).exists():
        atomic_write(out_dir / SWEEP, yaml.safe_dump(source, sort_keys=False))
