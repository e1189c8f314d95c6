"""Where the time of bnlab's training step goes on this machine: a `jax.profiler` trace of one
compiled chunk, read back with xprof, each XLA op's time on every thread (its own and that of the
thread-pool tasks it scheduled) grouped by what the ops compute.

    pip install xprof   # the profile reader (not a bnlab dependency)
    python benchmarks/step_profile.py [--model cnn] [--norm batch] [--steps 200]

The models are benchmarks/speed.py's (the MLP 784-100-100-100-10; the CNN: two stages of one 3x3
conv, 16 and 32 channels, 2x2 max pooling; batch 60 of 28x28 synthetic images). Besides the
network's own work, the groups show what bnlab's loop adds to a bare step: the step metrics
(gradient norm of every layer, accuracy, their running sums), the gather of the shuffled batch and
the epoch permutation (sorts, once per epoch, in the epoch loop around the step loop). XLA's CPU
backend emits one trace event per compiled op only with --xla_cpu_enable_xprof_traceme, which this
script sets; the tracing itself slows the step, so the shares matter here, not the absolute times.
Last, the wall time in which nothing ran, and how long work waited for a sleeping thread to wake
up (a pool task scheduled while the other thread had nothing to run), by the op that scheduled it.
"""

from __future__ import annotations

import argparse
import bisect
import collections
import glob
import json
import math
import os
import re
import sys
import tempfile

import jax
from speed import config

from bnlab.data.dataset import load
from bnlab.train.program import TrainProgram


def op_groups(hlo_text: str) -> dict[str, str]:
    """Each fusion or op of the compiled step -> a coarse group read from its jax op names."""
    groups = {}
    for line in hlo_text.splitlines():
        m = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = (\S+) (\w[\w\-]*)\(", line)
        if not m or m.group(3) in ("parameter", "constant", "get-tuple-element", "tuple", "bitcast"):
            continue
        name, shape, _ = m.groups()
        label = re.search(r"metadata=\{op_name=\"([^\"]*)\"", line)
        if label is None:  # made by XLA itself, e.g. the first half of a reduction split in two
            groups[name] = "ops without a jax name (XLA-made: split reductions, copies)"
            continue
        op = label.group(1)
        kind = "transpose (backward)" if "transpose(" in op else "forward"
        last = op.split("/")[-1]
        outside_model = "jvp(" not in op  # not under value_and_grad: the loop's own work
        per_epoch = op.startswith("jit(chunk)/while/body/") and not op.startswith("jit(chunk)/while/body/while/body/")
        if per_epoch or last == "sort":  # the epoch loop's own body (outside the step loop) computes only the permutation
            what, kind = "epoch permutation", "bookkeeping"
        elif outside_model and last == "gather":
            what, kind = "shuffled batch gather", "bookkeeping"
        elif outside_model and (shape.startswith("f32[]") or any(k in last for k in ("reduce_sum", "square", "sqrt"))):
            what, kind = "step metrics (gradient norms, accuracy, their sums)", "bookkeeping"
        elif outside_model and last in ("add", "mul", "sub"):
            what, kind = "optimiser update", "bookkeeping"
        elif "dot_general" in op or name.startswith(("ynn_fusion", "dot")):
            what = "matmuls (dense layers, convolutions)"
        elif "concatenate" in op or "pad" in op or "slice" in op or name.startswith(("concatenate", "slice_pad")):
            what = "patches: pad, slices, concatenation"
        elif "_where" in op or "select_n" in op or "ge" in last:
            what = "max pooling and ReLU selections"
        elif any(k in op for k in ("reduce_sum", "rsqrt", "div", "sub", "mean", "var")):
            what = "normalisation and loss reductions"
        else:
            what = "other elementwise"
        groups[name] = f"{what}, {kind}"
    return groups


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cnn", choices=["mlp", "cnn"])
    parser.add_argument("--norm", default="batch")
    parser.add_argument("--steps", type=int, default=200)
    args = parser.parse_args()
    # before JAX starts its CPU backend (at the first computation), so that importing this module
    # (tests/test_benchmarks.py reads traces with its Trace) changes nothing
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()
    try:
        from xprof.convert import raw_to_tool_data
    except ImportError:
        sys.exit("needs the profile reader: pip install xprof")
    cfg = config(args.model, args.norm)
    program = TrainProgram(cfg, load(cfg.data))
    state = program.init(0)
    state, summary = program.train_chunk(state, 20)  # compile and warm up
    jax.block_until_ready(summary)
    groups = op_groups(program.compiled.as_text())
    with tempfile.TemporaryDirectory() as trace_dir:
        jax.profiler.start_trace(trace_dir)
        state, summary = program.train_chunk(state, args.steps)
        jax.block_until_ready(summary)
        jax.profiler.stop_trace()
        paths = glob.glob(f"{trace_dir}/**/*.xplane.pb", recursive=True)
        data, _ = raw_to_tool_data.xspace_to_tool_data(paths, "trace_viewer@", {})
    events = json.loads(data)
    events = events["traceEvents"] if isinstance(events, dict) else events
    trace = Trace([e for e in events if e.get("ph") == "X" and "dur" in e], groups)
    by_op = trace.thread_time()
    total = sum(by_op.values())
    by_group = collections.Counter()
    for name, us in by_op.items():
        by_group[groups.get(name, name)] += us
    print(f"{args.model}, norm {args.norm}: {args.steps} steps traced; thread time per step {total / args.steps / 1e3:.2f} ms (with tracing)")
    for group, us in by_group.most_common():
        print(f"  {100 * us / total:5.1f}%  {group}")
    print("largest single ops:")
    for name, us in by_op.most_common(12):
        print(f"  {100 * us / total:5.1f}%  {us / args.steps:6.0f} us  {name} ({groups.get(name, name)})")
    wall, idle, waits = trace.idle()
    print(f"wall time per step {wall / args.steps:.0f} us (with tracing), nothing running for {idle / args.steps:.0f} us of it")
    print(f"work waited {sum(waits.values()) / args.steps:.0f} us per step for a sleeping thread to wake up; most in:")
    for name, us in waits.most_common(4):
        print(f"  {us / args.steps:6.1f} us  {name}")


BETWEEN_OPS = "XLA runtime between ops"


class Trace:
    """The traced chunk's XLA ops and the thread-pool tasks they scheduled. A library matmul (Eigen,
    YNNPACK) and a large elementwise loop run part of their work on the other thread as pool tasks,
    which the trace shows as `ThreadpoolListener::Region`s, not as the op; each is linked to the op
    during which it was scheduled (its `ThreadpoolListener::Record`, the same `bind_id`). Tasks
    scheduled between ops are XLA's runtime running the next ops (which count for themselves) or
    waiting for a loop body, not work of their own, and are left out."""

    def __init__(self, events: list[dict], groups: dict[str, str]):
        self.ops = sorted((e for e in events if e["name"] in groups), key=lambda e: e["ts"])
        self.by_thread: dict[int, list[dict]] = collections.defaultdict(list)
        for o in self.ops:
            self.by_thread[o["tid"]].append(o)
        self.starts = {tid: [o["ts"] for o in ops] for tid, ops in self.by_thread.items()}
        self.records = sorted((e for e in events if e["name"] == "ThreadpoolListener::Record" and "bind_id" in e), key=lambda e: e["ts"])
        regions = {(e["tid"], e["ts"]): e for e in events if e["name"] == "ThreadpoolListener::Region"}
        region_of = {
            e["bind_id"]: regions.get((e["tid"], e["ts"])) for e in events if e["name"] == "ThreadpoolListener::StartRegion" and "bind_id" in e
        }
        self.tasks, self.owner, self.scheduled_by = [], {}, {}
        owned: dict[int, list[tuple[float, float, str]]] = collections.defaultdict(list)  # per thread: (start, end, owner)
        for r in self.records:  # in time order: a task's tasks belong to the op it belongs to
            op = self.op_at(r["tid"], r["ts"])
            if op == BETWEEN_OPS:  # scheduled by a task: the task running on that thread then
                mine = owned[r["tid"]]
                i = bisect.bisect_right(mine, (r["ts"], math.inf))
                op = mine[i - 1][2] if i and r["ts"] <= mine[i - 1][1] else BETWEEN_OPS
            self.scheduled_by[id(r)] = op
            region = region_of.get(r["bind_id"])
            if region is not None and op != BETWEEN_OPS:
                self.tasks.append(region)
                self.owner[id(region)] = op
                bisect.insort(owned[region["tid"]], (region["ts"], region["ts"] + region["dur"], op))

    def op_at(self, tid: int, t: float) -> str:
        """The op running on thread `tid` at time `t`."""
        ops, i = self.by_thread.get(tid, []), bisect.bisect_right(self.starts.get(tid, []), t)
        return ops[i - 1]["name"] if i and t <= ops[i - 1]["ts"] + ops[i - 1]["dur"] else BETWEEN_OPS

    def thread_time(self) -> collections.Counter:
        """Each op's time on every thread: its own event's self time plus the self time of the pool
        tasks it scheduled (self time: less the ops and tasks nested in it, which count for
        themselves)."""
        by_op = collections.Counter()
        threads: dict[int, list[dict]] = collections.defaultdict(list)
        for e in self.ops + self.tasks:
            threads[e["tid"]].append(e)
        for events in threads.values():
            stack: list[list] = []  # [event, its children's time]
            for e in sorted(events, key=lambda e: (e["ts"], -e["dur"])) + [None]:
                while stack and (e is None or e["ts"] >= stack[-1][0]["ts"] + stack[-1][0]["dur"]):
                    done, inner = stack.pop()
                    by_op[self.owner.get(id(done), done["name"])] += max(0.0, done["dur"] - inner)
                    if stack:
                        stack[-1][1] += done["dur"]
                if e is not None:
                    stack.append([e, 0.0])
        return by_op

    def idle(self) -> tuple[float, float, collections.Counter]:
        """The traced wall time, the time in which nothing ran, and the time work waited for a
        sleeping thread, by op: a task scheduled while every other thread had nothing to run waits
        until one wakes up and starts running something, while the op's own thread works alone
        (overlapping waits count once, for the op that began them)."""
        busy = sorted(self.ops + self.tasks, key=lambda e: e["ts"])
        idle, end = 0.0, busy[0]["ts"]
        spans: dict[int, list[tuple[float, float]]] = collections.defaultdict(list)  # per thread, merged
        for e in busy:
            idle += max(0.0, e["ts"] - end)
            end = max(end, e["ts"] + e["dur"])
            mine = spans[e["tid"]]
            if mine and e["ts"] <= mine[-1][1]:
                mine[-1] = (mine[-1][0], max(mine[-1][1], e["ts"] + e["dur"]))
            else:
                mine.append((e["ts"], e["ts"] + e["dur"]))
        span_starts = {tid: [a for a, _ in mine] for tid, mine in spans.items()}
        waiting = []  # (from, until, op)
        for r in self.records:
            t, woke = r["ts"], []
            for tid, mine in spans.items():
                if tid != r["tid"]:
                    i = bisect.bisect_right(span_starts[tid], t)
                    if i and mine[i - 1][1] >= t:
                        woke.append(0.0)  # that thread was running something
                    elif i < len(mine):
                        woke.append(mine[i][0] - t)
            if woke and min(woke) > 0:
                waiting.append((t, t + min(woke), self.scheduled_by[id(r)]))
        waits: collections.Counter = collections.Counter()
        until = float("-inf")
        for a, b, op in sorted(waiting):
            if b > until:
                waits[op] += b - max(a, until)
                until = b
        return end - busy[0]["ts"], idle, waits


if __name__ == "__main__":
    main()
