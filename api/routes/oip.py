"""Open Inference Protocol v2 (KServe, Triton, Seldon), over the same batcher as /classify.

Inputs: ``text`` (BYTES, shape [batch] or [batch, 1]) and, for pair models,
``text_pair``. Outputs: ``probabilities`` (FP32 [batch, labels]) and, for bundles whose
graph has them, ``logits``. The classification extension (``parameters.classification
= k`` on a requested output) answers with the k best labels as ``"score:index:label"``
strings. JSON tensors and the binary-tensor extension are both accepted.

Versions are the repository's (``v1``, ``v2``...); a bare number (``1``) means the same.
Health, readiness and model metadata are public (reading what is served, README "Keys");
inference takes the same keys as every other inference route.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api import API_VERSION
from api.auth import ClassifyAccess
from api.deps import MetricsDep, RegistryDep, SettingsDep
from api.error_shapes import ErrorKind, ErrorSurface, RenderedError, native_status, register
from api.metrics import ApiMetrics
from api.oip_codec import (
    HEADER_LENGTH,
    InferRequest,
    OutputTensor,
    RequestedOutput,
    encode_response,
    parse_request,
)
from api.registry import LoadedModel, ModelRegistry, version_number
from api.schemas import error_responses
from api.scoring import ranked, score
from api.settings import ApiSettings
from contracts.bundle import ONNX_LOGITS, ONNX_OUTPUT
from contracts.errors import InvalidInput

TEXT, TEXT_PAIR = "text", "text_pair"
EXTENSIONS = ["classification", "binary_tensor_data"]

health = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"])
router = APIRouter(prefix="/v2", tags=["Open Inference Protocol v2"], dependencies=[ClassifyAccess])


def _render_error(
    kind: ErrorKind, message: str, native_detail: object | None, param: str | None
) -> RenderedError:
    # Triton and KServe answer every malformed request with 400.
    status = 400 if kind == "invalid" else native_status(kind)
    return RenderedError(status, {"error": message})


SUMMARY = 'the Open Inference Protocol v2 of KServe and Triton (`/v2/...`; `{"error"}`)'
ERROR_SURFACE = register(
    ErrorSurface(
        "oip", lambda method, path: path == "/v2" or path.startswith("/v2/"), _render_error
    )
)


class OipError(BaseModel):
    error: str


OIP_ERRORS = error_responses(
    OipError,
    s400="The request does not fit the model or protocol.",
    s404="Unknown model or version.",
    s413="Over a limit (body, texts, characters).",
    s429="Overloaded; retry after Retry-After seconds.",
    s503="No model is loaded.",
    s401="Keys are configured and none was sent.",
    s403="The key is not valid.",
)


class TensorMetadata(BaseModel):
    name: str
    datatype: str
    shape: list[int]


class ModelMetadata(BaseModel):
    name: str
    versions: list[str]
    platform: str
    inputs: list[TensorMetadata]
    outputs: list[TensorMetadata]


class ServerMetadata(BaseModel):
    name: str
    version: str
    extensions: list[str]


def document_schemas(schema: dict[str, Any]) -> None:
    """Put InferRequest (read by hand: it may carry binary tensors) into the OpenAPI schema."""
    body = InferRequest.model_json_schema(ref_template="#/components/schemas/{model}")
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    components.update(body.pop("$defs", {}))
    components["InferRequest"] = body


def _version(version: str | None) -> str | None:
    return f"v{version}" if version is not None and version.isdigit() else version


def _model(registry: ModelRegistry, name: str, version: str | None) -> LoadedModel:
    return registry.resolve(name, _version(version))


def _metadata(registry: ModelRegistry, model: LoadedModel) -> ModelMetadata:
    snap = registry.snapshot
    # Servable: loaded, or loaded by the first inference request naming it (api.registry).
    servable = [v for v in snap.present.get(model.name, []) if (model.name, v) not in snap.failures]
    n = len(model.labels)
    inputs = [TensorMetadata(name=TEXT, datatype="BYTES", shape=[-1])]
    if model.manifest.text_pair:
        inputs.append(TensorMetadata(name=TEXT_PAIR, datatype="BYTES", shape=[-1]))
    outputs = [TensorMetadata(name=ONNX_OUTPUT, datatype="FP32", shape=[-1, n])]
    if model.classifier.has_logits:
        outputs.append(TensorMetadata(name=ONNX_LOGITS, datatype="FP32", shape=[-1, n]))
    return ModelMetadata(
        name=model.name,
        versions=sorted(servable, key=version_number, reverse=True),
        platform="onnxruntime_onnx",
        inputs=inputs,
        outputs=outputs,
    )


@health.get("")
async def server_metadata() -> ServerMetadata:
    """The server's name, version and the protocol extensions it supports."""
    return ServerMetadata(name="lugpi", version=API_VERSION, extensions=EXTENSIONS)


@health.get("/health/live")
async def live() -> dict[str, bool]:
    """200 while the process answers."""
    return {"live": True}


@health.get("/health/ready", responses={503: {"description": "Not ready."}})
async def ready(registry: RegistryDep) -> Response:
    """200 once the models are loaded and warmed (the same rule as /readyz)."""
    ok = registry.ready
    return JSONResponse({"ready": ok}, status_code=200 if ok else 503)


@health.get("/models/{name}", responses=OIP_ERRORS)
async def model_metadata(name: str, registry: RegistryDep) -> ModelMetadata:
    """Inputs, outputs and servable versions (newest first) of a model; a version not
    loaded yet is loaded by its first inference request, and is ready from then on."""
    return _metadata(registry, _model(registry, name, None))


@health.get("/models/{name}/versions/{version}", responses=OIP_ERRORS)
async def version_metadata(name: str, version: str, registry: RegistryDep) -> ModelMetadata:
    """The same for one version (``v2`` or ``2``)."""
    return _metadata(registry, _model(registry, name, version))


@health.get("/models/{name}/ready", responses=OIP_ERRORS)
async def model_ready(name: str, registry: RegistryDep) -> Response:
    """200 when the model is loaded and servable; 404 otherwise."""
    return JSONResponse({"name": _model(registry, name, None).name, "ready": True})


@health.get("/models/{name}/versions/{version}/ready", responses=OIP_ERRORS)
async def version_ready(name: str, version: str, registry: RegistryDep) -> Response:
    """200 when the version is loaded and servable; 404 otherwise."""
    return JSONResponse({"name": _model(registry, name, version).name, "ready": True})


def _texts(parsed: dict[str, list[str]], model: LoadedModel) -> tuple[list[str], list[str] | None]:
    unknown = sorted(set(parsed) - {TEXT, TEXT_PAIR})
    if unknown:
        raise InvalidInput(
            "inputs",
            f"unknown input {unknown[0]!r}; inputs are {TEXT!r}"
            + (f" and {TEXT_PAIR!r}" if model.manifest.text_pair else ""),
        )
    if TEXT not in parsed:
        raise InvalidInput("inputs", f"no {TEXT!r} input")
    texts, pairs = parsed[TEXT], parsed.get(TEXT_PAIR)
    if pairs is not None and len(pairs) != len(texts):
        raise InvalidInput(
            f"inputs.{TEXT_PAIR}", f"{len(pairs)} elements for {len(texts)} texts; one per text"
        )
    return texts, pairs


def _outputs(
    request: InferRequest, model: LoadedModel, probs: np.ndarray, logits: np.ndarray | None
) -> list[OutputTensor]:
    available = {ONNX_OUTPUT: probs, **({ONNX_LOGITS: logits} if logits is not None else {})}
    binary_all = bool(request.parameters.get("binary_data_output", False))
    wanted: list[RequestedOutput | None] = [*request.outputs] if request.outputs else [None]
    tensors = []
    for out in wanted:
        name = out.name if out is not None else None
        params = out.parameters if out is not None else {}
        binary = bool(params.get("binary_data", binary_all))
        names = [name] if name is not None else list(available)
        for n in names:
            if n not in available:
                raise InvalidInput("outputs", f"unknown output {n!r}; outputs: {sorted(available)}")
            values = available[n]
            k = params.get("classification")
            if k is not None:
                if not isinstance(k, int) or k < 1:
                    raise InvalidInput(
                        f"outputs.{n}.parameters.classification", "must be an integer >= 1"
                    )
                k = min(k, len(model.labels))
                strings = [
                    [
                        f"{s:f}:{model.labels.index(label)}:{label}"
                        for label, s in ranked(row, model.labels, k)
                    ]
                    for row in values.tolist()
                ]
                arr = np.array(strings, dtype=object).reshape(len(strings), k)
                tensors.append(OutputTensor(n, "BYTES", list(arr.shape), arr, binary))
            else:
                tensors.append(OutputTensor(n, "FP32", list(values.shape), values, binary))
    return tensors


_INFER_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/json": {"schema": {"$ref": "#/components/schemas/InferRequest"}},
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"},
                "description": f"Binary-tensor extension: a JSON header of {HEADER_LENGTH} "
                "bytes, then the tensors.",
            },
        },
    }
}


@router.post("/models/{name}/infer", responses=OIP_ERRORS, openapi_extra=_INFER_BODY)
async def infer(
    name: str, request: Request, registry: RegistryDep, settings: SettingsDep, metrics: MetricsDep
) -> Response:
    """Classify the ``text`` (and ``text_pair``) tensor; probabilities, logits or labels."""
    return await _infer(name, None, request, registry, settings, metrics)


@router.post(
    "/models/{name}/versions/{version}/infer", responses=OIP_ERRORS, openapi_extra=_INFER_BODY
)
async def infer_version(
    name: str,
    version: str,
    request: Request,
    registry: RegistryDep,
    settings: SettingsDep,
    metrics: MetricsDep,
) -> Response:
    """The same on one version (``v2`` or ``2``)."""
    return await _infer(name, version, request, registry, settings, metrics)


async def _infer(
    name: str,
    version: str | None,
    request: Request,
    registry: ModelRegistry,
    settings: ApiSettings,
    metrics: ApiMetrics,
) -> Response:
    parsed = parse_request(await request.body(), request.headers.get(HEADER_LENGTH))
    model = await registry.get(name, _version(version))  # loads a published, unloaded one
    texts, pairs = _texts(parsed.tensors, model)
    scored = await score(
        request,
        registry,
        settings,
        metrics,
        texts,
        pairs,
        model=model.name,
        version=model.version,
        field=f"inputs.{TEXT}",
    )
    tensors = _outputs(parsed.request, scored.model, scored.out.probs, scored.out.logits)
    head: dict[str, Any] = {"model_name": scored.model.name, "model_version": scored.model.version}
    if parsed.request.id is not None:
        head["id"] = parsed.request.id
    body, headers, media_type = encode_response(head, tensors)
    return Response(body, media_type=media_type, headers=headers)
