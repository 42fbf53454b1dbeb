"""Test support for the data-free amalgamation (StrataNet): a synthetic 4-class keyword
task split between two teachers, each trained on two classes only.

- The class of a text is the class of its one keyword among filler words.
- Teacher "left" knows classes north/south (keyword sets 0, 1); teacher "right" knows
  east/west (sets 2, 3). Each is a tiny random-init BERT trained here on its own labelled
  texts. Neither can label the other's classes: alone, each is right on at most half of
  a balanced 4-class test set.
- The generator (a tiny masked LM trained here from random init) and the seed texts come
  from an unlabelled corpus over the same vocabulary (every keyword and the filler words,
  plus BBC News sentences), drawn with other seeds than every labelled text, and never
  seen by a teacher. Held-out test texts are drawn apart from all of them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from training.data.prepare import Example, PreparedData

CLASS_WORDS = (
    ("apple", "river", "garden", "summer", "music", "window", "silver", "market", "forest"),
    ("stone", "engine", "winter", "castle", "letter", "bridge", "camera", "bottle", "planet"),
    ("cloud", "horse", "ocean", "pencil", "mirror", "farmer", "candle", "valley", "rocket"),
    ("tiger", "doctor", "island", "coffee", "hammer", "violin", "desert", "jacket", "tunnel"),
)
FILLER = ("the", "a", "of", "and", "to", "in", "is", "was", "for", "on", "with", "as", "by")
LABELS = ("north", "south", "east", "west")
TEACHER_CLASSES = {"left": (0, 1), "right": (2, 3)}


def _text(rng: random.Random, c: int) -> str:
    out = [rng.choice(CLASS_WORDS[c])] + [rng.choice(FILLER) for _ in range(5)]
    rng.shuffle(out)
    return " ".join(out)


def teacher_data(name: str, seed: int, n_train: int = 120, n_dev: int = 40) -> PreparedData:
    """A teacher's own labelled texts (its two classes only)."""
    rng = random.Random(f"strata-teacher:{name}:{seed}")
    classes = TEACHER_CLASSES[name]
    splits = {}
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = []
        for i in range(n):
            c = classes[i % 2]
            text = _text(rng, c)
            rows.append(Example(text, None, LABELS[c], text))
        splits[split] = rows
    return PreparedData(labels=sorted(LABELS[c] for c in classes), text_pair=False, splits=splits)


def held_out(seed: int, n: int = 200) -> list[tuple[str, str]]:
    """Real held-out texts of all four classes: (text, label)."""
    rng = random.Random(f"strata-test:{seed}")
    return [(_text(rng, i % 4), LABELS[i % 4]) for i in range(n)]


def domain_corpus(n: int, seed: int) -> list[str]:
    """Unlabelled texts of the domain: every keyword, no labels."""
    rng = random.Random(f"strata-corpus:{seed}")
    return [_text(rng, i % 4) for i in range(n)]


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    return path


def seed_file(path: Path, n: int = 400, seed: int = 777) -> Path:
    """Unlabelled seed texts (one per line), disjoint from every teacher's texts."""
    path.write_text("\n".join(domain_corpus(n, seed)) + "\n")
    return path


def train_strata_generator(out_dir: Path) -> Path:
    """A tiny masked LM trained here (random init) on BBC News plus the domain corpus."""
    from training.generation.tiny_text_generator import bbc_sentences, train_text_generator

    corpus = bbc_sentences()[:2000] + domain_corpus(3000, seed=99)
    return train_text_generator(
        out_dir, corpus, "masked", steps=300, hidden_size=64, max_length=24, batch_size=32
    )


def keyword_class(text: str) -> int | None:
    for word in text.lower().split():
        for c, words in enumerate(CLASS_WORDS):
            if word in words:
                return c
    return None
