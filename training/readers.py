"""Read labelled texts from CSV, TSV, JSONL or the CWI 2018 TSV format.

Every problem a user can cause (missing file, missing column, malformed line) raises
``DataError`` naming the file, the line and what was found. Torch-free.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from contracts.config import DataConfig, DataFormat, missing_data_hint
from contracts.errors import DataError

# CWI 2018 TSV, no header: id, sentence, start, end, target, native annotators,
# non-native annotators, native complex, non-native complex, binary label, probability.
CWI_FIELDS = 11
CWI_LABELS = {"0": "simple", "1": "complex"}

# Read through 🤗 datasets when format is 'auto' (besides directories saved by it).
HF_SUFFIXES = (".parquet", ".arrow")
# A newsgroup post or a long review can exceed csv's default 128 KiB field limit.
csv.field_size_limit(1 << 26)


@dataclass(frozen=True)
class RawRow:
    text: str
    text_pair: str | None
    label: str | None


def resolve_format(path: Path, fmt: DataFormat) -> DataFormat:
    """``auto``: by extension; a ``.tsv`` whose first line looks like CWI 2018 is ``cwi2018``."""
    if fmt != "auto":
        return fmt
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        return "jsonl"
    if suffix == ".csv":
        return "csv"
    if suffix in (".tsv", ".tab", ".txt"):
        with path.open(encoding="utf-8-sig", errors="replace") as f:
            first = f.readline().rstrip("\r\n").split("\t")
        looks_cwi = (
            len(first) == CWI_FIELDS
            and first[2].isdigit()
            and first[3].isdigit()
            and first[9] in CWI_LABELS
        )
        return "cwi2018" if looks_cwi else "tsv"
    raise DataError(
        f"{path}: cannot tell the format from the extension {suffix or '(none)'!r}; "
        "set data.format to csv, tsv, jsonl or cwi2018"
    )


def reads_through_datasets(path: Path, fmt: DataFormat) -> bool:
    """Whether a source is read by 🤗 datasets (training/hf_data.py), not by this module."""
    return fmt == "hf" or (fmt == "auto" and (path.is_dir() or path.suffix in HF_SUFFIXES))


def read_rows(
    path: Path, cfg: DataConfig, *, labelled: bool = True, split: str = "train"
) -> list[RawRow]:
    """All rows of one split (``split``: train, dev, test or unlabelled). ``labelled=False``
    ignores the label column."""
    if reads_through_datasets(path, cfg.format):
        from training.hf_data import read_dataset_rows

        hf_split = cfg.hf_splits.get(split, split)
        return read_dataset_rows(str(path), hf_split, cfg, labelled=labelled)
    if not path.is_file():
        raise DataError(f"data file not found: {path}; {missing_data_hint(split, path)}")
    fmt = resolve_format(path, cfg.format)
    try:
        if fmt == "cwi2018":
            rows = list(_read_cwi(path, labelled))
        elif fmt == "jsonl":
            rows = list(_read_jsonl(path, cfg, labelled))
        else:
            rows = list(_read_delimited(path, cfg, labelled, "," if fmt == "csv" else "\t"))
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e
    if not rows:
        raise DataError(f"{path}: no examples (empty file?)")
    return rows


def _read_cwi(path: Path, labelled: bool) -> Iterator[RawRow]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            fields = line.split("\t")
            need = CWI_FIELDS if labelled else 5
            if len(fields) < need:
                raise DataError(
                    f"{path}:{lineno}: expected {need} tab-separated CWI 2018 fields "
                    f"(id, sentence, start, end, target, ..., binary label, probability), "
                    f"got {len(fields)}"
                )
            sentence, target = fields[1].strip(), fields[4].strip()
            if not sentence or not target:
                raise DataError(f"{path}:{lineno}: empty sentence or target phrase")
            label = None
            if labelled:
                if fields[9] not in CWI_LABELS:
                    raise DataError(
                        f"{path}:{lineno}: binary label (column 10) must be 0 or 1, "
                        f"got {fields[9]!r}"
                    )
                label = CWI_LABELS[fields[9]]
            yield RawRow(sentence, target, label)


def _pick(
    record: dict[str, object], cfg: DataConfig, labelled: bool, where: str, available: list[str]
) -> RawRow:
    def get(column: str) -> str:
        if column not in record:
            raise DataError(
                f"{where}: no column {column!r}; available: {available}. "
                "Set data.text_column / data.text_pair_column / data.label_column."
            )
        value = record[column]
        if value is None or isinstance(value, dict | list):
            raise DataError(f"{where}: column {column!r} must be a string, got {value!r}")
        return str(value).strip()

    text = get(cfg.text_column)
    if not text:
        raise DataError(f"{where}: empty text in column {cfg.text_column!r}")
    pair = get(cfg.text_pair_column) if cfg.text_pair_column else None
    label = get(cfg.label_column) if labelled else None
    if labelled and not label:
        raise DataError(f"{where}: empty label in column {cfg.label_column!r}")
    return RawRow(text, pair, label)


def _read_jsonl(path: Path, cfg: DataConfig, labelled: bool) -> Iterator[RawRow]:
    with path.open(encoding="utf-8-sig") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{where}: not valid JSON ({e.msg}); one object per line") from e
            if not isinstance(record, dict):
                raise DataError(f"{where}: expected a JSON object, got {type(record).__name__}")
            yield _pick(record, cfg, labelled, where, sorted(record))


def _read_delimited(
    path: Path, cfg: DataConfig, labelled: bool, delimiter: str
) -> Iterator[RawRow]:
    with path.open(encoding="utf-8-sig", newline="") as f:
        reader = csv.reader(f, delimiter=delimiter, strict=True)
        try:
            header = next(reader, [])
            if not header:
                return
            wanted = [cfg.text_column, cfg.text_pair_column]
            wanted.append(cfg.label_column if labelled else None)
            missing = [c for c in wanted if c is not None and c not in header]
            if missing:
                raise DataError(
                    f"{path}: header has no column {missing[0]!r}; available: {header}. "
                    "Set data.text_column / data.text_pair_column / data.label_column."
                )
            for fields in reader:
                where = f"{path}:{reader.line_num}"
                if not fields:
                    continue
                if len(fields) != len(header):
                    raise DataError(f"{where}: expected {len(header)} fields, got {len(fields)}")
                yield _pick(dict(zip(header, fields, strict=True)), cfg, labelled, where, header)
        except csv.Error as e:
            raise DataError(f"{path}:{reader.line_num}: malformed line ({e})") from e
