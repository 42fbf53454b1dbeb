"""Test support (not library code): a synthetic task whose label is in the text and,
optionally, in the image, built in seconds for tests that train tiny models."""

from __future__ import annotations

from pathlib import Path

from contracts.artifacts import ImageIndex
from training.data.prepare import PreparedData

# Single WordPiece tokens in the MiniLM vocabulary: one word per text carries the class.
CLASS_WORDS = (
    ("apple", "river", "garden", "summer", "music", "window", "silver", "market", "forest"),
    ("stone", "engine", "winter", "castle", "letter", "bridge", "camera", "bottle", "planet"),
    ("cloud", "horse", "ocean", "pencil", "mirror", "farmer", "candle", "valley", "rocket"),
)
FILLER = ("the", "a", "of", "and", "to", "in", "is", "was", "for", "on", "with", "as", "by")
COLOURS = ((220, 40, 40), (40, 40, 220), (40, 200, 40))


def make_keyword_colour_data(
    out_dir: Path,
    sizes: dict[str, int],
    *,
    num_classes: int = 2,
    label_noise: float = 0.0,
    informative_images: bool = True,
    seed: int = 0,
    image_size: int = 32,
) -> tuple[PreparedData, ImageIndex]:
    """A synthetic task whose clean label is in the text (one class keyword among filler
    words) and, when ``informative_images``, also in the image (a noisy solid colour per
    class); otherwise every image is the same noise picture. Training labels are flipped
    to another class with probability ``label_noise``; dev and test labels stay clean.

    ``sizes``: split -> number of examples (e.g. {"train": 400, "dev": 100, "test": 300}).
    Returns the data and an image index (one PNG per example, written under ``out_dir``).
    """
    import random

    import numpy as np
    from PIL import Image

    from training.data.prepare import Example, PreparedData

    if not 2 <= num_classes <= len(CLASS_WORDS):
        raise ValueError(f"num_classes must be 2..{len(CLASS_WORDS)}")
    labels = [f"class{c}" for c in range(num_classes)]
    rng = random.Random(seed)
    noise_image = np.random.default_rng(seed).uniform(0, 255, (image_size, image_size, 3))
    splits: dict[str, list[Example]] = {}
    images: dict[str, list[Path]] = {}
    for split, n in sizes.items():
        (out_dir / split).mkdir(parents=True, exist_ok=True)
        splits[split], images[split] = [], []
        for i in range(n):
            c = i % num_classes
            words = [rng.choice(CLASS_WORDS[c])] + [rng.choice(FILLER) for _ in range(5)]
            rng.shuffle(words)
            y = c
            if split == "train" and rng.random() < label_noise:
                y = rng.choice([k for k in range(num_classes) if k != c])
            text = " ".join(words)
            splits[split].append(Example(text, None, labels[y], text))
            if informative_images:
                jitter = np.random.default_rng([seed, i]).normal(0, 20, (image_size,) * 2 + (3,))
                pixels = np.asarray(COLOURS[c])[None, None, :] + jitter
            else:
                pixels = noise_image
            path = out_dir / split / f"{i}.png"
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
            images[split].append(path)
    return PreparedData(labels=labels, text_pair=False, splits=splits), images
