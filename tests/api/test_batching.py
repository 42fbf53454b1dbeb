"""The dynamic batcher: length grouping, and one bad request never fails its batch mates."""

from __future__ import annotations

import asyncio
import itertools
import random

import pytest
from fastapi.testclient import TestClient

from api.batching import DEFAULT_CALL_TOKENS, call_cost, length_groups
from api.registry import ModelRegistry
from contracts.errors import InferenceError


def test_length_groups_sort_and_cap_size() -> None:
    groups = length_groups([5, 3, 9, 4, 8], max_size=2)
    # Three calls whichever way; pairing 4+5 and 8+9 pads to 31 tokens, 3+4 and 5+8 to 33.
    assert groups == [[1], [3, 0], [4, 2]]
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3, 4]


def test_length_groups_weigh_a_call_against_the_padding() -> None:
    """Texts share a call only where the call saved is worth more than the padding added:
    with a call worth 3 tokens (what a CPU measures, issue 28), 20 and 21 tokens share one
    and 20 and 30 do not; with a call worth 30 tokens, they do."""
    assert length_groups([20, 40, 21, 39], 4, call_tokens=3) == [[0, 2], [3, 1]]
    assert length_groups([20, 30], 4, call_tokens=3) == [[0], [1]]
    assert length_groups([20, 30], 4, call_tokens=30) == [[0, 1]]
    assert length_groups([20, 30], 4) == [[0, 1]]  # not measured: DEFAULT_CALL_TOKENS
    # Equal lengths share a call even when a call is worth nothing (on a tie, fewer calls).
    assert length_groups([25, 25, 25], 4, call_tokens=0) == [[0, 1, 2]]


def _cheapest(widths: list[int], max_size: int, call_tokens: float) -> float:
    """Brute force over every cut of sorted ``widths`` into consecutive groups."""
    n, best = len(widths), float("inf")
    for cuts in itertools.product([False, True], repeat=n - 1):
        groups, start = [], 0
        for k, cut in enumerate(cuts, start=1):
            if cut:
                groups.append(widths[start:k])
                start = k
        groups.append(widths[start:])
        if all(len(g) <= max_size for g in groups):
            best = min(best, sum(call_tokens + call_cost(len(g), g[-1]) for g in groups))
    return best


@pytest.mark.parametrize("seed", range(40))
def test_length_groups_find_the_cheapest_cut(seed: int) -> None:
    rng = random.Random(seed)
    lengths = [rng.choice([rng.randint(5, 60), 600]) for _ in range(rng.randint(1, 8))]
    max_size = rng.randint(1, 5)
    per_call = rng.choice([0.0, 3.0, 12.0, DEFAULT_CALL_TOKENS])
    groups = length_groups(lengths, max_size, call_tokens=per_call)
    assert sorted(i for g in groups for i in g) == list(range(len(lengths)))
    assert all(len(g) <= max_size for g in groups)
    cost = sum(per_call + call_cost(len(g), max(lengths[i] for i in g)) for g in groups)
    assert cost == pytest.approx(_cheapest(sorted(lengths), max_size, per_call))


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
