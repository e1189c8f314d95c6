"""Is a vmapped group of runs faster than the same runs one after another, on this machine? For a
claim's structures (one config each: every run of a group differs only in seed or traced numbers),
times K runs of `--steps` steps trained as one vmapped program against K single runs in a row,
compiling excluded, in interleaved rounds in one process (the ratio taken within each round).

    python benchmarks/vectorize_cost.py [--steps 500] [--group 10] [--rounds 3] [--only mlp_sigmoid ...]

Prints, per structure, the seconds per run of each way and their ratio (one by one / vmapped: above
1, the group is faster), with the structure's size (parameters, batch) and XLA's FLOPs per step.
One by one here is one process; `bnlab run` runs one-by-one runs in a worker per core, which on
this machine's 2 cores gave ~1.9x one process's throughput, so a group pays off on a CPU only
where the ratio is well above that.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax

from bnlab.config.schema import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig
from bnlab.data.dataset import load
from bnlab.measure.step_time import step_flops
from bnlab.train.program import TrainProgram
from bnlab.train.vectorized import VectorizedProgram, stack

MNIST1D = DataConfig(name="mnist1d")
DIGITS = DataConfig(name="digits")
STRUCTURES = {  # the claims' typical nets
    "mlp_sigmoid": (MNIST1D, ModelConfig(name="mlp", depth=3, width=100, activation="sigmoid", norm="batch"), 64),
    "mlp_deep": (MNIST1D, ModelConfig(name="mlp", depth=12, width=100, activation="sigmoid", norm="batch"), 64),
    "mlp_wide": (MNIST1D, ModelConfig(name="mlp", depth=3, width=256, activation="relu", norm="batch"), 16),
    "cnn_digits": (DIGITS, ModelConfig(name="cnn", depth=2, width=16, activation="relu", norm="batch"), 8),
    "lstm": (MNIST1D, ModelConfig(name="lstm", depth=1, width=64, activation="tanh", norm="layer", rnn_norm_paths="hidden"), 32),
}


def config(data: DataConfig, model: ModelConfig, batch: int, seed: int) -> Config:
    return Config(seed=seed, data=data, model=model, optim=OptimConfig(name="sgd", lr=0.1), train=TrainConfig(batch_size=batch, steps=10**6))


def measure(name: str, steps: int, group: int, rounds: int) -> dict:
    data, model, batch = STRUCTURES[name]
    cfgs = [config(data, model, batch, seed) for seed in range(group)]
    dataset = load(data)
    single = TrainProgram(cfgs[0], dataset)
    vector = VectorizedProgram(single, cfgs)

    def one_by_one() -> float:
        t0 = time.perf_counter()
        for cfg in cfgs:
            state, summary = single.train_chunk(single.init(cfg.seed), steps)
            jax.block_until_ready(summary)
        return time.perf_counter() - t0

    def vmapped() -> float:
        t0 = time.perf_counter()
        state, summary = vector.train_chunk(stack([single.init(cfg.seed) for cfg in cfgs]), steps)
        jax.block_until_ready(summary)
        return time.perf_counter() - t0

    one_by_one(), vmapped()  # compile
    ratios, singles, vectors = [], [], []
    for r in range(rounds):
        a, b = (one_by_one(), vmapped()) if r % 2 == 0 else tuple(reversed((vmapped(), one_by_one())))
        singles.append(a / group)
        vectors.append(b / group)
        ratios.append(a / b)
    params = sum(x.size for x in jax.tree.leaves(single.init(0).params))
    return {
        "name": name,
        "params": params,
        "batch": batch,
        "mflop": step_flops(single, single.init(0)) / 1e6,
        "single": statistics.median(singles),
        "vmapped": statistics.median(vectors),
        "ratio": statistics.median(ratios),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--group", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--only", nargs="+", choices=list(STRUCTURES))
    args = parser.parse_args()
    print(f"backend {jax.default_backend()}; {args.group} runs of {args.steps} steps; seconds per run, median of {args.rounds} rounds")
    print("| structure | parameters | batch | MFLOP/step | one by one | vmapped | one by one / vmapped |\n|---|---|---|---|---|---|---|")
    for name in args.only or STRUCTURES:
        m = measure(name, args.steps, args.group, args.rounds)
        print(f"| {m['name']} | {m['params']:,} | {m['batch']} | {m['mflop']:.1f} | {m['single']:.3f} | {m['vmapped']:.3f} | {m['ratio']:.2f}x |")


if __name__ == "__main__":
    main()
