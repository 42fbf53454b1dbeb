"""The multimodal teacher: text tokens + image tokens -> one fusion block -> MLP -> k classes.

    text encoder -> (B, Lt, Dt) -> Linear -> (B, Lt, D)  \
                                                          concat -> TransformerEncoderLayer
    image encoder -> (B, Li, Di) -> Linear -> (B, Li, D) /          (fusion_heads heads)
    [text CLS ; image CLS] (B, 2D) -> Linear -> GELU = e_T (B, hidden) -> Linear -> logits (B, k)

D is the text encoder's width. Text padding is masked in the fusion attention, so padded
positions never change the output. A saved teacher directory carries its own configs:
``teacher.json`` (TeacherMeta), ``model.safetensors``, ``text_encoder/`` (config +
tokenizer) and ``image_encoder/`` (config + image processor).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from pydantic import BaseModel
from safetensors.torch import load_model, save_model
from torch import Tensor, nn
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from models.image import ImageEncoder, image_encoder_from_config, load_image
from models.text import encode, text_encoder_from_config
from training.errors import ArtifactError, ConfigError

META_FILE = "teacher.json"
WEIGHTS_FILE = "model.safetensors"
TEXT_DIR, IMAGE_DIR = "text_encoder", "image_encoder"

# Indices of a batch -> the image inputs of the teacher's forward for those examples
# (``{"pixel_values": ...}`` or cached ``{"image_tokens": ...}``).
ImageInputs = Callable[[Sequence[int]], dict[str, Tensor]]


class TeacherMeta(BaseModel):
    """``teacher.json``: what a saved teacher is and what it was trained on."""

    name: str
    text_model: str
    image_model: str
    labels: list[str]
    text_pair: bool
    max_length: int
    text_width: int
    image_width: int
    fusion_width: int
    fusion_heads: int
    hidden_size: int
    freeze_image_encoder: bool


@dataclass
class TeacherOutput:
    logits: Tensor  # (B, k)
    embedding: Tensor  # (B, hidden_size): e_T, the MLP's hidden activation


class Teacher(nn.Module):
    def __init__(
        self,
        text_encoder: PreTrainedModel,
        image_encoder: ImageEncoder,
        tokenizer: PreTrainedTokenizerBase,
        *,
        num_labels: int,
        fusion_heads: int,
        hidden_size: int,
        freeze_image_encoder: bool,
    ) -> None:
        super().__init__()
        width = int(text_encoder.config.hidden_size)
        if width % fusion_heads:
            raise ConfigError(
                f"teachers[].fusion_heads={fusion_heads} must divide the text encoder width "
                f"{width}; pick a divisor of {width}"
            )
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.tokenizer = tokenizer
        self.freeze_image_encoder = freeze_image_encoder
        if freeze_image_encoder:
            image_encoder.requires_grad_(False)
        self.text_proj = nn.Linear(width, width)
        self.image_proj = nn.Linear(image_encoder.width, width)
        self.image_cls: nn.Parameter | None = None
        if not image_encoder.has_cls:
            self.image_cls = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.fusion = nn.TransformerEncoderLayer(
            width, fusion_heads, dim_feedforward=4 * width, activation="gelu", batch_first=True
        )
        self.mlp_hidden = nn.Linear(2 * width, hidden_size)
        self.mlp_dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(hidden_size, num_labels)

    def train(self, mode: bool = True) -> Teacher:
        super().train(mode)
        if self.freeze_image_encoder:  # frozen BatchNorm/dropout must not drift
            self.image_encoder.eval()
        return self

    def encode_images(self, pixel_values: Tensor) -> Tensor:
        """(B, 3, H, W) -> raw image tokens (B, Li, Di): what a frozen encoder's cache holds."""
        grad = torch.enable_grad() if not self.freeze_image_encoder else torch.no_grad()
        with grad:
            return self.image_encoder(pixel_values)

    def forward(
        self,
        text_inputs: dict[str, Tensor],
        *,
        pixel_values: Tensor | None = None,
        image_tokens: Tensor | None = None,
    ) -> TeacherOutput:
        """``text_inputs``: tokenizer output (input_ids, attention_mask (B, Lt), ...);
        exactly one of ``pixel_values`` (B, 3, H, W) or ``image_tokens`` (B, Li, Di)."""
        if (pixel_values is None) == (image_tokens is None):
            raise ValueError("give exactly one of pixel_values and image_tokens")
        if image_tokens is None:
            assert pixel_values is not None
            image_tokens = self.encode_images(pixel_values)
        text = self.text_encoder(**text_inputs).last_hidden_state
        text = self.text_proj(text)
        image = self.image_proj(image_tokens.to(text.dtype))
        if self.image_cls is not None:
            image = torch.cat([self.image_cls.expand(image.shape[0], -1, -1), image], dim=1)
        # key_padding_mask: True = ignore. Text padding is ignored; image tokens never are.
        text_pad = text_inputs["attention_mask"] == 0
        image_pad = torch.zeros(image.shape[:2], dtype=torch.bool, device=image.device)
        fused = self.fusion(
            torch.cat([text, image], dim=1),
            src_key_padding_mask=torch.cat([text_pad, image_pad], dim=1),
        )
        cls = torch.cat([fused[:, 0], fused[:, text.shape[1]]], dim=-1)
        embedding = nn.functional.gelu(self.mlp_hidden(cls))
        logits = self.classifier(self.mlp_dropout(embedding))
        return TeacherOutput(logits=logits, embedding=embedding)


def save_teacher(teacher: Teacher, meta: TeacherMeta, out_dir: Path) -> None:
    """Write weights, ``teacher.json`` and the encoders' configs into ``out_dir``."""
    save_model(teacher, str(out_dir / WEIGHTS_FILE))
    (out_dir / META_FILE).write_text(meta.model_dump_json(indent=2))
    teacher.text_encoder.config.save_pretrained(out_dir / TEXT_DIR)
    teacher.tokenizer.save_pretrained(out_dir / TEXT_DIR)
    teacher.image_encoder.save_config(out_dir / IMAGE_DIR)


def load_teacher(teacher_dir: Path) -> tuple[Teacher, TeacherMeta]:
    """Load a teacher saved by ``save_teacher`` (CPU, eval mode)."""
    meta_path = teacher_dir / META_FILE
    if not meta_path.is_file():
        raise ArtifactError(f"{teacher_dir}: no {META_FILE}; rerun the teacher stage")
    meta = TeacherMeta.model_validate_json(meta_path.read_text())
    try:
        teacher = Teacher(
            text_encoder_from_config(teacher_dir / TEXT_DIR),
            image_encoder_from_config(teacher_dir / IMAGE_DIR),
            AutoTokenizer.from_pretrained(teacher_dir / TEXT_DIR),
            num_labels=len(meta.labels),
            fusion_heads=meta.fusion_heads,
            hidden_size=meta.hidden_size,
            freeze_image_encoder=meta.freeze_image_encoder,
        )
        load_model(teacher, str(teacher_dir / WEIGHTS_FILE))
    except (OSError, RuntimeError, ValueError) as e:
        raise ArtifactError(f"{teacher_dir}: cannot load the teacher: {e}") from e
    return teacher.eval(), meta


def pixel_inputs(teacher: Teacher, images: Sequence[Path | Image.Image]) -> ImageInputs:
    """Image inputs read (and preprocessed) per batch from paths or PIL images."""

    def inputs(idx: Sequence[int]) -> dict[str, Tensor]:
        batch = [images[i] for i in idx]
        pils = [im if isinstance(im, Image.Image) else load_image(im) for im in batch]
        return {"pixel_values": teacher.image_encoder.preprocess(pils)}

    return inputs


@torch.no_grad()
def predict_teacher(
    teacher: Teacher,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    image_inputs: ImageInputs,
    *,
    max_length: int,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    on_batch: Callable[[int, int], None] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Teacher logits (N, k) and embeddings e_T (N, hidden) as float32 numpy."""
    teacher.eval()
    logits, embeddings = [], []
    n_batches = (len(texts) + batch_size - 1) // batch_size
    for b, start in enumerate(range(0, len(texts), batch_size)):
        idx = list(range(start, min(start + batch_size, len(texts))))
        text = encode(
            teacher.tokenizer,
            [texts[i] for i in idx],
            [pairs[i] for i in idx] if pairs else None,
            max_length,
        )
        amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
        with amp:
            out = teacher(
                {k: v.to(device) for k, v in text.items()},
                **{k: v.to(device) for k, v in image_inputs(idx).items()},
            )
        logits.append(out.logits.float().cpu().numpy())
        embeddings.append(out.embedding.float().cpu().numpy())
        if on_batch is not None:
            on_batch(b + 1, n_batches)
    if not logits:
        k = teacher.classifier.out_features
        return np.zeros((0, k), np.float32), np.zeros((0, teacher.mlp_hidden.out_features))
    return np.concatenate(logits), np.concatenate(embeddings)
