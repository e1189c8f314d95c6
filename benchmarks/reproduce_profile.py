"""Where a reproduction's time goes, per claim: compiling (seconds and XLA programs), setting up runs,
training, evaluation, diagnostics, writing run files, the time outside runs (worker start-up,
datasets, scheduling, idle workers at the end of a sweep), the claim's own measurement, and its
analysis and figure.

    bnlab reproduce --quick --out /tmp/r/claims          # (from an empty compilation cache: BNLAB_JAX_CACHE=<new dir>)
    python benchmarks/reproduce_profile.py /tmp/r/claims [--workers 2]

Reads the runs' `status.json` profiles (bnlab.runner.profile) and each claim's `claim.json` (its wall
time) and `measurements.json`; times the analysis and figure of each claim (reading its runs included) by running them again.
"Outside runs" is workers x (the claim's wall time - its measurement) minus the seconds its runs
took, so it also counts a worker that waits with nothing to do.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
COLUMNS = ("setup", "compile", "train", "evaluate", "diagnostics", "write")


def claim_profile(folder: Path, workers: int) -> dict:
    import bnlab
    from experiments import load_claims
    from experiments.report import read_measurements

    record = json.loads((folder / "claim.json").read_text())
    measurements = read_measurements(folder, record)
    row = dict.fromkeys(COLUMNS, 0.0)
    row.update(runs=0, programs=0.0, profiled=0)
    for status_path in sorted((folder / "runs").glob("*/status.json")):
        status = json.loads(status_path.read_text())
        row["runs"] += 1
        profile = status.get("profile")
        if profile is None:  # a run from before the profiles: its compile and wall time only
            row["compile"] += float(status.get("compile_time") or 0.0)
            row["train"] += float(status.get("wall_time") or 0.0) - float(status.get("compile_time") or 0.0)
            continue
        row["profiled"] += 1
        for k in COLUMNS:
            row[k] += float(profile.get(k, 0.0))
        row["programs"] += float(profile.get("programs_compiled", 0.0))
    (claim,) = load_claims([record["claim"]])
    t0 = time.perf_counter()
    results = bnlab.load_results(folder)
    claim.analyse(results, measurements)
    with tempfile.TemporaryDirectory() as tmp:
        claim.figure(results, measurements, Path(tmp) / "figure.png")
    row["analysis"] = time.perf_counter() - t0
    row["measure"] = float(measurements.get("seconds") or 0.0)
    row["wall"] = float(record.get("wall_seconds") or 0.0)
    row["outside"] = workers * max(row["wall"] - row["measure"], 0.0) - sum(row[k] for k in COLUMNS)
    row["name"] = folder.name
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("claims", nargs="?", default=str(ROOT / "results" / "claims"), help="a claims folder written by bnlab reproduce")
    parser.add_argument("--workers", type=int, default=len(os.sched_getaffinity(0)), help="worker processes the reproduction used")
    args = parser.parse_args()
    from experiments import claim_names

    order = {name: i for i, name in enumerate(claim_names())}
    folders = sorted((p for p in Path(args.claims).iterdir() if (p / "claim.json").exists()), key=lambda p: (order[p.name.split(".")[0]], p.name))
    rows = [claim_profile(f, args.workers) for f in folders]
    head = [
        "claim",
        "runs",
        "wall s",
        "setup",
        "compile (programs)",
        "train",
        "evaluate",
        "diagnostics",
        "write",
        "outside runs",
        "measure",
        "analysis",
    ]
    print(f"seconds; setup to outside runs are worker-seconds ({args.workers} workers)")
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    total = {k: 0.0 for k in (*COLUMNS, "programs", "runs", "wall", "outside", "measure", "analysis")}
    for r in rows:
        note = "" if r["profiled"] == r["runs"] else f" ({r['profiled']} profiled)"
        cells = [r["name"] + note, f"{r['runs']}", f"{r['wall']:.0f}", f"{r['setup']:.0f}", f"{r['compile']:.0f} ({r['programs']:.0f})"]
        cells += [f"{r[k]:.0f}" for k in ("train", "evaluate", "diagnostics", "write", "outside", "measure", "analysis")]
        print("| " + " | ".join(cells) + " |")
        for k in total:
            total[k] += r[k]
    cells = ["all", f"{total['runs']:.0f}", f"{total['wall']:.0f}", f"{total['setup']:.0f}", f"{total['compile']:.0f} ({total['programs']:.0f})"]
    cells += [f"{total[k]:.0f}" for k in ("train", "evaluate", "diagnostics", "write", "outside", "measure", "analysis")]
    print("| " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
