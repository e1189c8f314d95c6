"""Where a small CNN's training step spends its time: a bare `jax.jit` step of the benchmark CNN
(no bnlab), with XLA's convolution or with convolutions as 9 shifted slices x one matmul, with and
without BN, against the same network in PyTorch eager, in one process (on a CPU, or on the GPU
that JAX uses, PyTorch there too).

    python benchmarks/cnn_conv.py [--steps 200] [--repeats 5] [--batch 60]

The network is benchmarks/speed.py's CNN: two stages of one 3x3 conv (16, 32 channels) + ReLU +
2x2 max pooling (bnlab's three-selection pooling), a linear classifier; batches of 28x28x1, SGD.
Medians of `repeats` blocks of `steps` steps after a warm-up.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import jax
import jax.numpy as jnp
import optax
from timing import torch_device, torch_sync

from bnlab.nn.kernels import max_pool_2x2


def conv_xla(x, w):
    return jax.lax.conv_general_dilated(x, w, (1, 1), "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC"))


def conv_slices(x, w):
    """3x3 SAME convolution as the 9 shifted copies of the padded input, concatenated, times one matrix."""
    n, h, wd, c = x.shape
    xp = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
    cols = jnp.concatenate([xp[:, i : i + h, j : j + wd, :] for i in range(3) for j in range(3)], axis=-1)
    return (cols.reshape(n * h * wd, 9 * c) @ w.reshape(9 * c, -1)).reshape(n, h, wd, -1)


def batch_norm(x, g, b):
    mean = x.mean((0, 1, 2))
    var = jnp.mean(jnp.square(x - mean), (0, 1, 2))
    return (x - mean) * jax.lax.rsqrt(var + 1e-5) * g + b


def init(key):
    k1, k2, k3 = jax.random.split(key, 3)
    return {
        "w1": jax.random.normal(k1, (3, 3, 1, 16)) * 0.3,
        "w2": jax.random.normal(k2, (3, 3, 16, 32)) * 0.1,
        "head": jax.random.normal(k3, (7 * 7 * 32, 10)) * 0.01,
        "g1": jnp.ones(16),
        "b1": jnp.zeros(16),
        "g2": jnp.ones(32),
        "b2": jnp.zeros(32),
    }


def make_step(conv, bn: bool):
    def forward(p, x):
        for k in (1, 2):
            x = conv(x, p[f"w{k}"])
            if bn:
                x = batch_norm(x, p[f"g{k}"], p[f"b{k}"])
            x = max_pool_2x2(jax.nn.relu(x))
        return x.reshape(x.shape[0], -1) @ p["head"]

    def loss(p, x, y):
        return optax.softmax_cross_entropy_with_integer_labels(forward(p, x), y).mean()

    @partial(jax.jit, donate_argnums=0)
    def step(p, x, y):
        return jax.tree.map(lambda w, g: w - 0.1 * g, p, jax.grad(loss)(p, x, y))

    return step


def jax_rate(conv, bn: bool, steps: int, repeats: int, batch: int) -> float:
    x = jax.random.normal(jax.random.PRNGKey(1), (batch, 28, 28, 1))
    y = jnp.arange(batch) % 10
    step, p = make_step(conv, bn), init(jax.random.PRNGKey(0))
    p = jax.block_until_ready(step(p, x, y))
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(steps):
            p = step(p, x, y)
        jax.block_until_ready(p)
        rates.append(steps / (time.perf_counter() - t))
    return statistics.median(rates)


def torch_rate(bn: bool, steps: int, repeats: int, batch: int) -> float | None:
    try:
        import torch
        from torch import nn
    except ImportError:
        return None
    layers, ch = [], 1
    for out in (16, 32):
        layers += [nn.Conv2d(ch, out, 3, padding=1, bias=not bn)] + ([nn.BatchNorm2d(out)] if bn else []) + [nn.ReLU(), nn.MaxPool2d(2)]
        ch = out
    device = torch_device(torch)
    net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(7 * 7 * 32, 10)).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    x, y = torch.randn(batch, 1, 28, 28, device=device), torch.arange(batch, device=device) % 10

    def block(n):
        for _ in range(n):
            opt.zero_grad()
            nn.functional.cross_entropy(net(x), y).backward()
            opt.step()
        torch_sync(torch, device)

    block(20)
    rates = []
    for _ in range(repeats):
        t = time.perf_counter()
        block(steps)
        rates.append(steps / (time.perf_counter() - t))
    return statistics.median(rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=60)
    args = parser.parse_args()
    print(f"steps/s, median of {args.repeats} blocks of {args.steps}, batch {args.batch}; backend {jax.default_backend()}")
    for bn in (False, True):
        torch = torch_rate(bn, args.steps, args.repeats, args.batch)
        xla = jax_rate(conv_xla, bn, args.steps, args.repeats, args.batch)
        slices = jax_rate(conv_slices, bn, args.steps, args.repeats, args.batch)
        ref = f"{torch:6.0f}" if torch else "  (no torch)"
        ratio = f"{xla / torch:.2f}x / {slices / torch:.2f}x" if torch else "-"
        label = "BN" if bn else "no BN"
        print(f"{label:<6} PyTorch eager {ref} | jax.jit, XLA conv {xla:6.0f} | jax.jit, slices x matmul {slices:6.0f} | of PyTorch {ratio}")


if __name__ == "__main__":
    main()
