"""Training speed: bnlab against a plain PyTorch loop, the Flax examples' `jax.jit` step and a per-step `nnx.jit` loop, sweeps of 8
seeds end to end, and achieved FLOP/s against this machine's matmul FLOP/s.

    python benchmarks/speed.py [--steps 2000] [--repeats 5] [--blocks 3] [--sweep-repeats 3] [--skip-sweeps | --skip-single] [--models mlp,cnn]

Models (synthetic 28x28 data, batch 60, SGD lr 0.1), each with norm none and batch:
  - mlp: the quickstart network, 784-100-100-100-10 sigmoid (Ioffe & Szegedy's MNIST net);
  - cnn: two stages of one 3x3 conv (16, 32 channels) + ReLU + 2x2 max pooling, linear classifier.
Single-run rows: steps/s of blocks of `steps` steps (CNN: steps/10, at least 50) after a warm-up
that compiles; the four implementations (bnlab, PyTorch eager, the Flax examples' pure `jax.jit`
step, a per-step `nnx.jit` loop) run on the same data, each in a process of its own (as a user
runs one; in one process the frameworks' idle worker threads slowed each other: bnlab's CNN blocks
dropped from ~320 to ~180 steps/s after PyTorch blocks, and PyTorch's rose after bnlab's), one
process per implementation in every one of `repeats` rounds (in turn, the order rotating), each
timing `--blocks` blocks of every model; the ratios are taken within a round: this machine's speed
drifts between minutes, and a ratio of medians taken minutes apart mixes that drift in.
Sweep rows: 8 seeds of the MNIST-size quickstart network (BN, 2,000 steps each), wall time of the
whole thing including start-up and compilation: one `bnlab run` with its defaults (vmapped on an
accelerator, a worker per core on a CPU), the same with `--vectorize off --workers 1` (one run
after another in one process), and eight `bnlab run` processes one after another (a shell loop
over a training script), with bnlab's persistent compilation cache on and off for the loop, each
measurement from an empty cache; then the sweeps of benchmarks/sweep_compile.py (6 learning rates
x 3 seeds, and the quickstart), also from an empty cache: wall time and how many training programs
were compiled.
The PyTorch rows need torch (`pip install torch`; a CPU build suffices) and are skipped without
it; where JAX runs on a GPU, PyTorch runs on it too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import sweep_compile
from flax import nnx
from timing import median_seconds, torch_device, torch_sync

from bnlab.config.schema import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig
from bnlab.data.dataset import load as load_dataset
from bnlab.measure.step_time import step_flops
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


NORMS = ("none", "batch")
IMPLEMENTATIONS = ("bnlab", "torch", "jax.jit", "nnx.jit")


def block_steps(model: str, steps: int) -> int:
    return steps if model == "mlp" else max(steps // 10, 50)


def implementation_block(implementation: str, model: str, norm: str) -> Callable[[int], None] | None:
    cfg = config(model, norm)
    if implementation == "bnlab":
        return bnlab_block(cfg)
    if implementation == "torch":
        return torch_block(model, norm)
    return functional_jit_block(cfg) if implementation == "jax.jit" else nnx_jit_block(cfg)


def rates_in_this_process(implementation: str, models: list[str], steps: int, blocks: int) -> dict[str, list[float]]:
    """Steps/s of `blocks` blocks of every model with one implementation, after one compiling warm-up
    each, the models in turn within every block round; {} for PyTorch without torch."""
    runs = {f"{m}/{n}": (implementation_block(implementation, m, n), block_steps(m, steps)) for m in models for n in NORMS}
    runs = {key: run for key, run in runs.items() if run[0] is not None}
    for block, n in runs.values():
        block(min(n, 50))
    out: dict[str, list[float]] = {key: [] for key in runs}
    for _ in range(blocks):
        for key, (block, n) in runs.items():
            t = time.perf_counter()
            block(n)
            out[key].append(n / (time.perf_counter() - t))
    return out


def separate_process_rates(models: list[str], steps: int, repeats: int, blocks: int) -> dict[str, dict[str, list[float]]]:
    """{implementation: {"model/norm": [the median block rate of each round]}}: every round runs one
    process per implementation, in an order that rotates between rounds."""
    out: dict[str, dict[str, list[float]]] = {i: {} for i in IMPLEMENTATIONS}
    for r in range(repeats):
        for implementation in IMPLEMENTATIONS[r % len(IMPLEMENTATIONS) :] + IMPLEMENTATIONS[: r % len(IMPLEMENTATIONS)]:
            command = [
                sys.executable,
                __file__,
                "--child",
                implementation,
                "--models",
                ",".join(models),
                "--steps",
                str(steps),
                "--blocks",
                str(blocks),
            ]
            done = subprocess.run(command, check=True, capture_output=True, text=True, cwd=ROOT)
            for key, rates in json.loads(done.stdout.strip().splitlines()[-1]).items():
                out[implementation].setdefault(key, []).append(statistics.median(rates))
    return out


def bnlab_block(cfg: Config) -> Callable[[int], None]:
    """bnlab's compiled training chunk."""
    trainer = TrainProgram(cfg, load_dataset(cfg.data))
    holder = {"s": trainer.init(0)}

    def block(n):
        holder["s"], summary = trainer.train_chunk(holder["s"], n)
        jax.block_until_ready(summary)

    return block


def flops_of(cfg: Config) -> float:
    """XLA's count of the FLOPs of one forward + backward pass of the model on one batch."""
    trainer = TrainProgram(cfg, load_dataset(cfg.data))
    return step_flops(trainer, trainer.init(0))


def nnx_jit_block(cfg: Config) -> Callable[[int], None]:
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

    return block


def functional_jit_block(cfg: Config) -> Callable[[int], None]:
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

    return block


def torch_block(model: str, norm: str) -> Callable[[int], None] | None:
    """A plain eager PyTorch loop, the way most users write one (default threads; on the GPU where JAX
    uses one, data and net there, synchronised at the block's end); None without torch."""
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
    device = torch_device(torch)
    net = nn.Sequential(*layers).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    ds = load_dataset(DATA)
    x = torch.from_numpy(np.ascontiguousarray(ds.x_train.transpose(0, 3, 1, 2))).to(device)
    y = torch.from_numpy(ds.y_train.astype(np.int64)).to(device)
    n = len(y) // BATCH
    loss_fn = nn.CrossEntropyLoss()

    def block(k):
        for i in range(k):
            j = i % n
            opt.zero_grad()
            loss = loss_fn(net(x[j * BATCH : (j + 1) * BATCH]), y[j * BATCH : (j + 1) * BATCH])
            loss.backward()
            opt.step()
        torch_sync(torch, device)

    return block


def torch_name() -> str:
    try:
        import torch
    except ImportError:
        return "(no torch)"
    device = torch_device(torch)
    return f"{torch.__version__}, " + (torch.cuda.get_device_name() if device == "cuda" else "cpu")


def matmul_flops(repeats: int = 20) -> float:
    """This machine's practical ceiling: float32 matmul FLOP/s through XLA at its default precision
    (median; 2048^2 on a CPU, 8192^2 to fill an accelerator)."""
    n = 2048 if jax.default_backend() == "cpu" else 8192
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n))
    f = jax.jit(lambda a: a @ a)
    return 2 * n**3 / median_seconds(lambda: f(a), repeats)


def sweep_seconds(repeats: int) -> dict[str, list[float]]:
    """Wall time of 8 seeds: one bnlab command (defaults: vmapped on an accelerator, a worker per core
    on a CPU), the same command running them one by one, and a loop of 8 processes. Every measurement
    starts from its own empty compilation cache (a user's first sweep; the loop's processes share
    one), so that none is faster for running after another that compiled the same programs."""
    cfg = textwrap_config()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "sweep.yaml"
        path.write_text(cfg)
        bnlab = [sys.executable, "-m", "bnlab", "run", str(path), "--quiet"]
        loop = [bnlab + [f"sweep.grid.seed=[{seed}]"] for seed in range(8)]  # a folder per config
        measurements = [  # (label, commands, compilation cache on)
            ("bnlab run (defaults), 8 seeds", [bnlab], True),
            ("bnlab run --vectorize off --workers 1", [bnlab + ["--vectorize", "off", "--workers", "1"]], True),
            ("8 separate processes, compile cache on", loop, True),
            ("8 separate processes, compile cache off", loop, False),
        ]
        out: dict[str, list[float]] = {label: [] for label, _, _ in measurements}
        for r in range(repeats):
            for m, (label, commands, cached) in enumerate(measurements):
                env = {**os.environ, "BNLAB_JAX_CACHE": f"{tmp}/cache-{r}-{m}" if cached else "off"}
                t = time.perf_counter()
                for i, command in enumerate(commands):
                    subprocess.run(command + ["--out", f"{tmp}/out-{r}-{m}/{i}"], check=True, cwd=ROOT, capture_output=True, env=env)
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


def paired_ratio(ours: list[float], theirs: list[float] | None) -> str:
    """Median (min-max) over rounds of bnlab's rate / the other's in the same round."""
    if not theirs:
        return "      n/a"
    r = [a / b for a, b in zip(ours, theirs)]
    return f"{statistics.median(r):5.2f}x ({min(r):.2f}-{max(r):.2f})"


def single_run_rows(models: list[str], steps: int, repeats: int, blocks: int) -> None:
    ceiling = matmul_flops()
    print(f"float32 matmul ceiling {ceiling / 1e9:.1f} GFLOP/s (median)")
    print(
        f"\nsteps/s, median (min-max) over {repeats} rounds of each round's median of {blocks} {steps}-step blocks "
        f"(CNN: {block_steps('cnn', steps)}), every implementation in its own process in each round; "
        "ratio = bnlab / other in the same round, median (min-max)"
    )
    header = f"{'model':<5} {'norm':<6} {'bnlab':<20} {'PyTorch eager':<20} {'jax.jit pure step':<20} {'nnx.jit per step':<20}"
    print(header + f" {'vs torch':<18} {'vs jax.jit':<18} {'vs nnx.jit':<18} {'GFLOP/s':>8} {'of ceiling':>10}")
    r = separate_process_rates(models, steps, repeats, blocks)
    for model in models:
        for norm in NORMS:
            key = f"{model}/{norm}"
            ours, torch, functional, per_step = (r[i].get(key) for i in IMPLEMENTATIONS)
            achieved = flops_of(config(model, norm)) * statistics.median(ours)
            print(
                f"{model:<5} {norm:<6} {fmt(ours):<20} {fmt(torch) if torch else 'skipped (no torch)':<20} {fmt(functional):<20} "
                f"{fmt(per_step):<20} {paired_ratio(ours, torch):<18} {paired_ratio(ours, functional):<18} "
                f"{paired_ratio(ours, per_step):<18} {achieved / 1e9:8.2f} {achieved / ceiling:9.1%}"
            )


def sweep_rows(repeats: int) -> None:
    print(
        f"\nsweep of 8 seeds (MNIST-size quickstart net, BN, 2,000 steps each), wall seconds incl. start-up and compiling, "
        f"median (min-max) of {repeats}"
    )
    results = sweep_seconds(repeats)
    base = statistics.median(results["bnlab run (defaults), 8 seeds"])
    for label, values in results.items():
        med = statistics.median(values)
        print(f"  {label:<42} {med:7.1f} s ({min(values):.1f}-{max(values):.1f})   bnlab throughput {med / base:4.2f}x of this")
    print(
        "\nsweeps from a fresh compilation cache, one `bnlab run` each (benchmarks/sweep_compile.py compares them with an "
        f"earlier commit): wall seconds, median (min-max) of {repeats}, and training programs compiled"
    )
    with tempfile.TemporaryDirectory() as tmp:
        lr_sweep = Path(tmp) / "lr_sweep.yaml"
        lr_sweep.write_text(sweep_compile.sweep_config(1000))
        jobs = (("6 lr x 3 seeds (digits, 1,000 steps each)", lr_sweep), ("configs/quickstart.yaml", ROOT / "configs" / "quickstart.yaml"))
        for job, path in jobs:
            runs = [sweep_compile.run(ROOT, path, Path(tmp) / f"{path.stem}{r}") for r in range(repeats)]
            seconds = [t for t, *_ in runs]
            print(f"  {job:<42} {statistics.median(seconds):7.1f} s ({min(seconds):.1f}-{max(seconds):.1f})   {runs[0][1]} compiled")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--blocks", type=int, default=3, help="timed blocks per model in each process")
    parser.add_argument("--sweep-repeats", type=int, default=3)
    parser.add_argument("--skip-sweeps", action="store_true")
    parser.add_argument("--skip-single", action="store_true", help="only the sweep rows")
    parser.add_argument("--models", default=",".join(MODELS), help=f"comma-separated, from {', '.join(MODELS)}")
    parser.add_argument("--child", choices=IMPLEMENTATIONS, help=argparse.SUPPRESS)  # one round's process: prints JSON rates
    args = parser.parse_args()
    models = args.models.split(",")
    unknown = [m for m in models if m not in MODELS]
    if unknown:
        parser.error(f"--models: unknown {', '.join(unknown)}; allowed: {', '.join(MODELS)}")
    if args.child:
        print(json.dumps(rates_in_this_process(args.child, models, args.steps, args.blocks)))
        return
    print(f"backend: {jax.default_backend()} ({jax.devices()[0].device_kind}), {os.cpu_count()} CPU cores; PyTorch {torch_name()}")
    if not args.skip_single:
        single_run_rows(models, args.steps, args.repeats, args.blocks)
    if not args.skip_sweeps:
        sweep_rows(args.sweep_repeats)


if __name__ == "__main__":
    main()
