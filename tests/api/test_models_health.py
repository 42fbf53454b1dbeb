"""GET /models, /models/{name}, /healthz, /readyz, /metrics and the OpenAPI docs."""

from __future__ import annotations

from fastapi.testclient import TestClient


def test_random_models_lists_versions_labels_and_defaults(client: TestClient) -> None:
    body = client.get("/models").json()
    assert body["default_model"] == "cwi"
    by_name = {m["name"]: m for m in body["models"]}
    assert set(by_name) == {"cwi", "sentiment"}
    sentiment = by_name["sentiment"]
    assert sentiment["default_version"] == "v1" and not sentiment["is_default"]
    (v1,) = sentiment["versions"]
    assert v1["status"] == "loaded" and v1["is_default"]
    assert v1["labels"] == ["negative", "neutral", "positive"]
    assert v1["text_pair"] is False and by_name["cwi"]["versions"][0]["text_pair"] is True
    assert v1["max_length"] == 24
    assert v1["provenance"]["student_base_model"] == "tiny-random"


def test_random_model_detail(client: TestClient) -> None:
    r = client.get("/models/cwi")
    assert r.status_code == 200
    assert r.json()["name"] == "cwi" and r.json()["is_default"]


def test_random_health_and_ready(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200
    assert ready.json()["status"] == "ready"
    assert ready.json()["models"] == {"cwi": ["v1"], "sentiment": ["v1"]}


def test_random_metrics_count_requests_batches_and_errors(client: TestClient) -> None:
    client.post("/classify", json={"texts": ["a", "b"], "model": "sentiment"})
    client.post("/classify", json={"texts": []})
    text = client.get("/metrics").text
    assert 'lugpi_classified_texts_total{model="sentiment",version="v1"} 2.0' in text
    assert 'lugpi_classify_requests_total{model="sentiment",version="v1"} 1.0' in text
    assert (
        'lugpi_http_request_duration_seconds_count{method="POST",route="/classify",status="200"}'
        in text
    )
    assert 'lugpi_http_errors_total{route="/classify",status="422"} 1.0' in text
    assert 'lugpi_batch_size_texts_count{model="sentiment"}' in text
    assert "lugpi_models_loaded 2.0" in text


def test_random_unmatched_paths_share_one_metrics_label(client: TestClient) -> None:
    for i in range(3):
        client.get(f"/no/such/path/{i}")
    text = client.get("/metrics").text
    assert 'lugpi_http_errors_total{route="unmatched",status="404"} 3.0' in text
    assert "/no/such/path" not in text


def test_random_openapi_documents_examples_and_limits(make_client: object) -> None:
    client = make_client(max_texts_per_request=7)  # type: ignore[operator]
    schema = client.get("/openapi.json").json()
    req = schema["components"]["schemas"]["ClassifyRequest"]
    assert req["examples"] and req["properties"]["texts"]["maxItems"] == 7
    assert req["properties"]["texts"]["items"]["maxLength"] == 10_000
    assert "X-API-Key" in str(schema["components"]["securitySchemes"])
    assert client.get("/docs").status_code == 200
