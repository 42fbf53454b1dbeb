"""Request and response bodies of the inference routes (docs/contracts.md).

Structural rules (types, non-empty, equal lengths, unknown keys) are declared here.
The per-deployment limits (texts per request, characters per text) are settings, so
``routes/classify.py`` checks them and ``main.py`` writes them into the OpenAPI schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, StringConstraints, model_validator

from contracts.bundle import VERSION_PATTERN, ScoreTemperature

NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"

# Every list in a request body carries a maximum length in its schema. pydantic counts
# items as it validates them and stops at the bound, so a body of a million items that
# each fail validation costs the bound, not a million error objects (issue 27 item 1).
# The deployment's own limit (LUGPI_MAX_TEXTS_PER_REQUEST, at most this) is checked
# afterwards with a message naming the setting.
MAX_LIST_ITEMS = 4096

# pydantic also refuses unpaired surrogates ("\ud800" is valid JSON, not valid Unicode),
# which the tokenizer could not take.
Text = Annotated[str, StringConstraints(min_length=1)]
# A request's booleans and integers take only that JSON type. pydantic's lax mode reads 0.0
# or "true" as a boolean and "2" or 2.0 as an integer: a client that sent the wrong type
# would get an answer to a question it did not ask, where a 422 tells it what to fix.
Flag = Annotated[bool, Strict()]
Count = Annotated[int, Strict()]


class ClassifyRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"texts": ["A gripping, beautifully shot film.", "Dull and far too long."]},
                {
                    "texts": ["The teenage girl shot dead in Bellaghy was 18."],
                    "text_pairs": ["Bellaghy"],
                    "model": "cwi-news",
                    "version": "v2",
                },
            ]
        },
    )

    texts: list[Text] = Field(
        min_length=1,
        max_length=MAX_LIST_ITEMS,
        description="Texts to classify, non-empty strings. At most LUGPI_MAX_TEXTS_PER_REQUEST "
        "(default 64) texts of at most LUGPI_MAX_TEXT_CHARS (default 10000) characters.",
    )
    text_pairs: list[Text] | None = Field(
        default=None,
        max_length=MAX_LIST_ITEMS,
        description="Second text of each pair, aligned with texts: required by pair models "
        "(e.g. CWI: the target phrase), refused by single-text models.",
    )
    model: str | None = Field(
        default=None,
        pattern=NAME_PATTERN,
        description="Model name; default: the server's default model.",
    )
    version: str | None = Field(
        default=None,
        pattern=VERSION_PATTERN,
        description="Version (v1, v2, ...); default: the newest.",
    )

    @model_validator(mode="after")
    def _pairs_align(self) -> ClassifyRequest:
        if self.text_pairs is not None and len(self.text_pairs) != len(self.texts):
            raise ValueError(
                f"text_pairs has {len(self.text_pairs)} items but texts has {len(self.texts)}; "
                "give one text_pair per text"
            )
        return self


class ErrorResponse(BaseModel):
    detail: str = Field(description="What went wrong and what to change.")


def error_responses(
    shape: type[BaseModel] = ErrorResponse, **described: str
) -> dict[int | str, dict[str, object]]:
    """OpenAPI ``responses`` for error statuses: ``error_responses(s404="...")``, each in
    the error ``shape`` of the surface (the native ``{"detail"}`` by default). The one
    helper every surface documents its errors with."""
    return {int(key[1:]): {"model": shape, "description": text} for key, text in described.items()}


class Prediction(BaseModel):
    label: str = Field(description="The most probable label.")
    score: float = Field(description="Its probability.")
    scores: dict[str, float] = Field(description="Probability of every label.")


class ClassifyResponse(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "model": "imdb",
                    "version": "v2",
                    "predictions": [
                        {"label": "pos", "score": 0.97, "scores": {"neg": 0.03, "pos": 0.97}}
                    ],
                    "truncated": [],
                }
            ]
        }
    )

    model: str
    version: str
    predictions: list[Prediction] = Field(description="One per text, in request order.")
    truncated: list[int] = Field(
        description="Indices of texts longer than the model's max_length tokens: they were "
        "classified on their first max_length tokens."
    )


class ExecutionInfo(BaseModel):
    """api.execution.Plan as callers see it."""

    instances: int = Field(description="Engine instances taking work from the version's queue.")
    intra_op_threads: int
    spinning: bool
    batch_cap: int = Field(description="Most texts in one onnxruntime call.")
    lone_session: bool = Field(
        description="Lone requests run on a spinning session of every core of their own."
    )
    why: list[str] = Field(description="Each choice and the measurement (or setting) behind it.")
    cost_curve_ms: dict[str, dict[str, float]] | None = Field(
        default=None,
        description="Measured at load: tokens per text -> batch size -> ms per text (one "
        "thread), batch-1 ms with one thread and with every core (spinning or not), and the "
        "one-thread call fitted as a fixed ms plus ms per padded token (which texts share "
        "a call).",
    )


class VersionInfo(BaseModel):
    model_config = ConfigDict(protected_namespaces=())

    version: str
    status: Literal["loaded", "failed", "available"] = Field(
        description="loaded: in memory, answering; failed: did not verify or load (see "
        "error); available: valid on disk, loaded by the first inference request naming it."
    )
    is_default: bool = Field(description="Served when a request names no version.")
    error_code: Literal["bundle_invalid", "load_failed"] | None = Field(
        default=None, description="Why a failed version is not served."
    )
    error: str | None = Field(default=None, description="The reason, in a sentence.")
    error_detail: str | None = Field(
        default=None, description="The full error (paths included): admin callers only."
    )
    labels: list[str] | None = None
    max_length: int | None = None
    text_pair: bool | None = None
    variant: str | None = Field(default=None, description="int8 or fp32: the ONNX file served.")
    provider: str | None = Field(
        default=None,
        description="What runs the graph: an onnxruntime execution provider, or 'OpenVINO CPU' "
        "(LUGPI_ENGINE=openvino).",
    )
    created_at: datetime | None = None
    # model -> split -> figures; export adds a text "source" (which engine measured them)
    # and the "confusion" matrix (rows: true label, columns: predicted, in label order).
    metrics: dict[str, dict[str, dict[str, float | int | str | list[list[int]]]]] | None = None
    provenance: dict[str, object] | None = None
    # Issue 26 (trust-a): the score temperature and ECE/NLL/Brier before/after it, and why a
    # version is held back by the publish gate (contracts/publish_gate.py).
    score_temperature: ScoreTemperature | None = Field(
        default=None,
        description="Probabilities are softmax(logits / temperature); fitted on dev at export, "
        "with ECE, NLL and Brier before and after. Absent: temperature 1.",
    )
    held: str | None = Field(
        default=None,
        description="Why the publish gate held this version back: it is never the default "
        "unless an admin pins it.",
    )
    memory_mb: float | None = Field(
        default=None,
        description="A loaded version: what loading it added to the process's resident memory "
        "(MiB), counted against LUGPI_MAX_LOADED_MB.",
    )
    execution: ExecutionInfo | None = Field(
        default=None,
        description="A loaded version: how it runs (engine instances, threads, spinning, batch "
        "cap), why, and the cost curve measured at load.",
    )
    warm: bool | None = Field(
        default=None,
        description="A loaded version: kept loaded as its model's default (never unloaded to "
        "make room); the others are unloaded least recently used first.",
    )


class ModelInfo(BaseModel):
    name: str
    is_default: bool = Field(description="Served when a request names no model.")
    default_version: str | None = Field(
        description="Served when a request names no version: the pinned version if it is "
        "loaded, else the newest loaded one."
    )
    pinned_version: str | None = Field(
        default=None, description="The version an admin pinned as default, if any."
    )
    versions: list[VersionInfo] = Field(description="Newest first.")


class ModelList(BaseModel):
    default_model: str | None
    models: list[ModelInfo]


class ReloadResponse(BaseModel):
    model: ModelInfo
    loaded: list[str] = Field(description="Versions loaded now, newest first.")
    failed: list[VersionInfo] = Field(description="Versions that failed to load, with errors.")


class Health(BaseModel):
    status: Literal["ok"] = "ok"


class Readiness(BaseModel):
    status: Literal["ready", "not ready"]
    models: dict[str, list[str]] = Field(description="Loaded versions per model.")
    detail: str | None = Field(default=None, description="Why the server is not ready.")


class PinRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    version: str = Field(pattern=VERSION_PATTERN, description="The version to serve by default.")
