"""The model repository: published student bundles, ``<repository>/<name>/<version>/``.

    <repository>/<name>/  v1/ v2/ ...   .lock  .last-version  [.tmp-*  .trash-*]

Publishing copies a bundle into a hidden ``.tmp-`` directory beside the versions,
verifies it, then, holding ``.lock`` (``fcntl.flock``), picks the next version number
and renames the directory into place. So a reader never sees half a version, two
publishers racing for one name get distinct versions, and a number is never reused
(``.last-version`` remembers the highest ever issued, even after pruning).
Anything that is not a verified ``v<N>`` directory is reported, never served.

Torch-free and transformers-free: the API imports it.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

from pydantic import BaseModel, Field

from contracts.artifacts import write_text_atomic
from contracts.bundle import (
    MANIFEST,
    VERSION_PATTERN,
    BundleManifest,
    SplitMetrics,
    bundle_file,
    read_manifest,
    sha256_file,
    verify_bundle,
)
from contracts.errors import ArtifactError, RepositoryError

log = logging.getLogger("lugpi.repository")

LOCK_FILE = ".lock"
COUNTER_FILE = ".last-version"
# A version an admin chose as the default (contracts.model_versions); absent: the newest.
PIN_FILE = ".default-version"
TMP_PREFIX = ".tmp-"
TRASH_PREFIX = ".trash-"
# A .tmp- dir this old belongs to a publisher that died (copying takes seconds).
STALE_SECONDS = 3600.0
NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # BundleManifest.name's pattern


class ModelEntry(BaseModel):
    """One version directory of a model: a verified bundle, or a broken one (``problems``)."""

    name: str
    version: str
    path: Path
    labels: list[str] = Field(default_factory=list)
    text_pair: bool = False
    max_length: int | None = None
    metrics: dict[str, dict[str, SplitMetrics]] = Field(default_factory=dict)
    sizes: dict[str, int] = Field(default_factory=dict, description="file -> bytes")
    created_at: datetime | None = None
    default: bool = Field(
        default=False,
        description="served when a request names no version: the pinned version if it is "
        "valid, else the highest valid one",
    )
    pinned: bool = Field(default=False, description="chosen as the default by an admin")
    problems: list[str] = Field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def total_bytes(self) -> int:
        return sum(self.sizes.values())


def _version_number(version: str) -> int | None:
    return int(version[1:]) if re.match(VERSION_PATTERN, version) else None


# verify_bundle hashes every file (hundreds of MB); remember results per directory state,
# so that GET /models and publish's pruning do not rehash unchanged versions.
_verified: dict[tuple[object, ...], BundleManifest | str] = {}


def _verify_cached(version_dir: Path) -> BundleManifest:
    try:
        state = []
        for p in sorted(version_dir.rglob("*")):
            if p.is_file():
                st = p.stat()
                state.append((str(p), st.st_size, st.st_mtime_ns))
    except OSError as e:
        raise ArtifactError(f"{version_dir}: unreadable: {e.strerror or e}") from e
    key = (str(version_dir), *state)
    if key not in _verified:
        if len(_verified) > 512:
            _verified.clear()
        try:
            _verified[key] = verify_bundle(version_dir)
        except ArtifactError as e:
            _verified[key] = str(e)
    result = _verified[key]
    if isinstance(result, str):
        raise ArtifactError(result)
    return result


def _entry(name: str, version_dir: Path) -> ModelEntry:
    entry = ModelEntry(name=name, version=version_dir.name, path=version_dir)
    if version_dir.name.startswith(TMP_PREFIX):
        entry.problems.append("partial publish (in progress, or its publisher crashed)")
        return entry
    if version_dir.name.startswith(TRASH_PREFIX):
        entry.problems.append("old version being deleted (or its deletion was interrupted)")
        return entry
    if _version_number(version_dir.name) is None:
        entry.problems.append("not a version directory (expected v1, v2, ...)")
        return entry
    try:
        manifest = _verify_cached(version_dir)
    except ArtifactError as e:
        entry.problems.append(str(e))
        return entry
    if (manifest.name, manifest.version) != (name, version_dir.name):
        entry.problems.append(
            f"{MANIFEST} says {manifest.name}/{manifest.version}; the directory was moved"
        )
    try:  # a publisher may be pruning this version right now
        entry.sizes = {f: (version_dir / f).stat().st_size for f in manifest.files}
    except OSError as e:
        entry.problems.append(f"vanished while listed: {e.strerror or e}")
        return entry
    entry.labels = list(manifest.labels)
    entry.text_pair = manifest.text_pair
    entry.max_length = manifest.max_length
    entry.metrics = manifest.metrics
    entry.created_at = manifest.created_at
    return entry


def _scan_name(name: str, model_dir: Path) -> list[ModelEntry]:
    children = [p for p in model_dir.iterdir() if p.is_dir()]
    entries = [_entry(name, p) for p in children]
    entries.sort(key=lambda e: (_version_number(e.version) or 0, e.version))
    valid = [e for e in entries if e.ok]
    pin = read_pin(model_dir)
    pinned = [e for e in valid if e.version == pin]
    for e in pinned:
        e.pinned = True
    if valid:
        (pinned or valid)[-1].default = True
    return entries


def read_pin(model_dir: Path) -> str | None:
    """The version pinned as default in ``model_dir``, if any (it may no longer be valid)."""
    try:
        text = (model_dir / PIN_FILE).read_text().strip()
    except OSError:
        return None
    return text if _version_number(text) is not None else None


def list_models(repository: Path, name: str | None = None) -> list[ModelEntry]:
    """Every version directory (of ``name``, or of all names) with labels, metrics, sizes.

    Broken directories are listed with ``problems`` and never marked default. A missing
    repository lists as empty (nothing published yet).
    """
    repository = Path(repository)
    if not repository.exists():
        return []
    if not repository.is_dir():
        raise RepositoryError(f"model repository {repository} is not a directory")
    if name is not None:
        _check_name(name)
        model_dir = repository / name
        return _scan_name(name, model_dir) if model_dir.is_dir() else []
    entries: list[ModelEntry] = []
    for model_dir in sorted(p for p in repository.iterdir() if p.is_dir()):
        if model_dir.name.startswith("."):
            continue
        if not re.match(NAME_PATTERN, model_dir.name):
            entries.append(
                ModelEntry(
                    name=model_dir.name,
                    version="",
                    path=model_dir,
                    problems=["not a model name (lowercase letters, digits, - and _)"],
                )
            )
            continue
        entries.extend(_scan_name(model_dir.name, model_dir))
    return entries


def _check_name(name: str) -> None:
    # Names come from HTTP requests too: the pattern also keeps out "..", "/" and dotfiles.
    if not re.match(NAME_PATTERN, name):
        raise RepositoryError(f"invalid model name {name!r}: use lowercase letters, digits, - _")


def resolve(repository: Path, name: str, version: str | None = None) -> Path:
    """The directory of ``name`` at ``version`` (``None`` or ``"latest"``: the default).

    ``RepositoryError`` when the name or version does not exist or is broken.
    """
    entries = list_models(repository, name)
    if version is None or version == "latest":
        for entry in entries:
            if entry.default:
                return entry.path
        if not entries:
            # A typo is the usual cause: name what is there.
            known = sorted({e.name for e in list_models(repository) if e.ok})
            found = f"no such model; published: {', '.join(known) or 'none'}"
        else:
            found = "; ".join(f"{e.version}: {e.problems[0]}" for e in entries)
        raise RepositoryError(f"no valid version of model {name!r} in {repository} ({found})")
    if _version_number(version) is None:
        raise RepositoryError(f"invalid version {version!r}: expected v1, v2, ... or 'latest'")
    for entry in entries:
        if entry.version == version:
            if not entry.ok:
                raise RepositoryError(f"{name}/{version} is broken: {entry.problems[0]}")
            return entry.path
    available = [e.version for e in entries if e.ok]
    raise RepositoryError(f"model {name!r} has no version {version}; available: {available}")


@contextmanager
def _locked(model_dir: Path) -> Iterator[None]:
    # flock is released by the kernel when the holder dies, so a crash never wedges a name.
    with (model_dir / LOCK_FILE).open("a") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _next_version(model_dir: Path) -> int:
    numbers = [0]
    for p in model_dir.iterdir():
        stem = p.name.removeprefix(TRASH_PREFIX).split("-")[0]
        if (n := _version_number(stem)) is not None:
            numbers.append(n)
    counter = model_dir / COUNTER_FILE
    if counter.is_file() and counter.read_text().strip().isdigit():
        numbers.append(int(counter.read_text().strip()))
    return max(numbers) + 1


def _safe_files(manifest: BundleManifest, bundle_dir: Path) -> list[str]:
    files = list(manifest.files)
    for f in files:
        bundle_file(bundle_dir, f)  # raises for a file outside the bundle
    return files


def _discard(path: Path) -> None:
    """Remove a directory so that no half-deleted version is ever visible as one."""
    trash = path.with_name(f"{TRASH_PREFIX}{path.name}-{secrets.token_hex(4)}")
    os.rename(path, trash)
    shutil.rmtree(trash, ignore_errors=True)


def _prune(model_dir: Path, keep_last: int) -> list[str]:
    """Delete versions older than the newest ``keep_last`` valid ones, and stale leftovers."""
    entries = _scan_name(model_dir.name, model_dir)
    numbered = [e for e in entries if _version_number(e.version) is not None]
    kept = [e for e in numbered if e.ok][-keep_last:]
    oldest_kept = _version_number(kept[0].version) if kept else 0
    removed = []
    for e in numbered:
        if e.pinned:  # an admin's choice of default outlives any number of newer versions
            continue
        if (_version_number(e.version) or 0) < (oldest_kept or 0):
            _discard(e.path)
            removed.append(e.version)
    now = time.time()
    for p in model_dir.iterdir():
        leftover = p.name.startswith((TMP_PREFIX, TRASH_PREFIX)) and p.is_dir()
        if leftover and now - p.stat().st_mtime > STALE_SECONDS:
            shutil.rmtree(p, ignore_errors=True)
    return removed


def _after_publish(model_dir: Path, number: int, keep_last: int) -> None:
    """Record the number and prune. The version is published already, so a failure here
    is only logged: the version directories alone still keep numbers from being reused."""
    try:
        write_text_atomic(model_dir / COUNTER_FILE, f"{number}\n", RepositoryError)
        _prune(model_dir, keep_last)
    except (OSError, RepositoryError) as e:
        log.warning("%s: published v%d, but pruning/recording failed: %s", model_dir, number, e)


def export_id(bundle_dir: Path) -> str:
    """The identity of one export: the sha256 of its ``bundle.json``, which holds the hash
    of every file, the export time and the job. The same export published twice (a resumed
    run) has the same id; a new export (another run, or a redone export) has another."""
    return sha256_file(Path(bundle_dir) / MANIFEST)


def _published_as(model_dir: Path, export: str) -> tuple[str, Path] | None:
    """The valid version of ``model_dir`` that was published from ``export``, if any."""
    if not model_dir.is_dir():
        return None
    for entry in _scan_name(model_dir.name, model_dir):
        if not entry.ok:
            continue
        try:
            if read_manifest(entry.path).provenance.export_id == export:
                return entry.version, entry.path
        except ArtifactError:  # pruned or rewritten meanwhile
            continue
    return None


def publish(
    bundle_dir: Path,
    repository: Path,
    name: str,
    keep_last: int = 5,
    *,
    once_per_export: bool = False,
) -> tuple[str, Path]:
    """Copy a verified bundle into ``repository/name/v<N>`` (N = highest ever + 1) and
    delete versions beyond the newest ``keep_last``; return (version, path).

    Atomic: the version appears complete or not at all. Safe against concurrent
    publishers of the same name (on one host, or a filesystem with working flock).
    With ``once_per_export`` (what a run's publish step uses), idempotent per export: a
    bundle already published (a run that crashed after the version was renamed into place,
    then resumed) returns the version it got then instead of adding one.
    """
    _check_name(name)
    if keep_last < 1:
        raise RepositoryError(f"keep_last must be at least 1, got {keep_last}")
    bundle_dir, repository = Path(bundle_dir), Path(repository)
    manifest = verify_bundle(bundle_dir)
    files = _safe_files(manifest, bundle_dir)
    model_dir = repository / name
    export = export_id(bundle_dir) if once_per_export else None
    if export is not None and (done := _published_as(model_dir, export)) is not None:
        log.info("%s was published already as %s/%s", bundle_dir, name, done[0])
        return done
    try:
        model_dir.mkdir(parents=True, exist_ok=True)
        tmp = model_dir / f"{TMP_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
        tmp.mkdir()
    except OSError as e:
        raise RepositoryError(
            f"cannot write to the model repository at {model_dir}: {e.strerror or e}; "
            "check that the path is a writable directory (LUGPI_MODEL_REPOSITORY)"
        ) from e
    try:
        for f in files:
            (tmp / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(bundle_dir / f, tmp / f)
        provenance = manifest.provenance.model_copy(update={"export_id": export})
        renamed = manifest.model_copy(update={"name": name, "provenance": provenance})
        (tmp / MANIFEST).write_text(renamed.model_dump_json(indent=2))
        verify_bundle(tmp)
        with _locked(model_dir):
            if export is not None and (done := _published_as(model_dir, export)) is not None:
                shutil.rmtree(tmp, ignore_errors=True)
                return done
            number = _next_version(model_dir)
            version = f"v{number}"
            final = model_dir / version
            published = renamed.model_copy(update={"version": version})
            (tmp / MANIFEST).write_text(published.model_dump_json(indent=2))
            if final.exists():  # cannot happen under the lock; never overwrite regardless
                raise RepositoryError(f"{final} exists although {COUNTER_FILE} is lower")
            os.rename(tmp, final)
            _after_publish(model_dir, number, keep_last)
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RepositoryError(
            f"publishing {name} into {model_dir} failed: {e.strerror or e}; nothing was published"
        ) from e
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return version, final


def format_models_table(entries: list[ModelEntry]) -> str:
    """The repository as a Markdown table (what ``lugpi models`` prints)."""
    lines = [
        "| model | version | default | labels | test acc fp32 / int8 | size MB | created | "
        "problems |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for e in entries:
        accs = [e.metrics.get(m, {}).get("test") for m in ("student", "student-int8")]
        acc = " / ".join(f"{a.accuracy:.4f}" if a else "-" for a in accs)
        labels = ", ".join(e.labels[:5]) + (f" (+{len(e.labels) - 5})" if len(e.labels) > 5 else "")
        created = e.created_at.strftime("%Y-%m-%d %H:%M") if e.created_at else "-"
        problems = "; ".join(e.problems)[:120] or "-"
        default = ("yes, pinned" if e.pinned else "yes") if e.default else ""
        lines.append(
            f"| {e.name} | {e.version} | {default} | {labels} | {acc} | "
            f"{e.total_bytes / 1e6:.1f} | {created} | {problems} |"
        )
    return "\n".join(lines)


def models_command(repository: Path) -> str:
    """Body of ``lugpi models``: the table, or a line saying the repository is empty."""
    entries = list_models(repository)
    if not entries:
        return f"no models published in {repository}"
    return format_models_table(entries)
