"""Runs compute their matrix products in full float32 on every backend (a GPU would otherwise use
TF32 for float32 matmuls, JAX's default precision there); checked in the programs a run compiles."""

import re

import jax.numpy as jnp
from conftest import run_plan

from bnlab.train.evaluation import Evaluator
from bnlab.train.program import TrainProgram


def dot_precisions(lowered_text: str) -> list[str]:
    return re.findall(r"stablehlo\.dot_general .*precision = \[(\w+), \w+\]", lowered_text)


def test_a_runs_training_and_evaluation_programs_use_float32_matmuls(tmp_path, monkeypatch):
    seen: dict[str, list[str]] = {}
    compile_chunk, evaluate = TrainProgram.compile, Evaluator.evaluate

    def spy_compile(self, state):
        seen["chunk"] = dot_precisions(self._chunk.lower(state, self.x_train, self.y_train, jnp.int32(1), self.numbers).as_text())
        return compile_chunk(self, state)

    def spy_evaluate(self, state, x, y, numbers=None):
        bs, attributes = self.eval_batch_size, self._model_numbers(numbers)
        mask = jnp.ones(bs)
        seen["evaluation"] = dot_precisions(self._eval.lower(state.params, state.batch_stats, x[:bs], y[:bs], mask, attributes).as_text())
        return evaluate(self, state, x, y, numbers)

    monkeypatch.setattr(TrainProgram, "compile", spy_compile)
    monkeypatch.setattr(Evaluator, "evaluate", spy_evaluate)
    overrides = ["model.norm=batch", "model.width=16", "model.depth=2", "train.steps=4", "train.log_every=2", "train.eval_batch_size=50"]
    counts, _ = run_plan(overrides, tmp_path / "o", workers=1)
    assert counts == {"done": 1}
    for program in ("chunk", "evaluation"):
        assert seen[program], f"no matmuls found in the {program} program"
        assert set(seen[program]) == {"HIGHEST"}, (program, seen[program])
