"""The PyTorch side of export: the student checkpoint, its tokenizer, its reference outputs.

A student dir is what the distill stage writes: transformers ``save_pretrained``
(AutoModelForSequenceClassification) + tokenizer files + ``lugpi.json``. Each mismatch
(missing file, label count, foreign tokenizer) gets an error naming the file and the fix,
before anything is traced. The reference probabilities and token ids come from
transformers exactly as training computed them; export compares the bundle against them.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tokenizers import Tokenizer
from transformers import (
    AutoConfig,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerFast,
)

from contracts.artifacts import STUDENT_META, TextModelMeta
from contracts.bundle import ONNX_INPUTS
from contracts.errors import ArtifactError, DataError, ExportCheckError, ModelLoadError
from models.text import encode
from runtime.encoding import TextEncoder
from runtime.metrics import softmax


def _missing_files(student_dir: Path) -> list[str]:
    def any_of(*names: str) -> bool:
        return any((student_dir / n).is_file() for n in names)

    missing = [n for n in (STUDENT_META, "config.json") if not any_of(n)]
    if not any_of("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin"):
        missing.append("model.safetensors (the weights)")
    if not any_of("tokenizer.json", "vocab.txt", "tokenizer.model"):
        missing.append("tokenizer.json (the tokenizer)")
    return missing


def load_student_for_export(
    student_dir: Path,
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast, TextModelMeta]:
    """Load a student dir (save_pretrained + tokenizer + lugpi.json) and check that its
    parts belong together; ``ArtifactError``/``ModelLoadError`` say which part does not."""
    if not student_dir.is_dir():
        raise ArtifactError(f"{student_dir}: no such student directory")
    missing = _missing_files(student_dir)
    if missing:
        raise ArtifactError(
            f"{student_dir}: incomplete student checkpoint, missing "
            f"{', '.join(missing)}; rerun the distill stage"
        )
    try:
        meta = TextModelMeta.model_validate_json((student_dir / STUDENT_META).read_text())
    except ValueError as e:
        raise ArtifactError(f"{student_dir / STUDENT_META}: invalid: {e}") from e
    config = AutoConfig.from_pretrained(student_dir)
    archs = config.architectures or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ArtifactError(
            f"{student_dir}: config.json architectures {archs} has no sequence "
            "classifier head; export a distilled student, not a bare encoder"
        )
    if config.num_labels != len(meta.labels):
        raise ArtifactError(
            f"{student_dir}: {STUDENT_META} lists {len(meta.labels)} labels {meta.labels} but "
            f"the classification head has {config.num_labels} outputs (config.json num_labels)"
        )
    names = [str(config.id2label[i]) for i in range(config.num_labels)]
    if names != meta.labels and names != [f"LABEL_{i}" for i in range(config.num_labels)]:
        raise ArtifactError(
            f"{student_dir}: config.json id2label {names} is not the label "
            f"order of {STUDENT_META} {meta.labels}"
        )
    if meta.max_length > getattr(config, "max_position_embeddings", meta.max_length):
        raise ArtifactError(
            f"{student_dir}: max_length {meta.max_length} exceeds the model's "
            f"{config.max_position_embeddings} positions"
        )
    try:
        # Eager attention: its mask handling traces into a graph that honours padding for
        # any batch; SDPA's fast paths may branch on the example's mask while tracing.
        model = AutoModelForSequenceClassification.from_pretrained(
            student_dir, attn_implementation="eager"
        )
        tokenizer = AutoTokenizer.from_pretrained(student_dir, use_fast=True)
    except (OSError, ValueError, RuntimeError) as e:
        raise ModelLoadError(f"{student_dir}: cannot load the student: {e}") from e
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ModelLoadError(
            f"{student_dir}: no fast tokenizer (tokenizer.json); the API "
            "needs one for the `tokenizers` library"
        )
    rows = model.get_input_embeddings().num_embeddings
    if len(tokenizer) > rows:
        raise ArtifactError(
            f"{student_dir}: the tokenizer has {len(tokenizer)} tokens but the model's "
            f"embedding matrix has {rows} rows; the tokenizer does not belong to this model"
        )
    model.config.id2label = dict(enumerate(meta.labels))
    model.config.label2id = {label: i for i, label in enumerate(meta.labels)}
    return model.eval(), tokenizer, meta


@dataclass(frozen=True)
class TextSplit:
    """Texts (and optional second texts and gold label ids) of one split."""

    texts: Sequence[str]
    pairs: Sequence[str] | None
    labels: Sequence[int] | None

    def batch(self, start: int, size: int) -> tuple[Sequence[str], Sequence[str] | None]:
        pairs = None if self.pairs is None else self.pairs[start : start + size]
        return self.texts[start : start + size], pairs


def checked_split(
    texts: Sequence[str] | None,
    pairs: Sequence[str] | None,
    labels: Sequence[int] | None,
    n_labels: int,
    text_pair: bool,
    what: str,
) -> TextSplit:
    texts = list(texts or [])
    if not texts:
        raise DataError(f"{what}: no texts; the export checks need real {what} texts")
    if text_pair and pairs is None:
        raise DataError(
            f"{what}: the student reads text pairs (lugpi.json text_pair=true) "
            "but no text pairs were given"
        )
    if not text_pair and pairs is not None:
        raise DataError(f"{what}: text pairs given, but the student reads single texts")
    for name, seq in (("text pairs", pairs), ("labels", labels)):
        if seq is not None and len(seq) != len(texts):
            raise DataError(f"{what}: {len(texts)} texts but {len(seq)} {name}")
    if labels is not None and any(not 0 <= int(y) < n_labels for y in labels):
        raise DataError(f"{what}: label ids must lie in 0..{n_labels - 1}")
    return TextSplit(
        texts,
        None if pairs is None else list(pairs),
        None if labels is None else [int(y) for y in labels],
    )


def graph_inputs(
    model: PreTrainedModel, tokenizer: PreTrainedTokenizerFast, pair: bool
) -> list[str]:
    """input_ids + attention_mask, and token_type_ids only where they carry information:
    a text pair, for a model that takes them (BERT yes, DistilBERT no). For single texts
    they are all zero, which is the model's own default."""
    takes_types = "token_type_ids" in inspect.signature(model.forward).parameters
    wants_types = "token_type_ids" in tokenizer.model_input_names
    return list(ONNX_INPUTS if pair and takes_types and wants_types else ONNX_INPUTS[:2])


def serving_tokenizer(tokenizer: PreTrainedTokenizerFast, max_length: int) -> Tokenizer:
    """The fast tokenizer's backend, set to pad to the longest text of a batch and to
    truncate (longest first, as transformers does) to ``max_length``.

    A tokenizer.json saved by transformers may carry fixed padding to 128 tokens (4x slower
    at batch 1, docs/environment.md); the API uses this file with the ``tokenizers`` library alone.
    """
    tok = Tokenizer.from_str(tokenizer.backend_tokenizer.to_str())
    tok.no_padding()
    tok.enable_padding(
        direction="left" if tokenizer.padding_side == "left" else "right",
        pad_id=int(tokenizer.pad_token_id or 0),
        pad_type_id=int(tokenizer.pad_token_type_id),
        pad_token=str(tokenizer.pad_token),
    )
    tok.enable_truncation(max_length=max_length, strategy="longest_first")
    return tok


def _batches(
    tokenizer: PreTrainedTokenizerFast, split: TextSplit, max_length: int, batch_size: int
) -> Iterator[tuple[int, tuple[Sequence[str], Sequence[str] | None], dict[str, torch.Tensor]]]:
    """(start, (texts, pairs), training's encoding) per batch of ``split``."""
    for start in range(0, len(split.texts), batch_size):
        texts, pairs = split.batch(start, batch_size)
        yield start, (texts, pairs), encode(tokenizer, texts, pairs, max_length)


def check_tokenization(
    hf_tokenizer: PreTrainedTokenizerFast,
    encoder: TextEncoder,
    split: TextSplit,
    max_length: int,
    batch_size: int,
) -> None:
    """The saved tokenizer.json, encoded and padded as the server does it, must give the
    token ids training gave (``models.text.encode`` at the student's ``max_length``)."""
    for start, (texts, pairs), ref in _batches(hf_tokenizer, split, max_length, batch_size):
        ours = encoder.feed(encoder.encode(encoder.pair_up(texts, pairs)))
        for name in encoder.inputs:
            a, b = ours[name], ref[name].numpy()
            if a.shape != b.shape or not np.array_equal(a, b):
                rows = [i for i in range(min(len(a), len(b))) if not np.array_equal(a[i], b[i])]
                first = start + (rows[0] if rows else 0)
                raise ExportCheckError(
                    f"tokenizer.json gives other {name} than the student's transformers "
                    f"tokenizer (shape {a.shape} vs {b.shape}; first text #{first}: "
                    f"{split.texts[first][:60]!r}); the tokenizer files do not belong together"
                )


@torch.no_grad()
def torch_logits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    split: TextSplit,
    max_length: int,
    batch_size: int,
) -> np.ndarray:
    """The reference: PyTorch logits, tokenized as in training."""
    out = [
        model(**enc).logits.float().numpy()
        for _, _, enc in _batches(tokenizer, split, max_length, batch_size)
    ]
    return np.concatenate(out)


def torch_probabilities(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerFast,
    split: TextSplit,
    max_length: int,
    batch_size: int,
) -> np.ndarray:
    """The reference: PyTorch probabilities (softmax of ``torch_logits``)."""
    logits = torch_logits(model, tokenizer, split, max_length, batch_size)
    return softmax(logits)
