"""Print the requirements of the project and the given extras, one per line.

    python requirements.py pyproject.toml api          # core + the api extra
    python requirements.py pyproject.toml worker gpu   # core + worker (+ train, its own extra)

The images install these first, from pyproject.toml alone, then the project itself with
``--no-deps``: a change to the code then rebuilds one small layer, not every dependency.
Standard library only: it runs in a fresh venv before anything is installed.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path


def requirements(pyproject: Path, extras: list[str]) -> list[str]:
    project = tomllib.loads(pyproject.read_text())["project"]
    name = project["name"]
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    lines = list(project.get("dependencies", []))
    seen: set[str] = set()
    todo = list(extras)
    while todo:
        extra = todo.pop(0)
        if extra in seen:
            continue
        if extra not in optional:
            raise SystemExit(f"requirements.py: {pyproject} has no extra {extra!r}")
        seen.add(extra)
        for line in optional[extra]:
            # An extra that names the project itself (worker = ["lugpi[train]"]) adds those.
            own = re.fullmatch(rf"{re.escape(name)}\[([\w,\s-]+)\]", line.strip())
            if own:
                todo.extend(e.strip() for e in own.group(1).split(","))
            else:
                lines.append(line)
    return list(dict.fromkeys(lines))


if __name__ == "__main__":
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    print("\n".join(requirements(Path(sys.argv[1]), sys.argv[2:])))
