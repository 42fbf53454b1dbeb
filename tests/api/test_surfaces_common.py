"""What every surface shares: the same keys, public health routes, no local paths in
public answers, one OpenAPI schema documenting all of them, the web page still at GET /.
Bundles exported from RANDOM-weight tiny models (tests/api/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import MakeClient

KEY, ADMIN = "user-key", "admin-key"
# (method, path, body) of one inference call per surface, on the single-text model.
CALLS = [
    ("POST", "/classify", {"texts": ["a film"], "model": "sentiment"}),
    ("POST", "/predict?model=sentiment", {"inputs": "a film"}),
    ("POST", "/?model=sentiment", {"inputs": "a film"}),
    ("POST", "/v1/classify", {"model": "sentiment", "input": ["a film"]}),
    (
        "POST",
        "/v2/models/sentiment/infer",
        {"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "data": ["a film"]}]},
    ),
]
# Issue 27 item 11 made reading what is served public on every protocol, like /models
# (/info, /v1/models and /v2/models/{name} needed a key before; tests/api/test_key_rule.py).
PUBLIC = [
    "/healthz",
    "/readyz",
    "/v2/health/live",
    "/v2/health/ready",
    "/v2",
    "/info?model=sentiment",
    "/v1/models",
    "/v2/models/sentiment",
    "/v2/models/sentiment/ready",
]


@pytest.fixture
def keyed(make_client: MakeClient) -> TestClient:
    return make_client(api_keys=[KEY], admin_keys=[ADMIN])


@pytest.mark.parametrize(("method", "path", "body"), CALLS, ids=[c[1] for c in CALLS])
def test_random_every_surface_takes_the_same_keys(
    keyed: TestClient, method: str, path: str, body: object
) -> None:
    def call(headers: dict[str, str]) -> int:
        return keyed.request(method, path, json=body, headers=headers).status_code

    assert call({}) == 401
    assert call({"X-API-Key": "wrong"}) == 403
    assert call({"X-API-Key": KEY}) == 200
    assert call({"X-API-Key": ADMIN}) == 200


@pytest.mark.parametrize(("method", "path", "body"), CALLS, ids=[c[1] for c in CALLS])
def test_random_every_surface_takes_a_bearer_token(
    keyed: TestClient, method: str, path: str, body: object
) -> None:
    r = keyed.request(method, path, json=body, headers={"Authorization": f"Bearer {KEY}"})
    assert r.status_code == 200, r.text


@pytest.mark.parametrize("path", PUBLIC)
def test_random_health_routes_of_every_protocol_are_public(keyed: TestClient, path: str) -> None:
    assert keyed.get(path).status_code == 200


def test_random_public_answers_name_models_not_paths(keyed: TestClient, repository: Path) -> None:
    auth = {"X-API-Key": KEY}
    for path in ("/info", "/v1/models", "/v2/models/sentiment", "/v2", "/models"):
        r = keyed.get(path, headers=auth)
        assert r.status_code == 200, (path, r.text)
        assert str(repository) not in r.text and str(repository.parent) not in r.text, path


def test_openapi_documents_every_surface(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path, method in [
        ("/classify", "post"),
        ("/predict", "post"),
        ("/", "post"),
        ("/info", "get"),
        ("/v1/classify", "post"),
        ("/v1/models", "get"),
        ("/v2", "get"),
        ("/v2/health/live", "get"),
        ("/v2/health/ready", "get"),
        ("/v2/models/{name}", "get"),
        ("/v2/models/{name}/versions/{version}", "get"),
        ("/v2/models/{name}/ready", "get"),
        ("/v2/models/{name}/infer", "post"),
        ("/v2/models/{name}/versions/{version}/infer", "post"),
    ]:
        assert method in paths.get(path, {}), f"{method.upper()} {path} is not documented"
    infer_body = paths["/v2/models/{name}/infer"]["post"]["requestBody"]["content"]
    assert set(infer_body) == {"application/json", "application/octet-stream"}


def test_random_web_page_still_served_at_root(client: TestClient) -> None:
    r = client.get("/")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    assert client.get("/static/app.js").status_code == 200


@pytest.mark.parametrize(
    ("path", "shape"),
    [
        ("/predict", {"error", "error_type"}),
        ("/v1/classify", {"error"}),
        ("/v2/models/sentiment/infer", {"error"}),
        ("/classify", {"detail", "request_id"}),
    ],
)
def test_random_body_over_the_limit_is_413_in_each_surface_shape(
    make_client: MakeClient, path: str, shape: set[str]
) -> None:
    client = make_client(max_body_bytes=1024)
    r = client.post(path, content=b"x" * 2048, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and set(r.json()) == shape


def test_one_error_table_rendered_per_surface() -> None:
    """The protocol conventions: TEI's statuses and error types, OIP's 400 for malformed
    requests, the OpenAI body, the native detail; Retry-After kinds keep their status."""
    from api.error_shapes import render

    tei = {k: render("tei", k, "m") for k in ("too_large", "invalid", "backend", "overloaded")}
    assert {k: (r.status, r.body["error_type"]) for k, r in tei.items()} == {
        "too_large": (413, "Validation"),
        "invalid": (422, "Validation"),
        "backend": (424, "Backend"),
        "overloaded": (429, "Overloaded"),
    }
    assert render("tei", "unavailable", "m").status == 503
    assert render("oip", "invalid", "m").status == 400
    assert render("oip", "overloaded", "m").status == 429
    body = render("openai", "not_found", "m", param="model").body
    assert body == {
        "error": {"message": "m", "type": "not_found_error", "param": "model", "code": 404}
    }
    assert render("native", "invalid", "m", native_detail=[{"loc": ["body"]}]).body == {
        "detail": [{"loc": ["body"]}]
    }
