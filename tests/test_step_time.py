"""Step times measured as the benchmarks measure them: interleaved rounds in one process, at
learning rate 0, so that an arm whose training diverges is timed all the same."""

import dataclasses
import math
import time

import jax
import numpy as np
import pytest

from bnlab.config.schema import Config, DataConfig, ModelConfig, OptimConfig, TrainConfig
from bnlab.data.dataset import load
from bnlab.measure.step_time import interleaved_step_seconds, round_order, step_flops
from bnlab.train.program import TrainProgram


def _config(norm: str, lr: float) -> Config:
    return Config(
        data=DataConfig(name="digits"),
        model=ModelConfig(depth=2, width=16, norm=norm, activation="relu"),
        optim=OptimConfig(name="sgd", lr=lr),
        train=TrainConfig(batch_size=32, steps=1000),
    )


def test_an_arm_that_diverges_in_training_is_timed_all_the_same():
    dataset = load(DataConfig(name="digits"))
    exploding = _config("none", 1e6)
    program = TrainProgram(exploding, dataset)  # trained, this arm diverges within a few steps
    _, summary = program.train_chunk(program.init(0), 20)
    assert not math.isfinite(float(summary["train_loss"]))
    timing = interleaved_step_seconds({"diverges": exploding, "bn": _config("batch", 0.1)}, dataset, rounds=3, block_seconds=0.02)
    assert timing["arms"] == ["diverges", "bn"] and timing["rounds"] == 3
    for arm in ("diverges", "bn"):
        seconds = timing["seconds_per_step"][arm]
        assert len(seconds) == 3 and all(math.isfinite(s) and s > 0 for s in seconds)
        assert timing["block_steps"][arm] >= 5
    assert timing["flops_per_step"]["bn"] > timing["flops_per_step"]["diverges"] > 0  # BN adds arithmetic


def test_step_flops_counts_a_forward_and_backward_pass():
    """XLA's count for a linear layer of the MLP grows with its width as the matmuls do."""
    dataset = load(DataConfig(name="digits"))
    flops = []
    for width in (16, 32):
        cfg = dataclasses.replace(_config("none", 0.1), model=ModelConfig(depth=1, width=width, norm="none"))
        program = TrainProgram(cfg, dataset)
        flops.append(step_flops(program, program.init(0)))
    # forward + backward of x (32x64) @ W (64 x width) and W2 (width x 10): ~6 * 32 * width * 74 multiply-adds x 2
    for width, f in zip((16, 32), flops):
        assert 0.5 * 6 * 32 * width * 74 < f < 3 * 6 * 32 * width * 74, (width, f)
    assert np.isclose(flops[1] / flops[0], 2.0, rtol=0.2)


def test_timing_runs_at_learning_rate_zero():
    """The timed steps leave the weights where they started: the arithmetic of training, no progress."""
    dataset = load(DataConfig(name="digits"))
    program = TrainProgram(_config("batch", 0.5), dataset)
    state = program.init(0)
    before = jax.tree.map(np.asarray, state.params)
    state, _ = program.train_chunk(state, 10, {**program.numbers, "optim.lr": jax.numpy.float32(0.0)})
    after = jax.tree.map(np.asarray, state.params)
    assert all(np.array_equal(a, b) for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after)))


def test_every_pair_of_arms_runs_in_each_order_equally_often():
    arms = ["a", "b", "c", "d"]
    for rounds in (2, 4, 8, 12):
        orders = [round_order(arms, r) for r in range(rounds)]
        assert all(sorted(o) == arms for o in orders)
        for x in arms:
            for y in arms:
                if x != y:
                    first = sum(o.index(x) < o.index(y) for o in orders)
                    assert first == rounds // 2, (rounds, x, y)


def test_calls_are_timed_in_balanced_rounds_and_a_slower_call_reads_slower():
    from bnlab.measure.step_time import interleaved_call_seconds

    order = []

    def call(arm, seconds):
        def run():
            order.append(arm)
            time.sleep(seconds)

        return run

    timing = interleaved_call_seconds({"fast": call("fast", 0.001), "slow": call("slow", 0.004)}, rounds=4, block_seconds=0.01, min_calls=2)
    assert timing["arms"] == ["fast", "slow"] and all(len(v) == 4 for v in timing["seconds_per_call"].values())
    ratios = [s / f for s, f in zip(timing["seconds_per_call"]["slow"], timing["seconds_per_call"]["fast"])]
    assert min(ratios) > 1.5  # 4 ms against 1 ms, whatever the machine adds
    with pytest.raises(ValueError, match="rounds"):
        interleaved_call_seconds({"a": call("a", 0)}, rounds=0)
