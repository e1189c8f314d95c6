"""Orbax checkpoints of a run's TrainState, so a long run resumes where it stopped.

Only the latest checkpoint is kept; orbax finalises a step directory atomically, so a process
killed mid-save leaves the previous checkpoint usable.
"""

from __future__ import annotations

from pathlib import Path

import jax

from .state import TrainState


class Checkpoints:
    def __init__(self, directory: Path):
        import orbax.checkpoint as ocp  # imported only by runs that checkpoint

        self._ocp = ocp
        options = ocp.CheckpointManagerOptions(max_to_keep=1, enable_async_checkpointing=False, create=True)
        self.manager = ocp.CheckpointManager(Path(directory).absolute(), options=options)

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, state: TrainState) -> None:
        step = int(state.step)
        if self.manager.latest_step() != step:
            self.manager.save(step, args=self._ocp.args.StandardSave(state._asdict()))
            self.manager.wait_until_finished()

    def restore(self, template: TrainState) -> TrainState:
        """The latest checkpoint, with the structure and dtypes of `template`."""
        abstract = jax.tree.map(self._ocp.utils.to_shape_dtype_struct, template._asdict())
        restored = self.manager.restore(self.manager.latest_step(), args=self._ocp.args.StandardRestore(abstract))
        return TrainState(**restored)

    def close(self) -> None:
        self.manager.close()
