"""How long the benchmark will take: a cost model from per-token and per-image speeds.

The speeds are for the ``offline`` preset (all-MiniLM-L6-v2 + EfficientNet-Lite0 + the
tiny random generator) on 2 free CPU cores; other models, other machines and a shared
machine change them (``Speeds`` says where each came from). Expect the estimate to be
right within a factor of about 1.5, not better.

Costs are counted in "padded tokens": training and inference pad a batch to its longest
text, so a batch costs batch_size x (its longest text). The teacher adds one transformer
layer (its fusion block) over the text tokens plus 50 image tokens: with a 6-layer text
encoder that is (L + 50) / 6 more token-layers per example.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from contracts.config import PipelineConfig
from training.data.prepare import PreparedData
from training.students.budget import planned_epochs

IMAGE_TOKENS = 50  # EfficientNet-Lite0: 7x7 grid + the teacher's learned CLS
TEXT_LAYERS = 6  # all-MiniLM-L6-v2 (and DistilBERT): the fusion block is one more layer


@dataclass(frozen=True)
class Speeds:
    """Seconds on 2 CPU cores, fp32."""

    # MiniLM fine-tune, batch 32: CWI News, 14,002 examples x 2 epochs x 79 padded tokens
    # (max length 96) took 17 min (docs/environment.md) => 1,020 s / 2.3 M tokens.
    train_token: float = 4.3e-4
    # Forward only, no autograd: about a third of a training step.
    infer_token: float = 1.5e-4
    # EfficientNet-Lite0 at 224 px, batch 32: 0.135 CPU-s per image measured on this
    # machine (while loaded) => ~0.07 s wall on 2 free cores.
    effnet_image: float = 0.07
    # tiny-random generator, 64 px, 2 steps: 8-18 images/s seen on this (shared) machine.
    generate_image: float = 0.06


SPEEDS = Speeds()


def padded_tokens(
    tokenizer: object, data: PreparedData, max_length: int, batch_size: int, seed: int = 0
) -> float:
    """Mean padded length per example: E[longest text in a random batch], from a sample."""
    rng = np.random.default_rng(seed)
    train = data.splits["train"]
    idx = rng.choice(len(train), size=min(512, len(train)), replace=False)
    texts = [train[i].text for i in idx]
    pairs = [train[i].text_pair or "" for i in idx] if data.text_pair else None
    enc = tokenizer(texts, pairs, truncation=True, max_length=max_length)  # type: ignore[operator]
    lengths = np.asarray([len(ids) for ids in enc["input_ids"]])
    b = min(batch_size, len(lengths))
    batches = [lengths[rng.choice(len(lengths), b, replace=False)].max() for _ in range(200)]
    return float(np.mean(batches))


def _distinct_prompts(data: PreparedData, splits: tuple[str, ...]) -> int:
    return len({ex.prompt for s in splits for ex in data.splits.get(s, [])})


def estimate_seconds(
    cfg: PipelineConfig, data: PreparedData, tokens: float, speeds: Speeds = SPEEDS
) -> dict[str, float]:
    """Seconds per part of one dataset-and-seed run (all models of the benchmark)."""
    n_tr, n_dev = len(data.splits["train"]), len(data.splits["dev"])
    n_eval = n_dev + len(data.splits.get("test", []))
    n_teachers = len(cfg.teachers)
    t, s, floor = cfg.teachers[0], cfg.student, cfg.student.min_steps
    t_epochs = planned_epochs(n_tr, t.batch_size, t.epochs, floor)[0]
    s_epochs = planned_epochs(n_tr, s.batch_size, s.epochs, floor)[0]
    fusion_text = tokens * (1 + 1 / TEXT_LAYERS)  # text encoder + fusion over the text
    multimodal = fusion_text + IMAGE_TOKENS / TEXT_LAYERS  # ... + fusion over image tokens
    image_only = IMAGE_TOKENS / TEXT_LAYERS

    def fit(per_example: float, epochs: float) -> float:
        """Training steps plus the dev evaluation after every epoch."""
        train = n_tr * epochs * per_example * speeds.train_token
        return train + math.ceil(epochs) * n_dev * per_example * speeds.infer_token

    # The token store (training/teachers/image_tokens.py) encodes each distinct image once for every
    # teacher, student target and evaluation of the run; a shared store makes it less.
    encode = _distinct_prompts(data, ("train", "dev", "test")) * speeds.effnet_image
    student = fit(tokens, s_epochs)
    # distill recomputes the frozen teachers' outputs on train from the stored tokens.
    mm_targets = n_teachers * n_tr * multimodal * speeds.infer_token
    text_targets = n_tr * fusion_text * speeds.infer_token
    per_eval_example = (
        5 * tokens * speeds.infer_token  # baseline, student, alpha=0, beta=0, self-distilled
        + n_teachers * (multimodal + image_only) * speeds.infer_token
        + fusion_text * speeds.infer_token  # the text-only teacher
    )
    return {
        "generate": _distinct_prompts(data, ("train", "dev", "test")) * speeds.generate_image,
        "image tokens": encode,
        "teachers": n_teachers * fit(multimodal, t_epochs),
        "image-only": n_teachers * fit(image_only, t_epochs),
        "text teacher": fit(fusion_text, t_epochs),
        "baseline": student,
        "students": 3 * (mm_targets + student),  # LUGPI, alpha=0, beta=0
        "self-distill": text_targets + student,
        "evaluate": n_eval * per_eval_example,
    }


def format_seconds(seconds: float) -> str:
    minutes = round(seconds / 60)
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"
