"""X-API-Key: 401 when missing, 403 when wrong; admin routes need an admin key."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

from tests.api.conftest import MakeClient

CLASSIFY = {"texts": ["a"], "model": "sentiment"}


@pytest.fixture
def keyed(make_client: MakeClient) -> TestClient:
    return make_client(api_keys=["user-key-1", "user-key-2"], admin_keys=["admin-key"])


def test_random_open_when_no_keys_configured(client: TestClient) -> None:
    assert client.post("/classify", json=CLASSIFY).status_code == 200
    assert client.post("/models/sentiment/reload").status_code == 200


def test_random_missing_key_is_401(keyed: TestClient) -> None:
    r = keyed.post("/classify", json=CLASSIFY)
    assert r.status_code == 401
    assert "X-API-Key" in r.json()["detail"]


def test_random_wrong_key_is_403_and_never_echoed(
    keyed: TestClient, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        r = keyed.post("/classify", json=CLASSIFY, headers={"X-API-Key": "guess-123"})
    assert r.status_code == 403
    assert r.json()["detail"] == "invalid API key"
    assert "guess-123" not in caplog.text and "user-key" not in caplog.text


@pytest.mark.parametrize("key", ["user-key-1", "user-key-2", "admin-key"])
def test_random_valid_keys_classify(keyed: TestClient, key: str) -> None:
    r = keyed.post("/classify", json=CLASSIFY, headers={"X-API-Key": key})
    assert r.status_code == 200


def test_random_reload_needs_admin_key(keyed: TestClient) -> None:
    assert keyed.post("/models/sentiment/reload").status_code == 401
    user = keyed.post("/models/sentiment/reload", headers={"X-API-Key": "user-key-1"})
    assert user.status_code == 403 and "admin key" in user.json()["detail"]
    admin = keyed.post("/models/sentiment/reload", headers={"X-API-Key": "admin-key"})
    assert admin.status_code == 200


def test_random_admin_routes_closed_without_admin_keys(make_client: MakeClient) -> None:
    client = make_client(api_keys=["user-key"])
    r = client.post("/models/sentiment/reload", headers={"X-API-Key": "user-key"})
    assert r.status_code == 403 and "no admin keys" in r.json()["detail"]


def test_random_health_and_models_need_no_key(keyed: TestClient) -> None:
    for path in ("/healthz", "/readyz", "/metrics", "/models", "/docs", "/openapi.json"):
        assert keyed.get(path).status_code == 200, path


def test_random_keys_parse_from_comma_separated_env(monkeypatch: pytest.MonkeyPatch) -> None:
    from api.settings import ApiSettings

    monkeypatch.setenv("LUGPI_API_KEYS", "k1, k2")
    monkeypatch.setenv("LUGPI_ADMIN_KEYS", '["a1"]')
    settings = ApiSettings()
    assert [k.get_secret_value() for k in settings.api_keys] == ["k1", "k2"]
    assert [k.get_secret_value() for k in settings.admin_keys] == ["a1"]
    assert "k1" not in repr(settings)
