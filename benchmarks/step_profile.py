"""Where the time of bnlab's training step goes on this machine: a `jax.profiler` trace of one
compiled chunk, read back with xprof, XLA's ops summed by self time and grouped by what they compute.

    pip install xprof   # the profile reader (not a bnlab dependency)
    python benchmarks/step_profile.py [--model cnn] [--norm batch] [--steps 200]

The models are benchmarks/speed.py's (the MLP 784-100-100-100-10; the CNN: two stages of one 3x3
conv, 16 and 32 channels, 2x2 max pooling; batch 60 of 28x28 synthetic images). Besides the
network's own work, the groups show what bnlab's loop adds to a bare step: the step metrics
(gradient norm of every layer, accuracy, their running sums), the gather of the shuffled batch and
the epoch permutation (sorts, once per epoch, in the epoch loop around the step loop). XLA's CPU
backend emits one trace event per compiled op only with --xla_cpu_enable_xprof_traceme, which this
script sets; the tracing itself slows the step, so the shares matter here, not the absolute times.
Last, the wall time in which no op ran on any thread (XLA handing work to a thread that has to
wake up first) and the ops it delayed.
"""

from __future__ import annotations

import argparse
import collections
import glob
import json
import os
import re
import sys
import tempfile

os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_cpu_enable_xprof_traceme=true").strip()

import jax  # noqa: E402
from speed import config  # noqa: E402

from bnlab.data.dataset import load  # noqa: E402
from bnlab.train.program import TrainProgram  # noqa: E402


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
    by_op = collections.Counter()
    for e in events:
        if e.get("ph") == "X" and e["name"] in groups:
            by_op[e["name"]] += e.get("dur", 0)
    total = sum(by_op.values())
    by_group = collections.Counter()
    for name, us in by_op.items():
        by_group[groups[name]] += us
    print(f"{args.model}, norm {args.norm}: {args.steps} steps traced; XLA ops' time per step {total / args.steps / 1e3:.2f} ms (with tracing)")
    for group, us in by_group.most_common():
        print(f"  {100 * us / total:5.1f}%  {group}")
    print("largest single ops:")
    for name, us in by_op.most_common(12):
        print(f"  {100 * us / total:5.1f}%  {us / args.steps:6.0f} us  {name} ({groups[name]})")
    print_idle([e for e in events if e.get("ph") == "X" and e["name"] in groups], args.steps)


def print_idle(ops: list[dict], steps: int) -> None:
    """Wall time in which no XLA op ran on any thread, and the ops after the longest such gaps: on a
    CPU, the time XLA's runtime spends handing work between its threads (a thread that has to wake
    up first), which the ops' own times do not show."""
    ops = sorted(ops, key=lambda e: e["ts"])
    gaps: collections.Counter = collections.Counter()
    end = ops[0]["ts"]
    for e in ops:
        if e["ts"] > end + 3:  # idle for more than 3 us
            gaps[e["name"]] += e["ts"] - end
        end = max(end, e["ts"] + e["dur"])
    span = ops[-1]["ts"] + ops[-1]["dur"] - ops[0]["ts"]
    print(
        f"wall time per step {span / steps:.0f} us (with tracing), no op running for {sum(gaps.values()) / steps:.0f} us of it; longest waits before:"
    )
    for name, us in gaps.most_common(3):
        print(f"  {us / steps:6.1f} us  {name}")


if __name__ == "__main__":
    main()
