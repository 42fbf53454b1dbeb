"""infinity's /v1/classify and the OpenAI-shaped /v1/models, on bundles exported from
RANDOM-weight tiny models. The shapes follow infinity's published schema
(ClassifyInput -> ClassifyResult); no infinity client is installed here (its generated
client pins httpx below the version the project uses), so plain HTTP plays the client."""

from __future__ import annotations

import math

from fastapi.testclient import TestClient

from tests.api.conftest import SINGLE_LABELS, MakeClient


def test_random_infinity_classify_shape(make_client: MakeClient) -> None:
    client = make_client(model_variant="fp32")
    texts = ["I like you.", "dull"]
    r = client.post("/v1/classify", json={"model": "sentiment", "input": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "classify" and body["model"] == "sentiment"
    assert set(body) >= {"data", "usage", "id", "created"}
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > len(texts)
    native = client.post("/classify", json={"texts": texts, "model": "sentiment"}).json()
    for row, pred in zip(body["data"], native["predictions"], strict=True):
        assert sorted(x["label"] for x in row) == sorted(SINGLE_LABELS)
        assert [x["score"] for x in row] == sorted((x["score"] for x in row), reverse=True)
        for x in row:
            assert math.isclose(x["score"], pred["scores"][x["label"]], abs_tol=1e-6)

    raw = client.post(
        "/v1/classify", json={"model": "sentiment", "input": texts, "raw_scores": True}
    )
    assert raw.status_code == 200, raw.text
    assert not math.isclose(sum(x["score"] for x in raw.json()["data"][0]), 1.0, abs_tol=1e-3)


def test_random_infinity_default_model_and_errors(client: TestClient) -> None:
    # infinity's placeholder name -> the server's default model ("cwi", a pair model).
    r = client.post("/v1/classify", json={"input": ["a text"]})
    assert r.status_code == 422
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"} and err["code"] == 422
    assert "single texts" not in err["message"] and "pairs" in err["message"]
    unknown = client.post("/v1/classify", json={"model": "nope", "input": ["x"]})
    assert unknown.status_code == 404 and unknown.json()["error"]["type"] == "not_found_error"
    empty = client.post("/v1/classify", json={"model": "sentiment", "input": []})
    assert empty.status_code == 422 and "input" in empty.json()["error"]["message"]


def test_random_v1_models_is_an_openai_list(client: TestClient) -> None:
    r = client.get("/v1/models")
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == ["cwi", "sentiment"]
    for card in body["data"]:
        assert card["object"] == "model" and isinstance(card["created"], int)
        assert "owned_by" in card and "classify" in card["capabilities"]


def test_random_v1_limits_are_the_native_limits(make_client: MakeClient) -> None:
    client = make_client(max_texts_per_request=2, max_text_chars=10)
    many = client.post("/v1/classify", json={"model": "sentiment", "input": ["a", "b", "c"]})
    assert many.status_code == 413 and many.json()["error"]["param"] == "input"
    native = client.post("/classify", json={"model": "sentiment", "texts": ["a", "b", "c"]})
    assert native.status_code == 422  # the same limit; each surface's own status for it
    long = client.post("/v1/classify", json={"model": "sentiment", "input": ["x" * 11]})
    assert long.status_code == 413 and "LUGPI_MAX_TEXT_CHARS" in long.json()["error"]["message"]
