"""Where a run's time goes: setting up its programs and initial state, compiling (every XLA
compilation of the process, counted through `jax.monitoring`), training chunks, evaluation,
diagnostics, and writing its files. A finished run's status records these as `profile`, and
benchmarks/reproduce_profile.py adds them up over a reproduction."""

from __future__ import annotations

import time
from contextlib import contextmanager

PHASES = ("setup", "train", "evaluate", "diagnostics", "write")
_COMPILE_EVENTS = (
    "/jax/core/compile/jaxpr_trace_duration",
    "/jax/core/compile/jaxpr_to_mlir_module_duration",
    "/jax/core/compile/backend_compile_duration",
)
_clock = {"seconds": 0.0, "programs": 0, "listening": False}


def _listen() -> None:
    """Register the process's compile listeners once (tracing, lowering, XLA's compile)."""
    if _clock["listening"]:
        return
    from jax import monitoring

    def on_duration(name: str, seconds: float, **_) -> None:
        if name in _COMPILE_EVENTS:
            _clock["seconds"] += seconds
            _clock["programs"] += name == _COMPILE_EVENTS[-1]

    monitoring.register_event_duration_secs_listener(on_duration)
    _clock["listening"] = True


def compile_clock() -> tuple[float, int]:
    """Seconds spent compiling in this process so far, and how many programs XLA compiled (a
    program loaded from the persistent cache is not compiled again and does not count)."""
    _listen()
    return _clock["seconds"], _clock["programs"]


class Phases:
    """Seconds per phase of a run (or of a vmapped group, shared out between its runs), compiling
    taken out of the phase it happened in and counted apart."""

    def __init__(self):
        self.seconds = dict.fromkeys(PHASES, 0.0)
        self.compile_seconds, self.programs = 0.0, 0

    @contextmanager
    def timing(self, phase: str):
        t0, (c0, p0) = time.perf_counter(), compile_clock()
        try:
            yield
        finally:
            c1, p1 = compile_clock()
            self.seconds[phase] += time.perf_counter() - t0 - (c1 - c0)
            self.compile_seconds += c1 - c0
            self.programs += p1 - p0

    def record(self, share: int = 1) -> dict[str, float]:
        """The run's profile: its phases and its compiling, divided by `share` runs (a vmapped group's)."""
        out = {k: round(v / share, 4) for k, v in self.seconds.items()}
        out["compile"] = round(self.compile_seconds / share, 4)
        out["programs_compiled"] = round(self.programs / share, 2)
        return out
