"""Run a config: validate everything, then train each run of its sweep into its own folder.

Rerunning the same command skips runs that are done or diverged, resumes unfinished ones from
their latest checkpoint (or restarts them), and retries failed ones. A run that raises is recorded
as failed with its error and the sweep goes on; a non-finite loss is recorded as diverged.
"""

from __future__ import annotations

import os
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import config as C
from . import data as D
from . import sweep as S
from .errors import ConfigError
from .results import RunDir, atomic_write, write_summary


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
        C.validate_against_data(spec.config, len(dataset.y_train))
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


def run_one(spec: S.RunSpec, dataset: D.Dataset, rd: RunDir, progress: bool = False) -> str:
    """Train one run into `rd`, resuming from its checkpoint if it has one. Returns the final status."""
    import jax

    from .train import get_trainer

    cfg = spec.config
    trainer = get_trainer(cfg, dataset)
    rd.path.mkdir(parents=True, exist_ok=True)
    if not rd.config_path.exists():
        atomic_write(rd.config_path, C.to_yaml(cfg))

    ckpt = None
    state = trainer.init(cfg.seed)
    wall_offset = 0.0
    if cfg.train.checkpoint_every > 0:
        from .checkpoint import Checkpoints

        ckpt = Checkpoints(rd.checkpoint_dir)
    if ckpt is not None and ckpt.latest_step() is not None:
        state = ckpt.restore(state)
        kept = rd.keep_metrics_through(int(state.step))
        wall_offset = kept[-1].get("wall_time", 0.0) if kept else 0.0
    else:
        rd.keep_metrics_through(-1)  # a restart without a checkpoint redoes everything
    step = int(state.step)
    rd.set_status("running", step=step, total_steps=trainer.total_steps)

    def evaluation_row(st) -> dict[str, Any]:
        ds = trainer.dataset
        val_loss, val_acc = trainer.evaluate(st, ds.x_val, ds.y_val)
        test_loss, test_acc = trainer.evaluate(st, ds.x_test, ds.y_test)
        row = {"val_loss": val_loss, "val_acc": val_acc, "test_loss": test_loss, "test_acc": test_acc}
        if trainer.has_batch_stats:
            row["eval_bn_stats"] = "running"  # which BN statistics the evaluation used
        return row

    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=trainer.total_steps, initial=step, desc=spec.run_id, unit="step", leave=False, dynamic_ncols=True)
    try:
        started = time.perf_counter() - wall_offset
        if step == 0:
            rd.append_metrics({"step": 0, "epoch": 0.0, **evaluation_row(state), "lr": float(trainer.lr_schedule(0)), "wall_time": 0.0})
        while step < trainer.total_steps:
            n = min(cfg.train.log_every, trainer.total_steps - step)
            t0 = time.perf_counter()
            state, summary = trainer.train_chunk(state, n)
            summary = jax.device_get(summary)
            chunk_time = time.perf_counter() - t0
            bad = int(summary["first_nonfinite"])
            row: dict[str, Any] = {
                "step": step + n,
                "epoch": (step + n) / trainer.steps_per_epoch,
                "train_loss": summary["train_loss"],
                "train_acc": summary["train_acc"],
            }
            if bad >= 0:
                diverged_at = step + bad
                row.update(step=diverged_at, train_loss=float("nan"))
                rd.append_metrics(row)
                rd.set_status("diverged", step=diverged_at, diverged_step=diverged_at, total_steps=trainer.total_steps)
                return "diverged"
            step += n
            row.update(evaluation_row(state))
            row["lr"] = float(trainer.lr_schedule(step - 1))
            row["grad_norm"] = summary["grad_norm"]
            row.update({f"grad_norm/{k}": v for k, v in summary["grad_norms"].items()})
            row.update({f"param_norm/{k}": v for k, v in summary["param_norms"].items()})
            row["steps_per_sec"] = n / chunk_time
            row["wall_time"] = time.perf_counter() - started
            rd.append_metrics(row)
            if ckpt is not None and (step % cfg.train.checkpoint_every == 0 or step == trainer.total_steps):
                ckpt.save(state)
            rd.set_status("running", step=step, total_steps=trainer.total_steps)
            if bar is not None:
                bar.update(n)
                bar.set_postfix(loss=f"{row['train_loss']:.3f}", test_acc=f"{row['test_acc']:.3f}")
        rd.set_status("done", step=step, total_steps=trainer.total_steps, wall_time=time.perf_counter() - started)
        return "done"
    finally:
        if bar is not None:
            bar.close()
        if ckpt is not None:
            ckpt.close()


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
                    status = run_one(spec, p.datasets[spec.run_id], rd, progress=progress)
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
