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
