"""Training throughput of bnlab's compiled chunks vs a per-step `nnx.jit` loop (flax-examples style).

    python benchmarks/train_speed.py [--steps 2000] [--repeats 5]

The quickstart network at MNIST size (784-100-100-100-10 sigmoid, batch 60, SGD) on synthetic
28x28 data, for norm=none and norm=batch. Prints median steps/s over repeats (after a warm-up
that compiles) and the ratio against the per-step loop measured in the same process.
"""

from __future__ import annotations

import argparse
import statistics
import time

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from bnlab import config as C
from bnlab import data, models
from bnlab.train import Trainer


def quickstart_config(norm: str, steps: int) -> C.Config:
    cfg = C.Config()
    cfg.data = C.DataConfig(name="synthetic", synthetic_size=10_000, synthetic_shape=[28, 28, 1])
    cfg.model = C.ModelConfig(depth=3, width=100, activation="sigmoid", init="normal", norm=norm)
    cfg.optim = C.OptimConfig(name="sgd", lr=0.5)
    cfg.train = C.TrainConfig(batch_size=60, steps=10**9, log_every=steps)
    return cfg


def bnlab_steps_per_sec(cfg: C.Config, steps: int, repeats: int) -> list[float]:
    trainer = Trainer(cfg, data.load(cfg.data))
    state = trainer.init(0)
    state, s = trainer.train_chunk(state, steps)  # compile
    jax.block_until_ready(s)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        state, s = trainer.train_chunk(state, steps)
        jax.block_until_ready(s)
        rates.append(steps / (time.perf_counter() - t))
    return rates


def per_step_jit_steps_per_sec(cfg: C.Config, steps: int, repeats: int) -> list[float]:
    """The flax-examples pattern: nnx.Optimizer, one @nnx.jit call per step, batches sliced on the host."""
    ds = data.load(cfg.data)
    model = models.build(cfg.model, ds.image_shape, ds.num_classes, seed=0)
    opt = nnx.Optimizer(model, optax.sgd(cfg.optim.lr), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, y):
        def loss_fn(m):
            logits = m(x, train=True)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    n = len(ds.y_train) // 60

    def run(k):
        for i in range(k):
            j = i % n
            loss = step(model, opt, x[j * 60 : (j + 1) * 60], y[j * 60 : (j + 1) * 60])
        jax.block_until_ready(loss)

    run(10)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        run(steps)
        rates.append(steps / (time.perf_counter() - t))
    return rates


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    print(f"backend: {jax.default_backend()}, devices: {jax.devices()}")
    print(f"{'norm':<6} {'bnlab steps/s (median, min-max)':<34} {'nnx.jit per step':<26} ratio")
    for norm in ("none", "batch"):
        cfg = quickstart_config(norm, args.steps)
        ours = bnlab_steps_per_sec(cfg, args.steps, args.repeats)
        base = per_step_jit_steps_per_sec(cfg, args.steps, args.repeats)
        m, b = statistics.median(ours), statistics.median(base)
        print(f"{norm:<6} {m:8.0f} ({min(ours):.0f}-{max(ours):.0f}){'':<14} {b:8.0f} ({min(base):.0f}-{max(base):.0f})   {m / b:5.2f}x")


if __name__ == "__main__":
    main()
