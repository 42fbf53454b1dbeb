"""Weakness guarded: a transient load failure stuck. A version that failed to load was
skipped for as long as its files were unchanged, even on an admin reload, so one
EMFILE or out-of-memory moment at load time kept a good bundle out until someone touched
its files. Admin reload now retries at once; the poller retries with a backoff.

The transient failure is injected where the registry opens a bundle (the real bundle
and onnxruntime run on every other attempt)."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient

import api.registry
from contracts.errors import ModelLoadError
from contracts.repository import publish
from tests.api.conftest import MakeClient
from tests.chaos.servers import wait_until

ADMIN = {"X-API-Key": "admin-key"}


class FlakyOpen:
    """``open_bundle`` that fails the first ``failures`` calls for one model name."""

    def __init__(self, name: str, failures: int) -> None:
        self.name, self.failures, self.calls = name, failures, 0
        self.real = api.registry.open_bundle

    def __call__(self, path: Path, *args: object, **kwargs: object) -> object:
        if path.parent.name == self.name:
            self.calls += 1
            if self.calls <= self.failures:
                raise ModelLoadError(f"{path}: cannot load: [Errno 24] Too many open files")
        return self.real(path, *args, **kwargs)  # type: ignore[arg-type]


def _status(client: TestClient) -> str:
    (v,) = client.get("/models/flaky").json()["versions"]
    return str(v["status"])


def test_random_admin_reload_retries_a_failed_version(
    make_client: MakeClient,
    repository: Path,
    random_bundles: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publish(random_bundles["single"], repository, "flaky")
    flaky = FlakyOpen("flaky", failures=1)
    monkeypatch.setattr(api.registry, "open_bundle", flaky)
    client = make_client(admin_keys=["admin-key"], api_keys=["k"])
    assert _status(client) == "failed"
    r = client.post("/models/flaky/reload", headers=ADMIN)
    assert r.status_code == 200 and r.json()["loaded"] == ["v1"]
    assert _status(client) == "loaded"


def test_random_poller_retries_with_backoff(
    make_client: MakeClient,
    repository: Path,
    random_bundles: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    publish(random_bundles["single"], repository, "flaky")
    flaky = FlakyOpen("flaky", failures=3)
    monkeypatch.setattr(api.registry, "open_bundle", flaky)
    client = make_client(poll_interval_s=0.05)
    wait_until(lambda: _status(client) == "loaded", 30, "the poller to load it")
    assert flaky.calls == 4
    r = client.post("/classify", json={"texts": ["a"], "model": "flaky"})
    assert r.status_code == 200
