"""Loading, holding out, subsampling and validating datasets (prepare stage)."""

from __future__ import annotations

import json
from collections import Counter
from itertools import islice
from pathlib import Path

import pytest

from contracts.config import PipelineConfig, parse_config
from contracts.errors import DataError
from training.data.prepare import load_prepared, prepare_data, stratified_sample
from training.tracking.progress import RunContext

CTX = RunContext()


def _cfg(**data: object) -> PipelineConfig:
    return parse_config({"data": data})


def _head(src: Path, dst: Path, n: int, every: int = 1) -> Path:
    """``n`` lines (every ``every``-th) of a shared dataset file, in a tmp file (never in
    the repo)."""
    with src.open(encoding="utf-8") as f:
        dst.write_text("".join(islice(f, 0, n * every, every)), encoding="utf-8")
    return dst


def _prepare(cfg: PipelineConfig, tmp: Path) -> Path:
    return prepare_data(cfg, tmp / "data", CTX)


def test_cwi2018_slice_gives_sentence_target_pairs(shared_datasets: Path, tmp_path: Path) -> None:
    cwi = shared_datasets / "cwi2018"
    train = _head(cwi / "News_Train.tsv", tmp_path / "train.tsv", 300)
    dev = _head(cwi / "News_Dev.tsv", tmp_path / "dev.tsv", 60)
    test = _head(cwi / "WikiNews_Test.tsv", tmp_path / "test.tsv", 60)
    # format auto: a header-less .tsv whose first line looks like CWI 2018 is read as such.
    cfg = _cfg(train=str(train), dev=str(dev), test=str(test), prompt_style="cwi")
    data = load_prepared(_prepare(cfg, tmp_path))
    assert data.labels == ["complex", "simple"]
    assert data.text_pair
    assert [len(data.splits[s]) for s in ("train", "dev", "test")] == [300, 60, 60]
    first_line = train.read_text(encoding="utf-8").splitlines()[0].split("\t")
    ex = data.splits["train"][0]
    assert (ex.text, ex.text_pair, ex.prompt) == (first_line[1], first_line[4], first_line[4])
    assert ex.label == {"0": "simple", "1": "complex"}[first_line[9]]
    assert data.pairs("dev") == [e.text_pair for e in data.splits["dev"]]
    ids = data.label_ids("train")
    assert ids[0] == data.labels.index(ex.label)
    assert json.loads((tmp_path / "data" / "labels.json").read_text()) == data.labels


def test_newsgroups_jsonl_without_dev_holds_out_a_stratified_seeded_dev(
    shared_datasets: Path, tmp_path: Path
) -> None:
    # The file is sorted by newsgroup: take every 28th post to see all 20 of them.
    src = shared_datasets / "20newsgroups" / "train.jsonl"
    train = _head(src, tmp_path / "train.jsonl", 400, every=28)
    raw_labels = Counter(json.loads(line)["label"] for line in train.read_text().splitlines())
    cfg = _cfg(train=str(train), dev_fraction=0.25, prompt_style="newsgroups", max_train_samples=90)
    data = load_prepared(_prepare(cfg, tmp_path / "a"))
    assert len(data.splits["dev"]) == 100 and len(data.splits["train"]) == 90
    assert "test" not in data.splits
    assert data.labels == sorted(raw_labels)
    assert not data.text_pair and data.pairs("train") is None
    dev_counts = Counter(e.label for e in data.splits["dev"])
    for label, n in raw_labels.items():  # stratified: every class keeps about its share
        assert abs(dev_counts[label] - n / 4) <= 1
    train_texts = {e.text for e in data.splits["train"]}
    assert not train_texts & {e.text for e in data.splits["dev"]}
    # Same seed, same split; another seed, another one.
    again = load_prepared(_prepare(cfg, tmp_path / "b"))
    assert again.splits == data.splits
    other = load_prepared(_prepare(cfg.model_copy(update={"seed": 1}), tmp_path / "c"))
    assert other.splits["dev"] != data.splits["dev"]


def test_rotten_tomatoes_eval_subsets(shared_datasets: Path, tmp_path: Path) -> None:
    rt = shared_datasets / "rotten-tomatoes"
    cfg = _cfg(
        train=str(_head(rt / "train.jsonl", tmp_path / "tr.jsonl", 5000)),
        dev=str(_head(rt / "dev.jsonl", tmp_path / "dev.jsonl", 200)),
        test=str(_head(rt / "test.jsonl", tmp_path / "te.jsonl", 200)),
        prompt_style="html",
        max_train_samples=50,
        max_eval_samples=20,
    )
    data = load_prepared(_prepare(cfg, tmp_path))
    assert data.labels == ["negative", "positive"]
    assert [len(data.splits[s]) for s in ("train", "dev", "test")] == [50, 20, 20]
    assert len({e.label for e in data.splits["train"]}) == 2


def test_csv_with_pair_column_and_unlabelled_split(tmp_path: Path) -> None:
    (tmp_path / "t.csv").write_text(
        'q,a,y\n"first, quoted",x,yes\nsecond,y,no\nthird,z,yes\nfourth,w,no\n'
    )
    (tmp_path / "u.tsv").write_text("q\ta\nan unlabelled text\tv\n")
    cfg = _cfg(
        train=str(tmp_path / "t.csv"),
        unlabelled=str(tmp_path / "u.tsv"),
        text_column="q",
        text_pair_column="a",
        label_column="y",
        dev_fraction=0.25,
    )
    data = load_prepared(_prepare(cfg, tmp_path))
    assert data.text_pair and data.labels == ["no", "yes"]
    assert len(data.splits["train"]) == 3 and len(data.splits["dev"]) == 1
    assert "first, quoted" in {e.text for e in data.splits["train"] + data.splits["dev"]}
    (u,) = data.splits["unlabelled"]
    assert (u.text, u.text_pair, u.label) == ("an unlabelled text", "v", None)
    with pytest.raises(ValueError, match="unlabelled"):
        data.label_ids("unlabelled")


def test_stratified_sample_keeps_every_class_and_size() -> None:
    import random

    labels: list[str | None] = ["a"] * 90 + ["b"] * 9 + ["c"]
    idx = stratified_sample(labels, 10, random.Random(0))
    assert len(idx) == 10 and idx == sorted(idx)
    assert Counter(labels[i] for i in idx) == {"a": 8, "b": 1, "c": 1}


BAD_CASES = [
    (
        "t.jsonl",
        '{"text": "a", "label": "x"}\n{"text": "b", "label": \n',
        r"t\.jsonl:2: not valid JSON",
    ),
    (
        "t.jsonl",
        '{"body": "a", "label": "x"}\n',
        r"no column 'text'; available: \['body', 'label'\]",
    ),
    ("t.csv", "text,label\na,x\nb,y,extra\n", r"t\.csv:3: expected 2 fields, got 3"),
    ("t.csv", "body,label\na,x\n", r"no column 'text'; available: \['body', 'label'\]"),
    ("t.csv", 'text,label\n"unterminated,x\n', r"t\.csv:\d+: malformed line"),
    ("t.tsv", "", r"no examples"),
    ("t.jsonl", '{"text": "a", "label": "x"}\n{"text": "b", "label": "x"}\n', r"single class"),
    ("t.jsonl", '{"text": "a", "label": ""}\n', r"t\.jsonl:1: empty label"),
    ("t.xml", "<a/>", r"cannot tell the format"),
]


@pytest.mark.parametrize(("name", "content", "message"), BAD_CASES)
def test_bad_files_raise_data_error_naming_the_problem(
    tmp_path: Path, name: str, content: str, message: str
) -> None:
    (tmp_path / name).write_text(content)
    with pytest.raises(DataError, match=message):
        _prepare(_cfg(train=str(tmp_path / name)), tmp_path)
    assert not (tmp_path / "data").exists()  # nothing half-written looks complete


def test_malformed_cwi_line_names_file_and_line(tmp_path: Path) -> None:
    good = "id\tThe cat sat.\t4\t7\tcat\t10\t10\t0\t0\t0\t0.0\n"
    (tmp_path / "c.tsv").write_text(good + "id\tonly three\tfields\n")
    with pytest.raises(DataError, match=r"c\.tsv:2: expected 11 tab-separated"):
        _prepare(_cfg(train=str(tmp_path / "c.tsv"), format="cwi2018"), tmp_path)


def test_missing_file_and_unseen_labels(tmp_path: Path) -> None:
    with pytest.raises(DataError, match=r"data file not found: .*nope\.jsonl"):
        _prepare(_cfg(train=str(tmp_path / "nope.jsonl")), tmp_path)
    rows = [{"text": f"t{i}", "label": "ab"[i % 2]} for i in range(6)]
    (tmp_path / "tr.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "te.jsonl").write_text('{"text": "z", "label": "c"}\n')
    cfg = _cfg(train=str(tmp_path / "tr.jsonl"), test=str(tmp_path / "te.jsonl"))
    with pytest.raises(DataError, match=r"te\.jsonl: test labels \['c'\] never occur in train"):
        _prepare(cfg, tmp_path)
