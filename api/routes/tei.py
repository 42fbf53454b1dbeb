"""Text Embeddings Inference's classification surface, over the same batcher as /classify.

- ``POST /predict``: TEI's body (``inputs``: a string, a pair ``[text, text_pair]`` or a
  batch ``[[text], [text, text_pair], ...]``; ``truncate``, ``truncation_direction``,
  ``raw_scores``) -> every label with its score, highest first (a list per input when
  the input was a batch).
- ``POST /``: the body ``huggingface_hub.InferenceClient.text_classification`` sends to
  a URL (``{"inputs", "parameters": {"function_to_apply", "top_k"}}``); always a list of
  lists, one per text, which is what that client parses.
- ``GET /info``: TEI's model description; ``model_id`` is the model's name.

Errors are TEI's ``{"error", "error_type"}`` with its statuses (``api.error_shapes``).
TEI serves one model; here ``?model=`` (and ``?version=``) pick another than the default.
"""

from __future__ import annotations

import time
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from api import API_VERSION
from api.auth import ClassifyAccess
from api.batching import TruncationSide
from api.deps import MetricsDep, RegistryDep, SettingsDep
from api.error_shapes import ErrorKind, ErrorSurface, RenderedError, register
from api.schemas import MAX_LIST_ITEMS, NAME_PATTERN, Count, Flag, Text, error_responses
from api.scoring import Scored, ScoreFunction, ranked, score
from contracts.bundle import VERSION_PATTERN
from contracts.errors import InvalidInput, LimitExceeded


async def _known_query(request: Request) -> None:
    # A mistyped ?modle= would otherwise silently serve the default model.
    unknown = sorted(set(request.query_params) - {"model", "version"})
    if unknown:
        raise InvalidInput(
            f"query {unknown[0]!r}", "unknown parameter; these routes take ?model= and ?version="
        )


router = APIRouter(tags=["TEI"], dependencies=[ClassifyAccess, Depends(_known_query)])
# Reading what is served is public (README, "Keys"): /info like /models.
public = APIRouter(tags=["TEI"], dependencies=[Depends(_known_query)])

ModelQuery = Annotated[
    str | None,
    Query(pattern=NAME_PATTERN, description="Model name; default: the server's default model."),
]
VersionQuery = Annotated[
    str | None, Query(pattern=VERSION_PATTERN, description="Version; default: the newest.")
]


# TEI's own convention (its ErrorType -> status table): validation 413, unreadable input
# 422, a failed model 424, shed load 429, not ready 503.
_TEI: dict[ErrorKind, tuple[int, str]] = {
    "bad_request": (422, "Validation"),
    "invalid": (422, "Validation"),
    "too_large": (413, "Validation"),
    "unauthorized": (401, "Unauthorized"),
    "forbidden": (403, "Unauthorized"),
    "not_found": (404, "Validation"),
    "conflict": (409, "Validation"),
    "not_allowed": (405, "Validation"),
    "overloaded": (429, "Overloaded"),
    "unavailable": (503, "Unhealthy"),
    "backend": (424, "Backend"),
    "internal": (424, "Backend"),
    "client_gone": (499, "Backend"),
}


def _render_error(
    kind: ErrorKind, message: str, native_detail: object | None, param: str | None
) -> RenderedError:
    status, error_type = _TEI[kind]
    return RenderedError(status, {"error": message, "error_type": error_type})


SUMMARY = "Text Embeddings Inference (`POST /predict`, `POST /`, `GET /info`; TEI's error shape)"
ERROR_SURFACE = register(
    ErrorSurface(
        "tei",
        lambda method, path: path in ("/predict", "/info") or (path == "/" and method == "POST"),
        _render_error,
    )
)


class TeiErrorResponse(BaseModel):
    error: str
    error_type: Literal["Validation", "Unauthorized", "Overloaded", "Unhealthy", "Backend"]


TEI_ERRORS = error_responses(
    TeiErrorResponse,
    s401="Keys are configured and none was sent (X-API-Key or Authorization: Bearer).",
    s403="The key is not valid.",
    s404="Unknown ?model= or ?version=; the error lists what is served.",
    s413="Over a limit: texts per request, characters per text, or tokens with truncate=false.",
    s422="The body does not parse, or does not fit the model (a pair for a single-text "
    "model, raw scores from a bundle without logits).",
    s424="The model failed on the request.",
    s429="The server is overloaded; retry after Retry-After seconds.",
    s503="No model is loaded.",
)


# Bounded lists (api.schemas.MAX_LIST_ITEMS): pydantic stops at the bound instead of
# validating every item of a huge list once per branch of the union.
Texts = Annotated[list[Text], Field(max_length=MAX_LIST_ITEMS)]
# A batch item is [text] or [text, text_pair].
Sequences = Annotated[
    list[Annotated[list[Text], Field(max_length=2)]], Field(max_length=MAX_LIST_ITEMS)
]


class TeiPrediction(BaseModel):
    score: float
    label: str


class PredictRequest(BaseModel):
    # TEI ignores fields it does not know, and so do we: clients send extra ones.
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"inputs": "I like you."},
                {"inputs": ["The girl shot dead in Bellaghy was 18.", "Bellaghy"]},
                {"inputs": [["I like you."], ["I hate pineapples"]], "raw_scores": True},
            ]
        },
    )

    inputs: Text | Texts | Sequences = Field(
        description="A string, a pair [text, text_pair], or a batch [[text], [text, "
        "text_pair], ...]."
    )
    truncate: Flag | None = Field(
        default=None,
        description="Cut inputs longer than max_input_length tokens. Default: the server's "
        "auto_truncate (true); false refuses such inputs with 413.",
    )
    truncation_direction: Literal["right", "left", "Right", "Left"] = Field(
        default="right", description="Which end of a too-long input is cut off."
    )
    raw_scores: Flag = Field(
        default=False, description="Logits instead of probabilities (bundles with logits)."
    )


class HfParameters(BaseModel):
    model_config = ConfigDict(extra="ignore")

    function_to_apply: ScoreFunction | None = Field(
        default=None, description="softmax (default): probabilities; sigmoid; none: logits."
    )
    top_k: Count | None = Field(default=None, ge=1, description="Only the k best labels.")


class TextPairInput(BaseModel):
    text: Text
    text_pair: Text


class HfTextClassificationRequest(BaseModel):
    model_config = ConfigDict(
        extra="ignore",
        json_schema_extra={
            "examples": [
                {"inputs": "I like you.", "parameters": {"top_k": 2}},
                {
                    "inputs": {
                        "text": "The girl shot dead in Bellaghy was 18.",
                        "text_pair": "Bellaghy",
                    }
                },
            ]
        },
    )

    inputs: (
        Text
        | Texts
        | TextPairInput
        | Annotated[list[TextPairInput], Field(max_length=MAX_LIST_ITEMS)]
    ) = Field(
        description="A text, a list of texts, or {text, text_pair} (a list of them) for "
        "pair models."
    )
    parameters: HfParameters | None = None


def _sequences(inputs: str | list[str] | list[list[str]]) -> tuple[list[list[str]], bool]:
    """TEI's reading of ``inputs``: ([sequence, ...], whether it was a batch)."""
    if isinstance(inputs, str):
        return [[inputs]], False
    if inputs and all(isinstance(x, str) for x in inputs):
        if len(inputs) > 2:
            raise InvalidInput(
                "inputs",
                f"a list of {len(inputs)} strings; a sequence is one string or a pair "
                "[text, text_pair]; send a batch as [[text], [text], ...]",
            )
        return [list(inputs)], False  # type: ignore[arg-type]
    if not inputs:
        raise InvalidInput("inputs", "an empty batch; send at least one input")
    for i, seq in enumerate(inputs):
        if not isinstance(seq, list) or len(seq) not in (1, 2):
            n = len(seq) if isinstance(seq, list) else 1
            raise InvalidInput(
                f"inputs[{i}]",
                f"{n} strings; each batch item is [text] or [text, text_pair]",
            )
    return [list(seq) for seq in inputs], True


def _split(sequences: list[list[str]]) -> tuple[list[str], list[str] | None]:
    kinds = {len(s) for s in sequences}
    if kinds == {1, 2}:
        raise InvalidInput(
            "inputs", "the batch mixes single texts and pairs; a model takes one or the other"
        )
    texts = [s[0] for s in sequences]
    return texts, ([s[1] for s in sequences] if kinds == {2} else None)


def _timing_headers(response: Response, scored: Scored, started: float, chars: int) -> None:
    """TEI's timing headers, in whole milliseconds as TEI sends them."""
    t = scored.out.timings
    total = str(int((time.perf_counter() - started) * 1000))
    response.headers["x-compute-type"] = scored.model.classifier.provider.removesuffix(
        "ExecutionProvider"
    ).lower()
    response.headers["x-compute-time"] = total
    response.headers["x-total-time"] = total
    response.headers["x-compute-characters"] = str(chars)
    response.headers["x-compute-tokens"] = str(scored.out.n_tokens)
    response.headers["x-tokenization-time"] = str(int(t.tokenize_s * 1000))
    response.headers["x-queue-time"] = str(int(t.queue_s * 1000))
    response.headers["x-inference-time"] = str(int(t.inference_s * 1000))
    response.headers["x-model-version"] = scored.model.version


def _refuse_truncated(scored: Scored) -> None:
    if scored.out.truncated:
        i = scored.out.truncated[0]
        raise LimitExceeded(
            "inputs",
            f"input {i} has more than max_input_length = {scored.model.manifest.max_length} "
            "tokens; shorten it or send truncate=true",
        )


@router.post("/predict", responses=TEI_ERRORS)
async def predict(
    body: PredictRequest,
    request: Request,
    response: Response,
    registry: RegistryDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    model: ModelQuery = None,
    version: VersionQuery = None,
) -> list[TeiPrediction] | list[list[TeiPrediction]]:
    """TEI's /predict: every label with its score, highest first.

    A single input (a string or a pair) gets one list; a batch gets a list per input.
    """
    started = time.perf_counter()
    sequences, batched = _sequences(body.inputs)
    texts, pairs = _split(sequences)
    direction: TruncationSide = "left" if body.truncation_direction.lower() == "left" else "right"
    scored = await score(
        request,
        registry,
        settings,
        metrics,
        texts,
        pairs,
        model=model,
        version=version,
        truncation=direction,
    )
    if body.truncate is False:
        _refuse_truncated(scored)
    rows = scored.scores("none" if body.raw_scores else "softmax", field="raw_scores")
    out = [
        [TeiPrediction(label=label, score=s) for label, s in ranked(row, scored.labels)]
        for row in rows.tolist()
    ]
    _timing_headers(response, scored, started, sum(len(t) for s in sequences for t in s))
    return out if batched else out[0]


@router.post(
    "/",
    responses=TEI_ERRORS,
    summary="Text classification as huggingface_hub.InferenceClient calls it",
)
async def hf_text_classification(
    body: HfTextClassificationRequest,
    request: Request,
    response: Response,
    registry: RegistryDep,
    settings: SettingsDep,
    metrics: MetricsDep,
    model: ModelQuery = None,
    version: VersionQuery = None,
) -> list[list[TeiPrediction]]:
    """``InferenceClient(model="http://host:port").text_classification(text)`` posts here.

    One list per text (labels highest first), also for a single text: that client reads
    the first list. ``parameters.function_to_apply`` = softmax (probabilities, the
    default), sigmoid or none (logits); ``parameters.top_k`` keeps the k best labels.
    """
    started = time.perf_counter()
    items = body.inputs if isinstance(body.inputs, list) else [body.inputs]
    texts = [i.text if isinstance(i, TextPairInput) else i for i in items]
    pair_items = [i.text_pair for i in items if isinstance(i, TextPairInput)]
    if pair_items and len(pair_items) != len(items):
        raise InvalidInput("inputs", "mixes texts and {text, text_pair} objects; send one kind")
    pairs = pair_items or None
    params = body.parameters or HfParameters()
    scored = await score(
        request, registry, settings, metrics, texts, pairs, model=model, version=version
    )
    rows = scored.scores(
        params.function_to_apply or "softmax", field="parameters.function_to_apply"
    )
    _timing_headers(
        response, scored, started, sum(len(t) for t in texts) + sum(map(len, pairs or []))
    )
    return [
        [
            TeiPrediction(label=label, score=s)
            for label, s in ranked(row, scored.labels, params.top_k)
        ]
        for row in rows.tolist()
    ]


class ClassifierModel(BaseModel):
    id2label: dict[str, str]
    label2id: dict[str, int]


class ModelType(BaseModel):
    classifier: ClassifierModel


class TeiInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    model_id: str = Field(description="The model's name (never where it is stored).")
    model_sha: str | None = Field(description="The bundle version served (TEI: revision).")
    model_dtype: str = Field(description="int8 or float32: the ONNX file served.")
    model_type: ModelType
    max_concurrent_requests: int = Field(
        description="Texts that may wait per model version before 429 (LUGPI_MAX_QUEUED_TEXTS)."
    )
    max_input_length: int = Field(description="Tokens; longer inputs are truncated.")
    max_batch_tokens: int
    max_batch_requests: int | None
    max_client_batch_size: int = Field(description="Most inputs in one request.")
    auto_truncate: bool
    tokenization_workers: int
    version: str = Field(description="The LUGPI API's version.")
    sha: str | None = None
    docker_label: str | None = None


@public.get("/info", responses=TEI_ERRORS)
async def info(
    registry: RegistryDep,
    settings: SettingsDep,
    model: ModelQuery = None,
    version: VersionQuery = None,
) -> TeiInfo:
    """TEI's description of the served model (the default one, or ``?model=``)."""
    loaded = registry.resolve(model, version)
    labels = loaded.labels
    return TeiInfo(
        model_id=loaded.name,
        model_sha=loaded.version,
        model_dtype="int8" if loaded.classifier.variant == "int8" else "float32",
        model_type=ModelType(
            classifier=ClassifierModel(
                id2label={str(i): label for i, label in enumerate(labels)},
                label2id={label: i for i, label in enumerate(labels)},
            )
        ),
        max_concurrent_requests=settings.max_queued_texts,
        max_input_length=loaded.manifest.max_length,
        max_batch_tokens=settings.max_batch_size * loaded.manifest.max_length,
        max_batch_requests=settings.max_batch_size,
        max_client_batch_size=settings.max_texts_per_request,
        auto_truncate=True,
        tokenization_workers=1,
        version=API_VERSION,
    )
