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


def check_limits(
    settings: ApiSettings, texts: Sequence[str], pairs: Sequence[str] | None, field: str
) -> None:
    """The same limits as /classify, as a ``LimitExceeded`` naming ``field``."""
    if len(texts) > settings.max_texts_per_request:
        raise LimitExceeded(
            field,
            f"batch size {len(texts)} > maximum allowed batch size "
            f"{settings.max_texts_per_request} (LUGPI_MAX_TEXTS_PER_REQUEST); split it "
            "over several requests",
        )
    for items in (texts, pairs or []):
        for i, text in enumerate(items):
            if len(text) > settings.max_text_chars:
                raise LimitExceeded(
                    f"{field}[{i}]",
                    f"{len(text)} characters; at most {settings.max_text_chars} "
                    "(LUGPI_MAX_TEXT_CHARS): shorten the text",
                )


def check_pairs(model: LoadedModel, pairs: Sequence[str] | None, field: str) -> None:
    which = f"model {model.name!r} {model.version}"
    if model.manifest.text_pair and pairs is None:
        raise InvalidInput(field, f"{which} classifies text pairs: send [text, text_pair]")
    if not model.manifest.text_pair and pairs is not None:
        raise InvalidInput(field, f"{which} classifies single texts: send each text alone")


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
    loaded = registry.resolve(model, version)
    check_pairs(loaded, pairs, field)
    check_limits(settings, texts, pairs, field)
    out = await run_request(request, loaded.batcher, texts, pairs, truncation)
    metrics.classify_requests.labels(loaded.name, loaded.version).inc()
    metrics.classified_texts.labels(loaded.name, loaded.version).inc(len(texts))
    if out.truncated:
        metrics.truncated_texts.labels(loaded.name).inc(len(out.truncated))
    return Scored(loaded, out)
