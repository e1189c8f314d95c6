"""The cost of a training step, measured as the benchmarks measure it, never read from training logs.

Each arm (a config) is compiled once; then, in every round, each arm trains one block of steps, all
in this process. The order is balanced: round 2k runs the arms rotated by k, round 2k+1 the same
order reversed, so with an even number of rounds every pair of arms runs in each order equally
often and no arm gains from always following another. A ratio of two arms is taken within a round
(this machine's speed drifts between minutes) and summarised over rounds.

The steps are timed at learning rate 0, a traced number: the program and its arithmetic are those
of training (the gradients, the optimiser's update, BN's statistics), but the weights stay at their
initial values, so a configuration that diverges in training is timed all the same; its cost does
not depend on whether it converges. XLA's FLOP count of one forward and backward pass stands beside
the times as a deterministic companion (library calls such as an eigendecomposition count as 0).
"""

from __future__ import annotations

import time
from typing import Any

import jax

from ..config.schema import Config
from ..data.dataset import Dataset


def step_flops(program, state) -> float:
    """XLA's count of the FLOPs of one forward and backward pass of `program`'s model on one batch."""
    x, y = program.x_train[: program.batch_size], program.y_train[: program.batch_size]
    loss_and_grad = program.model.jit(jax.value_and_grad(lambda p: program.model.loss(p, state.batch_stats, x, y)[0]))
    cost = loss_and_grad.lower(state.params).compile().cost_analysis()
    cost = cost[0] if isinstance(cost, list) else cost
    return float((cost or {}).get("flops", float("nan")))


def interleaved_call_seconds(calls: dict[str, Any], *, rounds: int = 8, block_seconds: float = 0.25, min_calls: int = 5) -> dict[str, Any]:
    """Seconds per call of every arm's zero-argument `calls[arm]()` (which must block until its
    result is ready) in each of `rounds` balanced rounds, as the training steps are timed: inference
    latency, or any other jitted function. Returns arms, rounds, block_calls, seconds_per_call."""
    if rounds < 1:
        raise ValueError(f"rounds: {rounds} must be at least 1")
    arms = list(calls)

    def block(arm: str, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            calls[arm]()
        return time.perf_counter() - t0

    sizes = {}
    for a in arms:  # compile, then size the block from a short warm-up
        block(a, 1)
        per_call = block(a, min_calls) / min_calls
        sizes[a] = max(min_calls, int(block_seconds / max(per_call, 1e-9)))
    seconds: dict[str, list[float]] = {a: [] for a in arms}
    for r in range(rounds):
        for a in round_order(arms, r):
            seconds[a].append(block(a, sizes[a]) / sizes[a])
    return {"arms": arms, "rounds": rounds, "block_calls": sizes, "seconds_per_call": seconds}


def round_order(arms: list[str], r: int) -> list[str]:
    """The arms' order in round r: rotated by r // 2, reversed in odd rounds."""
    k = (r // 2) % len(arms)
    order = arms[k:] + arms[:k]
    return order[::-1] if r % 2 else order


def interleaved_step_seconds(
    configs: dict[str, Config], dataset: Dataset, *, rounds: int = 8, block_seconds: float = 0.25, min_steps: int = 5, seed: int = 0
) -> dict[str, Any]:
    """Seconds per training step of every arm in each of `rounds` rounds. Each arm's block is sized
    from its warm-up to last about `block_seconds`. Returns a JSON-able record: arms, rounds,
    block_steps, seconds_per_step (arm -> one value per round), flops_per_step, backend."""
    from ..train.program import TrainProgram

    if rounds < 1:
        raise ValueError(f"rounds: {rounds} must be at least 1")
    arms = list(configs)
    programs = {a: TrainProgram(cfg, dataset) for a, cfg in configs.items()}
    states = {a: p.init(seed) for a, p in programs.items()}
    flops = {a: step_flops(p, states[a]) for a, p in programs.items()}
    numbers = {a: {**p.numbers, "optim.lr": jax.numpy.float32(0.0)} for a, p in programs.items()}

    def block(arm: str, steps: int) -> float:
        t0 = time.perf_counter()
        states[arm], summary = programs[arm].train_chunk(states[arm], steps, numbers[arm])
        jax.block_until_ready(summary)
        return time.perf_counter() - t0

    steps = {}
    for a in arms:  # compile, then size the block from a short warm-up
        block(a, min_steps)
        per_step = block(a, min_steps) / min_steps
        steps[a] = max(min_steps, int(block_seconds / max(per_step, 1e-9)))
        block(a, steps[a])
    seconds: dict[str, list[float]] = {a: [] for a in arms}
    for r in range(rounds):
        for a in round_order(arms, r):
            seconds[a].append(block(a, steps[a]) / steps[a])
    return {
        "arms": arms,
        "rounds": rounds,
        "block_steps": steps,
        "seconds_per_step": seconds,
        "flops_per_step": flops,
        "backend": jax.default_backend(),
    }
