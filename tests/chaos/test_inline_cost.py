"""Weakness guarded: the inline lone path held the event loop for a whole max_length call.
It chose by characters (at most 1,000, "about 200 tokens"), but punctuation and CJK are a
token per character: one client sending 1,000 '!' to a max_length-512 model took
/healthz's p50 from 1.8 ms to 236 ms. A lone text now runs inline only if its token count,
counted after tokenizing, is within the bound measured when the version was loaded."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from contracts.repository import publish

WORST = ["!" * 1000, "日本語の文章" * 166, "。" * 1000]


@pytest.fixture
def repo512(tmp_path: Path, minilm512: Path) -> Path:
    repo = tmp_path / "repo"
    repo.mkdir()
    publish(minilm512, repo, "minilm")
    return repo


def _client(repo: Path, **overrides: object) -> Iterator[TestClient]:
    fields: dict[str, object] = {"model_repository": repo, "poll_interval_s": 0}
    fields.update(overrides)
    with TestClient(create_app(ApiSettings(**fields))) as c:  # type: ignore[arg-type]
        yield c


@pytest.fixture
def client(repo512: Path) -> Iterator[TestClient]:
    yield from _client(repo512, intra_op_threads=1)


def test_worst_case_texts_never_run_on_the_event_loop(client: TestClient) -> None:
    batcher = client.app.state.registry.resolve("minilm", None).batcher  # type: ignore[attr-defined]
    for text in WORST:
        assert len(text) <= 1000
        r = client.post("/classify", json={"texts": [text]})
        assert r.status_code == 200, r.text
        assert r.json()["truncated"] == [0]  # past 512 tokens: the longest call there is
    assert batcher.inline_runs == 0
    assert batcher.inline_max_tokens <= 128


def test_a_short_lone_text_still_runs_inline(repo512: Path) -> None:
    # A generous cost bound, so that a loaded machine's calibration cannot make this flaky;
    # the token bound (128) still keeps the worst-case texts off the loop.
    for client in _client(repo512, intra_op_threads=1, inline_max_ms=1000.0):
        batcher = client.app.state.registry.resolve("minilm", None).batcher  # type: ignore[attr-defined]
        assert client.post("/classify", json={"texts": ["a fine film"]}).status_code == 200
        assert batcher.inline_runs == 1
        for text in WORST:
            assert client.post("/classify", json={"texts": [text]}).status_code == 200
        assert batcher.inline_runs == 1
