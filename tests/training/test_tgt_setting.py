"""The setting where TGT pays (issue 24 item 4): teachers that saw more than the students.

``tgt.student_train_samples``: every student (baseline, distilled, TGT) learns from a
stratified, seeded subset of the train split while the config's teachers train on all of
it; ``tgt.teacher``: the TGT students' teacher may come from elsewhere (a run directory, a
teacher directory, any transformers sequence classifier). The same config runs from the
pipeline and as a job (POST /jobs/train, then a worker attempt against the real Redis DB
of ``LUGPI_TEST_REDIS_URL``).

Tiny models: a random 2-layer BERT on MiniLM's vocabulary (conftest ``tiny_text_model``)
as teacher and student, the tiny latent generator trained here (conftest). Two classes of
keyword sentences written below. What is tested is who saw which labelled rows, not
accuracy.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from support.tgt_setting import (
    N_STUDENT,
    N_TRAIN,
    check_the_split,
    raw_config,
    summary,
    train_texts,
    write_data,
)
from typer.testing import CliRunner

from contracts.config import parse_config
from contracts.errors import ConfigError, DataError, ModelLoadError
from training.cli import app
from training.data.prepare import student_train_rows
from training.pipeline import Run, resolve_paths
from training.tracking.progress import RunContext

pytestmark = pytest.mark.slow


def test_students_learn_from_the_subset_while_the_teacher_sees_every_row(
    tmp_path: Path, tiny_text_model: Path, tiny_latent_generator: Path
) -> None:
    files = write_data(tmp_path / "data")
    cfg = resolve_paths(
        parse_config(raw_config(files, tiny_text_model, tiny_latent_generator)), tmp_path
    )
    run = Run(cfg, tmp_path / "run", RunContext())
    run.pin_config()
    for stage in ("prepare", "teacher", "tgt", "distill", "tgt-distill", "baseline"):
        run.make(stage)
    check_the_split(run.dir, cfg)

    # The subset is the seeded stratified one, and another seed draws another.
    rows = student_train_rows(cfg, run.data)
    assert rows is not None and len(rows) == N_STUDENT
    other = student_train_rows(cfg.model_copy(update={"seed": 1}), run.data)
    assert other is not None and other != rows
    assert student_train_rows(cfg, run.data) == rows

    # From the CLI, the TGT students' teacher from elsewhere, without training this run's
    # own: this run's directory (its teacher 'txt'), then its baseline as a plain
    # transformers sequence classifier (the online 'gradient' mode steers by it through
    # its input embeddings).
    raw = raw_config(files, tiny_text_model, tiny_latent_generator)
    raw["teachers"][0]["name"] = "own"
    config = tmp_path / "elsewhere.yaml"
    config.write_text(yaml.safe_dump(raw))
    for source, mode, name in (
        (run.dir, "sampling", "txt"),
        (run.dir / "baseline", "gradient", "baseline"),
    ):
        run_dir = tmp_path / f"elsewhere-{mode}"
        sets = [f"tgt.teacher={source}", f"tgt.modes=[{mode}]", "tgt.explore_per_epoch=4",
                "tgt.query_budget=4"]  # fmt: skip
        for command in ("prepare", "tgt", "tgt-distill"):
            args = [command, str(config), "--run-dir", str(run_dir), "-q"]
            result = CliRunner().invoke(app, [*args, *(x for s in sets for x in ("--set", s))])
            assert result.exit_code == 0, result.output
        student = run_dir / f"tgt-student-{mode}"
        assert summary(student)["teachers"] == [name]
        assert train_texts(student) == N_STUDENT
        assert not (run_dir / "teacher-own").exists()  # its own teacher was never needed
        if mode == "gradient":
            online = summary(student)["tgt"]
            assert 0 < online["teacher_queries"] <= 4
            assert sum(r["decoded"] for r in online["rounds"]) >= online["explored"]


def test_bad_settings_are_refused_by_name(
    tmp_path: Path, tiny_text_model: Path, tiny_latent_generator: Path
) -> None:
    files = write_data(tmp_path / "data")
    raw = raw_config(files, tiny_text_model, tiny_latent_generator)
    with pytest.raises(ConfigError, match=r"tgt\.student_train_samples is set but tgt\.enabled"):
        parse_config({**raw, "tgt": {**raw["tgt"], "enabled": False}})
    with pytest.raises(ConfigError, match="cross_fit_folds"):
        parse_config({**raw, "distill": {"cross_fit_folds": 2}})

    from training.tgt.teacher_source import tgt_teacher_dirs

    everything = {**raw, "tgt": {**raw["tgt"], "student_train_samples": N_TRAIN}}
    too_many = resolve_paths(parse_config(everything), tmp_path)
    run = Run(too_many, tmp_path / "run", RunContext())
    run.pin_config()
    run.make("prepare")
    with pytest.raises(DataError, match="teachers would see nothing the students do not"):
        _ = run.student_data

    def source(value: str) -> list[Path]:
        cfg = parse_config({**raw, "tgt": {**raw["tgt"], "teacher": value}})
        return tgt_teacher_dirs(cfg, run.layout)

    with pytest.raises(ModelLoadError, match="is not a directory"):
        source(str(tmp_path / "missing"))
    with pytest.raises(ModelLoadError, match="without a finished teacher"):
        source(str(run.dir))  # a run whose teacher stage never ran
    with pytest.raises(ModelLoadError, match="neither a run"):
        source(str(tmp_path / "data"))
    assert source("pipeline") == [run.layout.teacher("txt")]
