"""bnlab's training speed at an earlier commit and now, each next to PyTorch eager in the same
process, the two codes run alternately (this machine's speed drifts between minutes).

    python benchmarks/before_after.py --before eb74a29 [--model cnn] [--repeats 3] [--steps 300]

Each measurement is a fresh process (`benchmarks/speed.py`'s MLP or CNN, batch 60 of 28x28
synthetic images, SGD; the CNN: two stages of one 3x3 conv, 16 and 32 channels, 2x2 max pooling), timing 5
`--steps`-step blocks after a compiling warm-up (median): in each round bnlab before, bnlab after and
a PyTorch eager loop (needs `pip install torch`), each in a process of its own, as in speed.py. The
earlier commit is unpacked with `git archive` and imported from there.
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
rates = speed.rates_in_this_process({implementation!r}, [{model!r}], {steps}, 5)
print(json.dumps({{key.split("/")[1]: statistics.median(r) for key, r in rates.items()}}))
"""


def measure(code: Path, implementation: str, model: str, steps: int) -> dict[str, float]:
    """{norm: steps/s} of one implementation in a fresh process importing bnlab from `code`."""
    env = dict(os.environ, PYTHONPATH=str(code))
    script = CHILD.format(bench=str(ROOT / "benchmarks"), implementation=implementation, model=model, steps=steps)
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
        runs: dict[str, list[dict]] = {"before": [], "after": [], "torch": []}
        for _ in range(args.repeats):
            for label, code, implementation in (("before", before, "bnlab"), ("after", ROOT, "bnlab"), ("torch", ROOT, "torch")):
                runs[label].append(measure(code, implementation, args.model, args.steps))
    print(f"{os.cpu_count()} CPU cores; steps/s, median over {args.repeats} alternating processes; before = {args.before}")
    for norm in ("none", "batch"):
        cells = []
        for label in ("before", "after"):
            bnlab = statistics.median(r[norm] for r in runs[label])
            ratio = [r[norm] / t[norm] for r, t in zip(runs[label], runs["torch"])]
            cells.append(f"{label} {bnlab:5.0f} ({statistics.median(ratio):.2f}x PyTorch, {min(ratio):.2f}-{max(ratio):.2f})")
        speedup = [a[norm] / b[norm] for a, b in zip(runs["after"], runs["before"])]
        gain = f"after / before {statistics.median(speedup):.2f}x ({min(speedup):.2f}-{max(speedup):.2f})"
        print(f"  {args.model} {norm:<5} " + " | ".join(cells) + " | " + gain)
        rounds = zip(runs["before"], runs["after"], runs["torch"])
        print("    each round (before / after / PyTorch): " + ", ".join(f"{b[norm]:.0f} / {a[norm]:.0f} / {t[norm]:.0f}" for b, a, t in rounds))


if __name__ == "__main__":
    main()
