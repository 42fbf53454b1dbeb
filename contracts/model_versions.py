"""Managing the versions of a published model: pin a default, roll back, delete one.

    <repository>/<name>/.default-version   the pinned version ("v3"); absent: the newest

Every change takes the model's ``.lock`` (the one publishing takes), so it never races
a publish or a prune, and is atomic on disk: the pin is written to a temporary file and
renamed over the old one; a deleted version is renamed out of sight before it is removed,
so readers see it whole or not at all. The API picks the change up on its next rescan
(or at once, through its admin routes). Torch-free: the API and the CLI both call it.
"""

from __future__ import annotations

from pathlib import Path

from contracts.artifacts import write_text_atomic
from contracts.errors import RepositoryError
from contracts.repository import (
    PIN_FILE,
    ModelEntry,
    _check_name,
    _discard,
    _locked,
    _version_number,
    list_models,
    read_pin,
)


def _entries(repository: Path, name: str) -> tuple[Path, list[ModelEntry]]:
    _check_name(name)
    model_dir = Path(repository) / name
    entries = [e for e in list_models(repository, name) if _version_number(e.version)]
    if not model_dir.is_dir() or not entries:
        raise RepositoryError(f"no model {name!r} in {repository}")
    return model_dir, entries


def _valid(entries: list[ModelEntry], name: str, version: str) -> ModelEntry:
    if _version_number(version) is None:
        raise RepositoryError(f"invalid version {version!r}: expected v1, v2, ...")
    for e in entries:
        if e.version == version:
            if not e.ok:
                raise RepositoryError(f"{name}/{version} is broken: {e.problems[0]}")
            return e
    valid = [e.version for e in entries if e.ok]
    raise RepositoryError(f"model {name!r} has no version {version}; valid versions: {valid}")


def _write_pin(model_dir: Path, version: str | None) -> None:
    target = model_dir / PIN_FILE
    if version is None:
        target.unlink(missing_ok=True)
        return
    write_text_atomic(target, f"{version}\n", RepositoryError)


def _io(action: str, model_dir: Path, e: OSError) -> RepositoryError:
    return RepositoryError(
        f"{action} in {model_dir} failed: {e.strerror or e}; the repository must be writable "
        "by this process (the API's copy is often mounted read-only: use `lugpi models`)"
    )


def pin_version(repository: Path, name: str, version: str) -> ModelEntry:
    """Serve ``version`` when a request names none, however many newer ones exist."""
    model_dir, _ = _entries(repository, name)
    try:
        with _locked(model_dir):
            entry = _valid(_entries(repository, name)[1], name, version)
            _write_pin(model_dir, version)
    except OSError as e:
        raise _io(f"pinning {name} {version}", model_dir, e) from e
    return entry


def unpin(repository: Path, name: str) -> str | None:
    """Forget the pin: the newest valid version is the default again. Returns the old pin."""
    model_dir, _ = _entries(repository, name)
    try:
        with _locked(model_dir):
            old = read_pin(model_dir)
            _write_pin(model_dir, None)
    except OSError as e:
        raise _io(f"unpinning {name}", model_dir, e) from e
    return old


def rollback(repository: Path, name: str) -> ModelEntry:
    """Pin the newest valid version older than the current default; return it."""
    model_dir, _ = _entries(repository, name)
    try:
        with _locked(model_dir):
            entries = _entries(repository, name)[1]
            current = next((e for e in entries if e.default), None)
            if current is None:
                raise RepositoryError(f"model {name!r} has no valid version to roll back from")
            n = _version_number(current.version) or 0
            older = [e for e in entries if e.ok and (_version_number(e.version) or 0) < n]
            if not older:
                raise RepositoryError(
                    f"{name} {current.version} is the oldest valid version; nothing to roll back to"
                )
            target = older[-1]
            _write_pin(model_dir, target.version)
    except OSError as e:
        raise _io(f"rolling back {name}", model_dir, e) from e
    return target


def delete_version(repository: Path, name: str, version: str, *, dry_run: bool = False) -> None:
    """Remove one version. The pinned version is refused (pin another or unpin first), and
    so is the last valid one (a model with nothing to serve is deleted as a directory).
    ``dry_run``: only the checks, so that a command refuses before it asks "are you sure?"."""
    model_dir, _ = _entries(repository, name)
    try:
        with _locked(model_dir):
            entries = _entries(repository, name)[1]
            target = next((e for e in entries if e.version == version), None)
            if target is None:
                present = [e.version for e in entries]
                raise RepositoryError(
                    f"model {name!r} has no version {version}; present: {present}"
                )
            if read_pin(model_dir) == version:
                raise RepositoryError(
                    f"{name} {version} is pinned as the default; pin another version or unpin first"
                )
            others = [e for e in entries if e.ok and e.version != version]
            if target.ok and not others:
                raise RepositoryError(
                    f"{name} {version} is the last valid version; remove the model directory "
                    "itself to delete the model"
                )
            if not dry_run:
                _discard(model_dir / version)
    except OSError as e:
        raise _io(f"deleting {name} {version}", model_dir, e) from e
