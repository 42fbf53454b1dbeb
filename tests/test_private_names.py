"""No production module imports another module's private (``_``-prefixed) name.

A private name is a module's own business: when another module needs it, it is an
extension point or a shared contract and gets a public name (the student trainer was
``training/distill.py::_train_text_classifier``, imported by two other methods). Read
statically from every module's source, function-local imports included.
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.conftest import REPO_ROOT

PACKAGES = ("contracts", "jobs", "runtime", "models", "training", "api", "worker")


def private_imports(path: Path) -> list[str]:
    """``from m import _name`` (and ``import m._mod``) in one file; dunders are not private."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.ImportFrom):
            parts = (node.module or "").split(".")
            names = [a.name for a in node.names]
        elif isinstance(node, ast.Import):
            parts, names = [], [a.name.split(".")[-1] for a in node.names]
            parts = [p for a in node.names for p in a.name.split(".")[:-1]]
        else:
            continue
        for name in [*parts, *names]:
            if name.startswith("_") and not (name.startswith("__") and name.endswith("__")):
                found.append(f"{path}:{node.lineno} imports {name}")
    return found


def test_no_production_module_imports_a_private_name() -> None:
    bad = [
        v
        for pkg in PACKAGES
        for p in sorted((REPO_ROOT / pkg).rglob("*.py"))
        for v in private_imports(p)
    ]
    assert bad == []


def test_the_check_sees_a_private_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text(
        "def f():\n    from training.students.trainer import _x, y\n    import a._b.c\n"
        "from m import __version__\n"
    )
    assert [v.split(" imports ")[1] for v in private_imports(module)] == ["_x", "_b"]
