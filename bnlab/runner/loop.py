"""The host loop of a run (or of a vectorised group of runs): compiled chunks up to each event
step, then logging, scheduled diagnostics and checkpoints; status and metrics into the run folders.

Event steps are the log steps (every train.log_every, and the last step) and the steps of every
enabled diagnostic's schedule. A metrics row is written at each event step: log steps carry the
training metrics (means over the steps since the previous log row) and evaluations; diagnostic
results join the row of the step they measured.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import time
from typing import Any

import jax

from ..config.load import to_yaml
from ..config.schema import Config
from ..data.dataset import Dataset
from ..measure import diagnostics
from ..train import optim
from ..train.evaluation import Evaluator
from ..train.program import TrainProgram
from ..train.structure import as_arrays, structure_key, traced_numbers
from ..train.vectorized import VectorizedProgram, pick, stack
from .profile import Phases
from .results import RunDir, atomic_write


class ProgramCache:
    """Programs, evaluators and diagnostics built in this process, reused by later runs: training
    programs and evaluators per structure (train.structure: runs that differ only in numbers share
    one compilation), diagnostics per whole config (they measure with the run's own optimiser and
    model numbers). Bounded, oldest out."""

    def __init__(self, size: int = 8):
        self.size = size
        self._structures: dict[str, dict[str, Any]] = {}
        self._measured: dict[str, dict[str, Any]] = {}

    def _bounded(self, entries: dict[str, Any], key: str, make) -> Any:
        if key not in entries:
            if len(entries) >= self.size:
                entries.pop(next(iter(entries)))
            entries[key] = make()
        return entries[key]

    def _structure(self, cfg: Config, dataset: Dataset) -> dict[str, Any]:
        def make():
            program = TrainProgram(cfg, dataset)
            return {"program": program, "evaluator": Evaluator(program.model, cfg, dataset, program.x_train, program.batch_size)}

        return self._bounded(self._structures, structure_key(cfg) + f"|{id(dataset)}", make)

    def program(self, cfg: Config, dataset: Dataset) -> TrainProgram:
        """The training program of cfg's structure (pass the run's traced numbers to it)."""
        return self._structure(cfg, dataset)["program"]

    def evaluator(self, cfg: Config, dataset: Dataset) -> Evaluator:
        return self._structure(cfg, dataset)["evaluator"]

    def _exact(self, cfg: Config, dataset: Dataset) -> dict[str, Any]:
        d = dataclasses.asdict(cfg)
        d.pop("seed"), d.pop("name"), d.pop("sweep"), d.pop("diagnostics")
        d["train"].pop("checkpoint_every")
        key = json.dumps(d, sort_keys=True) + f"|{id(dataset)}"
        return self._bounded(self._measured, key, lambda: {"program": TrainProgram(cfg, dataset), "diagnostics": {}})

    def exact_program(self, cfg: Config, dataset: Dataset) -> TrainProgram:
        """A program of exactly this config (its numbers as constants), for measurements; never
        trained with, so never compiled as a whole."""
        return self._exact(cfg, dataset)["program"]

    def diagnostics(self, cfg: Config, dataset: Dataset) -> list:
        """The enabled diagnostics of `cfg`, built once per config and diagnostics config (seeds share their compilation)."""
        built = self._exact(cfg, dataset)["diagnostics"]
        key = json.dumps(dataclasses.asdict(cfg.diagnostics), sort_keys=True)
        if key not in built:
            built[key] = diagnostics.enabled(cfg, self.exact_program(cfg, dataset))
        return built[key]


PROGRAMS = ProgramCache()


def _die_if_asked(rd: RunDir, step: int) -> None:
    """Fault injection for tests: BNLAB_DIE_AT=<run_id>:<step>[:INT] SIGKILLs this process (or, with
    INT, sends SIGINT to its whole process group, as Ctrl-C in a terminal does) right after that run
    has written its row for that step, once (a marker file in the run folder remembers), so
    kill-and-resume tests need no timing."""
    target = os.environ.get("BNLAB_DIE_AT", "")
    run_id, _, rest = target.partition(":")
    at, _, how = rest.partition(":")
    if run_id == rd.run_id and at == str(step):
        marker = rd.path / f".killed-at-{step}"
        if not marker.exists():
            marker.touch()
            if how == "INT":
                os.killpg(os.getpgid(0), signal.SIGINT)
            else:
                os.kill(os.getpid(), signal.SIGKILL)


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

    def __init__(self, cfg: Config, dataset: Dataset, rd: RunDir, shared: TrainProgram, phases: Phases, group_size: int = 1):
        self.cfg, self.rd, self.dataset = cfg, rd, dataset
        self.phases, self.group_size = phases, group_size  # the group's phases, shared out between its runs
        self.total = shared.total_steps
        self.steps_per_epoch = shared.steps_per_epoch
        self.lr = optim.schedule(cfg.optim, self.total, shared.batch_size)
        self.numbers = as_arrays(traced_numbers(cfg))
        self.evaluator = PROGRAMS.evaluator(cfg, dataset)
        measured = any(getattr(cfg.diagnostics, n).enabled for n in diagnostics.DIAGNOSTICS.names())
        self.diags = PROGRAMS.diagnostics(cfg, dataset) if measured else []
        self.diag_steps = [d.steps(self.total) for d in self.diags]
        self.means = _TrainMeans()
        self.status = "running"
        self.ckpt = None
        if cfg.train.checkpoint_every > 0:
            from ..train.checkpoint import Checkpoints  # orbax is imported only by runs that checkpoint

            self.ckpt = Checkpoints(rd.checkpoint_dir)

    def open(self, state):
        """The state to start from (restored from the latest checkpoint, if any); metrics logged
        after it are dropped, since they will be redone."""
        self.rd.path.mkdir(parents=True, exist_ok=True)
        if not self.rd.config_path.exists():
            atomic_write(self.rd.config_path, to_yaml(self.cfg))
        self.wall_offset = 0.0
        if self.ckpt is not None and self.ckpt.latest_step() is not None:
            state = self.ckpt.restore(state)
            kept = self.rd.keep_metrics_through(int(state.step))
            self.wall_offset = kept[-1].get("wall_time", 0.0) if kept else 0.0
        else:
            self.rd.keep_metrics_through(-1)
        self.rd.set_status("running", step=int(state.step), total_steps=self.total)
        return state

    def diverge(self, step: int, wall: float, compile_seconds: float) -> None:
        self.rd.append_metrics({"step": step, "epoch": step / self.steps_per_epoch, "train_loss": float("nan")})
        self.rd.finish(
            "diverged",
            step=step,
            diverged_step=step,
            total_steps=self.total,
            wall_time=wall + self.wall_offset,
            compile_time=compile_seconds,
            profile=self.phases.record(self.group_size),
        )
        self.status = "diverged"

    def write_row(self, event: int, state, summary, log_step: bool, wall: float) -> dict[str, Any]:
        row: dict[str, Any] = {"step": event, "epoch": event / self.steps_per_epoch}
        if log_step:
            if event > 0:
                row.update(self.means.pop())
                row.update({f"param_norm/{k}": v for k, v in summary["param_norms"].items()})
            with self.phases.timing("evaluate"):
                row.update(self.evaluator.metrics(state, self.cfg.train.eval_bn_stats, self.numbers))
            row["lr"] = float(self.lr(max(event - 1, 0)))
        with self.phases.timing("diagnostics"):
            for d, steps in zip(self.diags, self.diag_steps):
                if event in steps:
                    row.update(d.measure(state))
        row["wall_time"] = wall + self.wall_offset
        with self.phases.timing("write"):
            self.rd.append_metrics(row)
            if self.ckpt is not None and log_step and event > 0 and (event % self.cfg.train.checkpoint_every == 0 or event == self.total):
                self.ckpt.save(state)
            self.rd.set_status("running", step=event, total_steps=self.total)
        _die_if_asked(self.rd, event)
        return row

    def finish(self, state, wall: float, compile_seconds: float) -> None:
        if self.cfg.diagnostics.surface.enabled:
            from ..measure.surface import loss_surface, to_json

            program = PROGRAMS.exact_program(self.cfg, self.dataset)
            atomic_write(self.rd.path / "surface.json", to_json(loss_surface(program, state, self.cfg.diagnostics.surface)))
        self.rd.finish(
            "done",
            step=self.total,
            total_steps=self.total,
            wall_time=wall + self.wall_offset,
            compile_time=compile_seconds,
            profile=self.phases.record(self.group_size),
        )
        self.status = "done"

    def close(self) -> None:
        if self.ckpt is not None:
            self.ckpt.close()


def float32_matmuls():
    """Matrix products in full float32 on every backend. JAX's default precision lets a GPU run
    float32 matmuls in TF32 (an H100 did 353 TFLOP/s "float32" at 8192^2, several times its true
    float32 rate), about three significant digits: too few for the curvature and gradient probes.
    On a CPU it changes nothing (the same bits and speed, measured)."""
    return jax.default_matmul_precision("float32")


def run_group(cfgs: list[Config], dataset: Dataset, rds: list[RunDir], on_compiled=None) -> list[str]:
    """Train runs of one structure (train.structure; they must start at the same step) together:
    one vmapped program when there are several, the ordinary compiled chunks for one. Each run is
    written to its own folder exactly as if it had been trained alone. `on_compiled()` is called once
    the programs are compiled (the chunk, and the evaluation and diagnostics of the first row).
    Every program is traced with float32 matmuls. Returns the final statuses."""
    with float32_matmuls():
        return _train_group(cfgs, dataset, rds, on_compiled)


def _train_group(cfgs: list[Config], dataset: Dataset, rds: list[RunDir], on_compiled) -> list[str]:
    phases = Phases()
    with phases.timing("setup"):
        shared = PROGRAMS.program(cfgs[0], dataset)
        runs = [_Run(cfg, dataset, rd, shared, phases, len(cfgs)) for cfg, rd in zip(cfgs, rds)]
        states = [run.open(shared.init(cfg.seed, cfg.model)) for run, cfg in zip(runs, cfgs)]
    step = int(states[0].step)
    if any(int(s.step) != step for s in states):
        raise ValueError("run_group: the runs of a group must start at the same step")
    if len(runs) > 1:
        engine, state, select = VectorizedProgram(shared, cfgs), stack(states), pick
        train_chunk = engine.train_chunk
    else:
        engine, state, select = shared, states[0], (lambda tree, k: tree)
        train_chunk = lambda st, n: shared.train_chunk(st, n, runs[0].numbers)  # noqa: E731
    total = shared.total_steps
    log_steps = set(range(cfgs[0].train.log_every, total, cfgs[0].train.log_every)) | {total}
    events = sorted(s for s in log_steps.union(*runs[0].diag_steps, {0}) if s >= step)
    try:
        started = time.perf_counter()
        with phases.timing("setup"):
            compile_seconds = engine.compile(state)  # before any chunk, so steps_per_sec excludes it
        summary = None
        for event in events:
            if event == step and step > 0:
                continue  # resumed exactly here: this row was written before the checkpoint
            if event > step:
                t0 = time.perf_counter()
                with phases.timing("train"):
                    state, summary = train_chunk(state, event - step)
                    summary = jax.device_get(summary)
                seconds = time.perf_counter() - t0
                for k, run in enumerate(runs):
                    if run.status != "running":
                        continue
                    bad = int(select(summary, k)["first_nonfinite"])
                    if bad >= 0:  # a diverged run of a group keeps computing NaNs; nothing more is written
                        run.diverge(step + bad, time.perf_counter() - started, compile_seconds)
                    else:
                        run.means.add(select(summary, k), event - step, seconds)
                step = event
            for k, run in enumerate(runs):
                if run.status == "running":
                    run.write_row(
                        event,
                        select(state, k),
                        select(summary, k) if summary is not None else None,
                        event in log_steps or event == 0,
                        time.perf_counter() - started,
                    )
            if on_compiled is not None:
                on_compiled()
                on_compiled = None
            if all(run.status != "running" for run in runs):
                break
        for k, run in enumerate(runs):
            if run.status == "running":
                run.finish(select(state, k), time.perf_counter() - started, compile_seconds)
        return [run.status for run in runs]
    finally:
        for run in runs:
            run.close()


def run_one(cfg: Config, dataset: Dataset, rd: RunDir, on_compiled=None) -> str:
    """Train one run into `rd`, resuming from its checkpoint if it has one. Returns the final
    status; an exception is recorded in the run's status as `failed`, not raised."""
    try:
        return run_group([cfg], dataset, [rd], on_compiled)[0]
    except Exception as err:
        rd.record_exception(err)
        return "failed"
