"""The host loop of a run (or of a vectorised group of runs): compiled chunks up to each event
step, then logging, scheduled diagnostics and checkpoints; status and metrics into the run folders.

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


class _Run:
    """One run's side of the loop: its folder, checkpoints, diagnostics, training means, status."""

    def __init__(self, cfg: C.Config, dataset: Dataset, rd: RunDir, shared):
        from . import diagnostics, optim
        from .train import get_trainer

        self.cfg, self.rd = cfg, rd
        self.total = shared.total_steps
        self.lr = optim.schedule(cfg.optim, self.total)
        enabled = [n for n in diagnostics.DIAGNOSTICS.names() if getattr(cfg.diagnostics, n).enabled]
        # diagnostics may depend on this run's optimiser numbers, so they use the run's own trainer
        self.trainer = get_trainer(cfg, dataset) if enabled or cfg.diagnostics.surface.enabled else shared
        self.diags = self.trainer.diagnostics(cfg, lambda: diagnostics.enabled(cfg, self.trainer))
        self.diag_steps = [d.steps(self.total) for d in self.diags]
        self.means = _TrainMeans()
        self.status = "running"
        self.ckpt = None
        if cfg.train.checkpoint_every > 0:
            from .checkpoint import Checkpoints

            self.ckpt = Checkpoints(rd.checkpoint_dir)

    def open(self, state):
        """The state to start from (restored from the latest checkpoint, if any); metrics logged
        after it are dropped, since they will be redone."""
        self.rd.path.mkdir(parents=True, exist_ok=True)
        if not self.rd.config_path.exists():
            atomic_write(self.rd.config_path, C.to_yaml(self.cfg))
        self.wall_offset = 0.0
        if self.ckpt is not None and self.ckpt.latest_step() is not None:
            state = self.ckpt.restore(state)
            kept = self.rd.keep_metrics_through(int(state.step))
            self.wall_offset = kept[-1].get("wall_time", 0.0) if kept else 0.0
        else:
            self.rd.keep_metrics_through(-1)
        self.rd.set_status("running", step=int(state.step), total_steps=self.total)
        return state

    def diverge(self, step: int, steps_per_epoch: int) -> None:
        self.rd.append_metrics({"step": step, "epoch": step / steps_per_epoch, "train_loss": float("nan")})
        self.rd.set_status("diverged", step=step, diverged_step=step, total_steps=self.total)
        self.status = "diverged"

    def write_row(self, event: int, state, summary, log_step: bool, wall: float) -> dict[str, Any]:
        row: dict[str, Any] = {"step": event, "epoch": event / self.trainer.steps_per_epoch}
        if log_step:
            if event > 0:
                row.update(self.means.pop())
                row.update({f"param_norm/{k}": v for k, v in summary["param_norms"].items()})
            row.update(_evaluation(self.trainer, state, self.cfg.train.eval_bn_stats))
            row["lr"] = float(self.lr(max(event - 1, 0)))
        for d, steps in zip(self.diags, self.diag_steps):
            if event in steps:
                row.update(d.measure(state))
        row["wall_time"] = wall + self.wall_offset
        self.rd.append_metrics(row)
        if self.ckpt is not None and log_step and event > 0 and (event % self.cfg.train.checkpoint_every == 0 or event == self.total):
            self.ckpt.save(state)
        self.rd.set_status("running", step=event, total_steps=self.total)
        return row

    def finish(self, state, wall: float, compile_seconds: float) -> None:
        if self.cfg.diagnostics.surface.enabled:
            from .surface import loss_surface, to_json

            atomic_write(self.rd.path / "surface.json", to_json(loss_surface(self.trainer, state, self.cfg.diagnostics.surface)))
        self.rd.set_status("done", step=self.total, total_steps=self.total, wall_time=wall + self.wall_offset, compile_time=compile_seconds)
        self.status = "done"

    def close(self) -> None:
        if self.ckpt is not None:
            self.ckpt.close()


class _GroupChunk:
    """Compiled chunks for K runs at once: vmap over stacked states and the optimiser numbers
    that differ between the runs (traced, so the K runs share one program)."""

    def __init__(self, trainer, cfgs: list[C.Config]):
        import jax.numpy as jnp

        from .train import OPTIMIZER_NUMBERS, TrainState

        varying = [k for k in OPTIMIZER_NUMBERS if len({getattr(c.optim, k) for c in cfgs}) > 1]
        self.trainer = trainer
        self.numbers = {k: jnp.asarray([getattr(c.optim, k) for c in cfgs], jnp.float32) for k in varying}
        # the step counter is shared, not batched: the runs advance in lockstep, and an unbatched
        # step keeps the epoch's `lax.cond` a real branch instead of computing a permutation per step
        axes = TrainState(step=None, params=0, batch_stats=0, opt_state=0, key=0)
        self._fn = jax.jit(jax.vmap(trainer._train_chunk, in_axes=(axes, None, None, None, 0), out_axes=(axes, 0)), donate_argnums=0)
        self._compiled = None

    def compile(self, state) -> float:
        if self._compiled is not None:
            return 0.0
        import jax.numpy as jnp

        t0 = time.perf_counter()
        self._compiled = self._fn.lower(state, self.trainer.x_train, self.trainer.y_train, jnp.int32(1), self.numbers).compile()
        return time.perf_counter() - t0

    def __call__(self, state, num_steps: int):
        import jax.numpy as jnp

        self.compile(state)
        return self._compiled(state, self.trainer.x_train, self.trainer.y_train, jnp.int32(num_steps), self.numbers)


def run_group(cfgs: list[C.Config], dataset: Dataset, rds: list[RunDir], progress: bool = False) -> list[str]:
    """Train runs that differ only in VECTOR_KEYS numbers (and start at the same step) together:
    one vmapped program when there are several, the ordinary compiled chunks for one. Each run is
    written to its own folder exactly as if it had been trained alone. Returns the final statuses."""
    from .train import get_trainer

    shared = get_trainer(cfgs[0], dataset)
    runs = [_Run(cfg, dataset, rd, shared) for cfg, rd in zip(cfgs, rds)]
    states = [run.open(shared.init(cfg.seed, cfg.model)) for run, cfg in zip(runs, cfgs)]
    step = int(states[0].step)
    if any(int(s.step) != step for s in states):
        raise ValueError("run_group: the runs of a group must start at the same step")
    vectorized = len(runs) > 1
    if vectorized:
        engine = _GroupChunk(shared, cfgs)
        state = jax.tree.map(lambda *xs: jax.numpy.stack(xs), *states)._replace(step=states[0].step)

        def pick(tree, k):
            if hasattr(tree, "_replace"):  # a TrainState: its step is shared
                return jax.tree.map(lambda a: a[k], tree._replace(step=None))._replace(step=tree.step)
            return jax.tree.map(lambda a: a[k], tree)
    else:
        engine, state = shared, states[0]
        pick = lambda tree, k: tree  # noqa: E731
    total = shared.total_steps
    log_steps = set(range(cfgs[0].train.log_every, total, cfgs[0].train.log_every)) | {total}
    events = sorted(s for s in log_steps.union(*runs[0].diag_steps, {0}) if s >= step)
    bar = None
    if progress:
        from tqdm import tqdm

        label = rds[0].run_id if len(rds) == 1 else f"{rds[0].run_id} +{len(rds) - 1} vectorised"
        bar = tqdm(total=total, initial=step, desc=label, unit="step", leave=False, dynamic_ncols=True)
    try:
        started = time.perf_counter()
        compile_seconds = engine.compile(state)  # before any chunk, so steps_per_sec excludes it
        summary = None
        for event in events:
            if event == step and step > 0:
                continue  # resumed exactly here: this row was written before the checkpoint
            if event > step:
                t0 = time.perf_counter()
                state, summary = (engine(state, event - step) if vectorized else engine.train_chunk(state, event - step))
                summary = jax.device_get(summary)
                seconds = time.perf_counter() - t0
                for k, run in enumerate(runs):
                    if run.status != "running":
                        continue
                    bad = int(pick(summary, k)["first_nonfinite"])
                    if bad >= 0:  # a diverged run of a group keeps computing NaNs; nothing more is written
                        run.diverge(step + bad, shared.steps_per_epoch)
                    else:
                        run.means.add(pick(summary, k), event - step, seconds)
                if bar is not None:
                    bar.update(event - step)
                step = event
            for k, run in enumerate(runs):
                if run.status == "running":
                    row = run.write_row(event, pick(state, k), pick(summary, k) if summary is not None else None,
                                        event in log_steps or event == 0, time.perf_counter() - started)
                    if bar is not None and k == 0 and "test_loss" in row:
                        bar.set_postfix(loss=f"{row.get('train_loss', float('nan')):.3g}", test_loss=f"{row['test_loss']:.3g}")
            if all(run.status != "running" for run in runs):
                break
        for k, run in enumerate(runs):
            if run.status == "running":
                run.finish(pick(state, k), time.perf_counter() - started, compile_seconds)
        return [run.status for run in runs]
    finally:
        if bar is not None:
            bar.close()
        for run in runs:
            run.close()


def run_one(cfg: C.Config, dataset: Dataset, rd: RunDir, progress: bool = False) -> str:
    """Train one run into `rd`, resuming from its checkpoint if it has one. Returns the final
    status; an exception is recorded in the run's status as `failed`, not raised."""
    try:
        return run_group([cfg], dataset, [rd], progress)[0]
    except Exception as err:
        rd.record_exception(err)
        return "failed"
