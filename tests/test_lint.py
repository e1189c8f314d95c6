"""Code health that CI checks with the tests: ruff (lint and format) and no import cycles in bnlab/."""

import subprocess
import sys

import pytest
from conftest import ROOT

RUFF = [sys.executable, "-m", "ruff"]
IMPORT_CYCLES = ROOT.parent / "shared" / "tools" / "import_cycles.py"


@pytest.mark.parametrize("args", [["check", "."], ["format", "--check", "."]], ids=["lint", "format"])
def test_ruff(args):
    r = subprocess.run(RUFF + args, cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout + r.stderr


@pytest.mark.skipif(not IMPORT_CYCLES.exists(), reason="../shared/tools/import_cycles.py is not here")
def test_no_import_cycles_in_bnlab():
    r = subprocess.run([sys.executable, str(IMPORT_CYCLES), "bnlab"], cwd=ROOT, capture_output=True, text=True)
    assert r.returncode == 0 and r.stdout.rstrip().endswith(" 0 cycles"), r.stdout


def test_subpackages_import_nothing_heavy():
    """`import bnlab` and every subpackage's __init__ stay light: the CLI's --help must not wait for JAX."""
    packages = ["bnlab"] + [f"bnlab.{p.name}" for p in sorted((ROOT / "bnlab").iterdir()) if (p / "__init__.py").exists()]
    code = f"import sys; [__import__(m) for m in {packages!r}]; print(sorted(m for m in ('jax', 'tensorflow', 'pandas', 'flax') if m in sys.modules))"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr
