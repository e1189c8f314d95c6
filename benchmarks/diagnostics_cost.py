"""Cost of the diagnostics, as multiples of one training step, for the quickstart network.

    python benchmarks/diagnostics_cost.py [--repeats 20]

Part 1: median time of one landscape probe (5 step sizes), one ICS measurement, one activation
measurement, one Hessian top-eigenvalue estimate (20 Lanczos steps) and one Hutchinson trace
(10 probes), each divided by the median time of one training step (from a 1,000-step chunk).
Part 2: wall time of the quickstart run (digits, 6,000 steps) with every scheduled diagnostic on
at its default schedule, divided by the same run without diagnostics (both after compiling).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from timing import median_seconds

from bnlab.config.load import load
from bnlab.config.sweep import expand
from bnlab.data.dataset import load as load_dataset
from bnlab.measure import diagnostics
from bnlab.runner.execute import execute
from bnlab.runner.plan import plan
from bnlab.runner.results import RunDir
from bnlab.train.program import TrainProgram

ROOT = Path(__file__).resolve().parents[1]


def probe_costs(repeats: int) -> None:
    cfg = expand(load(ROOT / "configs" / "quickstart.yaml", ["sweep.grid.model.norm=[batch]", "sweep.grid.seed=[0]"]))[0].config
    for name in ("activations", "landscape", "ics", "hessian"):
        getattr(cfg.diagnostics, name).enabled = True
    cfg.diagnostics.hessian.trace_probes = 0
    trainer = TrainProgram(cfg, load_dataset(cfg.data))
    state = trainer.init(0)
    state, _ = trainer.train_chunk(state, 100)
    chunk = 1000
    holder = {"s": state}

    def train():
        holder["s"], summary = trainer.train_chunk(holder["s"], chunk)
        return summary

    step = median_seconds(train, max(3, repeats // 4)) / chunk
    diags = {type(d).__name__: d for d in diagnostics.enabled(cfg, trainer)}
    state = holder["s"]
    rows = [("one training step", step)]
    for label, d in (
        ("activation statistics", diags["Activations"]),
        ("landscape probe (5 step sizes)", diags["Landscape"]),
        ("ICS (all layers)", diags["InternalCovariateShift"]),
        ("Hessian top eigenvalue (20 Lanczos steps)", diags["Hessian"]),
    ):
        rows.append((label, median_seconds(lambda d=d: d.measure(state), repeats)))
    cfg.diagnostics.hessian.trace_probes, cfg.diagnostics.hessian.iterations = 10, 1
    trace = diagnostics.Hessian(cfg, trainer)
    rows.append(("Hessian trace (10 Hutchinson probes) + 1 Lanczos step", median_seconds(lambda: trace.measure(state), repeats)))
    print(f"{'measurement (quickstart net, BN, batch 60)':<55} {'median ms':>10} {'x one step':>11}")
    for label, seconds in rows:
        print(f"{label:<55} {seconds * 1e3:10.3f} {seconds / step:11.1f}")


def run_wall_time(overrides: list[str]) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        p = plan(ROOT / "configs" / "quickstart.yaml", overrides + ["sweep.grid.model.norm=[batch]", "sweep.grid.seed=[0]"], Path(tmp) / "warm")
        execute(p)  # compile (and warm the caches)
        p = plan(ROOT / "configs" / "quickstart.yaml", overrides + ["sweep.grid.model.norm=[batch]", "sweep.grid.seed=[1]"], Path(tmp) / "timed")
        execute(p)
        return RunDir(p.out_dir / "runs" / p.runs[0].run_id).status()["wall_time"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=20)
    args = parser.parse_args()
    probe_costs(args.repeats)
    on = [f"diagnostics.{n}.enabled=true" for n in ("activations", "landscape", "ics", "hessian")]
    base, with_diags = run_wall_time([]), run_wall_time(on)
    print(
        f"\nquickstart run (6,000 steps, BN): {base:.2f} s without diagnostics, {with_diags:.2f} s with all at default "
        f"schedules -> {with_diags / base:.2f}x"
    )


if __name__ == "__main__":
    main()
