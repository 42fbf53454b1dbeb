"""List settings read from the environment the same way in every process."""

from __future__ import annotations

import pytest

from api.settings import ApiSettings
from contracts.settings import split_list
from worker.settings import WorkerSettings


@pytest.mark.parametrize(
    ("raw", "expected"),
    [("a, b,,c", ["a", "b", "c"]), ('["a", "b"]', ["a", "b"]), (" ", []), (["x"], ["x"])],
)
def test_split_list_reads_commas_and_json(raw: object, expected: list[str]) -> None:
    assert split_list(raw) == expected


def test_worker_and_api_read_a_json_list_alike(monkeypatch: pytest.MonkeyPatch) -> None:
    # The worker used to split '["jobs", "shards"]' on its comma: queues '["jobs"' and
    # '"shards"]', which no task is ever routed to.
    monkeypatch.setenv("LUGPI_QUEUES", '["jobs", "shards"]')
    monkeypatch.setenv("LUGPI_DATA_ROOTS", '["/a", "/b"]')
    assert WorkerSettings().queues == ["jobs", "shards"]
    assert [str(p) for p in ApiSettings().data_roots] == ["/a", "/b"]
