"""The packages form layers and no import points up them.

    contracts  <-  models  <-  training  <-  worker
    contracts  <-  jobs    <-  api, worker
    contracts  <-  runtime <-  api, training, worker

Read statically from every module's source (function-local imports included), so an
upward import fails here even when it sits on a path no other test runs. The serving
side (contracts, jobs, runtime, api) must also stay free of torch and the model libraries; the
process-level check of that is ``tests/api/test_no_torch.py``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import REPO_ROOT

ALLOWED: dict[str, set[str]] = {
    "contracts": set(),
    "jobs": {"contracts"},
    "runtime": {"contracts"},
    "models": {"contracts"},
    "training": {"contracts", "models", "runtime"},
    "api": {"contracts", "jobs", "runtime"},
    "worker": {"contracts", "jobs", "models", "runtime", "training"},
}
TORCH_FREE = ("contracts", "jobs", "runtime", "api")
HEAVY = {"torch", "transformers", "diffusers", "accelerate", "celery.worker"}


def _imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def _violations(package: str) -> list[str]:
    bad: list[str] = []
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        for line, module in _imports(path):
            top = module.split(".")[0]
            where = f"{path.relative_to(REPO_ROOT)}:{line} imports {module}"
            if top in ALLOWED and top != package and top not in ALLOWED[package]:
                bad.append(where)
            if package in TORCH_FREE and (
                top in HEAVY or any(module == h or module.startswith(h + ".") for h in HEAVY)
            ):
                bad.append(where)
    return bad


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_import_points_up_the_layers(package: str) -> None:
    assert _violations(package) == []


def test_the_check_sees_an_upward_import(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("def f():\n    from worker.app import app\n    import torch\n")
    assert [m for _, m in _imports(module)] == ["worker.app", "torch"]


def _module_graph(package: str) -> dict[str, set[str]]:
    """module -> the modules of the same package it imports (function-local ones too)."""
    paths: dict[str, Path] = {}
    for path in sorted((REPO_ROOT / package).rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return {
        name: {m for m in _imported_modules(path) if m in paths and m != name}
        for name, path in paths.items()
    }


def _imported_modules(path: Path) -> set[str]:
    """Every module an import may name: ``from a.b import c`` gives a.b and a.b.c (c may be
    a module); the graph keeps the ones that are modules."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
    return found


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    found: list[list[str]] = []
    for start in sorted(graph):
        stack = [(start, [start])]
        while stack:
            node, path = stack.pop()
            for dep in sorted(graph.get(node, set())):
                if dep == start and min(path) == start:  # report each cycle once
                    found.append([*path, dep])
                elif dep not in path and dep in graph:
                    stack.append((dep, [*path, dep]))
    return found


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_no_import_cycle_inside_a_package(package: str) -> None:
    """A cycle (even through a function-local import) means two modules are one: the
    worker had app <-> tasks <-> teacher_service and runner <-> execute <-> shards, training
    readers <-> hf_data (through RawRow). Every package is checked, subpackages included."""
    assert _cycles(_module_graph(package)) == []


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == [["a", "b", "c", "a"]]
