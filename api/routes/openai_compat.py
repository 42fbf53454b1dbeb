"""infinity's classification shape on /v1/classify and the OpenAI model list on /v1/models.

Same batcher, limits and keys as /classify; errors in the OpenAI shape
(``{"error": {"message", "type", "param", "code"}}``). The native ``/classify`` body
is unchanged: this is a second door to the same room.
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Request
from pydantic import BaseModel, ConfigDict, Field

from api.auth import ClassifyAccess
from api.deps import MetricsDep, RegistryDep, SettingsDep
from api.error_shapes import ErrorKind, ErrorSurface, RenderedError, native_status, register
from api.registry import version_number
from api.schemas import MAX_LIST_ITEMS, Flag, Text, error_responses
from api.scoring import ranked, score

router = APIRouter(prefix="/v1", tags=["infinity / OpenAI"], dependencies=[ClassifyAccess])
# Reading what is served is public (README, "Keys"): /v1/models like /models.
public = APIRouter(prefix="/v1", tags=["infinity / OpenAI"])

# infinity's placeholder when a client names no model.
UNNAMED = "default/not-specified"


_OPENAI_TYPE: dict[ErrorKind, str] = {
    "unauthorized": "authentication_error",
    "forbidden": "permission_error",
    "not_found": "not_found_error",
    "overloaded": "rate_limit_error",
    "unavailable": "service_unavailable",
    "backend": "server_error",
    "internal": "server_error",
}


def _render_error(
    kind: ErrorKind, message: str, native_detail: object | None, param: str | None
) -> RenderedError:
    status = native_status(kind)
    kind_type = _OPENAI_TYPE.get(kind, "invalid_request_error")
    error = {"message": message, "type": kind_type, "param": param, "code": status}
    return RenderedError(status, {"error": error})


SUMMARY = "infinity's `POST /v1/classify` with `GET /v1/models` (OpenAI's error shape)"
ERROR_SURFACE = register(
    ErrorSurface("openai", lambda method, path: path.startswith("/v1/"), _render_error)
)


class OpenAIError(BaseModel):
    message: str
    type: str
    param: str | None
    code: int


class OpenAIErrorResponse(BaseModel):
    error: OpenAIError


ERRORS = error_responses(
    OpenAIErrorResponse,
    s400="The body is not UTF-8 JSON.",
    s401="Keys are configured and none was sent (X-API-Key or Authorization: Bearer).",
    s403="The key is not valid.",
    s404="Unknown model.",
    s413="Over a limit (body, texts, characters).",
    s422="The body does not validate, or the model takes text pairs.",
    s429="Overloaded; retry after Retry-After seconds.",
    s503="No model is loaded.",
)


class ClassifyInput(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={"examples": [{"model": "sentiment", "input": ["I like you."]}]},
    )

    input: list[Text] = Field(
        min_length=1, max_length=MAX_LIST_ITEMS, description="Texts to classify."
    )
    model: str = Field(
        default=UNNAMED, description=f"Model name; {UNNAMED!r}: the server's default model."
    )
    raw_scores: Flag = Field(default=False, description="Logits instead of probabilities.")


class LabelScore(BaseModel):
    score: float
    label: str


class Usage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class ClassifyResult(BaseModel):
    object: Literal["classify"] = "classify"
    data: list[list[LabelScore]] = Field(description="Per text, every label, highest first.")
    model: str
    usage: Usage
    id: str = Field(default_factory=lambda: f"lugpi-{uuid.uuid4()}")
    created: int = Field(default_factory=lambda: int(time.time()))


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    owned_by: str = "lugpi"
    created: int
    backend: str = "onnxruntime"
    capabilities: list[str] = Field(default_factory=lambda: ["classify"])
    stats: dict[str, Any] = Field(default_factory=dict)


class ModelCardList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


@router.post("/classify", responses=ERRORS)
async def classify(
    body: ClassifyInput,
    request: Request,
    registry: RegistryDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> ClassifyResult:
    """infinity's /classify: every label with its score per text, highest first."""
    name = None if body.model == UNNAMED else body.model
    scored = await score(
        request, registry, settings, metrics, body.input, None, model=name, field="input"
    )
    rows = scored.scores("none" if body.raw_scores else "softmax", field="raw_scores")
    data = [
        [LabelScore(label=label, score=s) for label, s in ranked(row, scored.labels)]
        for row in rows.tolist()
    ]
    tokens = scored.out.n_tokens
    return ClassifyResult(
        data=data, model=scored.model.name, usage=Usage(prompt_tokens=tokens, total_tokens=tokens)
    )


@public.get("/models", responses=ERRORS)
async def list_models(registry: RegistryDep) -> ModelCardList:
    """The served models in the OpenAI list shape (``id``: the model's name)."""
    snap = registry.snapshot
    cards = []
    for name in sorted(snap.models):
        versions = sorted(snap.models[name], key=version_number, reverse=True)
        newest = snap.models[name][versions[0]]
        cards.append(
            ModelCard(
                id=name,
                created=int(newest.manifest.created_at.timestamp()),
                capabilities=["classify"],
                stats={
                    "versions": versions,
                    "labels": newest.labels,
                    "text_pair": newest.manifest.text_pair,
                },
            )
        )
    return ModelCardList(data=cards)
