"""Test support (not library code): a synthetic task on which privileged images can help.

Each text is one class keyword among filler words; each sample's image is its own picture,
drawn from its own seed (split and index), so no two samples (and no train and test
sample) share an image. With ``informative_images`` the picture is a noisy solid colour of
the sample's CLEAN class; otherwise it is uniform noise that says nothing about the class.
Training labels are flipped to another class with probability ``label_noise``; dev and
test labels are clean. A text-only model sees the keyword but learns it from noisy labels;
a teacher that also sees the image has a clean, easy feature.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path

import numpy as np
from PIL import Image

from contracts.artifacts import ImageIndex
from tests.support.keyword_colour import CLASS_WORDS, COLOURS, FILLER
from training.data.prepare import Example, PreparedData

SPLIT_IDS = {"train": 0, "dev": 1, "test": 2}


def make_privileged_image_task(
    out_dir: Path,
    sizes: dict[str, int],
    *,
    seed: int,
    label_noise: float,
    informative_images: bool,
    num_classes: int = 2,
    filler_words: int = 5,
    image_size: int = 32,
) -> tuple[PreparedData, ImageIndex]:
    """The task above. ``sizes``: split -> number of samples. The texts and labels depend
    on ``seed`` only, so the informative and the uninformative variant of one seed differ
    in their images alone. Returns the data and one PNG per sample under ``out_dir``."""
    if not 2 <= num_classes <= len(CLASS_WORDS):
        raise ValueError(f"num_classes must be 2..{len(CLASS_WORDS)}")
    labels = [f"class{c}" for c in range(num_classes)]
    rng = random.Random(seed)
    splits: dict[str, list[Example]] = {}
    images: ImageIndex = {}
    for split, n in sizes.items():
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        splits[split], images[split] = [], []
        for i in range(n):
            c = i % num_classes
            words = [rng.choice(CLASS_WORDS[c])] + [rng.choice(FILLER) for _ in range(filler_words)]
            rng.shuffle(words)
            y = c
            if split == "train" and rng.random() < label_noise:
                y = rng.choice([k for k in range(num_classes) if k != c])
            text = " ".join(words)
            splits[split].append(Example(text, None, labels[y], text))
            own = np.random.default_rng([seed, SPLIT_IDS[split], i])
            shape = (image_size, image_size, 3)
            if informative_images:
                pixels = np.asarray(COLOURS[c])[None, None, :] + own.normal(0, 20, shape)
            else:
                pixels = own.uniform(0, 255, shape)
            path = out_dir / split / f"{i}.png"
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
            images[split].append(path)
    return PreparedData(labels=labels, text_pair=False, splits=splits), images


def image_digests(paths: list[Path]) -> set[str]:
    """sha256 of each image file's bytes (to show that two splits share no picture)."""
    return {hashlib.sha256(p.read_bytes()).hexdigest() for p in paths}
