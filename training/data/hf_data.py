"""Labelled texts through the 🤗 ``datasets`` library.

A source is one of:

- a ``save_to_disk`` directory (a ``Dataset``, or a ``DatasetDict`` whose split is picked
  by ``data.hf_splits``);
- a ``.parquet`` or ``.arrow`` file, or a ``.csv`` / ``.jsonl`` file with ``format: hf``;
- with ``format: hf``, a dataset id on the Hugging Face hub (needs the network; the
  command line only: jobs over HTTP take local paths under the data roots).

Columns are mapped by ``text_column`` / ``text_pair_column`` / ``label_column``; a
``ClassLabel`` label is read as its name. Loading scripts are never run: local data is
read with ``load_from_disk`` or the packaged parquet/arrow/csv/json builders, and hub
datasets with ``load_dataset`` as published (``datasets`` 4+ runs no scripts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from contracts.config import SAVED_DATASET_MARKERS, DataConfig, is_saved_dataset
from contracts.errors import DataError
from training.data.rows import RawRow

FILE_BUILDERS = {".parquet": "parquet", ".csv": "csv", ".jsonl": "json", ".json": "json"}


def _pick_split(loaded: Any, split: str, source: str) -> Any:
    from datasets import DatasetDict

    if not isinstance(loaded, DatasetDict):
        return loaded
    if split not in loaded:
        raise DataError(
            f"{source}: no split {split!r}; it has {sorted(loaded)}: set data.hf_splits "
            "to map train/dev/test to them"
        )
    return loaded[split]


def _load(source: str, split: str) -> Any:
    import datasets

    path = Path(source).expanduser()
    try:
        if path.is_dir():
            if not is_saved_dataset(path):
                raise DataError(
                    f"{source}: a directory that save_to_disk did not write (no "
                    f"{' / '.join(SAVED_DATASET_MARKERS)}); give a saved dataset or a data file"
                )
            return _pick_split(datasets.load_from_disk(str(path)), split, source)
        if path.suffix == ".arrow" and path.is_file():
            return datasets.Dataset.from_file(str(path))
        if path.suffix in FILE_BUILDERS and path.is_file():
            builder = FILE_BUILDERS[path.suffix]
            return datasets.load_dataset(builder, data_files=str(path), split="train")
        if path.exists() or path.suffix:
            raise DataError(f"{source}: not a dataset file (.parquet, .arrow, .csv, .jsonl)")
        return datasets.load_dataset(source, split=split)
    except DataError:
        raise
    except FileNotFoundError as e:
        raise DataError(f"{source}: not found ({e})") from e
    except Exception as e:  # datasets raises many types (hub, builder, schema errors)
        raise DataError(f"{source}: 🤗 datasets could not load it: {type(e).__name__}: {e}") from e


def read_dataset_rows(source: str, split: str, cfg: DataConfig, *, labelled: bool) -> list[RawRow]:
    """Rows of one split; ``split`` is the dataset's own split name (after hf_splits)."""
    ds = _load(source, split)
    columns = list(ds.column_names)
    wanted = [cfg.text_column, *([cfg.text_pair_column] if cfg.text_pair_column else [])]
    if labelled:
        wanted.append(cfg.label_column)
    missing = [c for c in wanted if c not in columns]
    if missing:
        raise DataError(
            f"{source} ({split}): no column {missing[0]!r}; columns: {columns}. Map them with "
            "data.text_column / data.text_pair_column / data.label_column"
        )
    names = None
    if labelled:
        feature = ds.features[cfg.label_column]
        names = getattr(feature, "names", None)  # a ClassLabel: ints that mean names
    rows = []
    for i, record in enumerate(ds.select_columns(wanted)):
        text = record[cfg.text_column]
        pair = record[cfg.text_pair_column] if cfg.text_pair_column else None
        if not isinstance(text, str) or not text.strip():
            raise DataError(f"{source} ({split}) row {i}: {cfg.text_column!r} is empty or not text")
        label = None
        if labelled:
            value = record[cfg.label_column]
            if value is None:
                raise DataError(f"{source} ({split}) row {i}: {cfg.label_column!r} is missing")
            label = names[value] if names is not None and isinstance(value, int) else str(value)
        rows.append(RawRow(text, None if pair is None else str(pair), label))
    if not rows:
        raise DataError(f"{source} ({split}): no examples")
    return rows
