"""Weaknesses guarded: hot reload of a hostile or broken bundle. A bundle.json that is a
symlink out of the bundle was followed; a newer version whose max_length its graph cannot
take (100,000 on a 512-position graph) loaded, displaced the good version, then answered
500 to every long text; a huge tokenizer.json (2M entries, 42 MB) was parsed while holding
the GIL for seconds. Every version is now bounded (max_length, tokenizer size, vocabulary)
and warmed up with a max_length input before it may replace another.

Real bundles (tiny RANDOM-weight BERT, 512 positions, exported as a release does), a real
repository and the real registry; the versions are crafted from a published one."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.metrics import ApiMetrics
from api.registry import ModelRegistry
from api.settings import ApiSettings
from contracts.bundle import MANIFEST, TOKENIZER, sha256_file
from contracts.repository import publish

NAME = "sentiment"


@pytest.fixture
def repo(tmp_path: Path, random_bundles: dict[str, Path]) -> Path:
    """sentiment/v1 (good) and sentiment/v2 (a copy, for a test to break)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    publish(random_bundles["single"], repo, NAME)
    shutil.copytree(repo / NAME / "v1", repo / NAME / "v2")
    _edit(repo / NAME / "v2", version="v2")
    return repo


def _edit(version_dir: Path, **fields: object) -> None:
    """Change bundle.json fields, keeping every listed file's sha256 right."""
    path = version_dir / MANIFEST
    manifest = json.loads(path.read_text())
    manifest.update(fields)
    manifest["files"] = {f: sha256_file(version_dir / f) for f in manifest["files"]}
    path.write_text(json.dumps(manifest))


def _registry(repo: Path, **overrides: object) -> ModelRegistry:
    fields: dict[str, object] = {
        "model_repository": repo,
        "poll_interval_s": 0,
        "intra_op_threads": 1,
    }
    fields.update(overrides)
    return ModelRegistry(ApiSettings(**fields), ApiMetrics())  # type: ignore[arg-type]


def _served(registry: ModelRegistry) -> tuple[list[str], str]:
    snap = registry.refresh()
    latest = snap.latest(NAME)
    assert latest is not None
    return sorted(snap.models[NAME]), latest.version


@pytest.fixture
def client(repo: Path) -> Iterator[TestClient]:
    app = create_app(ApiSettings(model_repository=repo, poll_interval_s=0, intra_op_threads=1))
    with TestClient(app) as c:
        yield c


def test_a_bundle_json_symlinked_out_of_the_bundle_is_refused(repo: Path, tmp_path: Path) -> None:
    v2 = repo / NAME / "v2"
    outside = tmp_path / "elsewhere" / MANIFEST
    outside.parent.mkdir()
    shutil.move(v2 / MANIFEST, outside)
    (v2 / MANIFEST).symlink_to(outside)
    registry = _registry(repo)
    try:
        assert _served(registry) == (["v1"], "v1")
        failure = registry.snapshot.failures[(NAME, "v2")]
        assert failure.code == "bundle_invalid"
        assert "symlink" in failure.error and MANIFEST in failure.error
    finally:
        registry.close()


@pytest.mark.parametrize("max_length", [100_000, 1024])
def test_a_max_length_the_graph_cannot_take_never_displaces_the_good_version(
    repo: Path, max_length: int
) -> None:
    """100,000: past LUGPI_MAX_MODEL_LENGTH; 1,024: within it, but past the graph's 512
    positions, found by the max_length warm-up."""
    _edit(repo / NAME / "v2", max_length=max_length)
    registry = _registry(repo)
    try:
        assert _served(registry) == (["v1"], "v1")
        failure = registry.snapshot.failures[(NAME, "v2")]
        assert failure.code == "load_failed"
        assert "max_length" in failure.error
    finally:
        registry.close()


def test_the_good_version_answers_long_texts_after_a_bad_one_is_published(
    client: TestClient, repo: Path
) -> None:
    v3 = repo / NAME / "v3"
    shutil.copytree(repo / NAME / "v1", v3)
    _edit(v3, version="v3", max_length=100_000)
    client.app.state.registry.refresh()  # type: ignore[attr-defined]  # as the poller does
    r = client.post("/classify", json={"texts": ["a long review, " * 600], "model": NAME})
    assert r.status_code == 200, r.text
    assert r.json()["version"] == "v2"


def test_an_oversized_tokenizer_is_refused_before_it_is_parsed(repo: Path) -> None:
    v2 = repo / NAME / "v2"
    text = (v2 / TOKENIZER).read_text()
    (v2 / TOKENIZER).write_text(text + " " * 2_000_000)  # still valid JSON, 2 MB larger
    _edit(v2)
    size = (v2 / TOKENIZER).stat().st_size
    registry = _registry(repo, max_tokenizer_bytes=size - 1)
    try:
        assert _served(registry) == (["v1"], "v1")
        error = registry.snapshot.failures[(NAME, "v2")].error
        assert "LUGPI_MAX_TOKENIZER_BYTES" in error
    finally:
        registry.close()


def test_a_vocabulary_past_the_bound_is_refused(repo: Path) -> None:
    registry = _registry(repo, max_vocab_size=1000)  # the MiniLM vocabulary has 30,522
    try:
        assert registry.refresh().models == {}
        error = registry.snapshot.failures[(NAME, "v1")].error
        assert "LUGPI_MAX_VOCAB_SIZE" in error
    finally:
        registry.close()
