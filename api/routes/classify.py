"""POST /classify: texts in, one prediction per text out, through the dynamic batcher."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from pydantic_core import to_json

from api.auth import AUTH_RESPONSES, ClassifyAccess
from api.deps import MetricsDep, RegistryDep, SettingsDep
from api.registry import LoadedModel
from api.schemas import ClassifyRequest, ClassifyResponse, error_responses
from api.scoring import run_request
from runtime.metrics import predictions as label_scores

router = APIRouter(tags=["classify"], dependencies=[ClassifyAccess], responses=AUTH_RESPONSES)


def _error(loc: tuple[str | int, ...], msg: str, kind: str) -> dict[str, Any]:
    # Same shape as FastAPI's own 422 items; the offending input is not echoed back.
    return {"type": kind, "loc": ("body", *loc), "msg": msg}


def within_limits(body: ClassifyRequest, settings: SettingsDep) -> ClassifyRequest:
    """The deployment's limits (settings), checked after the schema's structural rules."""
    errors = []
    if len(body.texts) > settings.max_texts_per_request:
        errors.append(
            _error(
                ("texts",),
                f"{len(body.texts)} texts; at most {settings.max_texts_per_request} per request "
                "(LUGPI_MAX_TEXTS_PER_REQUEST): split them over several requests",
                "too_long",
            )
        )
    for field, items in (("texts", body.texts), ("text_pairs", body.text_pairs or [])):
        for i, text in enumerate(items):
            if len(text) > settings.max_text_chars:
                errors.append(
                    _error(
                        (field, i),
                        f"{len(text)} characters; at most {settings.max_text_chars} "
                        "(LUGPI_MAX_TEXT_CHARS): shorten the text",
                        "string_too_long",
                    )
                )
    if errors:
        raise RequestValidationError(errors)
    return body


async def checked_request(body: ClassifyRequest, settings: SettingsDep) -> ClassifyRequest:
    # async: FastAPI would run a plain def dependency in a worker thread (a costly hop).
    return within_limits(body, settings)


CheckedRequest = Annotated[ClassifyRequest, Depends(checked_request)]


def _check_pairs(model: LoadedModel, body: ClassifyRequest) -> None:
    which = f"model {model.name!r} {model.version}"
    if model.manifest.text_pair and body.text_pairs is None:
        raise RequestValidationError(
            [
                _error(
                    ("text_pairs",),
                    f"{which} classifies text pairs: give text_pairs, one per text",
                    "missing",
                )
            ]
        )
    if not model.manifest.text_pair and body.text_pairs is not None:
        raise RequestValidationError(
            [
                _error(
                    ("text_pairs",),
                    f"{which} classifies single texts: leave text_pairs out",
                    "extra_forbidden",
                )
            ]
        )


def response_json(model: LoadedModel, predictions: list[Any], truncated: list[int]) -> Response:
    """The ClassifyResponse body, serialised once. Returning the model instead made FastAPI
    validate it again field by field before serialising it: a second pass over values this
    route built itself from the classifier's floats and the bundle's labels. The OpenAPI
    schema still names ClassifyResponse (``response_model``)."""
    body = {
        "model": model.name,
        "version": model.version,
        "predictions": predictions,
        "truncated": truncated,
    }
    # pydantic's own serialiser, with the NaN rule a model response had (null).
    return Response(to_json(body, inf_nan_mode="null"), media_type="application/json")


@router.post(
    "/classify",
    response_model=ClassifyResponse,
    responses=error_responses(
        s400="The body is not UTF-8 JSON.",
        s404="Unknown model or version; the detail lists what is served.",
        s413="Request body larger than LUGPI_MAX_BODY_BYTES.",
        s429="Too many texts queued for this model (LUGPI_MAX_QUEUED_TEXTS); see Retry-After.",
        s503="No model is loaded, or the request waited past LUGPI_REQUEST_TIMEOUT_S.",
    ),
)
async def classify(
    body: CheckedRequest, request: Request, registry: RegistryDep, metrics: MetricsDep
) -> Response:
    """Classify texts (or text pairs) with a served model; returns one prediction per text.

    Concurrent requests are batched together; each request runs entirely on the model
    version it resolved when it arrived, even if a newer version is loaded meanwhile.
    """
    model = registry.resolve(body.model, body.version)  # held for the whole request
    _check_pairs(model, body)
    out = await run_request(request, model.batcher, body.texts, body.text_pairs)

    predictions = label_scores(out.probs, model.labels)
    metrics.classify_requests.labels(model.name, model.version).inc()
    metrics.classified_texts.labels(model.name, model.version).inc(len(predictions))
    if out.truncated:
        metrics.truncated_texts.labels(model.name).inc(len(out.truncated))
    return response_json(model, predictions, out.truncated)
