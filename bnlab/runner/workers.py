"""Local parallelism: a sweep's runs in N worker processes, each held to one CPU core.

One small run keeps about one core busy, so on a CPU the fastest way through a sweep is one
worker per core. Workers are spawned fresh (no JAX state is forked), pin themselves to a core, re-plan the same config from the plan they are
handed (validation is deterministic and cheap) and take run ids from a shared queue. The parent owns the summary table
and the progress bar. A worker that dies takes only its current run with it: that run is recorded
as failed (a rerun retries it) and the other workers carry on.

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
            status = run_one(specs[rid].config, p.datasets[rid], RunDir(p.out_dir / "runs" / rid))
        except OSError as err:  # e.g. a full disk, hit again while recording the failure: the parent reports it
            events.put(("fatal", index, rid, err.errno, str(err)))
            return
        events.put(("end", index, rid, status))


def run_parallel(p: "Plan", run_ids: list[str], workers: int, on_done) -> dict[str, int]:
    """Run `run_ids` of plan `p` in `workers` processes; `on_done(run_id, status)` is called in the parent."""
    out_dir = p.out_dir
    ctx = mp.get_context("spawn")
    jobs, events = ctx.Queue(), ctx.Queue()
    for rid in run_ids:
        jobs.put(rid)
    for _ in range(workers):
        jobs.put(None)
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
                        counts["failed"] = counts.get("failed", 0) + 1
                        on_done(rid, "failed")
                continue
            if msg[0] == "start":
                in_flight[msg[1]] = msg[2]
            elif msg[0] == "fatal":
                raise OSError(msg[3], f"in run {msg[2]}: {msg[4]}")
            else:
                _, i, rid, status = msg
                in_flight.pop(i, None)
                counts[status] = counts.get(status, 0) + 1
                on_done(rid, status)
    finally:
        for proc in procs:
            if proc.is_alive():
                proc.terminate()
            proc.join()
    return counts
