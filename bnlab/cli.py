"""`bnlab` command line: run, plot, list, reproduce, report. Heavy imports happen inside the commands."""

from __future__ import annotations

import argparse
import errno
import sys
from pathlib import Path

RUN_HELP = """\
Run a config. A config with a `sweep:` block runs every run of the sweep.

Overrides are `section.key=value`, e.g. `optim.lr=0.5 model.norm=layer train.steps=2000`.
Sweep axes can be set too: `sweep.grid.seed=[0,1,2]`, `sweep.zip.optim.lr=[0.1,1]`.
Results go to results/<name> (or --out): runs/<run_id>/{config.yaml,status.json,metrics.jsonl}
and summary.csv. Rerunning skips finished runs and resumes unfinished ones.
Bad configs exit with code 2 before anything is written."""


def _cmd_run(args: argparse.Namespace) -> int:
    from .config.load import load
    from .runner.folder import check_writable

    cfg = load(args.config, args.overrides)
    check_writable(Path(args.out) if args.out else Path("results") / cfg.name)  # refuse a busy folder before loading anything

    from .runner.execute import Executor, execute
    from .runner.plan import plan

    p = plan(args.config, args.overrides, args.out)
    if args.dry_run:
        for spec in p.runs:
            print(spec.run_id)
        print(f"{len(p.runs)} run(s) -> {p.out_dir}")
        return 0
    options = _execution(args)
    executor = Executor(options.pop("executor"), options.pop("address"), options.pop("retries"))
    counts = execute(p, progress=not args.quiet, executor=executor, **options)
    print(f"{p.out_dir}: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    if not args.quiet:
        from .report.table import final_table

        print(final_table(p.out_dir))
    return 0 if "failed" not in counts else 1


def _cmd_plot(args: argparse.Namespace) -> int:
    from .report.plot import plot_all

    for path in plot_all(args.dir, fmt=args.format):
        print(path)
    return 0


def _cmd_list(args: argparse.Namespace) -> int:
    from . import catalog

    print(catalog.markdown() if args.markdown else catalog.text(), end="" if args.markdown else "\n")
    return 0


def _claims_paths(args: argparse.Namespace, scale: str) -> tuple[Path, Path]:
    out = Path(args.out) if args.out else Path("results") / ("claims" if scale == "quick" else "paper/claims")
    return out, Path(args.report) if args.report else out.parent / "REPORT.md"


def _cmd_reproduce(args: argparse.Namespace) -> int:
    from experiments import load_claims
    from experiments.reproduce import reproduce

    scale = "quick" if args.quick else args.scale
    if args.only:  # `--only a b key=value`: the overrides end up in --only's list
        args.overrides = list(args.overrides) + [n for n in args.only if "=" in n]
        args.only = [n for n in args.only if "=" not in n]
    claims = load_claims(args.only)
    out, report = _claims_paths(args, scale)
    readme = _readme(args)  # checked before any training
    reproduce(claims, scale, args.seeds, out, report, progress=not args.quiet, overrides=args.overrides, readme=readme, execution=_execution(args))
    print(report)
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from experiments.reproduce import write_report

    from .errors import ConfigError

    out = Path(args.dir)
    if not out.is_dir():
        raise ConfigError(f"report: {out} is not a folder of claims' results (written by bnlab reproduce)")
    readme = _readme(args)
    print(write_report(out, Path(args.report) if args.report else out.parent / "REPORT.md", readme))
    return 0


def _readme(args: argparse.Namespace) -> Path | None:
    """--readme: a Markdown file whose verdict-table block is replaced by the report's table."""
    from .errors import ConfigError

    if not args.readme:
        return None
    readme = Path(args.readme)
    from experiments.report import README_END, README_START

    if not readme.is_file() or README_START not in readme.read_text() or README_END not in readme.read_text():
        raise ConfigError(f"--readme: {readme} has no verdict table block to replace; it needs the lines {README_START} and {README_END}")
    return readme


def _seeds(value: str) -> list[int]:
    try:
        seeds = [int(s) for s in value.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds) or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected distinct non-negative integers separated by commas, e.g. 0,1,2; got {value!r}")
    return seeds


def _workers(value: str) -> str:
    if value != "auto" and not (value.isdigit() and int(value) >= 1):
        raise argparse.ArgumentTypeError(f"expected a positive count or 'auto', got {value!r}")
    return value


def _add_execution_options(parser: argparse.ArgumentParser) -> None:
    """Where and how runs execute: the same options for `bnlab run` and `bnlab reproduce`."""
    parser.add_argument(
        "--workers",
        default="auto",
        type=_workers,
        metavar="N|auto",
        help="local worker processes, each held to one core (default auto: one per core on a CPU, 1 on an accelerator)",
    )
    parser.add_argument(
        "--vectorize",
        default="auto",
        choices=["auto", "on", "off"],
        help="train runs that differ only in numbers (seed, lr, init scale, ...) as one vmapped program "
        "(default auto: on for an accelerator; on a CPU by a measured rule: off with several workers, on for the CNN and "
        "LSTM with one worker; bnlab/runner/vectorize_rule.py). on: vmapped groups in one process, whatever --workers says",
    )
    parser.add_argument("--executor", default="local", choices=["local", "ray"], help="run here (default) or as Ray tasks")
    parser.add_argument("--address", help="Ray cluster address, e.g. 10.0.0.5:6379 (default: start a local Ray)")
    parser.add_argument("--retries", type=int, default=2, help="Ray: re-executions of a task whose worker died (default 2)")


def _execution(args: argparse.Namespace) -> dict:
    """The execution options as keyword arguments of bnlab.run."""
    return {
        "workers": None if args.workers == "auto" else int(args.workers),
        "vectorize": {"auto": None, "on": True, "off": False}[args.vectorize],
        "executor": args.executor,
        "address": args.address,
        "retries": args.retries,
    }


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="bnlab", description="Test the claims about Batch Normalization with real training runs.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="{run,plot,list,reproduce,report}")

    run = sub.add_parser("run", help="train a config (and its sweep)", description=RUN_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("config", help="YAML config file, e.g. configs/quickstart.yaml")
    run.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides")
    run.add_argument("--out", help="results folder (default: results/<name>)")
    run.add_argument("--dry-run", action="store_true", help="validate and list the runs, train nothing")
    run.add_argument("--quiet", action="store_true", help="no progress bars and no final table (summary.csv in the results folder has it)")
    _add_execution_options(run)
    run.set_defaults(func=_cmd_run)

    plot = sub.add_parser(
        "plot",
        help="rebuild figures from saved results",
        description="Draw figures from a results folder into DIR/figures. Reads saved results only; never trains.",
    )
    plot.add_argument("dir", help="results folder written by `bnlab run`")
    plot.add_argument("--format", default="png", choices=["png", "pdf", "svg"], help="figure format (default png)")
    plot.set_defaults(func=_cmd_plot)

    lst = sub.add_parser(
        "list",
        help="list datasets, models, norms, activations, initialisers, optimisers",
        description="List every registered choice with a one-line description and what it declares: the numbers it takes "
        "traced (sweeps over them share one compiled program; any other option recompiles), those that only fill initial values, "
        "its other options, and whether it folds or has population statistics.",
    )
    lst.add_argument(
        "--markdown", action="store_true", help="the tables of models, norms, initialisers and optimisers, as in docs/norms-and-models.md"
    )
    lst.set_defaults(func=_cmd_list)

    rep = sub.add_parser(
        "reproduce",
        help="run the claims' experiments and write the report",
        description="Run each claim's sweep (configs/claims/<name>.<scale>.yaml; finished runs are kept, never redone), "
        "then write REPORT.md with every claim's statistic, interval, verdict and figure.",
    )
    rep.add_argument("--scale", default="quick", choices=["quick", "paper"], help="quick: CPU-sized (default); paper: the papers' lengths, for a GPU")
    rep.add_argument("--quick", action="store_true", help="the same as --scale quick")
    rep.add_argument("--only", nargs="+", metavar="NAME", help="these claims only (see experiments/__init__.py)")
    rep.add_argument("--seeds", type=_seeds, metavar="0,1,2", help="run on these seeds instead of the config's (a folder of their own)")
    rep.add_argument("--out", help="claims' results folder (default results/claims, or results/paper/claims)")
    rep.add_argument("--report", help="report file (default: REPORT.md beside the results folder)")
    rep.add_argument("--quiet", action="store_true", help="no progress bars")
    rep.add_argument("--readme", help="also replace the verdict table block of this Markdown file (e.g. README.md) with the report's")
    _add_execution_options(rep)
    rep.add_argument("overrides", nargs="*", metavar="key=value", help="overrides for every claim's config, e.g. data.data_dir=/data/tfds")
    rep.set_defaults(func=_cmd_reproduce)

    rpt = sub.add_parser(
        "report", help="rebuild REPORT.md and the claims' figures from saved results", description="Reads saved results only; never trains."
    )
    rpt.add_argument("dir", nargs="?", default="results/claims", help="claims' results folder (default results/claims)")
    rpt.add_argument("--report", help="report file (default: REPORT.md beside DIR)")
    rpt.add_argument("--readme", help="also replace the verdict table block of this Markdown file (e.g. README.md) with the report's")
    rpt.set_defaults(func=_cmd_report)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    # overrides may come after options (`bnlab run c.yaml --out d optim.lr=1`): collect the leftovers
    args, extra = parser.parse_known_args(argv)
    if extra:
        if args.command not in ("run", "reproduce") or any(e.startswith("-") or "=" not in e for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.overrides = list(args.overrides) + extra
    from .errors import ConfigError

    try:
        return args.func(args)
    except ConfigError as err:
        print(f"bnlab: error: {err}", file=sys.stderr)
        return 2
    except FileNotFoundError as err:
        print(f"bnlab: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\nbnlab: interrupted; finished runs are kept, the others are marked interrupted: rerun the same command to resume", file=sys.stderr)
        return 130
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            where = f" writing {err.filename}" if err.filename else ""
            print(f"bnlab: error: no space left on the device{where}; free some space and rerun the same command to resume", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
