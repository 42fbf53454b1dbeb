"""POST /models/import (admin): publish a classifier trained elsewhere, as
``lugpi models import`` does.

The API never imports torch, so the import runs ``python -m training.cli models import``
in a child process (the same interpreter, so the same installed packages) and this route
waits for it, one import at a time; then the model is rescanned and described. Why not a
job: jobs run the training pipeline from a ``PipelineConfig`` (jobs/, worker/); an import
is one export step that takes seconds to a few minutes, and its answer is the new version.

Trust boundary, as for ``POST /jobs/train`` (api/job_checks.py): loading a checkpoint can
run code (pickled weights), so ``source`` must be allowed in ``LUGPI_ALLOWED_MODELS``
(a directory entry allows that directory); the sample and test files must lie under
``LUGPI_DATA_ROOTS``. A server installed without the training extra answers 503.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ConfigDict, Field

from api.auth import AUTH_RESPONSES, AdminAccess
from api.deps import RegistryDep, SettingsDep
from api.job_checks import BUILTIN_MODELS, model_allowed, resolve_data_path
from api.routes.models import describe
from api.schemas import Count, Flag, ModelInfo, error_responses
from api.settings import ApiSettings
from contracts.errors import InternalError, InvalidInput, Unavailable
from contracts.repository import NAME_PATTERN

# An import exports, quantizes and checks one model: minutes for a large one on a CPU.
IMPORT_TIMEOUT_S = 1800.0
_ROOT = str(Path(__file__).resolve().parent.parent.parent)

router = APIRouter(
    prefix="/models",
    tags=["models"],
    dependencies=[AdminAccess],
    responses={
        **AUTH_RESPONSES,
        **error_responses(s400="The checkpoint or the sample cannot be imported; says why."),
        503: {"description": "This server cannot run imports (no training extra), or is busy."},
    },
)


class ImportRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str = Field(
        description="A transformers *ForSequenceClassification checkpoint directory (or "
        "hub id), or an exported ONNX classifier's directory, allowed in LUGPI_ALLOWED_MODELS."
    )
    name: str = Field(pattern=NAME_PATTERN, description="The model name to publish under.")
    sample: str | None = Field(
        None,
        description="Texts like the model's own (CSV/TSV/JSONL under the data roots): int8 "
        "is checked against PyTorch on them. Without it the bundle is fp32 only.",
    )
    test: str | None = Field(None, description="A labelled file; its metrics are recorded.")
    text_column: str = "text"
    pair_column: str | None = None
    label_column: str | None = Field(None, description="Label names: makes the sample labelled.")
    text_pair: Flag = False
    max_length: Count | None = Field(None, ge=1)
    quantize: Flag = True
    labels: list[str] | None = Field(
        None,
        min_length=2,
        description="An ONNX graph's label names in the order of its outputs (default: "
        "config.json's id2label beside it).",
    )


def _command(body: ImportRequest, files: dict[str, Path], repository: Path) -> list[str]:
    args = [sys.executable, "-m", "training.cli", "models", "import", body.source]
    args += ["--name", body.name, "--repository", str(repository)]
    args += ["--text-column", body.text_column]
    for flag, value in (
        ("--sample", files.get("sample")),
        ("--test", files.get("test")),
        ("--pair-column", body.pair_column),
        ("--label-column", body.label_column),
        ("--max-length", body.max_length),
    ):
        if value is not None:
            args += [flag, str(value)]
    if body.labels:
        args += ["--labels", ",".join(body.labels)]
    if body.text_pair:
        args.append("--text-pair")
    if not body.quantize:
        args.append("--no-quantize")
    return args


def _checked_files(body: ImportRequest, settings: ApiSettings) -> dict[str, Path]:
    errors: list[dict[str, Any]] = []
    # The built-in names are encoders and generators, never classifiers to import.
    if body.source in BUILTIN_MODELS or not model_allowed(body.source, settings):
        msg = f"{body.source!r} is not in LUGPI_ALLOWED_MODELS; an admin of this server adds it"
        errors.append({"type": "value_error", "loc": ("body", "source"), "msg": msg})
    files: dict[str, Path] = {}
    for field in ("sample", "test"):
        value = getattr(body, field)
        if value is None:
            continue
        try:
            files[field] = resolve_data_path(value, list(settings.data_roots))
        except ValueError as e:
            errors.append(
                {"type": "value_error", "loc": ("body", field), "msg": f"{field} {value!r} {e}"}
            )
    if errors:
        raise RequestValidationError(errors)
    return files


def _lock(request: Request) -> asyncio.Lock:
    lock: asyncio.Lock | None = getattr(request.app.state, "import_lock", None)
    if lock is None:
        lock = request.app.state.import_lock = asyncio.Lock()
    return lock


@router.post("/import")
async def import_model(
    body: ImportRequest, request: Request, registry: RegistryDep, settings: SettingsDep
) -> ModelInfo:
    """Export, check (int8 against PyTorch on the sample), checksum and publish a
    classifier trained elsewhere; answer with the model's versions once it is served."""
    files = _checked_files(body, settings)
    lock = _lock(request)
    if lock.locked():
        raise Unavailable("another import is running; retry when it has finished")
    async with lock:
        env = {
            **os.environ,
            "PYTHONPATH": os.pathsep.join(filter(None, [_ROOT, os.environ.get("PYTHONPATH")])),
        }
        proc = await asyncio.create_subprocess_exec(
            *_command(body, files, Path(settings.model_repository)),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=env,
        )
        try:
            _, err = await asyncio.wait_for(proc.communicate(), IMPORT_TIMEOUT_S)
        except (TimeoutError, asyncio.CancelledError):
            proc.kill()
            await proc.wait()
            raise
    stderr = err.decode(errors="replace")
    if proc.returncode == 2:  # the CLI's "error: ..." line: something the caller can fix
        line = next(
            (x for x in reversed(stderr.splitlines()) if x.startswith("error: ")), stderr[-500:]
        )
        raise InvalidInput("import", line.removeprefix("error: "))
    if proc.returncode != 0:
        if "ModuleNotFoundError" in stderr:
            raise Unavailable(
                "this server cannot import models (the training packages are not installed "
                "here); run `lugpi models import` where they are, into this repository"
            )
        raise InternalError(f"the import failed (exit {proc.returncode}): {stderr[-300:]}")
    snap = await asyncio.to_thread(registry.refresh, body.name)
    return describe(snap, body.name, admin=True)
