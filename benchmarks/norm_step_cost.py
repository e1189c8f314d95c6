"""Training-step time of each normaliser at several widths: how ZCA whitening's cost grows with
width compared with BN.

    python benchmarks/norm_step_cost.py [--widths 64 128 256 512] [--steps 300]

A 3-hidden-layer MLP on synthetic 28x28 inputs, batch 60, SGD; one compiled chunk of `steps`
steps per measurement, median of `repeats`; reported as ms per step and as a multiple of the
un-normalised network of the same width (measured in the same process). Whitening uses groups of
`--group` features (Huang et al. 2018), so its cost grows with width x group size; `--group 0`
whitens all features together (cubic in width).
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

from bnlab.config.schema import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig
from bnlab.data.dataset import load as load_dataset
from bnlab.train.program import TrainProgram

NORMS = ("none", "batch", "layer", "group", "whiten")


def ms_per_step(norm: str, width: int, group: int, steps: int, repeats: int, dataset, dcfg) -> float:
    mcfg = ModelConfig(depth=3, width=width, norm=norm, activation="relu", groups=4, whiten_group_size=group or width)
    cfg = Config(data=dcfg, model=mcfg, train=TrainConfig(batch_size=60, steps=10**9), optim=OptimConfig(lr=0.01))
    t = TrainProgram(cfg, dataset)
    state, s = t.train_chunk(t.init(0), steps)  # compile
    jax.block_until_ready(s)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        state, s = t.train_chunk(state, steps)
        jax.block_until_ready(s)
        times.append((time.perf_counter() - t0) / steps)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--group", type=int, default=16, help="whitening group size (0: whole width)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    dcfg = DataConfig(name="synthetic", synthetic_size=3000, synthetic_shape=[28, 28, 1])
    dataset = load_dataset(dcfg)
    print(f"backend: {jax.default_backend()}; ms per training step (x of norm=none); whitening groups of {args.group or 'all'} features")
    print(f"{'width':>6} " + " ".join(f"{n:>16}" for n in NORMS))
    for width in args.widths:
        ms = {n: ms_per_step(n, width, args.group, args.steps, args.repeats, dataset, dcfg) for n in NORMS}
        print(f"{width:>6} " + " ".join(f"{ms[n]:8.3f} ({ms[n] / ms['none']:4.1f}x)" for n in NORMS))


if __name__ == "__main__":
    main()
