"""The teachers of the data-free amalgamation: loading them, checking that they can be
amalgamated, and reading their outputs and intermediate layers (the RMD confidence,
training/strata/rmd.py, and the block-wise transfer, training/strata/blocks.py, read them).

A teacher is a torch sequence classifier, because both need its hidden states:

- a run directory of this project (``config.yaml`` + a finished ``export/``): the student
  its export selected (``student-<key>/`` or ``tgt-student-<mode>/``), the model it serves;
- a student or baseline directory (``lugpi.json`` beside a transformers classifier);
- any transformers ``*ForSequenceClassification``: a save_pretrained directory or a hub id.

Its label set is ``lugpi.json``'s labels or its config's ``id2label``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

from contracts.artifacts import STUDENT_META, TextModelMeta, is_complete, read_stage
from contracts.config import AmalgamateTeacher
from contracts.errors import ConfigError, LugpiError, ModelLoadError
from contracts.layout import RunLayout
from models.hub import looks_like_path, resolve_model
from models.text import ClassifierInput, encode

GENERIC_LABEL = re.compile(r"^LABEL_\d+$")
# More unknown tokens than this in the seed texts: the tokenizer does not read them.
MAX_UNKNOWN_SHARE = 0.3


@dataclass
class LoadedTeacher:
    name: str
    given: str  # strata.teachers[i].model as written
    source: str  # the directory (or hub id) loaded
    labels: list[str]
    text_pair: bool
    max_length: int
    model: PreTrainedModel
    tokenizer: PreTrainedTokenizerBase
    prompts: dict[str, list[str]] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return f"strata.teachers {self.name!r} ({self.given})"


def resolve_teacher_dir(spec: AmalgamateTeacher) -> str:
    """The directory (or hub id) to load for ``spec``: a run directory becomes the student
    its export selected. ``ModelLoadError`` naming the teacher when there is none."""
    where = f"strata.teachers {spec.name!r}: model {spec.model!r}"
    path = Path(spec.model).expanduser()
    if path.is_dir():
        layout = RunLayout(path)
        if layout.config.is_file() and not (path / "config.json").is_file():
            if not is_complete(layout.export):
                raise ModelLoadError(
                    f"{where} is a run directory without a finished export stage; run it to "
                    "the end, or name one of its student directories"
                )
            key = str(read_stage(layout.export).summary.get("selected", ""))
            student = layout.tgt_student(key[4:]) if key.startswith("tgt-") else layout.student(key)
            if not is_complete(student):
                raise ModelLoadError(f"{where}: its selected student {student} is missing")
            return str(student.resolve())
        return str(path.resolve())
    if looks_like_path(spec.model) or path.exists():
        raise ModelLoadError(f"{where} is not a directory")
    return resolve_model(spec.model)


def load_teacher(spec: AmalgamateTeacher, device: torch.device) -> LoadedTeacher:
    source = resolve_teacher_dir(spec)
    where = f"strata.teachers {spec.name!r}: model {spec.model!r}"
    try:
        model = AutoModelForSequenceClassification.from_pretrained(source)
        tokenizer = AutoTokenizer.from_pretrained(source)
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise ModelLoadError(
            f"{where}: cannot load a sequence classifier and its tokenizer from {source} "
            f"({type(e).__name__}: {str(e)[:300]})"
        ) from e
    meta_path = Path(source) / STUDENT_META
    text_pair, max_length = False, spec.max_length
    if meta_path.is_file():
        try:
            meta = TextModelMeta.model_validate_json(meta_path.read_text())
        except ValueError as e:
            raise ModelLoadError(f"{where}: unreadable {meta_path}: {e}") from e
        labels, text_pair, max_length = list(meta.labels), meta.text_pair, meta.max_length
    else:
        id2label = getattr(model.config, "id2label", None) or {}
        labels = [str(id2label[i]) for i in sorted(id2label)]
    if len(labels) != int(model.config.num_labels or 0):
        raise ModelLoadError(
            f"{where}: {len(labels)} label names for a head of {model.config.num_labels} outputs"
        )
    model.to(device)
    model.eval()
    return LoadedTeacher(
        spec.name, spec.model, source, labels, text_pair, max_length, model, tokenizer,
        dict(spec.prompts),
    )  # fmt: skip


def load_teachers(specs: Sequence[AmalgamateTeacher], device: torch.device) -> list[LoadedTeacher]:
    teachers = [load_teacher(s, device) for s in specs]
    union_labels(teachers)  # fail early on label conflicts
    return teachers


def union_labels(teachers: Sequence[LoadedTeacher]) -> list[str]:
    """The union label set, in teacher order then each teacher's label order. A label name
    that two teachers share is one class that both supervise. Refused, naming the teacher:
    a teacher with fewer than two labels or a repeated one, names that differ only in case
    or surrounding spaces (one class or two?), generic ``LABEL_<n>`` names in more than one
    teacher (they would merge unrelated classes), text-pair teachers (the generator writes
    single texts), prompts for a label the teacher does not have."""
    union: list[str] = []
    owner: dict[str, str] = {}
    folded: dict[str, tuple[str, str]] = {}
    generic: list[str] = []
    for t in teachers:
        if t.text_pair:
            raise ConfigError(
                f"{t.where} reads text pairs; the StrataNet mode generates single texts"
            )
        if len(t.labels) < 2:
            raise ConfigError(f"{t.where} has {len(t.labels)} label(s) {t.labels}; need two")
        if len(set(t.labels)) != len(t.labels):
            raise ConfigError(f"{t.where} repeats a label name: {t.labels}")
        if any(GENERIC_LABEL.match(label) for label in t.labels):
            generic.append(t.name)
        for label in t.labels:
            key = label.strip().casefold()
            if key in folded and folded[key][0] != label:
                other_label, other = folded[key]
                raise ConfigError(
                    f"label names conflict: teacher {other!r} has {other_label!r} and teacher "
                    f"{t.name!r} has {label!r}; rename one (same class: same spelling)"
                )
            folded.setdefault(key, (label, t.name))
            if label not in owner:
                owner[label] = t.name
                union.append(label)
        unknown = sorted(set(t.prompts) - set(t.labels))
        if unknown:
            raise ConfigError(
                f"strata.teachers {t.name!r}.prompts: labels {unknown} are not among the "
                f"teacher's labels {t.labels}"
            )
    if len(generic) > 1:
        raise ConfigError(
            f"label names conflict: teachers {generic} have generic names (LABEL_<n>), which "
            "would merge unrelated classes; save them with real id2label names"
        )
    if not union:
        raise ConfigError("strata.teachers: the union of the teachers' label sets is empty")
    return union


def check_reads(t: LoadedTeacher, texts: Sequence[str]) -> float:
    """Share of ``texts``' tokens that ``t``'s tokenizer maps to its unknown token; a
    tokenizer that cannot read the generator's language is refused, naming the teacher."""
    unk = t.tokenizer.unk_token_id
    if unk is None or not texts:
        return 0.0
    ids = t.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    total = sum(len(x) for x in ids)
    share = sum(i == unk for x in ids for i in x) / max(total, 1)
    if share > MAX_UNKNOWN_SHARE:
        raise ConfigError(
            f"{t.where}: its tokenizer maps {share:.0%} of the seed texts' tokens to "
            f"{t.tokenizer.unk_token!r}; it does not read the generator's language (conflicting "
            "tokenizer); use a generator and seed texts in the teacher's vocabulary"
        )
    return share


@dataclass
class TeacherReadout:
    """A teacher's outputs on N texts."""

    logits: np.ndarray  # (N, K_i)
    layers: dict[int, np.ndarray]  # hidden-state index -> (N, H) mean-pooled
    embedding: np.ndarray  # (N, D) what its classifier reads (e_T)

    @property
    def probs(self) -> np.ndarray:
        z = self.logits - self.logits.max(axis=1, keepdims=True)
        e = np.exp(z)
        return np.asarray(e / e.sum(axis=1, keepdims=True), dtype=np.float32)


def num_layers(t: LoadedTeacher) -> int:
    n = int(getattr(t.model.config, "num_hidden_layers", 0) or 0)
    if n < 1:
        raise ModelLoadError(f"{t.where}: its config has no num_hidden_layers to read")
    return n


def chosen_layers(t: LoadedTeacher, wanted: list[int] | None) -> list[int]:
    """Hidden-state indices (0: embeddings ... L: last layer) scored; default 1..L."""
    n = num_layers(t)
    if wanted is None:
        return list(range(1, n + 1))
    out = []
    for i in wanted:
        j = i + n + 1 if i < 0 else i
        if not 0 <= j <= n:
            raise ConfigError(f"strata.confidence.layers: {i} is outside 0..{n} for {t.where}")
        out.append(j)
    return sorted(set(out))


@torch.no_grad()
def read_teacher(
    t: LoadedTeacher,
    texts: Sequence[str],
    layers: Sequence[int],
    *,
    batch_size: int = 64,
) -> TeacherReadout:
    """Logits, mean-pooled hidden states of ``layers`` and e_T on ``texts``."""
    device = next(t.model.parameters()).device
    capture = ClassifierInput(t.model)
    logits, embs = [], []
    pooled: dict[int, list[np.ndarray]] = {i: [] for i in layers}
    try:
        for start in range(0, len(texts), batch_size):
            enc = encode(t.tokenizer, texts[start : start + batch_size], None, t.max_length)
            enc = {k: v.to(device) for k, v in enc.items()}
            out: Any = t.model(**enc, output_hidden_states=True)
            mask = enc["attention_mask"].unsqueeze(-1).float()
            for i in layers:
                h = out.hidden_states[i].float()
                pooled[i].append(((h * mask).sum(1) / mask.sum(1).clamp(min=1)).cpu().numpy())
            logits.append(out.logits.float().cpu().numpy())
            embs.append(capture.pop().float().cpu().numpy())
    except LugpiError:
        raise
    except (RuntimeError, ValueError) as e:
        raise ModelLoadError(f"{t.where}: forward pass failed: {e}") from e
    finally:
        capture.remove()
    k = len(t.labels)
    return TeacherReadout(
        np.concatenate(logits) if logits else np.zeros((0, k), np.float32),
        {i: np.concatenate(v) if v else np.zeros((0, 1), np.float32) for i, v in pooled.items()},
        np.concatenate(embs) if embs else np.zeros((0, 1), np.float32),
    )
