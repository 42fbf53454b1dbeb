"""One row as a reader returns it, before prepare turns it into an ``Example``.

Its own module so that both readers (training/data/readers.py for files,
training/data/hf_data.py for 🤗 datasets) return it without importing each other.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class RawRow:
    text: str
    text_pair: str | None
    label: str | None
