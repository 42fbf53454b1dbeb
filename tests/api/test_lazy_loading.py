"""Many versions in one process: defaults stay loaded, the rest load on their first request
and leave least recently used first, under a count bound and a memory bound (api.residency).

Real bundles, real onnxruntime sessions, a real ASGI client; the pure policy is tested on
its own first."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient

from api.registry import ModelRegistry
from api.residency import MB, Resident, plan_evictions, resident_bytes
from contracts.repository import publish
from tests.api.conftest import MakeClient


def r(version: str, used: float, mb: int = 10, warm: bool = False) -> Resident:
    return Resident(("m", version), mb * MB, used, warm)


def test_plan_evicts_least_recently_used_first_and_never_a_warm_version() -> None:
    residents = [r("v1", 3.0), r("v2", 1.0), r("v3", 0.5, warm=True), r("v4", 2.0)]
    assert plan_evictions(residents, 4, None) == []
    assert plan_evictions(residents, 3, None) == [("m", "v2")]
    assert plan_evictions(residents, 4, None, incoming=1) == [("m", "v2")]
    assert plan_evictions(residents, 2, None) == [("m", "v2"), ("m", "v4")]
    assert plan_evictions(residents, 1, None) == [("m", "v2"), ("m", "v4"), ("m", "v1")]
    assert plan_evictions(residents, 1, None, incoming=1) is None  # v3 alone fills it


def test_plan_evicts_until_the_memory_fits() -> None:
    residents = [r("v1", 1.0, mb=50, warm=True), r("v2", 2.0, mb=30), r("v3", 3.0, mb=20)]
    assert plan_evictions(residents, 10, 100 * MB) == []
    assert plan_evictions(residents, 10, 100 * MB, incoming_bytes=20 * MB) == [("m", "v2")]
    assert plan_evictions(residents, 10, 100 * MB, incoming_bytes=45 * MB) == [
        ("m", "v2"),
        ("m", "v3"),
    ]
    assert plan_evictions(residents, 10, 100 * MB, incoming_bytes=51 * MB) is None


def test_resident_bytes_reads_this_process() -> None:
    rss = resident_bytes()
    assert rss is not None and 10 * MB < rss < 64 * 1024 * MB


@pytest.fixture
def five_versions(repository: Path, random_bundles: dict[str, Path]) -> Path:
    """sentiment v1..v5 (v5 the default) and cwi/v1."""
    for _ in range(4):
        publish(random_bundles["single"], repository, "sentiment")
    return repository


def statuses(client: TestClient) -> dict[str, str]:
    info = client.get("/models/sentiment").json()
    return {v["version"]: v["status"] for v in info["versions"]}


def classify(client: TestClient, version: str | None = None) -> str:
    body: dict[str, object] = {"texts": ["a fine film"], "model": "sentiment"}
    if version is not None:
        body["version"] = version
    response = client.post("/classify", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["version"])


def test_random_cold_versions_load_on_request_and_leave_least_recently_used_first(
    five_versions: Path, make_client: MakeClient
) -> None:
    # 4 in all: the two defaults (sentiment/v5, cwi/v1) and two others.
    client = make_client(max_loaded_versions=4)
    assert statuses(client) == {f"v{i}": "available" for i in range(1, 5)} | {"v5": "loaded"}
    assert classify(client, "v1") == "v1"  # cold: loaded by this request, then answered
    assert classify(client, "v2") == "v2"
    assert classify(client, "v1") == "v1"  # v2 is now the least recently used
    assert classify(client, "v3") == "v3"
    assert statuses(client) == {
        "v5": "loaded",
        "v4": "available",
        "v3": "loaded",
        "v2": "available",
        "v1": "loaded",
    }
    assert classify(client, "v4") == "v4"  # v1 is the oldest use now; v5 is never a candidate
    assert statuses(client)["v1"] == "available" and statuses(client)["v5"] == "loaded"
    assert classify(client) == "v5"
    info = {v["version"]: v for v in client.get("/models/sentiment").json()["versions"]}
    assert info["v5"]["warm"] is True and info["v4"]["warm"] is False
    assert info["v5"]["memory_mb"] > 0
    metrics = client.get("/metrics").text
    assert "lugpi_models_loaded 4.0" in metrics


def test_random_defaults_filling_the_bound_refuse_a_cold_version(
    five_versions: Path, make_client: MakeClient
) -> None:
    client = make_client(max_loaded_versions=2)
    response = client.post(
        "/classify", json={"texts": ["x"], "model": "sentiment", "version": "v2"}
    )
    assert response.status_code == 429 and "LUGPI_MAX_LOADED_VERSIONS" in response.text
    assert classify(client) == "v5"  # the defaults answer as before


def test_random_memory_bound_is_kept_by_the_measured_sizes(
    five_versions: Path, make_client: MakeClient
) -> None:
    """Room for the defaults and 1.5 times a version's files: before a load, every other
    version that is not warm leaves (each takes at least its files); after it, the loaded
    versions' measured memory is within the bound, or the one just loaded measured more
    than the bound leaves (RSS growth of a tiny graph is mostly the allocator's noise) and
    is the only one besides the defaults. Every request is answered."""
    client = make_client(max_loaded_versions=10, max_loaded_mb=0)
    registry: ModelRegistry = client.app.state.registry  # type: ignore[attr-defined]
    v5 = registry.snapshot.models["sentiment"]["v5"].path
    files = sum((v5 / f).stat().st_size for f in ("model.int8.onnx", "tokenizer.json"))
    warm = sum(m.memory_bytes for vs in registry.snapshot.models.values() for m in vs.values())
    bound = warm + 1.5 * files
    registry.settings = registry.settings.model_copy(update={"max_loaded_mb": bound / MB})
    for version in ("v1", "v2", "v3", "v4", "v1"):
        assert classify(client, version) == version
        sizes = [m.memory_bytes for vs in registry.snapshot.models.values() for m in vs.values()]
        loaded = sorted(registry.snapshot.models["sentiment"])
        assert loaded == sorted(["v5", version]), loaded  # the others made room
        assert sum(sizes) <= bound or len(sizes) == 3, (version, sizes)
    info = {v["version"]: v for v in client.get("/models/sentiment").json()["versions"]}
    assert info["v1"]["memory_mb"] >= files / MB - 0.1  # never below its files


def test_random_concurrent_requests_for_a_cold_version_load_it_once(
    five_versions: Path, make_client: MakeClient, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client()

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
            body = {"texts": ["a fine film"], "model": "sentiment", "version": "v2"}
            return list(await asyncio.gather(*[ac.post("/classify", json=body) for _ in range(8)]))

    with caplog.at_level(logging.INFO, logger="lugpi.api"):
        responses = asyncio.run(burst())
    assert [x.status_code for x in responses] == [200] * 8
    assert {x.json()["version"] for x in responses} == {"v2"}
    loads = [rec for rec in caplog.records if rec.getMessage().startswith("loaded sentiment/v2")]
    assert len(loads) == 1
