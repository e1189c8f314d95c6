"""Run a sweep's runs as Ray tasks on an existing Ray cluster (`--address`) or a local one.

Each run is one task (1 CPU, Eigen's thread pool off) that trains into the same run folder as
a local run would, so resume, summaries and plots work unchanged. The results folder and any data
paths must be visible at the same paths on every node (a shared filesystem), and tasks run in
the submitting process's working directory, so relative paths in configs mean the same thing.
Without `--address` a local single-node Ray is started on loopback. Connecting to a cluster uses
Ray's own configuration (e.g. RAY_AUTH_MODE / RAY_AUTH_TOKEN when the cluster requires a token).

Failure handling: an exception inside a run is recorded in its status as `failed` (as locally); a
task whose worker process or node dies is retried by Ray itself (`max_retries`) up to `retries`
times, on any live node (the retry resumes from the run's checkpoint, or restarts it), and after
that the run is recorded as failed. Every task start is logged in the results folder's
`ray_tasks.jsonl` (run, Ray node id, process), so a retried run appears there more than once. Finished runs are
never touched again, so nothing finished is lost when a worker, or the whole sweep, is killed.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from .results import RunDir

if TYPE_CHECKING:
    from .plan import Plan


TASK_LOG = "ray_tasks.jsonl"  # in the results folder: one line per task start (run, Ray node, process)


def _task(cwd: str, out_dir: str, run_id: str, cfg) -> str:
    os.chdir(cwd)
    import json
    import time

    import ray

    from ..data.dataset import load
    from .compilation_cache import enable_compilation_cache
    from .loop import run_one

    start = {"run_id": run_id, "node": ray.get_runtime_context().get_node_id(), "pid": os.getpid(), "time": time.time()}
    with open(Path(out_dir) / TASK_LOG, "a") as f:  # which node trained which run; a retried task appears again
        f.write(json.dumps(start) + "\n")
    enable_compilation_cache()
    return run_one(cfg, load(cfg.data), RunDir(Path(out_dir) / "runs" / run_id))


def _check_reachable(address: str) -> None:
    """Fail in seconds, not after Ray's long connection retries, when nothing listens at host:port."""
    import socket

    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        return  # "auto", ray:// client addresses: left to Ray
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as err:
        raise ConfigError(f"--address {address}: no Ray cluster answers there ({err.strerror or err})") from None


def run_on_ray(p: "Plan", specs: list, address: str | None, retries: int, on_done) -> dict[str, int]:
    import ray

    out_dir = p.out_dir
    warnings.filterwarnings("ignore", message=r"os\.fork\(\) was called")  # Ray starts its helpers by fork+exec
    if address is None:  # a local Ray is a single node: keep all of its traffic on loopback
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    else:
        _check_reachable(address)
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, logging_level="ERROR", configure_logging=False)
    except (ConnectionError, RuntimeError, ValueError) as err:
        raise ConfigError(f"--address {address}: cannot connect to a Ray cluster ({err})") from None
    try:
        env = {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"}  # Ray gives each task one CPU; Eigen's pool stays off
        if "BNLAB_DIE_AT" in os.environ:  # the tests' fault injection reaches the tasks too
            env["BNLAB_DIE_AT"] = os.environ["BNLAB_DIE_AT"]
        task = ray.remote(num_cpus=1, max_retries=retries, runtime_env={"env_vars": env})(_task)
        cwd, out = os.getcwd(), str(Path(out_dir).resolve())
        pending = {task.remote(cwd, out, spec.run_id, spec.config): spec.run_id for spec in specs}
        counts: dict[str, int] = {}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            rid = pending.pop(ready[0])
            try:
                status = ray.get(ready[0])
            except ray.exceptions.RayError as err:  # the worker died more often than it was retried
                status = "failed"
                RunDir(Path(out) / "runs" / rid).set_status("failed", error=f"Ray task failed after {retries} retries: {type(err).__name__}")
            counts[status] = counts.get(status, 0) + 1
            on_done(rid, status)
        return counts
    finally:
        ray.shutdown()
