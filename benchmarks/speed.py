"""Training speed: bnlab against a plain PyTorch loop, the Flax examples' `jax.jit` step and a per-step `nnx.jit` loop, sweeps of 8
seeds end to end, and achieved FLOP/s against this machine's matmul FLOP/s.

    python benchmarks/speed.py [--steps 2000] [--repeats 5] [--sweep-repeats 3] [--skip-sweeps]

Models (synthetic 28x28 data, batch 60, SGD lr 0.1), each with norm none and batch:
  - mlp: the quickstart network, 784-100-100-100-10 sigmoid (Ioffe & Szegedy's MNIST net);
  - cnn: two stages of one 3x3 conv (16, 32 channels) + ReLU + 2x2 max pooling, linear classifier.
Single-run rows: median steps/s over `repeats` timed blocks of `steps` steps (CNN: steps/10, at
least 50) after a warm-up that compiles; all four implementations (bnlab, PyTorch eager, the Flax
examples' pure `jax.jit` step, a per-step `nnx.jit` loop) are timed in this process, on the same data.
Sweep rows: 8 seeds of the MNIST-size quickstart network (BN, 2,000 steps each), wall time of the
whole thing including start-up and compilation: one `bnlab run` with its defaults vs eight
`bnlab run` processes one after another (a shell loop over a training script), with bnlab's
persistent compilation cache on and off for the loop. The PyTorch rows need torch
(`pip install torch`; a CPU build suffices) and are skipped without it.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from timing import median_seconds

from bnlab.config.schema import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig
from bnlab.data.dataset import load as load_dataset
from bnlab.nn.models import build
from bnlab.train.program import TrainProgram

ROOT = Path(__file__).resolve().parents[1]
BATCH, LR = 60, 0.1
DATA = DataConfig(name="synthetic", synthetic_size=10_000, synthetic_shape=[28, 28, 1])
MODELS = {
    "mlp": dict(name="mlp", depth=3, width=100, activation="sigmoid", init="normal"),
    "cnn": dict(name="cnn", depth=2, width=16, convs_per_stage=1, activation="relu"),
}


def config(model: str, norm: str) -> Config:
    return Config(
        data=DATA,
        model=ModelConfig(norm=norm, **MODELS[model]),
        optim=OptimConfig(name="sgd", lr=LR),
        train=TrainConfig(batch_size=BATCH, steps=10**9),
    )


def rates(run_block, steps: int, repeats: int) -> list[float]:
    run_block(min(steps, 50))  # warm-up: compile
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        run_block(steps)
        out.append(steps / (time.perf_counter() - t))
    return out


def bnlab_rates(cfg: Config, steps: int, repeats: int) -> tuple[list[float], float]:
    trainer = TrainProgram(cfg, load_dataset(cfg.data))
    holder = {"s": trainer.init(0)}

    def block(n):
        holder["s"], summary = trainer.train_chunk(holder["s"], n)
        jax.block_until_ready(summary)

    result = rates(block, steps, repeats)
    x, y = trainer.x_train[:BATCH], trainer.y_train[:BATCH]
    step_fn = jax.jit(jax.value_and_grad(lambda p: trainer.model.loss(p, holder["s"].batch_stats, x, y)[0]))
    cost = step_fn.lower(holder["s"].params).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return result, float(cost.get("flops", float("nan")))  # forward + backward of one step


def nnx_jit_rates(cfg: Config, steps: int, repeats: int) -> list[float]:
    """The flax-examples pattern: nnx.Optimizer and one @nnx.jit call per step."""
    ds = load_dataset(cfg.data)
    model = build(cfg.model, ds.image_shape, ds.num_classes, seed=0)
    opt = nnx.Optimizer(model, optax.sgd(LR), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, x, y):
        def loss_fn(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(x, train=True), y).mean()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    x, y = jnp.asarray(ds.x_train), jnp.asarray(ds.y_train)
    n = len(ds.y_train) // BATCH

    def block(k):
        for i in range(k):
            j = i % n
            loss = step(model, opt, x[j * BATCH : (j + 1) * BATCH], y[j * BATCH : (j + 1) * BATCH])
        jax.block_until_ready(loss)

    return rates(block, steps, repeats)


def functional_jit_rates(cfg: Config, steps: int, repeats: int) -> list[float]:
    """The Flax examples' own pattern: one `jax.jit` of a pure step over (params, batch_stats,
    opt_state, x, y), called once per step with batches sliced on the host."""
    ds = load_dataset(cfg.data)
    graphdef, param_template, stat_template = nnx.split(build(cfg.model, ds.image_shape, ds.num_classes, seed=0), nnx.Param, nnx.BatchStat)
    params, stats = nnx.to_pure_dict(param_template), nnx.to_pure_dict(stat_template)
    tx = optax.sgd(LR)

    def merge(p, s):  # fresh variables in the current trace, filled from pure dicts (NNX's functional API)
        pv, sv = jax.tree.map(lambda v: v, param_template), jax.tree.map(lambda v: v, stat_template)
        nnx.replace_by_pure_dict(pv, p)
        nnx.replace_by_pure_dict(sv, s)
        return nnx.merge(graphdef, pv, sv)

    @jax.jit
    def step(params, stats, opt_state, x, y):
        def loss_fn(p, s):
            model = merge(p, s)
            loss = optax.softmax_cross_entropy_with_integer_labels(model(x, train=True), y).mean()
            return loss, nnx.to_pure_dict(nnx.state(model, nnx.BatchStat))

        (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, stats)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), new_stats, opt_state, loss

    n = len(ds.y_train) // BATCH
    carry = [params, stats, tx.init(params)]

    def block(k):
        for i in range(k):
            j = i % n
            *carry[:], loss = step(*carry, ds.x_train[j * BATCH : (j + 1) * BATCH], ds.y_train[j * BATCH : (j + 1) * BATCH])
        jax.block_until_ready(loss)

    return rates(block, steps, repeats)


def torch_rates(model: str, norm: str, steps: int, repeats: int) -> list[float] | None:
    """A plain eager PyTorch loop, the way most users write one (CPU, default threads)."""
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    torch.manual_seed(0)
    bn = norm == "batch"
    if model == "mlp":
        layers, width_in = [nn.Flatten()], 784
        for _ in range(3):
            layers += [nn.Linear(width_in, 100, bias=not bn)] + ([nn.BatchNorm1d(100, momentum=0.01, eps=1e-5)] if bn else []) + [nn.Sigmoid()]
            width_in = 100
        layers.append(nn.Linear(100, 10))
    else:
        layers, ch = [], 1
        for out in (16, 32):
            layers += [nn.Conv2d(ch, out, 3, padding=1, bias=not bn)] + ([nn.BatchNorm2d(out, momentum=0.01, eps=1e-5)] if bn else [])
            layers += [nn.ReLU(), nn.MaxPool2d(2)]
            ch = out
        layers += [nn.Flatten(), nn.Linear(7 * 7 * 32, 10)]
    net = nn.Sequential(*layers)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    ds = load_dataset(DATA)
    x = torch.from_numpy(np.ascontiguousarray(ds.x_train.transpose(0, 3, 1, 2)))
    y = torch.from_numpy(ds.y_train.astype(np.int64))
    n = len(y) // BATCH
    loss_fn = nn.CrossEntropyLoss()

    def block(k):
        for i in range(k):
            j = i % n
            opt.zero_grad()
            loss = loss_fn(net(x[j * BATCH : (j + 1) * BATCH]), y[j * BATCH : (j + 1) * BATCH])
            loss.backward()
            opt.step()

    return rates(block, steps, repeats)


def matmul_flops(repeats: int = 20, n: int = 2048) -> float:
    """This machine's practical ceiling: float32 matmul FLOP/s through XLA (median)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    f = jax.jit(lambda a: a @ a)
    return 2 * n**3 / median_seconds(lambda: f(a), repeats)


def sweep_seconds(repeats: int) -> dict[str, list[float]]:
    """Wall time of 8 seeds: one bnlab command (defaults) vs a loop of 8 processes."""
    cfg = textwrap_config()
    out: dict[str, list[float]] = {
        "bnlab run (defaults), 8 seeds": [],
        "8 separate processes, compile cache on": [],
        "8 separate processes, compile cache off": [],
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep.yaml"
        path.write_text(cfg)
        bnlab = [sys.executable, "-m", "bnlab", "run", str(path), "--quiet"]
        for r in range(repeats):
            t = time.perf_counter()
            subprocess.run(bnlab + ["--out", f"{tmp}/one{r}"], check=True, cwd=ROOT, capture_output=True)
            out["bnlab run (defaults), 8 seeds"].append(time.perf_counter() - t)
            for label, env in (
                ("8 separate processes, compile cache on", {}),
                ("8 separate processes, compile cache off", {"BNLAB_JAX_CACHE": "off"}),
            ):
                t = time.perf_counter()
                for seed in range(8):
                    subprocess.run(
                        bnlab + [f"sweep.grid.seed=[{seed}]", "--out", f"{tmp}/loop{r}{label[-3:]}/seed{seed}"],  # a folder per config
                        check=True,
                        cwd=ROOT,
                        capture_output=True,
                        env={**os.environ, **env},
                    )
                out[label].append(time.perf_counter() - t)
    return out


def textwrap_config() -> str:
    return (
        "data: {name: synthetic, synthetic_size: 10000, synthetic_shape: [28, 28, 1]}\n"
        "model: {name: mlp, depth: 3, width: 100, activation: sigmoid, init: normal, norm: batch}\n"
        f"optim: {{name: sgd, lr: {LR}}}\n"
        f"train: {{batch_size: {BATCH}, steps: 2000, log_every: 500}}\n"
        "sweep: {grid: {seed: [0, 1, 2, 3, 4, 5, 6, 7]}}\n"
    )


def fmt(values: list[float]) -> str:
    return f"{statistics.median(values):8.0f} ({min(values):.0f}-{max(values):.0f})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sweep-repeats", type=int, default=3)
    parser.add_argument("--skip-sweeps", action="store_true")
    args = parser.parse_args()
    ceiling = matmul_flops()
    print(f"backend: {jax.default_backend()}, {os.cpu_count()} CPU cores; float32 matmul ceiling {ceiling / 1e9:.1f} GFLOP/s (2048^2, median)")
    print("\nsteps/s, median (min-max) of", args.repeats, "blocks of", args.steps, "steps; ratio = bnlab / other")
    header = f"{'model':<5} {'norm':<6} {'bnlab':<22} {'PyTorch eager':<22} {'jax.jit pure step':<22} {'nnx.jit per step':<22}"
    print(header + f" {'vs torch':>8} {'vs jax.jit':>10} {'vs nnx.jit':>10} {'GFLOP/s':>8} {'of ceiling':>10}")
    for model in MODELS:
        steps = args.steps if model == "mlp" else max(args.steps // 10, 50)
        for norm in ("none", "batch"):
            cfg = config(model, norm)
            ours, flops = bnlab_rates(cfg, steps, args.repeats)
            theirs = torch_rates(model, norm, steps, args.repeats)
            functional = functional_jit_rates(cfg, steps, args.repeats)
            loop = nnx_jit_rates(cfg, steps, args.repeats)
            m = statistics.median(ours)
            achieved = flops * m
            print(
                f"{model:<5} {norm:<6} {fmt(ours):<22} {fmt(theirs) if theirs else 'skipped (no torch)':<22} {fmt(functional):<22} {fmt(loop):<22} "
                f"{(m / statistics.median(theirs)) if theirs else float('nan'):7.2f}x {m / statistics.median(functional):9.2f}x "
                f"{m / statistics.median(loop):9.2f}x {achieved / 1e9:8.2f} {achieved / ceiling:9.1%}"
            )
    if not args.skip_sweeps:
        print(
            f"\nsweep of 8 seeds (MNIST-size quickstart net, BN, 2,000 steps each), wall seconds incl. start-up and compiling, "
            f"median (min-max) of {args.sweep_repeats}"
        )
        results = sweep_seconds(args.sweep_repeats)
        base = statistics.median(results["bnlab run (defaults), 8 seeds"])
        for label, values in results.items():
            med = statistics.median(values)
            print(f"  {label:<42} {med:7.1f} s ({min(values):.1f}-{max(values):.1f})   bnlab throughput {med / base:4.2f}x of this")


if __name__ == "__main__":
    main()
