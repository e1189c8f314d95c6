"""Per-layer gradient norms as the training loop logs them (`grad_norm/hidden.<k>.layer.kernel`:
the mean over a log window of each step's norm of that layer's weight gradient), shared by the
claims about vanishing and exploding gradients (15 and 16)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def hidden_layers(metrics: pd.DataFrame) -> list[str]:
    """The hidden layers' weight-gradient columns, first layer (next to the input) first."""
    cols = [c for c in metrics.columns if c.startswith("grad_norm/hidden.") and c.endswith(".layer.kernel")]
    return sorted(cols, key=lambda c: int(c.split(".")[1]))


def log_norms(metrics: pd.DataFrame, run_id: str, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps and a (steps x depth) array of log10 gradient norms of the run's hidden layers."""
    cols = hidden_layers(metrics)[:depth]
    rows = metrics[metrics["run_id"] == run_id].dropna(subset=cols)
    return rows["step"].to_numpy(), np.log10(rows[cols].to_numpy(float))


def first_over_last(metrics: pd.DataFrame, run_id: str, depth: int) -> tuple[np.ndarray, np.ndarray]:
    """Steps and log10(|grad W_1| / |grad W_L|) of the first hidden layer over the last, at each log
    point: above 0 the gradient grows towards the input (explodes), below 0 it vanishes."""
    steps, logs = log_norms(metrics, run_id, depth)
    return steps, logs[:, 0] - logs[:, -1]
