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


# the pipeline's stages in order; a module may import its own stage and earlier ones, never a later one
STAGES = ["errors", "config", "registry", "data", "nn", "train", "measure", "runner", "report"]
ABOVE = ("catalog", "api", "cli", "__main__", "__init__")  # the front: may import every stage


def stage_of(module: str) -> int:
    parts = module.split(".")
    head = parts[1] if len(parts) > 1 else "__init__"  # `bnlab` itself is the front
    return len(STAGES) if head in ABOVE else STAGES.index(head)


def backward_imports(path, module: str) -> list[str]:
    """The imports of a later stage in `path` (the module `module`), at the top or inside a function."""
    import ast

    parts = module.split(".")
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = parts[: len(parts) - node.level] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            found.update([target] if node.module else [f"{target}.{a.name}" for a in node.names])
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return sorted(f"{module} -> {t}" for t in found if t.startswith("bnlab.") and stage_of(t) > stage_of(module))


def test_no_module_imports_a_later_stage():
    backwards = []
    for path in sorted((ROOT / "bnlab").rglob("*.py")):
        module = "bnlab." + ".".join(path.relative_to(ROOT / "bnlab").with_suffix("").parts)
        backwards += backward_imports(path, module)
    assert not backwards, "imports of a later stage:\n" + "\n".join(backwards)


def test_the_stage_check_sees_a_backward_import_inside_a_function(tmp_path):
    fake = tmp_path / "validate.py"
    fake.write_text("def check():\n    from ..train.optim import OPTIMIZERS\n")
    assert backward_imports(fake, "bnlab.config.validate") == ["bnlab.config.validate -> bnlab.train.optim"]


def test_the_command_line_imports_the_claims_only_when_a_command_needs_them():
    code = "import sys, bnlab.cli; print(sorted(m for m in sys.modules if m == 'experiments' or m.startswith('experiments.')))"
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert r.stdout.strip() == "[]", r.stdout + r.stderr
