"""Run the claims' sweeps (finished runs are kept, never redone) and write the report from what
the results folders hold. The report is a function of saved files only: `bnlab report` rebuilds it
byte for byte.

Folder of a claim: `<out>/<name>` for the seeds its config lists, `<out>/<name>.seeds-3-4-5` for
another seed set (`--seeds`), each with the sweep's runs, `claim.json` (scale, seeds, config),
`measurements.json` where the claim measures more than training runs, and `figure.png`.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from bnlab.errors import ConfigError
from bnlab.runner.results import atomic_write

from .claim import ROOT, SCALES, Claim
from .report import render_report


def seed_folder(out: Path, claim: Claim, seeds: list[int] | None, default_seeds: list[int]) -> Path:
    if seeds is None or list(seeds) == list(default_seeds):
        return out / claim.name
    return out / f"{claim.name}.seeds-{'-'.join(str(s) for s in seeds)}"


def run_claim(
    claim: Claim, scale: str, seeds: list[int] | None, out: Path, progress: bool = True, overrides: list[str] = (), workers: int | None = None
) -> Path:
    """Run one claim's sweep (and its measurements) into its folder; returns the folder. `overrides`
    apply to the claim's config (e.g. data.data_dir for TFDS, or a tiny scale in tests)."""
    import bnlab

    config = claim.config(scale)
    cfg = bnlab.load_config(config, overrides)
    default_seeds = list(cfg.sweep.grid.get("seed", [0]))
    folder = seed_folder(out, claim, seeds, default_seeds)
    overrides = list(overrides) + ([f"sweep.grid.seed=[{','.join(str(s) for s in seeds)}]"] if seeds is not None else [])
    used_seeds = list(seeds) if seeds is not None else default_seeds
    bnlab.run(config, overrides, out=folder, workers=claim.workers or workers, progress=progress)
    record = {"claim": claim.name, "scale": scale, "seeds": used_seeds, "config": str(config.relative_to(ROOT))}
    atomic_write(folder / "claim.json", json.dumps(record, indent=1) + "\n")
    (folder / "skipped.txt").unlink(missing_ok=True)
    measurements = folder / "measurements.json"
    if claim.measure is not None and not measurements.exists():
        from bnlab.runner.loop import float32_matmuls  # jax: only where a claim measures

        with float32_matmuls():
            measured = claim.measure(cfg, used_seeds)
        atomic_write(measurements, json.dumps(measured, indent=1, sort_keys=True) + "\n")
    return folder


def reproduce(
    claims: list[Claim],
    scale: str,
    seeds: list[int] | None,
    out: Path,
    report: Path,
    progress: bool = True,
    overrides: list[str] = (),
    workers: int | None = None,
) -> int:
    """Run the claims, then write the report over everything in `out`. A claim whose config cannot
    run here (its data missing) is recorded as skipped, and the others go on."""
    if scale not in SCALES:
        raise ConfigError(f"--scale: {scale!r} is not one of {', '.join(SCALES)}")
    for claim in claims:
        print(f"== {claim.name} ({scale})", file=sys.stderr)
        try:
            run_claim(claim, scale, seeds, out, progress, overrides, workers)
        except ConfigError as err:
            folder = out / claim.name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "skipped.txt").write_text(f"{scale} scale: {err}\n")
            print(f"bnlab: {claim.name} skipped: {err}", file=sys.stderr)
    write_report(out, report)
    return 0


def write_report(out: Path, report: Path) -> Path:
    """Figures into each claim folder, and the report, from saved results only."""
    from . import load_claims

    report.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(report, render_report(load_claims(), out, report.parent))
    return report
