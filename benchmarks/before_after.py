"""bnlab's training speed at an earlier commit and now, each next to PyTorch eager in the same
process, the two codes run alternately (this machine's speed drifts between minutes).

    python benchmarks/before_after.py --before eb74a29 [--model cnn] [--repeats 3] [--steps 300]

Each measurement is a fresh process (`benchmarks/speed.py`'s MLP or CNN, batch 60 of 28x28
synthetic images, SGD; the CNN: two stages of one 3x3 conv, 16 and 32 channels, 2x2 max pooling), timing `--steps`-step
blocks of bnlab's compiled chunk and of a PyTorch eager loop in turn (5 rounds after a compiling
warm-up, medians; needs `pip install torch`). The earlier commit is unpacked with `git archive` and imported from there.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHILD = """
import json, statistics, sys
sys.path.insert(0, {bench!r})
import speed
out = {{}}
for norm in ("none", "batch"):
    blocks = {{"bnlab": speed.bnlab_block(speed.config({model!r}, norm))[0], "torch": speed.torch_block({model!r}, norm)}}
    r = speed.interleaved_rates(blocks, {steps}, 5)
    out[norm] = [statistics.median(r["bnlab"]), statistics.median(r["torch"])]
print(json.dumps(out))
"""


def measure(code: Path, model: str, steps: int) -> dict[str, list[float]]:
    env = dict(os.environ, PYTHONPATH=str(code))
    script = CHILD.format(bench=str(ROOT / "benchmarks"), model=model, steps=steps)
    r = subprocess.run([sys.executable, "-c", script], cwd=code, env=env, capture_output=True, text=True, check=True)
    return json.loads(r.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--before", required=True, help="the earlier commit to compare with")
    parser.add_argument("--model", default="cnn", choices=["mlp", "cnn"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        before = Path(tmp) / "before"
        before.mkdir()
        archive = subprocess.run(["git", "archive", args.before], cwd=ROOT, capture_output=True, check=True).stdout
        subprocess.run(["tar", "-x", "-C", str(before)], input=archive, check=True)
        runs: dict[str, list[dict]] = {"before": [], "after": []}
        for _ in range(args.repeats):
            for label, code in (("before", before), ("after", ROOT)):
                runs[label].append(measure(code, args.model, args.steps))
    print(f"{os.cpu_count()} CPU cores; steps/s, median over {args.repeats} alternating processes; before = {args.before}")
    for norm in ("none", "batch"):
        cells = []
        for label in ("before", "after"):
            bnlab = statistics.median(r[norm][0] for r in runs[label])
            ratio = [r[norm][0] / r[norm][1] for r in runs[label]]
            cells.append(f"{label} {bnlab:5.0f} ({statistics.median(ratio):.2f}x PyTorch, {min(ratio):.2f}-{max(ratio):.2f})")
        speedup = [a[norm][0] / b[norm][0] for a, b in zip(runs["after"], runs["before"])]
        gain = f"after / before {statistics.median(speedup):.2f}x ({min(speedup):.2f}-{max(speedup):.2f})"
        print(f"  {args.model} {norm:<5} " + " | ".join(cells) + " | " + gain)
        print(
            "    each pair (before, after; PyTorch in the same process): "
            + ", ".join(f"({b[norm][0]:.0f} / {b[norm][1]:.0f}, {a[norm][0]:.0f} / {a[norm][1]:.0f})" for b, a in zip(runs["before"], runs["after"]))
        )


if __name__ == "__main__":
    main()
