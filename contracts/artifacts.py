"""Stage artifact directories: written whole or not at all.

A stage writes into ``<final>.tmp-<random>`` and renames it to ``<final>`` only
after it has written ``stage.json`` last. So a directory without ``stage.json``
(or a ``.tmp-`` one) is never taken for a finished stage, a crashed run leaves
nothing that looks complete, and a rerun skips stages whose directory is
complete. Torch-free.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from contracts.errors import ArtifactError, UserError
from contracts.jobs import Stage

STAGE_FILE = "stage.json"
STUDENT_META = "lugpi.json"

# The generate stage's output as the later stages read it: split -> one PNG per example,
# aligned with the prepared data's examples (empty when no teacher reads images).
ImageIndex = dict[str, list[Path]]


class StageRecord(BaseModel):
    """Written last into every finished stage directory."""

    model_config = ConfigDict(extra="allow")

    stage: str
    finished_at: datetime
    seconds: float = 0.0
    summary: dict[str, object] = Field(default_factory=dict)


class TextModelMeta(BaseModel):
    """``lugpi.json`` beside a text classifier saved in the transformers format
    (the student or the baseline): what export and evaluation need to know."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    kind: Literal["student", "baseline"]
    labels: list[str]
    max_length: int
    text_pair: bool
    base_model: str
    metrics: dict[str, dict[str, float]] = Field(default_factory=dict)


def is_complete(stage_dir: Path) -> bool:
    return (stage_dir / STAGE_FILE).is_file()


def read_stage(stage_dir: Path) -> StageRecord:
    if not is_complete(stage_dir):
        raise ArtifactError(f"{stage_dir}: stage not finished (no {STAGE_FILE}); rerun the stage")
    return StageRecord.model_validate_json((stage_dir / STAGE_FILE).read_text())


def write_stage_record(tmp: Path, stage: Stage, seconds: float, summary: dict[str, object]) -> None:
    """stage.json with a summary, into a stage's temporary directory (``atomic_dir`` keeps a
    stage.json the stage wrote itself)."""
    record = StageRecord(
        stage=stage.value, finished_at=datetime.now(UTC), seconds=round(seconds, 3), summary=summary
    )
    write_json_atomic(tmp / STAGE_FILE, record.model_dump(mode="json"))


@contextmanager
def atomic_dir(
    final: Path, stage: str, overwrite: bool = False, started: float | None = None
) -> Iterator[Path]:
    """Yield a temporary directory beside ``final``; on success write ``stage.json``
    and rename it into place. On any error the temporary directory is removed.

    ``started``: the ``time.perf_counter()`` reading when the stage began its work. A stage
    that computes before it writes passes it, or its record would time only the writing.
    """
    final = Path(final)
    if final.exists() and not overwrite and is_complete(final):
        raise ArtifactError(f"{final} already exists and is complete; refusing to overwrite")
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = final.with_name(f"{final.name}.tmp-{secrets.token_hex(4)}")
    tmp.mkdir()
    began = time.perf_counter() if started is None else started
    try:
        yield tmp
        record = StageRecord(
            stage=stage,
            finished_at=datetime.now(UTC),
            seconds=round(time.perf_counter() - began, 3),
        )
        existing = tmp / STAGE_FILE
        if existing.exists():  # the stage wrote its own summary; keep it
            record = StageRecord.model_validate_json(existing.read_text())
        write_json_atomic(tmp / STAGE_FILE, record.model_dump(mode="json"))
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


@contextmanager
def atomic_file(path: Path, error: type[UserError] = ArtifactError) -> Iterator[Path]:
    """Yield a temporary path beside ``path`` to write; rename it onto ``path`` when the
    block succeeds, so a reader sees the old file or the new one, never half of one.

    The temporary file never outlives the block; an ``OSError`` (disk full, read-only)
    becomes ``error`` naming ``path``.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(4)}")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as e:
        raise error(f"cannot write {path}: {e.strerror or e}; is the disk full?") from e
    finally:
        tmp.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str, error: type[UserError] = ArtifactError) -> None:
    """``path.write_text(text)``, atomically and flushed to disk (see ``atomic_file``)."""
    with atomic_file(path, error) as tmp, tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())


def build_dir_once(final: Path, build: Callable[[Path], object], marker: str) -> Path:
    """``final``, unless ``final/marker`` exists: ``build(tmp)`` fills a temporary directory
    beside it, which is renamed into place. Processes may race (shards of one run): the
    first rename wins and the others' copies are dropped."""
    if (final / marker).is_file():
        return final
    tmp = final.with_name(f"{final.name}.tmp-{secrets.token_hex(4)}")
    final.parent.mkdir(parents=True, exist_ok=True)
    try:
        build(tmp)
        os.replace(tmp, final)
    except OSError:
        if not (final / marker).is_file():
            raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return final


def write_json_atomic(path: Path, obj: object) -> None:
    """Write JSON so that readers never see half a file."""
    write_text_atomic(path, json.dumps(obj, indent=2, default=str))
