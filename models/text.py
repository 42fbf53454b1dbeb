"""Text encoders (the teacher's) and the text-only student classifier.

The student is any ``AutoModelForSequenceClassification``. Its embedding e_S is what its
``classifier`` layer consumes, before the head's dropout (``ClassifierInput``), read with
hooks, so the same code serves BERT (pooled output) and DistilBERT (pre_classifier + ReLU
output) without per-architecture code.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import nullcontext
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoModel,
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from contracts.artifacts import STUDENT_META, TextModelMeta
from contracts.errors import ArtifactError, ModelLoadError
from contracts.truncation import PairCutter
from models.hub import load_or_raise

BatchFn = Callable[[int, int], None]


def load_tokenizer(name: str) -> PreTrainedTokenizerBase:
    return load_or_raise(lambda p: AutoTokenizer.from_pretrained(p), name, "tokenizer")


def load_text_encoder(name: str) -> PreTrainedModel:
    """A pretrained encoder (``AutoModel``) whose ``last_hidden_state`` gives text tokens."""
    return load_or_raise(lambda p: AutoModel.from_pretrained(p), name, "text encoder")


def text_encoder_width(name: str) -> int:
    """Hidden width of the text encoder ``name``, read from its config (no weights loaded)."""
    config = load_or_raise(lambda p: AutoConfig.from_pretrained(p), name, "text encoder config")
    return int(config.hidden_size)


def text_encoder_shape(name: str) -> tuple[int, int]:
    """(transformer blocks, hidden width) of the text encoder ``name``, from its config."""
    config = load_or_raise(lambda p: AutoConfig.from_pretrained(p), name, "text encoder config")
    return int(config.num_hidden_layers), int(config.hidden_size)


def text_encoder_from_config(config_dir: Path) -> PreTrainedModel:
    """The same architecture with uninitialised weights (a saved teacher loads its own)."""
    return AutoModel.from_config(AutoConfig.from_pretrained(config_dir))


def _to(model: PreTrainedModel, device: torch.device | str) -> PreTrainedModel:
    # PreTrainedModel.to is a functools.wraps wrapper that mypy cannot bind as a method.
    nn.Module.to(model, device)
    return model


def load_student(
    name: str, labels: list[str], device: torch.device | str = "cpu"
) -> PreTrainedModel:
    """A sequence classifier over ``labels`` on top of the encoder ``name``, on ``device``."""
    model = load_or_raise(
        lambda p: AutoModelForSequenceClassification.from_pretrained(
            p,
            num_labels=len(labels),
            id2label=dict(enumerate(labels)),
            label2id={label: i for i, label in enumerate(labels)},
        ),
        name,
        "student text model",
    )
    return _to(model, device)


def encode(
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    max_length: int,
) -> dict[str, Tensor]:
    """Tokenize a batch, padded to its longest text (not to max_length: docs/environment.md).

    Cut with contracts/truncation.py, as the API and export's checks cut: the same ids for
    every text, and a long pair costs one pass instead of tokenizers' window products."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:  # a slow (pure Python) tokenizer: its own truncation
        enc = tokenizer(
            list(texts),
            list(pairs) if pairs is not None else None,
            padding="longest",
            truncation=True,
            max_length=max_length,
            return_tensors="pt",
        )
        return dict(enc)
    cutters: dict[int, PairCutter] = tokenizer.__dict__.setdefault("_lugpi_cutters", {})
    if max_length not in cutters:
        cutters[max_length] = PairCutter(backend, max_length)
    cuts = cutters[max_length](list(texts), list(pairs) if pairs is not None else None)
    width = max(len(c.ids) for c in cuts)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((len(cuts), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(cuts), width), dtype=torch.long)
    types = torch.zeros((len(cuts), width), dtype=torch.long)
    for row, c in enumerate(cuts):
        ids[row, : len(c.ids)] = torch.tensor(c.ids, dtype=torch.long)
        mask[row, : len(c.ids)] = 1
        types[row, : len(c.ids)] = torch.tensor(c.type_ids, dtype=torch.long)
    out = {"input_ids": ids, "attention_mask": mask}
    if "token_type_ids" in tokenizer.model_input_names:
        out["token_type_ids"] = types
    return out


class ClassifierInput:
    """Records e_S, the representation ``model.classifier`` consumes, at every forward pass,
    without the dropout that the head applies to it in training.

    A sequence classifier's head is ``classifier(dropout(h))`` (BERT: h = pooled output;
    DistilBERT: h = ReLU(pre_classifier(CLS))). Read after dropout, e_S would be a noisy,
    rescaled copy of h in training, and the embedding term would pull the student toward
    a shrunken h. So every ``nn.Dropout`` outside the head remembers its last input and
    output; when the head's input is that output, e_S is that input. Heads that take the
    token sequence (RoBERTa's, which drops out inside itself) get its first token as e_S.
    """

    def __init__(self, model: nn.Module) -> None:
        head = getattr(model, "classifier", None)
        if not isinstance(head, nn.Module):
            raise ModelLoadError(
                f"{type(model).__name__} has no `classifier` layer; the student must be an "
                "AutoModelForSequenceClassification with one (BERT, DistilBERT, MiniLM...)"
            )
        self.value: Tensor | None = None
        self._dropped: tuple[Tensor, Tensor] | None = None  # (output, input) of last dropout
        inside_head = {id(m) for m in head.modules()}
        self._handles = [head.register_forward_pre_hook(self._hook)] + [
            m.register_forward_hook(self._dropout_hook)
            for m in model.modules()
            if isinstance(m, nn.Dropout) and id(m) not in inside_head
        ]

    def _dropout_hook(self, module: nn.Module, args: tuple[Tensor, ...], out: Tensor) -> None:
        self._dropped = (out, args[0])

    def _hook(self, module: nn.Module, args: tuple[Tensor, ...]) -> None:
        x = args[0]
        if self._dropped is not None and self._dropped[0] is x:
            x = self._dropped[1]
        self._dropped = None
        self.value = x[:, 0] if x.dim() == 3 else x

    def pop(self) -> Tensor:
        if self.value is None:
            raise RuntimeError("no forward pass since the last pop()")
        value, self.value = self.value, None
        return value

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()


def embedding_width(model: PreTrainedModel) -> int:
    """Width of e_S: the classifier layer's input features."""
    head = getattr(model, "classifier", None)
    if isinstance(head, nn.Linear):
        return head.in_features
    out_proj = getattr(head, "out_proj", None)  # RoBERTa-style head: e_S is the CLS token
    if isinstance(out_proj, nn.Linear):
        return int(model.config.hidden_size)
    raise ModelLoadError(f"{type(model).__name__}: cannot tell the width of its classifier input")


@torch.no_grad()
def predict_logits(
    model: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase,
    texts: Sequence[str],
    pairs: Sequence[str] | None,
    *,
    max_length: int,
    batch_size: int,
    device: torch.device,
    amp_dtype: torch.dtype | None = None,
    on_batch: BatchFn | None = None,
) -> np.ndarray:
    """Logits (N, K) as float32 numpy, in the order of ``texts``."""
    model.eval()
    out: list[np.ndarray] = []
    n_batches = (len(texts) + batch_size - 1) // batch_size
    for b, start in enumerate(range(0, len(texts), batch_size)):
        sl = slice(start, start + batch_size)
        enc = encode(tokenizer, texts[sl], pairs[sl] if pairs is not None else None, max_length)
        amp = (
            torch.autocast(device.type, dtype=amp_dtype) if amp_dtype is not None else nullcontext()
        )
        with amp:
            logits = model(**{k: v.to(device) for k, v in enc.items()}).logits
        out.append(logits.float().cpu().numpy())
        if on_batch is not None:
            on_batch(b + 1, n_batches)
    # transformers 5 types num_labels as optional; a classifier always has it.
    k = int(model.config.num_labels or 0)
    return np.concatenate(out) if out else np.zeros((0, k), dtype=np.float32)


def load_text_classifier(
    model_dir: Path, device: torch.device | str = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase, TextModelMeta]:
    """Load a student or baseline directory written by training/lugpi/distill.py onto ``device``."""
    meta_path = model_dir / STUDENT_META
    if not meta_path.is_file():
        raise ArtifactError(f"{model_dir}: no {STUDENT_META}; rerun the distill/baseline stage")
    meta = TextModelMeta.model_validate_json(meta_path.read_text())
    try:
        model = AutoModelForSequenceClassification.from_pretrained(model_dir)
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as e:
        raise ArtifactError(f"{model_dir}: cannot load the saved classifier: {e}") from e
    return _to(model, device), tokenizer, meta
