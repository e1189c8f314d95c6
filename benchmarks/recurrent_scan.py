"""An LSTM's time loop as one `jax.lax.scan` (bnlab.nn.recurrent) against the same layer unrolled in
Python, step by step (the implementation until 2026-12-03), in one process: compile seconds of the
training chunk and median milliseconds per training step, both variants alternated round by round.

    python benchmarks/recurrent_scan.py [--length 40] [--width 64] [--steps 100] [--rounds 3]

The network is claim 9's: one LSTM layer reading a sequence of `length` steps of one feature
(sequential MNIST-1D has 40), batch 32, Adam; norms on the hidden path and the cell.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp

from bnlab.config.load import load, to_object
from bnlab.data.dataset import load as load_dataset
from bnlab.nn import recurrent
from bnlab.train.program import TrainProgram

SCANNED = recurrent.RecurrentLayer.__call__


def unrolled(self, xs, *, train):
    """The Python loop over time steps: every step traced and compiled on its own."""
    n, steps = xs.shape[0], xs.shape[1]
    h = c = jnp.zeros((n, self.width), xs.dtype)
    outs, pres = [], []
    for t in range(steps):
        hidden = self.norm_h.of_zeros() if t == 0 else self.norm_h(self.h(h), t=t, train=train)
        pre = self.norm_x(self.x(xs[:, t]), t=t, train=train) + hidden + self.bias.value
        if self.gates == 1:
            h = self.act(pre)
        else:
            i, f, g, o = jnp.split(pre, 4, axis=-1)
            c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
            h = jax.nn.sigmoid(o) * jnp.tanh(self.norm_c(c, t=t, train=train))
        outs.append(h)
        pres.append(pre)
    return jnp.stack(outs, 1), jnp.stack(pres, 1)


def measure(norm: str, length: int, width: int, steps: int, variant) -> tuple[float, float]:
    """(seconds to compile and run the first chunk, ms per step of a second chunk)."""
    recurrent.RecurrentLayer.__call__ = variant
    overrides = [
        "model.name=lstm",
        f"model.width={width}",
        "model.depth=1",
        f"model.norm={norm}",
        "model.rnn_norm_paths=hidden",
        "train.batch_size=32",
        f"train.steps={2 * steps}",
        "optim.name=adam",
        "optim.lr=0.003",
        "data.name=synthetic",
        f"data.synthetic_shape=[{length},1,1]",
    ]
    cfg = to_object(load(None, overrides))
    program = TrainProgram(cfg, load_dataset(cfg.data))
    state = program.init(0)
    t0 = time.perf_counter()
    state, _ = program.train_chunk(state, steps)
    jax.block_until_ready(state.params)
    first = time.perf_counter() - t0
    t0 = time.perf_counter()
    state, _ = program.train_chunk(state, steps)
    jax.block_until_ready(state.params)
    return first, 1000 * (time.perf_counter() - t0) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--length", type=int, default=40)
    parser.add_argument("--width", type=int, default=64)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--norms", default="none,layer,batch_per_step")
    args = parser.parse_args()
    print(f"LSTM {args.width} units, {args.length} steps, batch 32; medians of {args.rounds} rounds ({jax.default_backend()})")
    print("| norm | compile + first chunk s: unrolled / scan | ms per step: unrolled / scan | unrolled / scan |\n|---|---|---|---|")
    for norm in args.norms.split(","):
        results = {"unrolled": [], "scan": []}
        for _ in range(args.rounds):
            for name, variant in (("unrolled", unrolled), ("scan", SCANNED)):
                jax.clear_caches()  # each round compiles afresh
                results[name].append(measure(norm, args.length, args.width, args.steps, variant))
        first = {k: statistics.median(r[0] for r in v) for k, v in results.items()}
        step = {k: statistics.median(r[1] for r in v) for k, v in results.items()}
        print(
            f"| {norm} | {first['unrolled']:.1f} / {first['scan']:.1f} | {step['unrolled']:.2f} / {step['scan']:.2f} | "
            f"compile {first['unrolled'] / first['scan']:.1f}x, step {step['unrolled'] / step['scan']:.2f}x |"
        )
    recurrent.RecurrentLayer.__call__ = SCANNED


if __name__ == "__main__":
    main()
