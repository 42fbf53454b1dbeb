"""Export refuses what it cannot export faithfully, before tracing anything.

Students here are tiny BERTs with RANDOM weights and an untrained head: these tests are
about inputs (files, labels, tokenizers, texts), not predictions, so they need no dataset.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from transformers import (
    AutoModelForSequenceClassification,
    AutoTokenizer,
    BertConfig,
    PreTrainedModel,
)
from transformers import BertForSequenceClassification as Bert

from contracts.artifacts import STUDENT_META, TextModelMeta
from contracts.bundle import MODEL_INT8, ONNX_INPUTS, verify_bundle
from contracts.errors import ArtifactError, DataError, ExportCheckError
from runtime.encoding import TextEncoder
from training.export.bundle import export_onnx, export_student
from training.export.student_checkpoint import TextSplit, check_tokenization, serving_tokenizer

MAX_LENGTH = 32
# Made-up texts (pairs: sentence, target phrase), of different lengths so batches pad.
SENTENCES = [
    "The committee postponed its decision until the spring.",
    "Rain again.",
    "An unprecedented number of volunteers registered for the marathon this year.",
    "She laughed.",
    "Engineers inspected the suspension bridge after the earthquake.",
    "The museum reopened with a retrospective of early photography.",
]
TARGETS = ["postponed", "Rain", "unprecedented number", "laughed", "suspension", "retrospective"]


def save_student(model: PreTrainedModel, tokenizer_dir: Path, out: Path, **meta: object) -> Path:
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    fields = {
        "kind": "student",
        "labels": ["0", "1"],
        "max_length": MAX_LENGTH,
        "text_pair": True,
        "base_model": "tiny-random-bert",
    } | meta
    (out / STUDENT_META).write_text(TextModelMeta.model_validate(fields).model_dump_json())
    return out


@pytest.fixture(scope="module")
def untrained_student(tiny_text_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(tiny_text_model, num_labels=2)
    out = tmp_path_factory.mktemp("untrained-student-random")
    return save_student(model.eval(), tiny_text_model, out)


def test_single_text_student_graph_takes_no_token_type_ids_random(
    untrained_student: Path, tmp_path: Path
) -> None:
    single = tmp_path / "single"
    shutil.copytree(untrained_student, single)
    meta = json.loads((single / STUDENT_META).read_text()) | {"text_pair": False}
    (single / STUDENT_META).write_text(json.dumps(meta))
    texts = SENTENCES * 2
    out = export_student(
        single,
        tmp_path / "b",
        texts,
        None,
        None,
        name="single",
        quantize=False,
        with_transformers=False,
    )
    manifest = verify_bundle(out)
    assert manifest.inputs == ["input_ids", "attention_mask"]
    assert MODEL_INT8 not in manifest.files and manifest.export_checks is not None
    assert manifest.export_checks.int8_argmax_agreement is None


@pytest.mark.parametrize(
    ("remove", "named"),
    [
        (["model.safetensors"], "model.safetensors"),
        ([STUDENT_META], STUDENT_META),
        (["tokenizer.json", "vocab.txt"], "tokenizer.json"),
        (["config.json"], "config.json"),
    ],
)
def test_incomplete_student_checkpoint_is_refused_random(
    untrained_student: Path, tmp_path: Path, remove: list[str], named: str
) -> None:
    broken = tmp_path / "student"
    shutil.copytree(untrained_student, broken)
    for f in remove:
        # transformers 5 saves tokenizer.json alone (no vocab.txt): remove what is there.
        (broken / f).unlink(missing_ok=True)
    with pytest.raises(ArtifactError, match=f"incomplete student checkpoint, missing.*{named}"):
        export_student(broken, tmp_path / "b", ["text"], ["t"], None, name="x")
    assert not (tmp_path / "b").exists()


def test_labels_that_do_not_match_the_head_are_refused_random(
    untrained_student: Path, tmp_path: Path
) -> None:
    broken = tmp_path / "student"
    shutil.copytree(untrained_student, broken)
    meta = json.loads((broken / STUDENT_META).read_text()) | {"labels": ["a", "b", "c"]}
    (broken / STUDENT_META).write_text(json.dumps(meta))
    with pytest.raises(ArtifactError, match=r"lists 3 labels.*head has 2 outputs"):
        export_student(broken, tmp_path / "b", ["text"], ["t"], None, name="x")


def test_tokenizer_larger_than_the_embedding_matrix_is_refused_random(
    tiny_text_model: Path, tmp_path: Path
) -> None:
    config = BertConfig(
        vocab_size=1000,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=2,
    )
    student = save_student(Bert(config), tiny_text_model, tmp_path / "student")
    with pytest.raises(ArtifactError, match=r"30522 tokens but .* 1000 rows"):
        export_student(student, tmp_path / "b", ["text"], ["t"], None, name="x")


def test_tokenization_check_catches_a_tokenizer_json_that_differs_random(
    untrained_student: Path,
) -> None:
    hf = AutoTokenizer.from_pretrained(untrained_student)
    split = TextSplit(SENTENCES, TARGETS, None)

    def served(max_length: int) -> TextEncoder:
        return TextEncoder(serving_tokenizer(hf, max_length), max_length, ONNX_INPUTS)

    check_tokenization(hf, served(MAX_LENGTH), split, MAX_LENGTH, 32)
    with pytest.raises(ExportCheckError, match=r"other input_ids .* first text #"):
        check_tokenization(hf, served(12), split, MAX_LENGTH, 32)


def test_export_leaves_the_model_in_eval_mode_random(
    untrained_student: Path, tmp_path: Path
) -> None:
    # torch's exporter restores the wrapper's mode; a wrapper left in training mode would
    # switch dropout on in the student and spoil the PyTorch reference.
    model = AutoModelForSequenceClassification.from_pretrained(untrained_student).eval()
    hf = AutoTokenizer.from_pretrained(untrained_student)
    sample = TextSplit(["one text", "and another, longer text"], ["one", "text"], None)
    export_onnx(model, hf, ONNX_INPUTS, sample, tmp_path / "m.onnx", 17, max_length=MAX_LENGTH)
    assert not any(m.training for m in model.modules())


def test_bad_requests_are_refused_before_any_work_random(
    untrained_student: Path, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match=r"reads text pairs"):
        export_student(untrained_student, tmp_path / "b", ["text"], None, None, name="x")
    with pytest.raises(DataError, match=r"1 texts but 2 labels"):
        export_student(untrained_student, tmp_path / "b", ["text"], ["t"], [0, 1], name="x")
    keep = tmp_path / "precious"
    keep.mkdir()
    (keep / "notes.txt").write_text("mine")
    for overwrite in (False, True):
        with pytest.raises(ArtifactError, match=r"already exists"):
            export_student(
                untrained_student, keep, ["text"], ["t"], None, name="x", overwrite=overwrite
            )
    assert (keep / "notes.txt").read_text() == "mine"


def test_dev_texts_longer_than_the_model_export_at_its_max_length_random(
    untrained_student: Path, tmp_path: Path
) -> None:
    # 20 Newsgroups posts run to thousands of tokens; the first dev texts are what the
    # graph is traced on, and traced untruncated they overflowed BERT's 512 positions
    # ("expanded size of the tensor (997) must match ... 512").
    long = " ".join(SENTENCES * 20)  # about 1,100 tokens
    texts = [long, long + " " + long, *SENTENCES]
    targets = ["committee", "Rain", *TARGETS]
    out = export_student(untrained_student, tmp_path / "b", texts, targets, None, name="long-texts")
    assert verify_bundle(out).max_length == MAX_LENGTH
