"""Sweeps end to end — 6 learning rates x 3 seeds, 6 init scales x 2 seeds, and the quickstart:
wall time and how many training and initial-state programs were compiled, with this checkout and
with an earlier commit, alternating, in one command (so the ratio is measured under the same
machine load).

    python benchmarks/sweep_compile.py --before edf9c0c [--repeats 3] [--steps 1000]

Each measurement is one `python -m bnlab run ... --quiet` process with the defaults (on a CPU: one
worker per core), a fresh persistent compilation cache (a user's first sweep) and JAX's compile log
on; "compiled" counts XLA compilations of the training chunk (`jit(chunk)`, one-by-one or vmapped,
or the host loop's step), and of the initial state (`jit(init)`), that were not persistent-cache
hits. The earlier commit is unpacked with `git archive` into a temporary folder and run from there.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAINING = re.compile(r"Finished XLA compilation of jit\((chunk|<lambda>)\)")
HIT = re.compile(r"Persistent compilation cache hit for 'jit_(chunk|_lambda_)'")
INIT = re.compile(r"Finished XLA compilation of jit\(init\)")
INIT_HIT = re.compile(r"Persistent compilation cache hit for 'jit_init'")


def _config(name: str, optim: str, steps: int, logs: int, grid: str) -> str:
    """The quickstart MLP with BN on the digits, swept over `grid`."""
    return (
        f"name: {name}\n"
        "data: {name: digits}\n"
        "model: {name: mlp, depth: 3, width: 100, activation: sigmoid, init: normal, norm: batch}\n"
        f"optim: {optim}\n"
        f"train: {{batch_size: 60, steps: {steps}, log_every: {max(steps // logs, 1)}}}\n"
        f"sweep: {{grid: {{{grid}}}}}\n"
    )


def sweep_config(steps: int) -> str:
    """6 learning rates x 3 seeds: one structure, one initial state per seed."""
    return _config("lr_sweep", "{name: sgd}", steps, 5, "optim.lr: [0.01, 0.03, 0.1, 0.3, 1.0, 3.0], seed: [0, 1, 2]")


def init_sweep_config(steps: int) -> str:
    """6 init scales x 2 seeds: one structure, six init configs."""
    return _config("init_sweep", "{name: sgd, lr: 0.1}", steps, 2, "model.init_scale: [0.25, 0.5, 1.0, 2.0, 4.0, 8.0], seed: [0, 1]")


def run(code: Path, config: Path, out: Path) -> tuple[float, int, int]:
    """Wall seconds, training programs and initial-state programs compiled (not cache hits)."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "BNLAB_JAX_CACHE": cache, "JAX_LOG_COMPILES": "1", "PYTHONPATH": str(code)}
        t = time.perf_counter()
        command = [sys.executable, "-m", "bnlab", "run", str(config), "--out", str(out), "--quiet"]
        proc = subprocess.run(command, cwd=code, env=env, capture_output=True, text=True)
        seconds = time.perf_counter() - t
    if proc.returncode != 0:
        raise SystemExit(f"{code}: bnlab run failed:\n{proc.stderr[-3000:]}")
    log = proc.stderr
    return seconds, len(TRAINING.findall(log)) - len(HIT.findall(log)), len(INIT.findall(log)) - len(INIT_HIT.findall(log))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the earlier commit to compare with")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=1000, help="training steps of each run of the lr sweep (the init sweep: half)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        before = tmp / "before"
        before.mkdir()
        archive = subprocess.run(["git", "archive", args.before], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        sweep, init_sweep = tmp / "sweep.yaml", tmp / "init_sweep.yaml"
        sweep.write_text(sweep_config(args.steps))
        init_sweep.write_text(init_sweep_config(args.steps // 2))
        jobs = {
            "6 lr x 3 seeds": lambda code: sweep,
            "6 init x 2 seeds": lambda code: init_sweep,
            "quickstart": lambda code: code / "configs" / "quickstart.yaml",
        }
        results: dict[tuple[str, str], list[tuple[float, int, int]]] = {}
        for r in range(args.repeats):
            for job, config in jobs.items():
                for label, code in (("before", before), ("after", ROOT)):
                    results.setdefault((job, label), []).append(run(code, config(code), tmp / f"out-{job[:6]}-{label}-{r}".replace(" ", "")))
        print(f"{os.cpu_count()} CPU cores; median (min-max) wall seconds of {args.repeats}, fresh compile cache each; before = {args.before}")
        for job in jobs:
            b, a = results[(job, "before")], results[(job, "after")]
            bs, as_ = [s for s, *_ in b], [s for s, *_ in a]
            print(
                f"  {job:<16} before {statistics.median(bs):6.1f} s ({min(bs):.1f}-{max(bs):.1f}), {b[0][1]} training / {b[0][2]} initial-state "
                f"programs compiled | after {statistics.median(as_):6.1f} s ({min(as_):.1f}-{max(as_):.1f}), {a[0][1]} / {a[0][2]} | "
                f"speed-up {statistics.median(bs) / statistics.median(as_):.2f}x"
            )


if __name__ == "__main__":
    main()
