"""``lugpi predict``: score a CSV or JSONL file with a published bundle, offline.

The bundle runs through ``runtime.classifier.open_bundle``, the runner the API serves it
with (same tokenizer.json, truncation, padding and ONNX file choice), so a file scored
here gets the probabilities the API would answer. Rows stream through in batches: memory
stays flat however long the file. The output is written to a temporary file beside the
target and renamed when complete, so a crash or Ctrl-C never leaves half an output.

Output: each input row (every column kept) plus ``label`` (the most probable), ``score``
(its probability) and one ``score_<label>`` column per label (JSONL: ``scores``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal, TextIO

from contracts.artifacts import atomic_file
from contracts.bundle import read_manifest
from contracts.errors import DataError
from contracts.repository import resolve
from runtime.classifier import OnnxClassifier, open_bundle
from runtime.metrics import LabelScores, predictions
from runtime.session import RuntimeOptions

FileFormat = Literal["csv", "jsonl"]
Row = dict[str, Any]


def file_format(path: Path) -> FileFormat:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    raise DataError(f"{path}: expected a .csv or .jsonl file, got {suffix or 'no extension'!r}")


def _rows(path: Path, fmt: FileFormat) -> Iterator[tuple[int, Row]]:
    """(line number, row) of each record; a malformed line is a DataError naming it."""
    with path.open(encoding="utf-8-sig", newline="") as f:
        if fmt == "csv":
            for row in csv.DictReader(f):
                yield 0, dict(row)
            return
        for n, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{n}: not a JSON object ({e.msg})") from e
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}:{n}: a line must be a JSON object, got {type(row).__name__}"
                )
            yield n, row


def count_rows(path: Path, fmt: FileFormat) -> int:
    return sum(1 for _ in _rows(path, fmt))


def _text(row: Row, column: str, path: Path, where: int) -> str:
    value = row.get(column)
    if not isinstance(value, str) or not value:
        at = f"{path}:{where}" if where else f"{path} (row with {sorted(row)[:5]})"
        raise DataError(
            f"{at}: column {column!r} is missing or empty; set --text-column / --pair-column "
            f"to the columns holding the texts (found: {sorted(row)})"
        )
    return value


class _Writer:
    def __init__(self, f: TextIO, fmt: FileFormat) -> None:
        self.f, self.fmt = f, fmt
        self.csv: csv.DictWriter[str] | None = None

    def write(self, row: Row, pred: LabelScores) -> None:
        if self.fmt == "jsonl":
            out = {**row, "label": pred["label"], "score": pred["score"], "scores": pred["scores"]}
            self.f.write(json.dumps(out, ensure_ascii=False) + "\n")
            return
        flat: dict[str, object] = {**row, "label": pred["label"], "score": pred["score"]}
        flat.update({f"score_{label}": p for label, p in pred["scores"].items()})
        if self.csv is None:
            self.csv = csv.DictWriter(self.f, fieldnames=list(flat))
            self.csv.writeheader()
        self.csv.writerow(flat)


def predict_file(
    repository: Path,
    model: str,
    input_path: Path,
    output_path: Path,
    *,
    version: str | None = None,
    text_column: str = "text",
    pair_column: str | None = None,
    batch_size: int = 64,
    options: RuntimeOptions | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Score every row of ``input_path`` into ``output_path``; return the number of rows.

    ``progress`` is called with the number of rows done after each batch.
    """
    in_fmt, out_fmt = file_format(input_path), file_format(output_path)
    if output_path.resolve() == input_path.resolve():
        raise DataError(f"{output_path}: the output would overwrite the input; choose another")
    bundle_dir = resolve(repository, model, version)
    manifest = read_manifest(bundle_dir)
    if manifest.text_pair and pair_column is None:
        raise DataError(
            f"model {model!r} classifies text pairs: give --pair-column (the second text)"
        )
    if not manifest.text_pair and pair_column is not None:
        raise DataError(f"model {model!r} classifies single texts: leave --pair-column out")
    clf = open_bundle(bundle_dir, manifest, options or RuntimeOptions(device="auto"))
    done = 0
    # The output appears whole, or not at all.
    with (
        atomic_file(output_path, DataError) as tmp,
        tmp.open("w", encoding="utf-8", newline="") as f,
    ):
        writer = _Writer(f, out_fmt)
        batch: list[tuple[int, Row]] = []
        for item in _rows(input_path, in_fmt):
            batch.append(item)
            if len(batch) == batch_size:
                done += _score(clf, batch, writer, input_path, text_column, pair_column)
                batch = []
                if progress is not None:
                    progress(done)
        if batch:
            done += _score(clf, batch, writer, input_path, text_column, pair_column)
            if progress is not None:
                progress(done)
    return done


def _score(
    clf: OnnxClassifier,
    batch: list[tuple[int, Row]],
    writer: _Writer,
    path: Path,
    text_column: str,
    pair_column: str | None,
) -> int:
    texts = [_text(row, text_column, path, n) for n, row in batch]
    pairs = None if pair_column is None else [_text(r, pair_column, path, n) for n, r in batch]
    probs = clf.predict_proba(texts, pairs, batch_size=len(texts))
    for (_, row), pred in zip(batch, predictions(probs, clf.labels), strict=True):
        writer.write(row, pred)
    return len(batch)
