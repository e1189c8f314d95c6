"""Run a config: validate everything, then train each run of its sweep into its own folder.

Rerunning the same command skips runs that are done or diverged, resumes unfinished ones from
their latest checkpoint (or restarts them), and retries failed ones. A run that raises is recorded
as failed with its error and the sweep goes on; a non-finite loss is recorded as diverged.
"""

from __future__ import annotations

import os
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config as C
from . import data as D
from . import sweep as S
from .errors import ConfigError
from .loop import run_one
from .results import RunDir, write_summary


def enable_compilation_cache() -> None:
    """JAX's persistent compilation cache (BNLAB_JAX_CACHE=dir, or 'off'): reruns skip compiling."""
    import jax

    path = os.environ.get("BNLAB_JAX_CACHE", os.path.join(os.path.expanduser("~"), ".cache", "bnlab", "jax"))
    if path.lower() in ("", "0", "off", "none"):
        return
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)


def flat_config(cfg: C.Config) -> dict[str, Any]:
    flat = C.flatten(C.to_dict(cfg))
    return {k: v for k, v in flat.items() if not k.startswith("sweep.")}


@dataclass
class Plan:
    """A validated sweep, ready to run: nothing has been written yet."""

    out_dir: Path
    runs: list[S.RunSpec]
    datasets: dict[str, D.Dataset]  # data.name -> prepared dataset, per distinct data config


def plan(config_path: str | Path | None, overrides: list[str] | tuple[str, ...] = (), out: str | Path | None = None) -> Plan:
    """Load, expand and validate, including the checks that need the data. Raises ConfigError."""
    cfg = C.load(config_path, overrides)
    runs = S.expand(cfg)
    datasets: dict[str, D.Dataset] = {}
    for spec in runs:
        dataset = D.load(spec.config.data)
        C.validate_against_data(spec.config, len(dataset.y_train), dataset.task)
        datasets[spec.run_id] = dataset
    out_dir = Path(out) if out is not None else Path("results") / runs[0].config.name
    for spec in runs:
        _check_same_config(RunDir(out_dir / "runs" / spec.run_id), spec.config)
    return Plan(out_dir, runs, datasets)


def _check_same_config(rd: RunDir, cfg: C.Config) -> None:
    """Refuse to mix results of different configs under one run id."""
    if not rd.config_path.exists():
        return
    old = C.flatten(C.to_dict(C.to_object(C.load(rd.config_path))))
    new = C.flatten(C.to_dict(cfg))
    diff = [f"{k}: {old.get(k)!r} -> {new.get(k)!r}" for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        raise ConfigError(
            f"{rd.path} holds results of a different config ({'; '.join(diff[:5])}); "
            "give another --out, or delete that folder to start over"
        )


def execute(p: Plan, progress: bool = False) -> dict[str, int]:
    """Train every unfinished run of a plan; returns how many runs ended in each status."""
    enable_compilation_cache()
    counts: dict[str, int] = {}
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(p.runs), desc=f"sweep {p.out_dir}", unit="run", dynamic_ncols=True)
    try:
        for spec in p.runs:
            rd = RunDir(p.out_dir / "runs" / spec.run_id)
            status = rd.status()["status"]
            if status not in ("done", "diverged"):
                try:
                    status = run_one(spec.config, p.datasets[spec.run_id], rd, progress=progress)
                except Exception as err:  # recorded; the sweep goes on
                    rd.set_status("failed", error=f"{type(err).__name__}: {err}", traceback=traceback.format_exc())
                    status = "failed"
                write_summary(p.out_dir, p.runs, flat_config)
            counts[status] = counts.get(status, 0) + 1
            if bar is not None:
                bar.update(1)
        write_summary(p.out_dir, p.runs, flat_config)
    finally:
        if bar is not None:
            bar.close()
    return counts
