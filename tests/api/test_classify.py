"""POST /classify through HTTP on real bundles exported from RANDOM-weight tiny models."""

from __future__ import annotations

import asyncio
import math

import httpx
import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import PAIR_LABELS, SINGLE_LABELS, MakeClient


def test_random_single_text_model_returns_one_prediction_per_text(client: TestClient) -> None:
    texts = ["a fine film", "dull", "the plot never comes together"]
    r = client.post("/classify", json={"texts": texts, "model": "sentiment"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["model"], body["version"]) == ("sentiment", "v1")
    assert body["truncated"] == []
    assert len(body["predictions"]) == len(texts)
    for p in body["predictions"]:
        assert list(p["scores"]) == SINGLE_LABELS
        assert math.isclose(sum(p["scores"].values()), 1.0, abs_tol=1e-4)
        assert p["label"] == max(p["scores"], key=p["scores"].get)
        assert p["score"] == p["scores"][p["label"]]


def test_random_pair_model_takes_text_pairs(client: TestClient) -> None:
    r = client.post(
        "/classify",
        json={
            "texts": ["the teenage girl", "a word"],
            "text_pairs": ["teenage", "word"],
            "model": "cwi",
        },
    )
    assert r.status_code == 200, r.text
    assert [list(p["scores"]) for p in r.json()["predictions"]] == [PAIR_LABELS, PAIR_LABELS]


def test_random_default_model_is_first_by_name_or_the_setting(make_client: MakeClient) -> None:
    # "cwi" < "sentiment": the first by name is the default unless a setting names one.
    pairs = {"texts": ["a sentence"], "text_pairs": ["sentence"]}
    assert make_client().post("/classify", json=pairs).json()["model"] == "cwi"
    chosen = make_client(default_model="sentiment")
    assert chosen.post("/classify", json={"texts": ["x"]}).json()["model"] == "sentiment"


def test_random_truncated_texts_are_reported(client: TestClient) -> None:
    long_text = " ".join(["word"] * 100)  # > max_length (24) tokens
    r = client.post(
        "/classify", json={"texts": ["short", long_text, "short"], "model": "sentiment"}
    )
    assert r.status_code == 200, r.text
    assert r.json()["truncated"] == [1]


def test_random_batched_results_match_single_requests(make_client: MakeClient) -> None:
    """Concurrent requests are batched (and padded) together; each text's probabilities
    must not depend on its batch companions. fp32: dynamic int8 quantizes activations per
    batch, so int8 results shift slightly with the batch's content (by design)."""
    client = make_client(model_variant="fp32", max_batch_wait_ms=20)
    texts = [f"text number {i} " + "longer " * (i % 7) for i in range(24)]
    alone = [
        client.post("/classify", json={"texts": [t], "model": "sentiment"}).json()["predictions"][0]
        for t in texts
    ]

    async def concurrently() -> list[dict[str, object]]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
            rs = await asyncio.gather(
                *(ac.post("/classify", json={"texts": [t], "model": "sentiment"}) for t in texts)
            )
        return [r.json()["predictions"][0] for r in rs]

    together = asyncio.run(concurrently())
    for a, b in zip(alone, together, strict=True):
        for label in SINGLE_LABELS:
            assert a["scores"][label] == pytest.approx(b["scores"][label], abs=1e-5)
    # They really were batched: some onnxruntime call saw more than one text.
    metrics = client.get("/metrics").text
    big = [
        line
        for line in metrics.splitlines()
        if line.startswith('lugpi_batch_size_texts_bucket{le="1.0",model="sentiment"}')
    ]
    count = [
        line
        for line in metrics.splitlines()
        if line.startswith('lugpi_batch_size_texts_count{model="sentiment"}')
    ]
    assert float(big[0].split()[-1]) < float(count[0].split()[-1])


def test_random_explicit_version_and_int8_variant(client: TestClient) -> None:
    r = client.post("/classify", json={"texts": ["x"], "model": "sentiment", "version": "v1"})
    assert r.status_code == 200
    info = client.get("/models/sentiment").json()
    assert info["versions"][0]["variant"] == "int8"
    assert info["versions"][0]["provider"] == "CPUExecutionProvider"
