"""New versions are served without a restart; broken ones never replace working ones."""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import httpx
from fastapi.testclient import TestClient

from api.registry import ModelRegistry
from contracts.repository import publish
from tests.api.conftest import MakeClient

SENTIMENT = {"texts": ["a fine film"], "model": "sentiment"}


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def publish_corrupt(bundle: Path, repository: Path, version: str) -> Path:
    """Publish, then damage the int8 model so that it no longer matches its sha256."""
    published, dest = publish(bundle, repository, "sentiment")
    assert published == version
    with (dest / "model.int8.onnx").open("r+b") as f:
        f.seek(100)
        f.write(b"\x00garbage\x00")
    return dest


def served_version(client: TestClient) -> str:
    r = client.post("/classify", json=SENTIMENT)
    assert r.status_code == 200, r.text
    return str(r.json()["version"])


def test_random_polling_serves_new_version_and_skips_corrupt_one(
    make_client: MakeClient, repository: Path, random_bundles: dict[str, Path]
) -> None:
    client = make_client(poll_interval_s=0.1, allow_unauthenticated_admin=True)
    assert served_version(client) == "v1"

    publish(random_bundles["single"], repository, "sentiment")
    wait_for(lambda: served_version(client) == "v2")

    publish_corrupt(random_bundles["single"], repository, "v3")
    # Half-written directories of a publish in progress are not versions, nor failures.
    shutil.copytree(random_bundles["single"], repository / "sentiment" / ".tmp-1234-abcd")

    def v3_failed() -> bool:
        # A poll may catch v3 between publish and damage (then it fails to load, and is
        # retried once its files change): wait for the checksum failure.
        versions = client.get("/models/sentiment").json()["versions"]
        return any(v["version"] == "v3" and v["error_code"] == "bundle_invalid" for v in versions)

    wait_for(v3_failed)
    info = client.get("/models/sentiment").json()  # the opt-in shows every caller details
    assert info["default_version"] == "v2"
    (v3,) = [v for v in info["versions"] if v["version"] == "v3"]
    assert "sha256" in v3["error_detail"] and "corrupt" in v3["error_detail"]
    assert [v["version"] for v in info["versions"]] == ["v3", "v2", "v1"]
    assert served_version(client) == "v2"
    r = client.post("/classify", json={**SENTIMENT, "version": "v3"})
    assert r.status_code == 404 and "v2" in r.json()["detail"]
    # 1, or 2 when a poll caught v3 between publish and damage (a load failure first)
    failures = 'lugpi_model_load_failures_total{model="sentiment"} '
    (line,) = [x for x in client.get("/metrics").text.splitlines() if x.startswith(failures)]
    assert float(line.rsplit(" ", 1)[1]) in (1.0, 2.0)


def test_random_admin_reload_loads_now_and_reports_failures(
    make_client: MakeClient, repository: Path, random_bundles: dict[str, Path]
) -> None:
    # 3 in the process: cwi/v1 (the other model's default) and two of sentiment
    client = make_client(max_loaded_versions=3, allow_unauthenticated_admin=True)
    publish(random_bundles["single"], repository, "sentiment")
    publish(random_bundles["single"], repository, "sentiment")
    assert served_version(client) == "v1"  # no polling: nothing changes by itself

    body = client.post("/models/sentiment/reload").json()
    # The new default is loaded; v1, loaded before, stays under the bound; v2 waits
    # for a request that names it.
    assert body["loaded"] == ["v3", "v1"] and body["failed"] == []
    assert served_version(client) == "v3"
    versions = {v["version"]: v["status"] for v in body["model"]["versions"]}
    assert versions == {"v3": "loaded", "v2": "available", "v1": "loaded"}
    r = client.post("/classify", json={**SENTIMENT, "version": "v2"})
    assert r.status_code == 200 and r.json()["version"] == "v2"  # loaded on demand
    statuses = {
        v["version"]: v["status"] for v in client.get("/models/sentiment").json()["versions"]
    }
    assert statuses == {"v3": "loaded", "v2": "loaded", "v1": "available"}  # v1 made room

    publish_corrupt(random_bundles["single"], repository, "v4")
    body = client.post("/models/sentiment/reload").json()
    assert body["loaded"] == ["v3", "v2"] and [f["version"] for f in body["failed"]] == ["v4"]
    assert served_version(client) == "v3"
    r = client.post("/classify", json={**SENTIMENT, "version": "v4"})
    assert r.status_code == 404 and "failed to load" in r.json()["detail"]

    missing = client.post("/models/nope/reload")
    assert missing.status_code == 404 and "sentiment" in missing.json()["detail"]


def test_random_misplaced_and_broken_bundles_are_reported_not_served(
    make_client: MakeClient, repository: Path, random_bundles: dict[str, Path]
) -> None:
    # bundle.json says sentiment/v1, but it sits under other/v1.
    shutil.copytree(repository / "sentiment" / "v1", repository / "other" / "v1")
    _, broken = publish(random_bundles["single"], repository, "broken")
    (broken / "tokenizer.json").unlink()
    client = make_client(api_keys=["user-key"], admin_keys=["admin-key"])
    assert client.get("/readyz").status_code == 200
    admin = {"X-API-Key": "admin-key"}
    models = {m["name"]: m for m in client.get("/models", headers=admin).json()["models"]}
    assert "says sentiment/v1" in models["other"]["versions"][0]["error_detail"]
    assert "tokenizer.json" in models["broken"]["versions"][0]["error_detail"]
    r = client.post("/classify", json={"texts": ["a"], "model": "broken"}, headers=admin)
    assert r.status_code == 404 and "failed to load" in r.json()["detail"]


def test_random_requests_in_flight_finish_on_their_version(
    make_client: MakeClient, repository: Path, random_bundles: dict[str, Path]
) -> None:
    """Swap versions while requests run: every request succeeds, on v1 or v2, and a
    request holding the unloaded v1 still gets its answer from v1."""
    client = make_client(max_loaded_versions=1)
    registry: ModelRegistry = client.app.state.registry  # type: ignore[attr-defined]
    held_v1 = registry.resolve("sentiment", None)
    publish(random_bundles["single"], repository, "sentiment")

    async def traffic() -> tuple[list[httpx.Response], object]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
            requests = [ac.post("/classify", json=SENTIMENT) for _ in range(40)]
            swap = asyncio.to_thread(registry.refresh)
            *responses, _ = await asyncio.gather(*requests, swap)
            late = await held_v1.batcher.classify(["after the swap"], None)
        return list(responses), late

    responses, late = asyncio.run(traffic())
    assert all(r.status_code == 200 for r in responses)
    assert {r.json()["version"] for r in responses} <= {"v1", "v2"}
    assert served_version(client) == "v2"
    assert held_v1.version == "v1" and late.probs.shape == (1, 3)  # type: ignore[attr-defined]
    wait_for(lambda: not held_v1.batcher.running)  # drained, then exited
