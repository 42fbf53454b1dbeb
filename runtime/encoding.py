"""Texts to graph inputs with the bundle's tokenizer.json and the ``tokenizers`` library.

Tokenizing and padding are two steps so that a caller can tokenize many requests at once,
group the encodings by length, and pad each group only to its own longest text.
Truncation is contracts/truncation.py's (characters first, then longest-first in one
pass): the same cut as in training, and linear in the length of a pair.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from tokenizers import Tokenizer

from contracts.errors import ModelLoadError
from contracts.truncation import Cut, PairCutter

TokenizerInput = str | tuple[str, str]


class TextEncoder:
    """tokenizer.json, truncating to ``max_length`` and padding to the longest of a batch.

    A saved tokenizer may pad every text to a fixed length (4x slower at batch 1, see
    docs/environment.md), so its own padding is switched off and ``feed`` pads instead,
    on the right, with the tokenizer's pad id and type id 0.
    """

    def __init__(self, tokenizer: Tokenizer, max_length: int, inputs: Sequence[str]) -> None:
        self.tokenizer = tokenizer
        padding = self.tokenizer.padding
        self.pad_id = (
            int(padding["pad_id"]) if padding else (self.tokenizer.token_to_id("[PAD]") or 0)
        )
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(max_length)
        self.max_length = max_length
        self.inputs = list(inputs)
        try:
            self.cutter = PairCutter(self.tokenizer, max_length)
        except ValueError as e:
            raise ModelLoadError(f"tokenizer.json: {e}") from e

    @classmethod
    def from_file(
        cls,
        tokenizer_file: Path,
        max_length: int,
        inputs: Sequence[str],
        max_bytes: int | None = None,
        max_vocab: int | None = None,
    ) -> TextEncoder:
        """``max_bytes``: a larger file is refused unread (parsing holds the GIL, about 75
        ms per MB: a 42 MB one stalled a server's event loop for 3.2 s and took 1.8 GB);
        ``max_vocab``: a larger vocabulary is refused."""
        if max_bytes is not None:
            size = tokenizer_file.stat().st_size
            if size > max_bytes:
                raise ModelLoadError(
                    f"{tokenizer_file}: {size} bytes, more than {max_bytes} "
                    "(LUGPI_MAX_TOKENIZER_BYTES); not loaded"
                )
        try:
            tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as e:  # tokenizers raises a bare Exception on a bad file
            raise ModelLoadError(f"{tokenizer_file}: not a valid tokenizers file: {e}") from e
        vocab = tokenizer.get_vocab_size(with_added_tokens=True)
        if max_vocab is not None and vocab > max_vocab:
            raise ModelLoadError(
                f"{tokenizer_file}: a vocabulary of {vocab} entries, more than {max_vocab} "
                "(LUGPI_MAX_VOCAB_SIZE); not loaded"
            )
        return cls(tokenizer, max_length, inputs)

    @staticmethod
    def pair_up(texts: Sequence[str], pairs: Sequence[str] | None) -> list[TokenizerInput]:
        """Tokenizer inputs: the texts, or (text, text_pair) tuples."""
        if pairs is None:
            return list(texts)
        if len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} text pairs")
        return list(zip(texts, pairs, strict=True))

    def encode(self, inputs: Sequence[TokenizerInput], truncation: str = "right") -> list[Cut]:
        """Token ids per input, truncated to max_length at the ``truncation`` end ("right"
        or "left"), unpadded; a tokenizer call for the single texts and two for the pairs."""
        singles = [i for i, x in enumerate(inputs) if isinstance(x, str)]
        paired = [i for i, x in enumerate(inputs) if not isinstance(x, str)]
        out: list[Cut | None] = [None] * len(inputs)
        if singles:
            texts = [str(inputs[i]) for i in singles]
            for i, c in zip(singles, self.cutter(texts, None, truncation), strict=True):
                out[i] = c
        if paired:
            firsts = [inputs[i][0] for i in paired]
            seconds = [inputs[i][1] for i in paired]
            for i, c in zip(paired, self.cutter(firsts, seconds, truncation), strict=True):
                out[i] = c
        return [c for c in out if c is not None]

    @staticmethod
    def was_truncated(encoding: Cut) -> bool:
        return encoding.truncated

    def feed(self, encodings: Sequence[Cut]) -> dict[str, np.ndarray]:
        """The graph's inputs (int64), padded on the right to the longest encoding given."""
        n = len(encodings)
        width = max(len(e.ids) for e in encodings)
        ids = np.full((n, width), self.pad_id, dtype=np.int64)
        mask = np.zeros((n, width), dtype=np.int64)
        types = np.zeros((n, width), dtype=np.int64)
        for row, enc in enumerate(encodings):
            m = len(enc.ids)
            ids[row, :m] = enc.ids
            mask[row, :m] = 1
            types[row, :m] = enc.type_ids
        arrays = {"input_ids": ids, "attention_mask": mask, "token_type_ids": types}
        return {name: arrays[name] for name in self.inputs}
