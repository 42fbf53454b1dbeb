"""Bring a classifier trained elsewhere into the model repository: ``lugpi models import``.

Any transformers ``*ForSequenceClassification`` checkpoint (a local ``save_pretrained``
directory, or a hub id where there is a network) becomes a bundle the way our own students
do: it is given a ``lugpi.json`` (labels from ``config.json``'s ``id2label``, the
max length, single text or pair) and handed to ``training.export.bundle.export_student``, so the
fp32 graph is checked against PyTorch, int8 is kept only if it agrees with PyTorch on the
user's sample texts, every file is checksummed, and ``contracts.repository.publish`` makes
it a version. There is one exporter; this module only prepares its input.

- No sample: the export checks run on a few built-in sentences, and the bundle ships fp32
  only (an int8 agreement measured on texts unlike the model's own says little).
- A labelled sample: export records the dev metrics on it (and whatever export derives
  from labelled dev texts, such as a fitted score temperature, applies to imports too).
- A labelled test file: its metrics are recorded as the bundle's test metrics.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts.artifacts import STUDENT_META, TextModelMeta
from contracts.config import DataConfig
from contracts.errors import ArtifactError, DataError, ModelLoadError
from contracts.repository import NAME_PATTERN

log = logging.getLogger("lugpi.import")

# The longest input an imported model gets unless told otherwise (its position table and
# its tokenizer's model_max_length may lower it).
DEFAULT_MAX_LENGTH = 512
# The export checks need real texts; without a sample these stand in (fp32 only).
CHECK_TEXTS = (
    "The film was a delight from start to finish.",
    "Shares fell sharply after the company cut its forecast.",
    "I waited two hours and nobody answered the phone.",
    "The new stadium will open next spring.",
    "ok",
    "What a waste of an afternoon, honestly the worst meal I have had in years.",
    "Scientists found water ice near the moon's south pole.",
    "Thanks, that fixed it!",
)
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass(frozen=True)
class LabelledFile:
    """A CSV/TSV/JSONL file of texts (and pairs, and label names) for the import checks."""

    path: Path
    text_column: str = "text"
    pair_column: str | None = None
    label_column: str | None = None


@dataclass(frozen=True)
class Split:
    texts: list[str]
    pairs: list[str] | None
    labels: list[int] | None


def resolve_source(source: str) -> Path:
    """A local checkpoint directory, or the hub snapshot of ``source`` (needs a network)."""
    path = Path(source).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"{source}: not a directory; give a save_pretrained directory")
    if path.is_absolute() or source.startswith(".") or not HUB_ID.match(source):
        raise ModelLoadError(f"{source}: no such directory (and not a model hub id)")
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source))
    except Exception as e:  # offline, unknown id, gated model: all say the same to the user
        raise ModelLoadError(
            f"{source}: not a local directory, and the model hub did not give it ({e}); "
            "download it where there is a network (save_pretrained) and import the directory"
        ) from e


def checkpoint_labels(model_dir: Path) -> list[str]:
    """The label names in the head's order, from ``config.json`` (``id2label``; a config
    with ``num_labels`` only gets transformers' LABEL_<i> names)."""
    from transformers import AutoConfig

    if not (model_dir / "config.json").is_file():
        raise ModelLoadError(f"{model_dir}: no config.json; not a transformers checkpoint")
    try:
        config = AutoConfig.from_pretrained(model_dir)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{model_dir}: cannot read config.json: {e}") from e
    archs = config.architectures or []
    if not any(a.endswith("ForSequenceClassification") for a in archs):
        raise ModelLoadError(
            f"{model_dir}: config.json architectures {archs} is not a sequence classifier "
            "(*ForSequenceClassification); only text classifiers can be imported"
        )
    if config.problem_type in ("regression", "multi_label_classification"):
        raise ModelLoadError(
            f"{model_dir}: problem_type {config.problem_type!r}; the bundle serves "
            "single-label classification (softmax over the labels)"
        )
    if config.num_labels < 2:
        raise ModelLoadError(
            f"{model_dir}: the head has {config.num_labels} output; a classifier needs at "
            "least 2 labels (a 1-output head is a regression model)"
        )
    try:
        labels = [str(config.id2label[i]) for i in range(config.num_labels)]
    except KeyError as e:
        raise ModelLoadError(
            f"{model_dir}: config.json id2label has no entry for label id {e}; it must "
            f"name every one of the {config.num_labels} outputs"
        ) from e
    if len(set(labels)) != len(labels):
        raise ModelLoadError(f"{model_dir}: config.json id2label repeats a name: {labels}")
    return labels


def model_max_length(model_dir: Path, wanted: int | None) -> int:
    """``wanted`` (checked against the position table), or the longest the model takes."""
    from transformers import AutoConfig, AutoTokenizer

    config = AutoConfig.from_pretrained(model_dir)
    positions = getattr(config, "max_position_embeddings", None)
    if wanted is not None:
        if positions is not None and wanted > positions:
            raise ModelLoadError(f"--max-length {wanted} exceeds the model's {positions} positions")
        return wanted
    limit = DEFAULT_MAX_LENGTH if positions is None else min(DEFAULT_MAX_LENGTH, positions)
    try:
        tok_limit = int(AutoTokenizer.from_pretrained(model_dir).model_max_length)
    except (OSError, ValueError) as e:
        raise ModelLoadError(f"{model_dir}: cannot load its tokenizer: {e}") from e
    # transformers reports "no limit" as a huge number.
    return min(limit, tok_limit) if tok_limit < 1_000_000 else limit


def read_split(spec: LabelledFile, labels: list[str], text_pair: bool, what: str) -> Split:
    """The texts of ``spec`` (label names mapped to the model's label ids)."""
    from training.data.readers import read_rows

    cfg = DataConfig(
        text_column=spec.text_column,
        text_pair_column=spec.pair_column,
        label_column=spec.label_column or "label",
    )
    rows = read_rows(spec.path, cfg, labelled=spec.label_column is not None, split=what)
    if text_pair and spec.pair_column is None:
        raise DataError(f"{spec.path}: the model reads text pairs; name the pair column")
    ids = {label: i for i, label in enumerate(labels)}
    label_ids = None
    if spec.label_column is not None:
        unknown = sorted({r.label for r in rows if r.label not in ids}, key=str)
        if unknown:
            raise DataError(
                f"{spec.path}: labels {unknown[:5]} are not the model's labels {labels} "
                "(config.json id2label)"
            )
        label_ids = [ids[r.label] for r in rows if r.label is not None]
    pairs = [r.text_pair or "" for r in rows] if spec.pair_column else None
    return Split([r.text for r in rows], pairs, label_ids)


def _student_dir(model_dir: Path, dest: Path, meta: TextModelMeta) -> Path:
    """``dest``: the checkpoint's files (linked, not copied: export only reads them) plus
    the ``lugpi.json`` export needs."""
    dest.mkdir(parents=True)
    for f in model_dir.iterdir():
        if f.is_file() and f.name != STUDENT_META:
            try:
                os.symlink(f.resolve(), dest / f.name)
            except OSError:
                shutil.copy2(f, dest / f.name)
    (dest / STUDENT_META).write_text(meta.model_dump_json(indent=2))
    return dest


@dataclass(frozen=True)
class ImportResult:
    name: str
    bundle: Path
    version: str | None
    path: Path | None
    int8: bool


def import_classifier(
    source: str,
    name: str,
    *,
    repository: Path | None,
    out_dir: Path | None = None,
    sample: LabelledFile | None = None,
    test: LabelledFile | None = None,
    text_pair: bool = False,
    max_length: int | None = None,
    quantize: bool = True,
    require_int8: bool = False,
    keep_last: int = 5,
    labels: Sequence[str] | None = None,
) -> ImportResult:
    """Export ``source`` (a checkpoint directory or hub id) as a bundle named ``name`` and
    publish it into ``repository`` (or only write it to ``out_dir`` when ``repository`` is
    None). int8 is tried only with a ``sample``; with ``require_int8`` an int8 model that
    fails its agreement check fails the import, else the bundle ships fp32 only.

    ``source`` may also be an exported ONNX classifier: a directory with its graph and
    tokenizer (or the ``.onnx`` file), read as ``training/export/onnx_import.py`` says;
    ``labels`` names its outputs where no config.json beside it does."""
    from contracts.repository import publish
    from training.export.bundle import export_student
    from training.export.onnx_import import (
        config_labels,
        export_onnx_classifier,
        onnx_source,
        source_dir,
    )
    from training.export.student_checkpoint import TextSplit

    if repository is None and out_dir is None:
        raise ArtifactError("give a model repository to publish into, or an output directory")
    if not re.match(NAME_PATTERN, name):
        raise ArtifactError(f"invalid model name {name!r}: use lowercase letters, digits, - _")
    graph = onnx_source(Path(source).expanduser())
    if graph is not None:
        model_dir = source_dir(graph)
        names = list(labels) if labels else config_labels(model_dir)
        if names is None:
            raise ModelLoadError(
                f"{source}: no config.json with id2label beside the ONNX graph; give the "
                "label names in the order of the graph's outputs (--labels a,b,c)"
            )
    else:
        if labels:
            raise ModelLoadError(
                f"{source}: --labels is for ONNX graphs; a transformers checkpoint's labels "
                "come from its config.json (id2label)"
            )
        model_dir = resolve_source(source)
        names = checkpoint_labels(model_dir)
        length = model_max_length(model_dir, max_length)
    pair = text_pair or (sample is not None and sample.pair_column is not None)
    if sample is not None:
        dev = read_split(sample, names, pair, "dev")
    else:
        texts = list(CHECK_TEXTS)
        dev = Split(texts, texts[1:] + texts[:1] if pair else None, None)
    test_split = read_split(test, names, pair, "test") if test is not None else None
    if test_split is not None and test_split.labels is None:
        raise DataError(f"{test.path if test else ''}: a test file needs its label column")
    provenance: dict[str, object] = {
        "imported_from": source,
        "student_base_model": source,
        "dataset": str(sample.path) if sample else None,
    }
    with tempfile.TemporaryDirectory(prefix="lugpi-import-") as scratch:
        bundle = Path(out_dir) if out_dir is not None else Path(scratch) / "bundle"
        if graph is not None:
            export_onnx_classifier(
                graph,
                bundle,
                TextSplit(dev.texts, dev.pairs, dev.labels),
                name=name,
                labels=names,
                max_length=max_length,
                text_pair=pair,
                source=source,
                test=(
                    TextSplit(test_split.texts, test_split.pairs, test_split.labels)
                    if test_split
                    else None
                ),
                quantize=quantize and sample is not None,
                require_int8=require_int8,
                provenance=provenance,
            )
        else:
            meta = TextModelMeta(
                kind="student", labels=names, max_length=length, text_pair=pair, base_model=source
            )
            student = _student_dir(model_dir, Path(scratch) / "student", meta)
            export_student(
                student,
                bundle,
                dev.texts,
                dev.pairs,
                dev.labels,
                name=name,
                quantize=quantize and sample is not None,
                require_int8=require_int8,
                provenance=provenance,
                test_texts=test_split.texts if test_split else None,
                test_pairs=test_split.pairs if test_split else None,
                test_labels=test_split.labels if test_split else None,
            )
        int8 = (bundle / "model.int8.onnx").is_file()
        if repository is None:
            return ImportResult(name, bundle, None, None, int8)
        version, path = publish(bundle, repository, name, keep_last)
        log.info("imported %s as %s/%s", source, name, version)
        return ImportResult(name, path, version, path, int8)
