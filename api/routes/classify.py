"""POST /classify: texts in, one prediction per text out, through the dynamic batcher."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from fastapi.routing import APIRoute
from pydantic_core import to_json

from api.auth import AUTH_RESPONSES, ClassifyAccess
from api.deps import MetricsDep, RegistryDep, SettingsDep
from api.metrics import ApiMetrics
from api.registry import LoadedModel, ModelRegistry
from api.schemas import ClassifyRequest, ClassifyResponse, error_responses
from api.scoring import RequestRuleBroken, check_limits, check_pairs, count, run_request
from runtime.metrics import predictions as label_scores

router = APIRouter(tags=["classify"], dependencies=[ClassifyAccess], responses=AUTH_RESPONSES)


def as_validation_error(e: RequestRuleBroken) -> RequestValidationError:
    """A rule of ``api.scoring`` in the native 422 shape (FastAPI's own error items); the
    offending input is not echoed back."""
    return RequestValidationError(
        [{"type": e.error_type, "loc": ("body", *e.loc), "msg": e.reason}]
    )


def within_limits(body: ClassifyRequest, settings: SettingsDep) -> ClassifyRequest:
    """The deployment's limits (``api.scoring.check_limits``), after the schema's rules."""
    try:
        check_limits(settings, body.texts, body.text_pairs, "texts", "text_pairs")
    except RequestRuleBroken as e:
        raise as_validation_error(e) from None
    return body


async def checked_request(body: ClassifyRequest, settings: SettingsDep) -> ClassifyRequest:
    # async: FastAPI would run a plain def dependency in a worker thread (a costly hop).
    return within_limits(body, settings)


CheckedRequest = Annotated[ClassifyRequest, Depends(checked_request)]


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
    return await answer(body, request, registry, metrics)


async def answer(
    body: ClassifyRequest, request: Request, registry: ModelRegistry, metrics: ApiMetrics
) -> Response:
    """The route's work once its dependencies are solved (the key checked, the body read
    and within limits); ``api.fast_classify`` calls it too. Errors are raised for the
    app's exception handlers."""
    model = await registry.get(body.model, body.version)  # held for the whole request
    try:
        check_pairs(
            model,
            body.text_pairs,
            "text_pairs",
            give="give text_pairs, one per text",
            leave="leave text_pairs out",
        )
    except RequestRuleBroken as e:
        raise as_validation_error(e) from None
    out = await run_request(request, model.batcher, body.texts, body.text_pairs)
    count(metrics, model, len(body.texts), out)
    return response_json(model, label_scores(out.probs, model.labels), out.truncated)


# The route object, for api.fast_classify (which stands in front of it).
route = next(r for r in router.routes if isinstance(r, APIRoute) and r.path == "/classify")
