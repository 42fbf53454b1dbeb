"""The dynamic batcher: length grouping, and one bad request never fails its batch mates."""

from __future__ import annotations

import asyncio

import pytest
from fastapi.testclient import TestClient

from api.batching import call_cost, length_groups
from api.registry import ModelRegistry
from contracts.errors import InferenceError


def test_length_groups_sort_and_cap_size() -> None:
    groups = length_groups([5, 3, 9, 4, 8], max_size=2)
    assert groups == [[1, 3], [0, 4], [2]]
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3, 4]


def test_length_groups_split_where_padding_would_dominate() -> None:
    # 16 short texts and one long one: padding all to 300 tokens would waste most of it.
    lengths = [10] * 16 + [300]
    assert length_groups(lengths, max_size=32) == [list(range(16)), [16]]
    # Similar lengths stay together: one onnxruntime call.
    assert length_groups([10, 12, 14, 20], max_size=32) == [[0, 1, 2, 3]]


def test_random_bad_request_fails_alone(client: TestClient) -> None:
    registry: ModelRegistry = client.app.state.registry  # type: ignore[attr-defined]
    batcher = registry.resolve("sentiment", None).batcher

    async def together() -> list[object]:
        # Sent at once, so they are batched; the surrogate cannot be tokenized (the HTTP
        # schema refuses it, so this only reaches the batcher from inside the process).
        return await asyncio.gather(
            batcher.classify(["good one"], None),
            batcher.classify(["bad \ud800"], None),
            batcher.classify(["good two", "three"], None),
            return_exceptions=True,
        )

    good, bad, good2 = asyncio.run(together())
    assert isinstance(bad, InferenceError)
    assert good.probs.shape == (1, 3) and good2.probs.shape == (2, 3)  # type: ignore[attr-defined]
    r = client.post("/classify", json={"texts": ["still up"], "model": "sentiment"})
    assert r.status_code == 200


@pytest.mark.parametrize("n_texts", [1, 33, 64])
def test_random_requests_larger_than_a_batch_are_split(client: TestClient, n_texts: int) -> None:
    texts = [f"text {i} " + "word " * (i % 13) for i in range(n_texts)]
    r = client.post("/classify", json={"texts": texts, "model": "sentiment"})
    assert r.status_code == 200
    assert len(r.json()["predictions"]) == n_texts


def test_groups_keep_to_the_token_budget() -> None:
    """64 texts of 512 tokens under a 4,096-token budget: 8 calls of 8 texts; past 512
    tokens a text costs its attention (a 2,048-token text alone costs 8,192: it still runs,
    alone)."""
    groups = length_groups([512] * 64, 64, 4096)
    assert [len(g) for g in groups] == [8] * 8
    assert sorted(i for g in groups for i in g) == list(range(64))
    assert call_cost(8, 512) == 4096 and call_cost(1, 2048) == 8192
    assert length_groups([2048, 2048, 10], 64, 4096) == [[2], [0], [1]]
    assert length_groups([512] * 64, 64) == [list(range(64))]  # no budget: one call
