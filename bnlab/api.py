"""The Python API, for notebooks and experiment modules: the same work as the command line.

    import bnlab
    runs, metrics = bnlab.run("configs/quickstart.yaml", overrides=["train.steps=500"], out="/tmp/qs")
    runs.groupby("model.norm")["test_acc"].agg(["mean", "min", "max"])

JAX, TensorFlow and pandas are imported only when a function needs them, so `import bnlab` stays cheap.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    import pandas as pd

    from .config.schema import Config


class Results(NamedTuple):
    """A results folder as two tables."""

    runs: "pd.DataFrame"  # a row per run: run_id, status, diverged_step, swept values, final metrics, config.<key>
    metrics: "pd.DataFrame"  # a row per run and logged step: run_id, swept values, step, every metric logged there


def load_config(source: Any = None, overrides: list[str] | tuple[str, ...] = ()) -> "Config":
    """A config (YAML path, mapping or Config, plus `section.key=value` overrides), checked the way
    `bnlab run` checks it: every run of its sweep is validated. Raises bnlab.ConfigError."""
    from .config.load import load, to_object
    from .config.sweep import expand
    from .runner.validate import validate

    cfg = load(source, overrides)
    for spec in expand(cfg):
        validate(spec.config)
    return to_object(cfg)


def run(
    config: Any,
    overrides: list[str] | tuple[str, ...] = (),
    out: str | Path | None = None,
    *,
    workers: int | None = None,
    vectorize: bool | None = None,
    progress: bool = False,
    executor: str = "local",
    address: str | None = None,
    retries: int = 2,
) -> Results:
    """Train a config and its sweep into `out` (default results/<name>) and return its results.

    `config` is a YAML path, a mapping shaped like a YAML config, or a Config. Finished runs in
    `out` are kept, unfinished ones resumed, as with `bnlab run`. `workers`, `vectorize`,
    `executor` ("local" or "ray"), `address` and `retries` as the command's options (None: the
    default for the backend). Raises bnlab.ConfigError on bad input, before anything is written."""
    from .runner.execute import Executor, execute
    from .runner.plan import plan

    p = plan(config, overrides, out)
    execute(p, progress=progress, workers=workers, vectorize=vectorize, executor=Executor(executor, address, retries))
    return load_results(p.out_dir)


def load_results(out_dir: str | Path) -> Results:
    """The runs of a results folder (as written by `bnlab run`) as pandas DataFrames."""
    import pandas as pd

    from .runner.results import final_metrics, load_runs, varying_keys

    saved = load_runs(out_dir)
    swept = varying_keys(saved)
    run_rows, metric_rows = [], []
    for run in saved:
        ident = {"run_id": run.run_id, **{k: run.config.get(k) for k in swept}}
        run_rows.append(
            {
                **ident,
                "status": run.status.get("status"),
                "diverged_step": run.status.get("diverged_step"),
                **final_metrics(run.status, run.rows),
                **{f"config.{k}": v for k, v in run.config.items()},
            }
        )
        metric_rows.extend({**ident, **row} for row in run.rows)
    return Results(pd.DataFrame(run_rows), pd.DataFrame(metric_rows))
