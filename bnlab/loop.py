"""The host loop of one run: compiled chunks up to each event step, then logging, scheduled
diagnostics and checkpoints; status and metrics into the run folder.

Event steps are the log steps (every train.log_every, and the last step) and the steps of every
enabled diagnostic's schedule. A metrics row is written at each event step: log steps carry the
training metrics (means over the steps since the previous log row) and evaluations; diagnostic
results join the row of the step they measured.
"""

from __future__ import annotations

import time
from typing import Any

import jax

from . import config as C
from .data import Dataset
from .results import RunDir, atomic_write


def _evaluation(trainer, state, bn_stats: str) -> dict[str, Any]:
    """Validation and test metrics in evaluation mode, with running or population BN statistics."""
    ds = trainer.dataset
    if trainer.has_batch_stats and bn_stats == "population":
        state = state._replace(batch_stats=trainer.population_stats(state))
    val_loss, val_acc = trainer.evaluate(state, ds.x_val, ds.y_val)
    test_loss, test_acc = trainer.evaluate(state, ds.x_test, ds.y_test)
    row = {"val_loss": val_loss, "val_acc": val_acc, "test_loss": test_loss, "test_acc": test_acc}
    if trainer.task == "regression":
        del row["val_acc"], row["test_acc"]
    if trainer.has_batch_stats:
        row["eval_bn_stats"] = bn_stats  # which BN statistics the evaluation used
    return row


class _TrainMeans:
    """Chunk summaries averaged over the steps since the last log row (chunks may be short)."""

    def __init__(self):
        self.sums: dict[str, float] = {}
        self.steps = 0
        self.seconds = 0.0

    def add(self, summary: dict[str, Any], n: int, seconds: float) -> None:
        self.seconds += seconds
        flat = {k: summary[k] for k in ("train_loss", "train_acc", "grad_norm") if k in summary}
        flat.update({f"grad_norm/{k}": v for k, v in summary["grad_norms"].items()})
        for k, v in flat.items():
            self.sums[k] = self.sums.get(k, 0.0) + float(v) * n
        self.steps += n

    def pop(self) -> dict[str, float]:
        out = {k: v / self.steps for k, v in self.sums.items()}
        out["steps_per_sec"] = self.steps / max(self.seconds, 1e-9)
        self.sums, self.steps, self.seconds = {}, 0, 0.0
        return out


def run_one(cfg: C.Config, dataset: Dataset, rd: RunDir, progress: bool = False) -> str:
    """Train one run into `rd`, resuming from its checkpoint if it has one. Returns the final status."""
    from . import diagnostics
    from .train import get_trainer

    trainer = get_trainer(cfg, dataset)
    diags = trainer.diagnostics(cfg, lambda: diagnostics.enabled(cfg, trainer))
    total = trainer.total_steps
    rd.path.mkdir(parents=True, exist_ok=True)
    if not rd.config_path.exists():
        atomic_write(rd.config_path, C.to_yaml(cfg))

    state = trainer.init(cfg.seed)
    ckpt, wall_offset = None, 0.0
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
    rd.set_status("running", step=step, total_steps=total)

    log_steps = set(range(cfg.train.log_every, total, cfg.train.log_every)) | {total}
    diag_steps = [d.steps(total) for d in diags]
    events = sorted(s for s in log_steps.union(*diag_steps, {0}) if s >= step)
    means = _TrainMeans()
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=total, initial=step, desc=rd.run_id, unit="step", leave=False, dynamic_ncols=True)
    try:
        started = time.perf_counter() - wall_offset
        compile_seconds = trainer.compile(state)  # before any chunk, so steps_per_sec excludes it
        for event in events:
            if event == step and step > 0:
                continue  # resumed exactly here: this row was written before the checkpoint
            row: dict[str, Any] = {"step": event, "epoch": event / trainer.steps_per_epoch}
            if event > step:
                t0 = time.perf_counter()
                state, summary = trainer.train_chunk(state, event - step)
                summary = jax.device_get(summary)
                if int(summary["first_nonfinite"]) >= 0:
                    diverged_at = step + int(summary["first_nonfinite"])
                    rd.append_metrics({"step": diverged_at, "epoch": diverged_at / trainer.steps_per_epoch, "train_loss": float("nan")})
                    rd.set_status("diverged", step=diverged_at, diverged_step=diverged_at, total_steps=total)
                    return "diverged"
                means.add(summary, event - step, time.perf_counter() - t0)
                if bar is not None:
                    bar.update(event - step)
                step = event
            if event in log_steps or event == 0:
                if event > 0:
                    row.update(means.pop())
                    row.update({f"param_norm/{k}": v for k, v in summary["param_norms"].items()})
                row.update(_evaluation(trainer, state, cfg.train.eval_bn_stats))
                row["lr"] = float(trainer.lr_schedule(max(event - 1, 0)))
            for d, steps in zip(diags, diag_steps):
                if event in steps:
                    row.update(d.measure(state))
            row["wall_time"] = time.perf_counter() - started
            rd.append_metrics(row)
            if ckpt is not None and event in log_steps and (event % cfg.train.checkpoint_every == 0 or event == total):
                ckpt.save(state)
            rd.set_status("running", step=step, total_steps=total)
            if bar is not None and "test_loss" in row:
                bar.set_postfix(loss=f"{row.get('train_loss', float('nan')):.3g}", test_loss=f"{row['test_loss']:.3g}")
        if cfg.diagnostics.surface.enabled:
            from .surface import loss_surface, to_json

            atomic_write(rd.path / "surface.json", to_json(loss_surface(trainer, state, cfg.diagnostics.surface)))
        rd.set_status("done", step=step, total_steps=total, wall_time=time.perf_counter() - started, compile_time=compile_seconds)
        return "done"
    finally:
        if bar is not None:
            bar.close()
        if ckpt is not None:
            ckpt.close()
