"""The multimodal teacher: text tokens + image tokens -> one fusion block -> MLP -> k classes.

    text encoder -> (B, Lt, Dt) -> Linear -> (B, Lt, D)  \
                                                          concat -> TransformerEncoderLayer
    image encoder -> (B, Li, Di) -> Linear -> (B, Li, D) /          (fusion_heads heads)
    [text CLS ; image CLS] (B, 2D) -> Linear -> GELU = e_T (B, hidden) -> Linear -> logits (B, k)

D is the text encoder's width. Text padding is masked in the fusion attention, so padded
positions never change the output. A saved teacher directory carries its own configs:
``teacher.json`` (TeacherMeta), ``model.safetensors``, ``text_encoder/`` (config +
tokenizer) and ``image_encoder/`` (config + image processor).

Single-modality controls drop one branch and keep the rest: a text-only teacher (no image
encoder; the fusion block runs over the text tokens, the MLP reads the text CLS) and an
image-only model (no text encoder; D is still the configured text model's width, so the
fusion block and MLP are the multimodal teacher's). Inputs of the missing modality are
ignored, so callers can hand every teacher the same arguments.
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

from contracts.config import TeacherModality
from contracts.errors import ArtifactError, ConfigError
from models.image import ImageEncoder, image_encoder_from_config, load_image
from models.text import encode, text_encoder_from_config

META_FILE = "teacher.json"
WEIGHTS_FILE = "model.safetensors"
TEXT_DIR, IMAGE_DIR = "text_encoder", "image_encoder"

# Indices of a batch -> the image inputs of the teacher's forward for those examples
# (``{"pixel_values": ...}`` or cached ``{"image_tokens": ...}``).
ImageInputs = Callable[[Sequence[int]], dict[str, Tensor]]


class TeacherMeta(BaseModel):
    """``teacher.json``: what a saved teacher is and what it was trained on."""

    name: str
    modality: TeacherModality = "text+image"  # absent in teachers saved before it existed
    text_model: str
    image_model: str
    labels: list[str]
    text_pair: bool
    max_length: int
    text_width: int | None  # None: no text encoder (image-only)
    image_width: int | None  # None: no image encoder (text-only)
    fusion_width: int
    fusion_heads: int
    hidden_size: int
    freeze_image_encoder: bool


@dataclass
class TeacherOutput:
    logits: Tensor  # (B, k)
    embedding: Tensor  # (B, hidden_size): e_T, the MLP's hidden activation


class Teacher(nn.Module):
    """The LUGPI teacher, or a single-modality control when one encoder is ``None``."""

    def __init__(
        self,
        text_encoder: PreTrainedModel | None,
        image_encoder: ImageEncoder | None,
        tokenizer: PreTrainedTokenizerBase | None,
        *,
        num_labels: int,
        fusion_heads: int,
        hidden_size: int,
        freeze_image_encoder: bool,
        width: int | None = None,
    ) -> None:
        """``width``: the fusion width D; needed only without a text encoder (else its width)."""
        super().__init__()
        if text_encoder is None and image_encoder is None:
            raise ValueError("a teacher needs a text encoder, an image encoder or both")
        if (text_encoder is None) != (tokenizer is None):
            raise ValueError("give a tokenizer exactly when there is a text encoder")
        if text_encoder is not None:
            width = int(text_encoder.config.hidden_size)
        if width is None:
            raise ValueError("an image-only teacher needs width (the fusion width D)")
        if width % fusion_heads:
            raise ConfigError(
                f"teachers[].fusion_heads={fusion_heads} must divide the fusion width "
                f"{width} (the text encoder's); pick a divisor of {width}"
            )
        self.width = width
        self.text_encoder = text_encoder
        self.image_encoder = image_encoder
        self.tokenizer = tokenizer
        self.freeze_image_encoder = freeze_image_encoder
        self.text_proj: nn.Linear | None = None
        self.image_proj: nn.Linear | None = None
        self.image_cls: nn.Parameter | None = None
        if text_encoder is not None:
            self.text_proj = nn.Linear(width, width)
        if image_encoder is not None:
            if freeze_image_encoder:
                image_encoder.requires_grad_(False)
            self.image_proj = nn.Linear(image_encoder.width, width)
            if not image_encoder.has_cls:
                self.image_cls = nn.Parameter(torch.randn(1, 1, width) * 0.02)
        self.fusion = nn.TransformerEncoderLayer(
            width, fusion_heads, dim_feedforward=4 * width, activation="gelu", batch_first=True
        )
        n_cls = (text_encoder is not None) + (image_encoder is not None)
        self.mlp_hidden = nn.Linear(n_cls * width, hidden_size)
        self.mlp_dropout = nn.Dropout(0.1)
        self.classifier = nn.Linear(hidden_size, num_labels)

    @property
    def num_labels(self) -> int:
        return self.classifier.out_features

    @property
    def embedding_width(self) -> int:
        """The width of e_T."""
        return self.mlp_hidden.out_features

    @property
    def modality(self) -> TeacherModality:
        if self.text_encoder is None:
            return "image"
        return "text" if self.image_encoder is None else "text+image"

    def train(self, mode: bool = True) -> Teacher:
        super().train(mode)
        if self.freeze_image_encoder and self.image_encoder is not None:
            self.image_encoder.eval()  # frozen BatchNorm/dropout must not drift
        return self

    def encode_images(self, pixel_values: Tensor) -> Tensor:
        """(B, 3, H, W) -> raw image tokens (B, Li, Di): what a frozen encoder's cache holds."""
        if self.image_encoder is None:
            raise ValueError("this teacher reads no images (modality 'text')")
        grad = torch.enable_grad() if not self.freeze_image_encoder else torch.no_grad()
        with grad:
            return self.image_encoder(pixel_values)

    def _image_sequence(self, pixel_values: Tensor | None, image_tokens: Tensor | None) -> Tensor:
        """Projected image tokens (B, [1 +] Li, D); a learned CLS first if the encoder has none."""
        assert self.image_proj is not None
        if (pixel_values is None) == (image_tokens is None):
            raise ValueError("give exactly one of pixel_values and image_tokens")
        if image_tokens is None:
            assert pixel_values is not None
            image_tokens = self.encode_images(pixel_values)
        # Cached tokens are float16; cast to the layer's dtype (autocast recasts under AMP).
        image = self.image_proj(image_tokens.to(self.image_proj.weight.dtype))
        if self.image_cls is not None:
            cls = self.image_cls.expand(image.shape[0], -1, -1).to(image.dtype)
            image = torch.cat([cls, image], dim=1)
        return image

    def forward(
        self,
        text_inputs: dict[str, Tensor] | None = None,
        *,
        pixel_values: Tensor | None = None,
        image_tokens: Tensor | None = None,
    ) -> TeacherOutput:
        """``text_inputs``: tokenizer output (input_ids, attention_mask (B, Lt), ...);
        exactly one of ``pixel_values`` (B, 3, H, W) or ``image_tokens`` (B, Li, Di).
        Inputs of a modality this teacher lacks are ignored."""
        sequences: list[Tensor] = []
        # key_padding_mask: True = ignore. Text padding is ignored; image tokens never are.
        padding: list[Tensor] = []
        if self.text_encoder is not None:
            assert self.text_proj is not None
            if text_inputs is None:
                raise ValueError("this teacher reads text: give text_inputs")
            sequences.append(self.text_proj(self.text_encoder(**text_inputs).last_hidden_state))
            padding.append(text_inputs["attention_mask"] == 0)
        if self.image_encoder is not None:
            image = self._image_sequence(pixel_values, image_tokens)
            sequences.append(image)
            padding.append(torch.zeros(image.shape[:2], dtype=torch.bool, device=image.device))
        fused = self.fusion(torch.cat(sequences, dim=1), src_key_padding_mask=torch.cat(padding, 1))
        # Each sequence's first position is its CLS: text CLS, then image CLS.
        starts = [0, sequences[0].shape[1]][: len(sequences)]
        cls = torch.cat([fused[:, s] for s in starts], dim=-1)
        embedding = nn.functional.gelu(self.mlp_hidden(cls))
        logits = self.classifier(self.mlp_dropout(embedding))
        return TeacherOutput(logits=logits, embedding=embedding)


def save_teacher(teacher: Teacher, meta: TeacherMeta, out_dir: Path) -> None:
    """Write weights, ``teacher.json`` and the encoders' configs into ``out_dir``."""
    save_model(teacher, str(out_dir / WEIGHTS_FILE))
    (out_dir / META_FILE).write_text(meta.model_dump_json(indent=2))
    if teacher.text_encoder is not None and teacher.tokenizer is not None:
        teacher.text_encoder.config.save_pretrained(out_dir / TEXT_DIR)
        teacher.tokenizer.save_pretrained(out_dir / TEXT_DIR)
    if teacher.image_encoder is not None:
        teacher.image_encoder.save_config(out_dir / IMAGE_DIR)


class ClassifierTeacher(nn.Module):
    """Any transformers sequence classifier, seen as a text-only teacher: its logits, and
    as e_T its last hidden state at the first position (the [CLS] its head reads). What
    ``predict_teacher``, the distillation targets and the gradient exploration use of a
    ``Teacher`` it has: ``tokenizer``, ``text_encoder`` (the classifier itself: its input
    embeddings, and ``inputs_embeds`` in place of ids), ``image_encoder`` None."""

    image_encoder: None = None
    freeze_image_encoder = False

    def __init__(self, model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase) -> None:
        super().__init__()
        self.text_encoder = model
        self.tokenizer = tokenizer

    @property
    def modality(self) -> TeacherModality:
        return "text"

    @property
    def num_labels(self) -> int:
        return int(self.text_encoder.config.num_labels or 0)

    @property
    def embedding_width(self) -> int:
        return int(self.text_encoder.config.hidden_size)

    def forward(self, text_inputs: dict[str, Tensor] | None = None, **_: object) -> TeacherOutput:
        """``text_inputs``: tokenizer output (or ``inputs_embeds`` with its mask); image
        inputs are ignored, like a text-only ``Teacher``'s."""
        if text_inputs is None:
            raise ValueError("this teacher reads text: give text_inputs")
        out = self.text_encoder(**text_inputs, output_hidden_states=True)
        return TeacherOutput(logits=out.logits, embedding=out.hidden_states[-1][:, 0])


AnyTeacher = Teacher | ClassifierTeacher


def load_classifier_teacher(source: str, name: str = "") -> tuple[ClassifierTeacher, TeacherMeta]:
    """A transformers sequence classifier (a ``save_pretrained`` directory, a student or
    baseline directory of this project, or a hub id) as a text-only teacher. Its labels:
    the student's ``lugpi.json`` beside it, else its config's ``id2label``; so are its text
    pairing and input length (default 128)."""
    from transformers import AutoModelForSequenceClassification

    from contracts.artifacts import STUDENT_META, TextModelMeta
    from contracts.errors import ModelLoadError
    from models.hub import load_or_raise

    what = "the teacher (a sequence classifier)"
    model = load_or_raise(AutoModelForSequenceClassification.from_pretrained, source, what)
    tokenizer = load_or_raise(AutoTokenizer.from_pretrained, source, f"{what}'s tokenizer")
    student_meta = Path(source).expanduser() / STUDENT_META
    text_pair, max_length = False, 128
    if student_meta.is_file():
        sm = TextModelMeta.model_validate_json(student_meta.read_text())
        labels, text_pair, max_length = list(sm.labels), sm.text_pair, sm.max_length
    else:
        id2label = getattr(model.config, "id2label", None) or {}
        labels = [str(id2label[i]) for i in sorted(id2label)]
    if len(labels) != int(model.config.num_labels or 0):
        raise ModelLoadError(
            f"{source}: {len(labels)} label names for a head of {model.config.num_labels} outputs"
        )
    hidden = int(model.config.hidden_size)
    meta = TeacherMeta(
        name=name or Path(source).name or "classifier",
        modality="text",
        text_model=source,
        image_model="",
        labels=labels,
        text_pair=text_pair,
        max_length=max_length,
        text_width=hidden,
        image_width=None,
        fusion_width=hidden,
        fusion_heads=1,
        hidden_size=hidden,
        freeze_image_encoder=False,
    )
    return ClassifierTeacher(model, tokenizer).eval(), meta


def load_teacher(teacher_dir: Path) -> tuple[AnyTeacher, TeacherMeta]:
    """Load a teacher saved by ``save_teacher`` (CPU, eval mode); a directory without
    ``teacher.json`` but with a transformers ``config.json``, or a hub id (``org/name``,
    no such path here), loads as a ``ClassifierTeacher``."""
    meta_path = teacher_dir / META_FILE
    if not meta_path.is_file():
        from models.hub import looks_like_path

        given = str(teacher_dir)
        hub_id = not teacher_dir.exists() and not looks_like_path(given)
        if (teacher_dir / "config.json").is_file() or hub_id:
            return load_classifier_teacher(given)
        raise ArtifactError(f"{teacher_dir}: no {META_FILE}; rerun the teacher stage")
    meta = TeacherMeta.model_validate_json(meta_path.read_text())
    reads_text, reads_images = meta.modality != "image", meta.modality != "text"
    try:
        teacher = Teacher(
            text_encoder_from_config(teacher_dir / TEXT_DIR) if reads_text else None,
            image_encoder_from_config(teacher_dir / IMAGE_DIR) if reads_images else None,
            AutoTokenizer.from_pretrained(teacher_dir / TEXT_DIR) if reads_text else None,
            num_labels=len(meta.labels),
            fusion_heads=meta.fusion_heads,
            hidden_size=meta.hidden_size,
            freeze_image_encoder=meta.freeze_image_encoder,
            width=None if reads_text else meta.fusion_width,
        )
        load_model(teacher, str(teacher_dir / WEIGHTS_FILE))
    except (OSError, RuntimeError, ValueError) as e:
        raise ArtifactError(f"{teacher_dir}: cannot load the teacher: {e}") from e
    return teacher.eval(), meta


def pixel_inputs(teacher: AnyTeacher, images: Sequence[Path | Image.Image]) -> ImageInputs:
    """Image inputs read (and preprocessed) per batch from paths or PIL images; none at all
    for a text-only teacher (``images`` may then be empty)."""
    encoder = teacher.image_encoder

    def inputs(idx: Sequence[int]) -> dict[str, Tensor]:
        if encoder is None:
            return {}
        batch = [images[i] for i in idx]
        pils = [im if isinstance(im, Image.Image) else load_image(im) for im in batch]
        return {"pixel_values": encoder.preprocess(pils)}

    return inputs


@torch.no_grad()
def predict_teacher(
    teacher: AnyTeacher,
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
    """Teacher logits (N, k) and embeddings e_T (N, hidden) as float32 numpy. ``texts``
    sets N and the order even for an image-only model, which does not read them."""
    teacher.eval()
    logits, embeddings = [], []
    n_batches = (len(texts) + batch_size - 1) // batch_size
    for b, start in enumerate(range(0, len(texts), batch_size)):
        idx = list(range(start, min(start + batch_size, len(texts))))
        text = None
        if teacher.tokenizer is not None:  # an image-only model reads no text
            enc = encode(
                teacher.tokenizer,
                [texts[i] for i in idx],
                [pairs[i] for i in idx] if pairs else None,
                max_length,
            )
            text = {k: v.to(device) for k, v in enc.items()}
        amp = torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else nullcontext()
        with amp:
            out = teacher(text, **{k: v.to(device) for k, v in image_inputs(idx).items()})
        logits.append(out.logits.float().cpu().numpy())
        embeddings.append(out.embedding.float().cpu().numpy())
        if on_batch is not None:
            on_batch(b + 1, n_batches)
    if not logits:
        return np.zeros((0, teacher.num_labels), np.float32), np.zeros(
            (0, teacher.embedding_width), np.float32
        )
    return np.concatenate(logits), np.concatenate(embeddings)
