"""Inference latency: BN folded into the layer below vs unfolded BN (evaluation mode) vs a net
without BN, for the MLP and the CNN at several batch sizes.

    python benchmarks/inference_latency.py [--repeats 50]

Each forward pass is jitted; the median of `repeats` timed calls (after compiling) is reported in
microseconds, and the ratio unfolded / folded.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
from flax import nnx
from timing import median_seconds

from bnlab.config.schema import Config, DataConfig, ModelConfig, TrainConfig
from bnlab.data.dataset import load as load_dataset
from bnlab.nn.fold import folded_model
from bnlab.train.program import TrainProgram

MODELS = {
    "mlp 784-100-100-100-10": ModelConfig(name="mlp", depth=3, width=100, activation="sigmoid"),
    "cnn 28x28, 2 stages x 2 convs, width 32": ModelConfig(name="cnn", depth=2, width=32, convs_per_stage=2, activation="relu"),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=50)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 64, 1024])
    args = parser.parse_args()
    dcfg = DataConfig(name="synthetic", synthetic_size=2000, synthetic_shape=[28, 28, 1])
    dataset = load_dataset(dcfg)
    print(f"backend: {jax.default_backend()}; median latency in microseconds")
    print(f"{'model':<42} {'batch':>6} {'no BN':>10} {'BN':>10} {'BN folded':>10} {'BN/folded':>10}")
    for label, mcfg in MODELS.items():
        fns = {}
        for norm in ("none", "batch"):
            cfg = Config(data=dcfg, model=ModelConfig(**{**mcfg.__dict__, "norm": norm}), train=TrainConfig(batch_size=60, steps=10))
            t = TrainProgram(cfg, dataset)
            state, _ = t.train_chunk(t.init(0), 10)  # non-trivial statistics
            fns[norm] = jax.jit(lambda x, t=t, s=state: t.model.apply(s.params, s.batch_stats, x, train=False).logits)
            if norm == "batch":
                graphdef, params = nnx.split(folded_model(cfg.model, dataset.image_shape, dataset.num_classes, state.params, state.batch_stats))
                fns["folded"] = jax.jit(lambda x, g=graphdef, p=params: nnx.merge(g, p)(x, train=False))
        for bs in args.batch_sizes:
            x = jnp.asarray(dataset.x_train[:bs])
            us = {k: median_seconds(lambda f=f, x=x: f(x), args.repeats) * 1e6 for k, f in fns.items()}
            print(f"{label:<42} {bs:>6} {us['none']:>10.1f} {us['batch']:>10.1f} {us['folded']:>10.1f} {us['batch'] / us['folded']:>9.2f}x")


if __name__ == "__main__":
    main()
