"""`--vectorize auto` on a CPU, from measurements rather than from the backend alone.

A vmapped group of runs is worth it where it beats the alternative: on a CPU with several cores,
the runs one by one in a worker process per core. `benchmarks/vectorize_cost.py` timed a group of
10 runs of each typical claim structure vmapped against the same runs one by one in one process
(500 steps, interleaved rounds, this repository's 2-core CPU; benchmarks/README.md): the gain of
the group, VMAP_GAIN below. Two pinned workers gave ~1.9x one process's throughput on the same
machine, WORKER_EFFICIENCY of a core each. A group is vmapped when its measured gain exceeds what
the workers would give: never with two or more workers here (the best gain, 1.27x, is below 1.9x),
and for the CNN and the LSTM when a single worker runs the sweep (a structure never measured is
not vmapped on a CPU). On an accelerator every
group is vmapped (one process per device, where a vmapped group fills the device).
"""

from __future__ import annotations

# one by one / vmapped, seconds per run, in one process (benchmarks/vectorize_cost.py --steps 500 --group 10 --rounds 3;
# the LSTM, claim 9's on sequential MNIST-1D with its time loop scanned: --only lstm --steps 300)
VMAP_GAIN = {"mlp": 0.97, "cnn": 1.27, "lstm": 1.20}
WORKER_EFFICIENCY = 0.95  # two pinned workers: ~1.9x one process


def vmap_pays(model: str, workers: int, accelerator: bool) -> bool:
    """Whether a group of runs of `model` trains faster vmapped than one by one on `workers` worker
    processes (a model not measured is not vmapped on a CPU)."""
    if accelerator:
        return True
    alternative = 1.0 if workers <= 1 else workers * WORKER_EFFICIENCY
    return VMAP_GAIN.get(model, 0.0) > alternative
