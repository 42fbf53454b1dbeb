"""What every inference surface shares: resolve the model, check the request against the
deployment's limits, run it through the model version's batcher, and turn its outputs
into scores.

The native ``/classify`` route, the TEI, Open Inference Protocol and infinity adapters
all end in ``score``: one inference path, one set of limits, one error table; an
adapter only translates its protocol's request and response shapes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from fastapi import Request

from api.batching import BatchOutput, DynamicBatcher, TruncationSide
from api.disconnect import unless_disconnected
from api.metrics import ApiMetrics
from api.registry import LoadedModel, ModelRegistry
from api.settings import ApiSettings
from contracts.errors import InvalidInput, LimitExceeded

ScoreFunction = Literal["softmax", "sigmoid", "none"]


@dataclass(frozen=True)
class Scored:
    model: LoadedModel
    out: BatchOutput

    @property
    def labels(self) -> list[str]:
        return self.model.labels

    def scores(self, function: ScoreFunction = "softmax", field: str = "raw_scores") -> np.ndarray:
        """Per-text scores: probabilities (softmax), sigmoid of the logits, or the logits.

        Raw scores need a graph with a logits output; bundles exported before it have
        probabilities only, and ``field`` (the request field that asked) is named.
        """
        if function == "softmax":
            return self.out.probs
        if self.out.logits is None:
            raise InvalidInput(
                field,
                f"model {self.model.name!r} {self.model.version} was exported with "
                "probabilities only (no logits output); ask for probabilities, or serve a "
                "bundle re-exported by this version of lugpi",
            )
        if function == "none":
            return self.out.logits
        return 1.0 / (1.0 + np.exp(-self.out.logits))


def ranked(
    row: Sequence[float], labels: Sequence[str], top_k: int | None = None
) -> list[tuple[str, float]]:
    """(label, score) pairs, highest score first; the first ``top_k`` if given."""
    order = sorted(range(len(row)), key=lambda i: (-row[i], i))
    if top_k is not None:
        order = order[:top_k]
    return [(labels[i], float(row[i])) for i in order]


Loc = tuple[str | int, ...]


class RequestRuleBroken(InvalidInput):
    """A request rule of this module, with where it broke as a path (``("texts", 3)``) and
    the reason alone, so that the native route can report it in FastAPI's 422 shape."""

    def __init__(self, loc: Loc, reason: str, error_type: str) -> None:
        super().__init__(_dotted(loc), reason)
        self.loc, self.reason, self.error_type = loc, reason, error_type


class RequestLimitExceeded(RequestRuleBroken, LimitExceeded):
    """Over a deployment limit (413 on the protocol surfaces, 422 on /classify)."""


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


def check_limits(
    settings: ApiSettings,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    field: str,
    pair_field: str | None = None,
) -> None:
    """The deployment's limits on every surface: texts per request, characters per text
    (``pair_field`` names the second texts where they are a field of their own)."""
    n, most = len(texts), settings.max_texts_per_request
    if n > most:
        raise RequestLimitExceeded(
            (field,),
            f"batch size {n} > maximum allowed batch size {most}: at most {most} texts per "
            "request (LUGPI_MAX_TEXTS_PER_REQUEST); split them over several requests",
            "too_long",
        )
    for where, items in ((field, texts), (pair_field or field, pairs or [])):
        for i, text in enumerate(items):
            if len(text) > settings.max_text_chars:
                raise RequestLimitExceeded(
                    (where, i),
                    f"{len(text)} characters; at most {settings.max_text_chars} "
                    "(LUGPI_MAX_TEXT_CHARS): shorten the text",
                    "string_too_long",
                )


def check_pairs(
    model: LoadedModel,
    pairs: Sequence[str] | None,
    field: str,
    *,
    give: str = "send [text, text_pair]",
    leave: str = "send each text alone",
) -> None:
    """Pairs for a pair model, single texts for the others; ``give`` and ``leave`` say
    how, in the calling protocol's words."""
    which = f"model {model.name!r} {model.version}"
    if model.manifest.text_pair and pairs is None:
        raise RequestRuleBroken((field,), f"{which} classifies text pairs: {give}", "missing")
    if not model.manifest.text_pair and pairs is not None:
        raise RequestRuleBroken(
            (field,), f"{which} classifies single texts: {leave}", "extra_forbidden"
        )


def count(metrics: ApiMetrics, model: LoadedModel, n_texts: int, out: BatchOutput) -> None:
    """The request counters every surface keeps."""
    metrics.classify_requests.labels(model.name, model.version).inc()
    metrics.classified_texts.labels(model.name, model.version).inc(n_texts)
    if out.truncated:
        metrics.truncated_texts.labels(model.name).inc(len(out.truncated))


async def run_request(
    request: Request,
    batcher: DynamicBatcher,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    truncation: TruncationSide = "right",
) -> BatchOutput:
    """The batcher's output for one request: computed at once when the batcher is idle
    (``DynamicBatcher.run_inline``), else queued, and dropped unrun if the client
    disconnects first (an inline run has nothing to drop: it is done before the loop
    could notice a disconnect)."""
    out = await batcher.run_inline(texts, pairs, truncation)
    if out is not None:
        return out
    return await unless_disconnected(request, batcher.classify(texts, pairs, truncation))


async def score(
    request: Request,
    registry: ModelRegistry,
    settings: ApiSettings,
    metrics: ApiMetrics,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    *,
    model: str | None = None,
    version: str | None = None,
    truncation: TruncationSide = "right",
    field: str = "inputs",
) -> Scored:
    """Run one request on the model version it resolves to (held for the whole request);
    dropped unrun if the client disconnects first."""
    if not texts:
        raise InvalidInput(field, "no texts given; send at least one")
    loaded = await registry.get(model, version)
    check_pairs(loaded, pairs, field)
    check_limits(settings, texts, pairs, field)
    out = await run_request(request, loaded.batcher, texts, pairs, truncation)
    count(metrics, loaded, len(texts), out)
    return Scored(loaded, out)
