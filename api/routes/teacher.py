"""POST /classify/teacher: the student and its teacher side by side.

The student answers here, from the API's own registry. The teacher needs a generated
image per text and torch, so a worker answers for it (``send_task`` by name to the
``lugpi.teacher`` queue, where the worker keeps generator and teacher loaded). Which
teacher: the one the bundle's provenance names, i.e. ``teacher-<name>/`` in the run
directory of the job that trained the bundle. No worker answering in time: 503.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field

from api.auth import AUTH_RESPONSES, IsAdmin, TeacherAccess
from api.deps import RegistryDep, SettingsDep
from api.disconnect import unless_disconnected
from api.routes.classify import within_limits
from api.routes.jobs import QueueDep
from api.schemas import ClassifyRequest, Flag, Prediction
from api.settings import ApiSettings
from contracts.errors import NoTeacher, Overloaded, TeacherRefused
from runtime.metrics import predictions

log = logging.getLogger("lugpi.api")
router = APIRouter(tags=["classify"], dependencies=[TeacherAccess], responses=AUTH_RESPONSES)


class TeacherRequest(ClassifyRequest):
    return_images: Flag = Field(
        default=False, description="Also return each generated image (PNG, base64)."
    )
    teacher: str | None = Field(
        default=None,
        pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$",
        description="Which of the run's teachers; default: the first.",
    )


class TeacherSide(BaseModel):
    name: str
    predictions: list[Prediction]
    prompts: list[str] = Field(description="The generator prompt of each text.")
    images: list[str] | None = Field(default=None, description="PNG, base64, if asked for.")
    images_drawn: int = Field(description="Images generated now (others came from the cache).")


class TeacherResponse(BaseModel):
    model: str
    version: str
    job_id: str
    student: list[Prediction]
    teacher: TeacherSide
    timings_ms: dict[str, float] = Field(
        description="student; the worker's load, generate and teacher steps; round_trip "
        "(API -> worker -> API, all included)."
    )


def _checked(body: TeacherRequest, settings: SettingsDep) -> TeacherRequest:
    within_limits(body, settings)
    if len(body.texts) > settings.teacher_max_texts:
        msg = (
            f"{len(body.texts)} texts; the teacher takes at most {settings.teacher_max_texts} "
            "per call (LUGPI_TEACHER_MAX_TEXTS): each needs a generated image"
        )
        raise RequestValidationError([{"type": "too_long", "loc": ("body", "texts"), "msg": msg}])
    return body


class TeacherGate:
    """Calls waiting for a worker: at most ``size``, on a pool of their own, so that slow or
    absent workers never take the threads every other sync route and dependency uses."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.pool = ThreadPoolExecutor(max_workers=size, thread_name_prefix="lugpi-teacher")
        self.in_flight = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        # Only the event loop touches in_flight: no lock needed.
        if self.in_flight >= self.size:
            raise Overloaded(
                f"{self.in_flight} teacher calls are waiting for workers (at most {self.size}, "
                "LUGPI_TEACHER_CONCURRENCY); retry after the Retry-After seconds"
            )
        self.in_flight += 1
        try:
            yield
        finally:
            self.in_flight -= 1


def _gate(request: Request, settings: ApiSettings) -> TeacherGate:
    gate: TeacherGate | None = getattr(request.app.state, "teacher_gate", None)
    if gate is None:
        gate = request.app.state.teacher_gate = TeacherGate(settings.teacher_concurrency)
    return gate


CheckedTeacherRequest = Annotated[TeacherRequest, Depends(_checked)]


@router.post(
    "/classify/teacher",
    responses={
        409: {"description": "The model was not trained by a job here; its teacher is unknown."},
        429: {"description": "LUGPI_TEACHER_CONCURRENCY calls already wait for workers."},
        503: {"description": "No worker answered in time (or none can: embedded mode)."},
    },
)
async def classify_with_teacher(
    body: CheckedTeacherRequest,
    request: Request,
    registry: RegistryDep,
    settings: SettingsDep,
    queue: QueueDep,
    admin: IsAdmin,
) -> TeacherResponse:
    """Classify with the student (here) and with its multimodal teacher (on a worker, which
    draws one image per text first). For demos and debugging: slower than /classify."""
    model = registry.resolve(body.model, body.version)
    if model.manifest.text_pair != (body.text_pairs is not None):
        need = "give text_pairs" if model.manifest.text_pair else "leave text_pairs out"
        raise RequestValidationError(
            [{"type": "value_error", "loc": ("body", "text_pairs"), "msg": f"{model.name}: {need}"}]
        )
    job_id = model.manifest.provenance.job_id
    if job_id is None:
        raise NoTeacher(
            f"{model.name} {model.version} was not trained by a job here: no teacher to ask"
        )
    payload: dict[str, Any] = {
        "job_id": job_id,
        "teacher": body.teacher,
        "texts": body.texts,
        "text_pairs": body.text_pairs,
        "return_images": body.return_images,
    }
    timeout = settings.teacher_timeout_s
    # The worker drops the call unrun once the API has given up on it.
    payload["deadline"] = time.time() + timeout
    started = time.perf_counter()
    cancel = threading.Event()
    with _gate(request, settings).slot():
        # Start the worker's part first; the student runs here meanwhile.
        loop = asyncio.get_running_loop()
        pool = request.app.state.teacher_gate.pool
        teacher_call = loop.run_in_executor(pool, queue.classify_teacher, payload, timeout, cancel)
        try:
            student_out = await unless_disconnected(
                request, model.batcher.classify(body.texts, body.text_pairs)
            )
            student_ms = (time.perf_counter() - started) * 1000
            answer = await unless_disconnected(request, asyncio.shield(teacher_call))
        finally:
            cancel.set()  # a no-op once answered; else the worker's task is revoked
    round_trip = (time.perf_counter() - started) * 1000
    if "error" in answer:
        # Worker errors name run directories and files: details for admins and the log.
        log.warning("teacher for %s/%s failed: %s", model.name, model.version, answer["error"])
        detail = "the worker could not run this model's teacher (teacher_failed)"
        raise TeacherRefused(f"{detail}: {answer['error']}" if admin else detail)
    teacher = TeacherSide(
        name=answer["teacher"],
        predictions=[Prediction(**p) for p in answer["predictions"]],
        prompts=answer["prompts"],
        images=answer["images"],
        images_drawn=answer["images_drawn"],
    )
    timings = {
        "student": round(student_ms, 1),
        **answer["timings_ms"],
        "round_trip": round(round_trip, 1),
    }
    return TeacherResponse(
        model=model.name,
        version=model.version,
        job_id=job_id,
        student=[Prediction(**p) for p in predictions(student_out.probs, model.labels)],
        teacher=teacher,
        timings_ms=timings,
    )
