"""One atomic-write helper (contracts.artifacts.atomic_file) for every file written whole."""

from __future__ import annotations

from pathlib import Path

import pytest

from contracts.artifacts import atomic_file, write_json_atomic, write_text_atomic
from contracts.errors import ArtifactError, DataError


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "f.txt"
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError), atomic_file(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("crash mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["f.txt"]


def test_an_os_error_becomes_the_callers_error_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-dir" / "f.json"
    with pytest.raises(ArtifactError, match=r"cannot write .*no-such-dir/f.json"):
        write_json_atomic(missing, {"a": 1})
    with pytest.raises(DataError, match=r"cannot write"):
        write_text_atomic(missing, "x", DataError)


def test_success_replaces_the_file(tmp_path: Path) -> None:
    path = tmp_path / "f.json"
    write_json_atomic(path, {"a": 1})
    write_json_atomic(path, {"a": 2})
    assert path.read_text().replace(" ", "").replace("\n", "") == '{"a":2}'
    assert [p.name for p in tmp_path.iterdir()] == ["f.json"]
