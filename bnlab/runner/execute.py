"""Execute a plan: train each unfinished run of a sweep into its own folder.

Rerunning the same command skips runs that are done or diverged, resumes unfinished ones from
their latest checkpoint (or restarts them), and retries failed ones. A run that raises is recorded
as failed with its error and the sweep goes on; a non-finite loss is recorded as diverged. Runs go
one by one in this process, as vectorised groups in this process, to local worker processes, or to
Ray; every executor is handed the plan and writes the same folders.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

from ..config.sweep import RunSpec
from ..errors import ConfigError
from ..train.state import total_steps
from ..train.structure import structure_key
from .compilation_cache import enable_compilation_cache
from .folder import hold, record_sweep
from .loop import run_group
from .plan import Plan
from .results import FINISHED, RunDir, Summary, remove_stale_temporaries, write_summary
from .vectorize_rule import vmap_pays


def default_workers(pending: int) -> int:
    """One worker pinned to each core on a CPU backend (one small run keeps a core busy);
    one process on an accelerator."""
    import jax

    if jax.default_backend() != "cpu" or pending < 2:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, pending))


def auto_vectorize(p: Plan, todo: list[RunSpec], workers: int | None) -> tuple[bool, int | None]:
    """`--vectorize auto`: (vectorize, workers) from the measured rule of runner.vectorize_rule. On
    an accelerator, vmapped groups in one process. On a CPU, worker processes (one per core by
    default) unless a single worker runs the sweep and some structure's measured vmapped gain
    exceeds 1; then groups in this process, each vmapped only where its own structure gains."""
    import jax

    accelerator = jax.default_backend() != "cpu"
    if accelerator:
        return True, 1
    n = default_workers(len(todo)) if workers is None else max(1, workers)
    if n > 1 or not any(vmap_pays(spec.config.model.name, 1, False) for spec in todo):
        return False, workers
    return True, 1


def vector_groups(p: Plan, todo: list[RunSpec]) -> list[list[RunSpec]]:
    """Runs that can share one vmapped program: the same structure_key and starting from scratch
    (a run with a checkpoint to resume from goes alone, as the runs of a group advance in lockstep)."""
    groups: dict[str, list[RunSpec]] = {}
    for spec in todo:
        ckpt = p.out_dir / "runs" / spec.run_id / "checkpoints"
        resumable = ckpt.is_dir() and any(c.name.isdigit() for c in ckpt.iterdir())
        key = spec.run_id if resumable else structure_key(spec.config) + f"|{id(p.datasets[spec.run_id])}"
        groups.setdefault(key, []).append(spec)
    return list(groups.values())


@dataclass
class Executor:
    """Where runs execute: here (local, optionally in worker processes or vmapped groups) or on Ray."""

    kind: str = "local"  # local | ray
    address: str | None = None  # ray: cluster address (None: start a local Ray)
    retries: int = 2  # ray: re-executions of a task whose worker process died


def execute(
    p: Plan, progress: bool = False, workers: int | None = 1, vectorize: bool | None = False, executor: Executor | None = None
) -> dict[str, int]:
    """Train every unfinished run of a plan: in this process, in `workers` worker processes, or
    (`vectorize`) as vmapped groups in this process. None picks the default for the backend, as
    `bnlab run` does. Returns how many runs ended in each status, earlier finished runs included.
    Ctrl-C marks the runs in progress `interrupted` (a rerun resumes them) and raises KeyboardInterrupt."""
    executor = executor or Executor()
    if executor.kind == "ray":
        try:
            import ray  # noqa: F401
        except ImportError:
            raise ConfigError("--executor ray: Ray is not installed; pip install 'bnlab[ray]'") from None
    with hold(p.out_dir):
        record_sweep(p.out_dir, p.source)
        remove_stale_temporaries(p.out_dir)
        try:
            return _execute(p, progress, workers, vectorize, executor)
        except KeyboardInterrupt:
            for spec in p.runs:
                rd = RunDir(p.out_dir / "runs" / spec.run_id)
                status = rd.status()
                if status.pop("status") == "running":
                    rd.set_status("interrupted", **status)
            write_summary(p.out_dir, p.runs)
            raise


class _StepProgress:
    """One bar for the whole sweep, in training steps of all its runs (finished runs count whole),
    read from the runs' status files by a background thread: the same for every executor."""

    def __init__(self, p: Plan, todo: list[RunSpec], workers: int):
        import threading

        from tqdm import tqdm

        self.rds = [RunDir(p.out_dir / "runs" / spec.run_id) for spec in todo]
        self.totals = [total_steps(spec.config, len(p.datasets[spec.run_id].y_train)) for spec in todo]
        self.finished: set[int] = set()
        label = f"{p.out_dir}: {len(todo)} run{'s' * (len(todo) != 1)} to do ({workers} worker{'s' * (workers > 1)})"
        self.bar = tqdm(total=sum(self.totals), desc=label, unit="step", dynamic_ncols=True)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()

    def _steps(self) -> tuple[int, int]:
        """Steps and finished runs so far; a finished run's status is not read again."""
        steps, finished = 0, 0
        for i, (rd, total) in enumerate(zip(self.rds, self.totals)):
            if i in self.finished:
                done = True
            else:
                status = rd.status()
                done = status["status"] in FINISHED
                if done:
                    self.finished.add(i)
            finished += done
            steps += total if done else int(status.get("step") or 0)
        return steps, finished

    def _poll(self) -> None:
        while not self._stop.wait(0.5):
            self.update()

    def update(self) -> None:
        steps, finished = self._steps()
        self.bar.n = steps
        self.bar.set_postfix_str(f"{finished}/{len(self.rds)} runs finished", refresh=True)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.update()
        self.bar.close()


def _execute(p: Plan, progress: bool, workers: int | None, vectorize: bool | None, executor: Executor) -> dict[str, int]:
    enable_compilation_cache()
    statuses = {s.run_id: RunDir(p.out_dir / "runs" / s.run_id).status() for s in p.runs}
    for status in statuses.values():
        if "problem" in status:
            print(f"bnlab: warning: {status['problem']}; redoing that run", file=sys.stderr)
    todo = [s for s in p.runs if statuses[s.run_id]["status"] not in FINISHED]
    counts: dict[str, int] = {}
    for s in p.runs:
        if s not in todo:
            counts[statuses[s.run_id]["status"]] = counts.get(statuses[s.run_id]["status"], 0) + 1
    auto = vectorize is None and executor.kind != "ray"
    if auto:
        vectorize, workers = auto_vectorize(p, todo, workers)
    if vectorize or executor.kind == "ray":
        workers = 1
    workers = default_workers(len(todo)) if workers is None else max(1, min(workers, len(todo) or 1))
    bar = _StepProgress(p, todo, workers) if progress and todo else None
    summary = Summary(p.out_dir, p.runs)

    def done(run_id: str, status: str) -> None:
        """A run ended: its row is read again and the table rewritten."""
        summary.refresh(run_id)
        summary.write()

    try:
        if executor.kind == "ray":
            from .ray_executor import run_on_ray

            for status, n in run_on_ray(p, todo, executor.address, executor.retries, done).items():
                counts[status] = counts.get(status, 0) + n
        elif workers > 1:
            from .workers import run_parallel

            for status, n in run_parallel(p, [s.run_id for s in todo], workers, done).items():
                counts[status] = counts.get(status, 0) + n
        else:
            groups = vector_groups(p, todo) if vectorize else [[spec] for spec in todo]
            if auto and vectorize:  # the rule per structure: a group that does not gain runs one by one
                import jax

                accelerator = jax.default_backend() != "cpu"
                groups = [g for group in groups for g in ([group] if vmap_pays(group[0].config.model.name, 1, accelerator) else [[s] for s in group])]
            for group in groups:
                rds = [RunDir(p.out_dir / "runs" / spec.run_id) for spec in group]
                try:
                    group_statuses = run_group([s.config for s in group], p.datasets[group[0].run_id], rds)
                except Exception as err:  # recorded; the sweep goes on
                    for rd in rds:
                        if rd.status()["status"] not in FINISHED:
                            rd.record_exception(err)
                    group_statuses = [rd.status()["status"] for rd in rds]
                for spec, status in zip(group, group_statuses):
                    counts[status] = counts.get(status, 0) + 1
                    done(spec.run_id, status)
        summary.refresh()
        summary.write()
    finally:
        if bar is not None:
            bar.close()
    return counts
