"""Run the claims' sweeps (finished runs are kept, never redone) and write the report from what
the results folders hold. The report is a function of saved files only: `bnlab report` rebuilds it
byte for byte.

Folder of a claim: `<out>/<name>` for the seeds its config lists (0-9 at quick scale),
`<out>/<name>.seeds-10-19` for another seed set (`--seeds`), each with the sweep's runs,
`claim.json` (scale, seeds, config, dataset sizes, the wall time of the invocation that trained),
`measurements.json` where the claim measures more than training runs, and `figure.png`.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from bnlab.errors import ConfigError
from bnlab.runner.results import atomic_write

from .claim import ROOT, SCALES, Claim
from .report import render_report


def seeds_label(seeds: list[int]) -> str:
    """Runs of consecutive seeds as 'a-b', joined by '_': [10..19] -> '10-19', [1, 3, 4, 5] -> '1_3-5'."""
    s, out, i = sorted(seeds), [], 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and s[j + 1] == s[j] + 1:
            j += 1
        out.append(str(s[i]) if i == j else f"{s[i]}-{s[j]}")
        i = j + 1
    return "_".join(out)


def claim_scales(claim: Claim) -> list[str]:
    return [s for s in SCALES if claim.config(s).exists()]


def seed_folder(out: Path, claim: Claim, seeds: list[int] | None, default_seeds: list[int]) -> Path:
    if seeds is None or sorted(seeds) == sorted(default_seeds):
        return out / claim.name
    return out / f"{claim.name}.seeds-{seeds_label(seeds)}"


def dataset_sizes(cfg) -> dict[str, dict[str, int]]:
    """Train/validation/test sizes and the class count of every dataset the claim's runs use, by data.name."""
    from bnlab.config.load import load
    from bnlab.config.sweep import expand
    from bnlab.data.dataset import load as load_dataset

    sizes = {}
    for spec in expand(load(cfg)):
        data = spec.config.data
        if data.name not in sizes:
            ds = load_dataset(data)
            sizes[data.name] = {**ds.sizes(), "classes": ds.num_classes}
    return sizes


def _unfinished(folder: Path) -> bool:
    from bnlab.runner.results import FINISHED, read_summary

    try:
        return any(row["status"] not in FINISHED for row in read_summary(folder))
    except (FileNotFoundError, ConfigError):
        return True


def run_claim(
    claim: Claim, scale: str, seeds: list[int] | None, out: Path, progress: bool = True, overrides: list[str] = (), execution: dict | None = None
) -> Path:
    """Run one claim's sweep (and its measurements) into its folder; returns the folder. `overrides`
    apply to the claim's config (e.g. data.data_dir for TFDS, or a tiny scale in tests); `execution`
    holds bnlab.run's workers, vectorize, executor, address and retries (its defaults where absent).
    A claim's extra measurement (step timings, ...) always runs in this process."""
    import bnlab

    config = claim.config(scale)
    if not config.exists():
        raise ConfigError(f"{claim.name} has no {scale}-scale sweep ({config.name}); the scales it has: {', '.join(claim_scales(claim)) or 'none'}")
    cfg = bnlab.load_config(config, overrides)
    default_seeds = list(cfg.sweep.grid.get("seed", [0]))
    folder = seed_folder(out, claim, seeds, default_seeds)
    overrides = list(overrides) + ([f"sweep.grid.seed=[{','.join(str(s) for s in seeds)}]"] if seeds is not None else [])
    used_seeds = list(seeds) if seeds is not None else default_seeds
    measurements = folder / "measurements.json"
    work = _unfinished(folder) or (claim.measure is not None and not measurements.exists()) or not (folder / "claim.json").exists()
    started = time.perf_counter()
    tuned = None
    if claim.tune is None:
        bnlab.run(config, overrides, out=folder, progress=progress, **(execution or {}))
    else:
        tuned = _tune_and_confirm(claim, config, overrides, out, folder, used_seeds, progress, execution)
    if claim.measure is not None and not measurements.exists():
        from bnlab.runner.loop import float32_matmuls  # jax: only where a claim measures

        t0 = time.perf_counter()
        with float32_matmuls():
            measured = claim.measure(bnlab.load_config(config, overrides), used_seeds)
        measured["seconds"] = round(time.perf_counter() - t0, 1)
        atomic_write(measurements, json.dumps(measured, indent=1, sort_keys=True) + "\n")
    if work:  # a rerun that found everything done keeps the record of the one that trained
        record = {
            "claim": claim.name,
            "scale": scale,
            "seeds": used_seeds,
            "config": str(config.relative_to(ROOT)) if config.is_relative_to(ROOT) else str(config),
            "overrides": [o for o in overrides if not o.startswith("sweep.grid.seed=")],
            "data_sizes": dataset_sizes(bnlab.load_config(config, overrides)),
            "wall_seconds": round(time.perf_counter() - started, 1),
        }
        if tuned is not None:
            record["tuned"] = tuned
        atomic_write(folder / "claim.json", json.dumps(record, indent=1) + "\n")
    (folder / "skipped.txt").unlink(missing_ok=True)
    return folder


def _tune_and_confirm(claim: Claim, config: Path, overrides: list[str], out: Path, folder: Path, seeds: list[int], progress, execution) -> dict:
    """Run the tuning seeds over the claim's grid of values (experiments.tuning), choose each arm's
    value from those runs, then run the confirmation seeds of every arm at its value."""
    import bnlab
    from bnlab.config.load import load

    from . import tuning

    tune = claim.tune
    base = [o for o in overrides if not o.startswith("sweep.grid.seed=")]
    tuning_folder = tuning.folder(out, claim.name)
    cfg = load(config, base)
    if tune.key in cfg.sweep.grid or tune.key in cfg.sweep.zip:
        raise ConfigError(f"{claim.name}: {tune.key} is tuned per arm, so the sweep may not list it as an axis")
    if any(axis not in cfg.sweep.grid for axis, _ in tune.at):
        raise ConfigError(f"{claim.name}: Tune.at names an axis the sweep's grid does not have: {[a for a, _ in tune.at]}")
    tuned = bnlab.run(config, base + tuning.overrides(tune), out=tuning_folder, progress=progress, **(execution or {}))
    classes = dataset_sizes(bnlab.load_config(config, base))
    chance = 1.0 / min(s["classes"] for s in classes.values()) if all("classes" in s for s in classes.values()) else 0.0
    chosen = tuning.choose(tuned.runs, tune, tuning.arm_axes(cfg, tune), chance)
    bnlab.run(tuning.confirmation(cfg, tune, chosen, seeds), [], out=folder, progress=progress, **(execution or {}))
    return tuning.record(tune, chosen)


def reproduce(
    claims: list[Claim],
    scale: str,
    seeds: list[int] | None,
    out: Path,
    report: Path,
    progress: bool = True,
    overrides: list[str] = (),
    execution: dict | None = None,
    readme: Path | None = None,
) -> int:
    """Run the claims, then write the report over everything in `out` (and the verdict table of
    `readme`). A claim whose config cannot
    run here (its data missing) is recorded as skipped, and the others go on."""
    if scale not in SCALES:
        raise ConfigError(f"--scale: {scale!r} is not one of {', '.join(SCALES)}")
    for claim in claims:
        print(f"== {claim.name} ({scale})", file=sys.stderr)
        try:
            run_claim(claim, scale, seeds, out, progress, overrides, execution)
            if seeds is None and claim.fresh_seeds:  # its second confirmation set
                run_claim(claim, scale, list(claim.fresh_seeds), out, progress, overrides, execution)
        except ConfigError as err:
            folder = out / claim.name
            folder.mkdir(parents=True, exist_ok=True)
            (folder / "skipped.txt").write_text(f"{scale} scale: {err}\n")
            print(f"bnlab: {claim.name} skipped: {err}", file=sys.stderr)
    write_report(out, report, readme, claims)
    return 0


def write_report(out: Path, report: Path, readme: Path | None = None, extra: list[Claim] = ()) -> Path:
    """Figures into each claim folder, and the report, from saved results only; with `readme`, its
    verdict table is replaced by the report's (experiments.report.update_readme). `extra`: claims
    that are not modules of this package (one being tried elsewhere) join the report too."""
    from . import load_claims
    from .report import update_readme

    report.parent.mkdir(parents=True, exist_ok=True)
    found = load_claims()
    claims = sorted(found + [c for c in extra if c.name not in {f.name for f in found}], key=lambda c: c.number)
    atomic_write(report, render_report(claims, out, report.parent))
    if readme is not None:
        atomic_write(readme, update_readme(readme.read_text(), report.read_text(), report, readme))
    return report
