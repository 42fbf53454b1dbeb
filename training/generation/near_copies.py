"""Which generated texts are copies: the measure, stated once.

Texts are compared after ``normalise``: lowercased, every run of characters that are not
letters or digits replaced by one space, trimmed. Two texts are near-copies when their
normalised edit similarity ``1 - Levenshtein(a, b) / max(len(a), len(b))`` (characters;
rapidfuzz's ``Levenshtein.normalized_similarity``) is at least the threshold
(``tgt.max_similarity``, 0.9 by default); identical normalised texts have similarity 1.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np

_NON_WORD = re.compile(r"[^0-9a-z]+")


def normalise(text: str) -> str:
    return _NON_WORD.sub(" ", text.lower()).strip()


def similarity(a: str, b: str) -> float:
    """Normalised edit similarity of two texts (after ``normalise``), in [0, 1]."""
    from rapidfuzz.distance import Levenshtein

    return float(Levenshtein.normalized_similarity(normalise(a), normalise(b)))


def near_any(
    texts: Sequence[str], references: Sequence[str], threshold: float, chunk: int = 256
) -> np.ndarray:
    """Boolean (len(texts),): is text i a near-copy of any reference? Exact normalised
    matches are found by hashing; the rest with rapidfuzz's C matrix, chunked so that
    memory stays at chunk x len(references) floats."""
    from rapidfuzz import process
    from rapidfuzz.distance import Levenshtein

    norm = [normalise(t) for t in texts]
    refs = sorted({normalise(r) for r in references})
    exact = set(refs)
    out = np.array([t in exact for t in norm], dtype=bool)
    if not refs:
        return out
    todo = [i for i, hit in enumerate(out) if not hit]
    for start in range(0, len(todo), chunk):
        ids = todo[start : start + chunk]
        scores = process.cdist(
            [norm[i] for i in ids],
            refs,
            scorer=Levenshtein.normalized_similarity,
            score_cutoff=threshold,
            dtype=np.float32,
            workers=1,
        )
        out[ids] = (scores >= threshold).any(axis=1)
    return out
