"""Local parallelism: a sweep's runs in N worker processes, each held to one CPU core.

One small run keeps about one core busy, so on a CPU the fastest way through a sweep is one
worker per core. Workers are spawned fresh (no JAX state is forked), pin themselves to a core, re-plan the same config from the plan they are
handed (validation is deterministic and cheap) and take run ids from a shared queue. The parent owns the summary table
and the progress bar. A worker that dies takes only its current run with it: that run is recorded
as failed (a rerun retries it) and the other workers carry on.

No two workers compile the same program at once: the parent queues one run of each structure
(train.structure) first and the rest of that structure only once that run reports its programs
compiled, so the other workers load them from the persistent compilation cache.

Nothing here imports JAX at module level: the environment of a worker must be set first.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import queue
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .results import RunDir

if TYPE_CHECKING:  # plan imports JAX, which a worker may import only after setting its environment
    from .plan import Plan


def _die_with_parent() -> None:
    """Linux: the kernel kills this worker when the parent dies, even by SIGKILL, so a killed sweep
    leaves no orphan writing into its run folders."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def _pin_to_one_core(index: int) -> None:
    """Before JAX starts: this process may run on one core only, and Eigen's thread pool is off. XLA
    sizes its own pools by the cores a process may use, and all of its threads share that core
    (measured: 13 threads, two of them computing, on one core)."""
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_multi_thread_eigen=false").strip()
    if hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[index % len(cores)]})


def _worker(index: int, source: dict, out_dir: Path, parent: int, jobs, events) -> None:
    _die_with_parent()
    if os.getppid() != parent:  # the parent died before the line above took effect
        return
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle: it stops the workers
    _pin_to_one_core(index)
    from .compilation_cache import enable_compilation_cache
    from .loop import run_one
    from .plan import plan

    enable_compilation_cache()
    p = plan(source, (), out_dir, check_busy=False)
    specs = {s.run_id: s for s in p.runs}
    while True:
        rid = jobs.get()
        if rid is None:
            return
        events.put(("start", index, rid))
        try:
            compiled = lambda rid=rid: events.put(("compiled", index, rid))  # noqa: E731
            status = run_one(specs[rid].config, p.datasets[rid], RunDir(p.out_dir / "runs" / rid), compiled)
        except OSError as err:  # e.g. a full disk, hit again while recording the failure: the parent reports it
            events.put(("fatal", index, rid, err.errno, str(err)))
            return
        events.put(("end", index, rid, status))


def estimated_costs(p: "Plan", run_ids: list[str]) -> dict[str, float]:
    """Each run's cost relative to the others, to start the long ones first: its steps times (a
    step's fixed overhead + its arithmetic, batch x parameters x the positions each parameter is
    applied at: an image's pixels for a conv net, a sequence's steps for a recurrent one). On this
    CPU a small net's step costs ~50 us of overhead, about the arithmetic of 4e5 parameter-examples."""
    import jax
    from flax import nnx

    from ..nn.models import build
    from ..train.state import total_steps

    specs = {s.run_id: s for s in p.runs}
    params: dict[str, int] = {}
    costs = {}
    for rid in run_ids:
        cfg, dataset = specs[rid].config, p.datasets[rid]
        shape = dataset.image_shape
        key = f"{cfg.model}|{shape}|{dataset.num_classes}"
        if key not in params:
            model = nnx.eval_shape(lambda cfg=cfg, shape=shape, dataset=dataset: build(cfg.model, shape, dataset.num_classes, seed=0))
            params[key] = sum(int(x.size) for x in jax.tree.leaves(nnx.state(model, nnx.Param)))
        n = len(dataset.y_train)
        batch = n if cfg.train.full_batch else cfg.train.batch_size
        positions = {"cnn": shape[0] * shape[1], "rnn": shape[0], "lstm": shape[0]}.get(cfg.model.name, 1)
        costs[rid] = total_steps(cfg, n) * (1.0 + batch * params[key] * positions / 4e5)
    return costs


class _Dispatch:
    """The parent's side of the job queue. A structure's first run goes out at once, the others of
    that structure once it has compiled (or ended), so that no two workers compile one program. Runs
    go out one per idle worker, the costliest ready run first (estimated_costs): the long runs start
    early and no worker idles at the end of a sweep while another finishes a long run. Then one stop
    signal per worker."""

    def __init__(self, p: "Plan", run_ids: list[str], jobs, workers: int, costs: dict[str, float] | None = None):
        from ..train.structure import structure_key

        self.jobs, self.workers = jobs, workers
        self.costs = costs or dict.fromkeys(run_ids, 0.0)
        self.waiting: dict[str, list[str]] = {}
        self.structure: dict[str, str] = {}
        specs = {s.run_id: s for s in p.runs}
        for rid in sorted(run_ids, key=lambda r: -self.costs[r]):  # stable: the plan's order among equal costs
            key = structure_key(specs[rid].config) + f"|{id(p.datasets[rid])}"
            self.structure[rid] = key
            self.waiting.setdefault(key, []).append(rid)
        self.ready = [runs.pop(0) for runs in self.waiting.values()]  # each structure's costliest run compiles it
        self.waiting = {k: v for k, v in self.waiting.items() if v}
        self.ready.sort(key=lambda r: -self.costs[r])
        self.outstanding = 0
        self.stopped = False
        self._feed()

    def _feed(self) -> None:
        while self.ready and self.outstanding < self.workers:
            self.jobs.put(self.ready.pop(0))
            self.outstanding += 1
        if not self.ready and not self.waiting and not self.stopped:
            for _ in range(self.workers):
                self.jobs.put(None)
            self.stopped = True

    def compiled(self, rid: str) -> None:
        """`rid`'s programs exist: the rest of its structure is ready."""
        key = self.structure[rid]
        if key in self.waiting:
            self.ready.extend(self.waiting.pop(key))
            self.ready.sort(key=lambda r: -self.costs[r])
        self._feed()

    def ended(self, rid: str, worker_alive: bool = True) -> None:
        """`rid` ended (its end counts as compiled): its worker takes the next ready run, or, if it
        died, the sweep goes on with one worker fewer."""
        self.outstanding -= 1
        if not worker_alive:
            self.workers -= 1
        self.compiled(rid)


def run_parallel(p: "Plan", run_ids: list[str], workers: int, on_done) -> dict[str, int]:
    """Run `run_ids` of plan `p` in `workers` processes; `on_done(run_id, status)` is called in the parent."""
    out_dir = p.out_dir
    ctx = mp.get_context("spawn")
    jobs, events = ctx.Queue(), ctx.Queue()
    dispatch = _Dispatch(p, run_ids, jobs, workers, estimated_costs(p, run_ids))
    procs = [ctx.Process(target=_worker, args=(i, p.source, p.out_dir, os.getpid(), jobs, events), daemon=True) for i in range(workers)]
    for proc in procs:
        proc.start()
    in_flight: dict[int, str] = {}
    counts: dict[str, int] = {}
    try:
        while any(proc.is_alive() for proc in procs) or not events.empty():
            try:
                msg: Any = events.get(timeout=0.5)
            except queue.Empty:
                for i, proc in enumerate(procs):  # a worker that died mid-run: record its run as failed
                    if not proc.is_alive() and i in in_flight:
                        rid = in_flight.pop(i)
                        RunDir(out_dir / "runs" / rid).set_status("failed", error=f"worker process died (exit code {proc.exitcode})")
                        dispatch.ended(rid, worker_alive=False)
                        counts["failed"] = counts.get("failed", 0) + 1
                        on_done(rid, "failed")
                continue
            if msg[0] == "start":
                in_flight[msg[1]] = msg[2]
            elif msg[0] == "compiled":
                dispatch.compiled(msg[2])
            elif msg[0] == "fatal":
                raise OSError(msg[3], f"in run {msg[2]}: {msg[4]}")
            else:
                _, i, rid, status = msg
                in_flight.pop(i, None)
                dispatch.ended(rid)
                counts[status] = counts.get(status, 0) + 1
                on_done(rid, status)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()
    return counts
