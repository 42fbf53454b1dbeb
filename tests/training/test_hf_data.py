"""Data through 🤗 datasets, on LOCAL datasets built here (a few synthetic sentences; no
hub): save_to_disk directories, parquet, arrow and CSV files, ClassLabel labels, column
mapping; and the rule that jobs over HTTP take local paths under the data roots only."""

from __future__ import annotations

import json
from pathlib import Path

import datasets
import pytest
from typer.testing import CliRunner

from contracts.config import DataConfig, PipelineConfig
from contracts.errors import DataError
from training.cli import app
from training.data.readers import read_rows

TOPICS = ["business", "sport"]


def _split(n: int, offset: int = 0) -> datasets.Dataset:
    features = datasets.Features(
        {
            "sentence": datasets.Value("string"),
            "target": datasets.Value("string"),
            "topic": datasets.ClassLabel(names=TOPICS),
        }
    )
    rows = {
        "sentence": [f"sentence {i + offset} about {TOPICS[i % 2]}" for i in range(n)],
        "target": [TOPICS[i % 2] for i in range(n)],
        "topic": [i % 2 for i in range(n)],
    }
    return datasets.Dataset.from_dict(rows, features=features)


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A DatasetDict (train/validation/test) written by save_to_disk."""
    out = tmp_path_factory.mktemp("hf") / "topics"
    dd = datasets.DatasetDict(
        {"train": _split(40), "validation": _split(10, 100), "test": _split(10, 200)}
    )
    dd.save_to_disk(str(out))
    return out


def _cfg(**fields: object) -> DataConfig:
    return DataConfig.model_validate(
        {"train": "unused", "text_column": "sentence", "label_column": "topic", **fields}
    )


def test_save_to_disk_splits_with_classlabel_names_and_column_mapping(saved: Path) -> None:
    cfg = _cfg(text_pair_column="target")
    train = read_rows(saved, cfg, split="train")
    dev = read_rows(saved, cfg, split="dev")  # data.hf_splits: dev -> "validation"
    assert len(train) == 40 and len(dev) == 10
    assert {r.label for r in train} == set(TOPICS)  # ClassLabel ints read as their names
    assert train[1].text == "sentence 1 about sport" and train[1].text_pair == "sport"
    renamed = _cfg(hf_splits={"dev": "test"})
    assert read_rows(saved, renamed, split="dev")[0].text == "sentence 200 about business"


def test_parquet_arrow_and_csv_files_read_through_datasets(saved: Path, tmp_path: Path) -> None:
    ds = _split(12)
    ds.to_parquet(str(tmp_path / "train.parquet"))
    ds.save_to_disk(str(tmp_path / "single"))  # a plain Dataset: its .arrow file
    arrow = next((tmp_path / "single").glob("*.arrow"))
    ds.to_csv(str(tmp_path / "train.csv"))
    cfg = _cfg()
    expected = [(r.text, r.label) for r in read_rows(tmp_path / "single", cfg)]
    for path, fmt in ((tmp_path / "train.parquet", "auto"), (arrow, "auto")):
        assert [(r.text, r.label) for r in read_rows(path, _cfg(format=fmt))] == expected
    # A CSV through datasets holds the ClassLabel's integer; the native reader is the default.
    via_hf = read_rows(tmp_path / "train.csv", _cfg(format="hf"))
    assert [r.text for r in via_hf] == [t for t, _ in expected]
    assert {r.label for r in via_hf} == {"0", "1"}


def test_clear_errors_for_missing_columns_splits_and_foreign_directories(
    saved: Path, tmp_path: Path
) -> None:
    with pytest.raises(DataError, match=r"no column 'text'.*data.text_column"):
        read_rows(saved, DataConfig.model_validate({"train": "x", "label_column": "topic"}))
    with pytest.raises(DataError, match="no split 'unsupervised'"):
        read_rows(saved, _cfg(), split="unlabelled")
    foreign = tmp_path / "scripted"
    foreign.mkdir()
    (foreign / "scripted.py").write_text("raise SystemExit('a loading script must never run')\n")
    with pytest.raises(DataError, match="save_to_disk did not write"):
        read_rows(foreign, _cfg())
    with pytest.raises(DataError, match="not a dataset file"):
        read_rows(foreign / "scripted.py", _cfg(format="hf"))


def test_lugpi_prepare_reads_a_saved_dataset(saved: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    opts = [f"--set=data.{k}={saved}" for k in ("train", "dev", "test")]
    opts += ["--set=data.format=auto", "--set=data.prompt_style=plain"]
    opts += ["--set=data.text_column=sentence", "--set=data.label_column=topic"]
    result = CliRunner().invoke(app, ["prepare", "smoke", *opts, "--run-dir", str(run_dir), "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((run_dir / "data" / "labels.json").read_text()) == TOPICS
    lines = (run_dir / "data" / "test.jsonl").read_text().splitlines()
    assert len(lines) == 10


def test_jobs_over_http_take_saved_datasets_under_the_data_roots_only(
    saved: Path, tmp_path: Path
) -> None:
    from fastapi.exceptions import RequestValidationError

    from api.job_checks import check_job_config
    from api.settings import ApiSettings

    settings = ApiSettings(data_roots=[saved.parent], artifacts_dir=tmp_path)
    ok = PipelineConfig.model_validate({"data": {"train": str(saved), "format": "hf"}})
    assert check_job_config(ok, settings).data.train == str(saved.resolve())
    for source, why in (("imdb", "hub dataset ids are for the command line"),
                        (str(tmp_path), "outside the data roots")):  # fmt: skip
        cfg = PipelineConfig.model_validate({"data": {"train": source, "format": "hf"}})
        with pytest.raises(RequestValidationError) as caught:
            check_job_config(cfg, settings)
        assert why in str(caught.value.errors())


def test_a_hub_id_without_the_hub_is_one_clear_error(tmp_path: Path) -> None:
    """Hub ids are for users with the network; here (HF_DATASETS_OFFLINE) the command
    says what failed in one line instead of a traceback."""
    opts = ["--set=data.format=hf", "--set=data.train=someone/no-such-dataset"]
    opts += ["--set=data.dev=null", "--set=data.test=null", "--set=data.prompt_style=plain"]
    result = CliRunner().invoke(app, ["prepare", "smoke", *opts, "--run-dir", str(tmp_path), "-q"])
    assert result.exit_code == 2, result.output
    assert "someone/no-such-dataset" in result.output and "Traceback" not in result.output
    # It reached the hub loader as an id, not as a path made absolute against the cwd.
    assert f"{Path.cwd()}/someone" not in result.output
