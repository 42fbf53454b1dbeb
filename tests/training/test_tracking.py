"""MLflow tracking against a real local MLflow file store: a stage directory written the
way the stages write theirs (stage.json, history.json) is logged with its numbers,
curves, files, the config and the software provenance; a resumed run continues the same
MLflow run and logs no stage twice."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from contracts.artifacts import write_stage_record
from contracts.config import PipelineConfig
from contracts.jobs import Stage
from training.students.train_loop import History
from training.tracking.experiments import STATE_FILE, Tracker, software_provenance


def _config(**tracking: object) -> PipelineConfig:
    return PipelineConfig.model_validate(
        {"data": {"train": "train.csv"}, "tracking": {"mlflow": True, **tracking}}
    )


def _teacher_dir(run_dir: Path) -> Path:
    out = run_dir / "teacher-effnet"
    out.mkdir(parents=True)
    history = History(
        steps=[{"loss": 1.0 - 0.1 * i, "ce": 0.5} for i in range(5)],
        epochs=[{"accuracy": 0.6, "macro_f1": 0.5}, {"accuracy": 0.7, "macro_f1": 0.6}],
        best_epoch=2,
        train_seconds=3.0,
    )
    history.save(out / "history.json")
    summary = {"dev": {"accuracy": 0.7, "macro_f1": 0.6, "n": 100}, "best_epoch": 2}
    write_stage_record(out, Stage.TEACHER, 4.5, summary)
    return out


def test_stage_metrics_curves_config_and_provenance_reach_a_local_mlflow_store(
    tmp_path: Path,
) -> None:
    run_dir = tmp_path / "run"
    stage = _teacher_dir(run_dir)
    tracker = Tracker(_config(), run_dir)
    tracker.stage_done(stage.name, stage)

    state = json.loads((run_dir / STATE_FILE).read_text())
    assert state["uri"] == (run_dir / "mlruns").resolve().as_uri()  # the default store
    client = MlflowClient(state["uri"])
    run = client.get_run(state["run_id"])
    metrics = run.data.metrics
    assert metrics["teacher-effnet.dev.accuracy"] == 0.7
    assert metrics["teacher-effnet.seconds"] == 4.5
    losses = client.get_metric_history(run.info.run_id, "teacher-effnet.train.loss")
    assert [m.step for m in losses] == [0, 1, 2, 3, 4]
    assert [round(m.value, 3) for m in losses] == [1.0, 0.9, 0.8, 0.7, 0.6]
    dev = client.get_metric_history(run.info.run_id, "teacher-effnet.epoch.accuracy")
    assert sorted((m.step, m.value) for m in dev) == [(1, 0.6), (2, 0.7)]
    assert run.data.params["distill.alpha"] == "3.0"
    assert run.data.tags["package.torch"] and len(run.data.tags["git.commit"]) == 40
    files = {f.path for f in client.list_artifacts(run.info.run_id)}
    assert {"config.json", "provenance.json", "teacher-effnet"} <= files
    stage_files = {f.path for f in client.list_artifacts(run.info.run_id, "teacher-effnet")}
    assert stage_files == {"teacher-effnet/stage.json", "teacher-effnet/history.json"}

    # Resumed: the same MLflow run, and a stage already logged is not logged again.
    again = Tracker(_config(), run_dir)
    again.stage_done(stage.name, stage)
    assert json.loads((run_dir / STATE_FILE).read_text())["run_id"] == run.info.run_id
    assert len(client.get_metric_history(run.info.run_id, "teacher-effnet.train.loss")) == 5
    assert len(client.search_runs([run.info.experiment_id])) == 1


def test_a_tracking_uri_setting_and_tracking_off(tmp_path: Path) -> None:
    store = tmp_path / "elsewhere"
    run_dir = tmp_path / "run"
    stage = _teacher_dir(run_dir)
    Tracker(_config(uri=store.as_uri(), experiment="mine"), run_dir).stage_done("t", stage)
    client = MlflowClient(store.as_uri())
    experiment = client.get_experiment_by_name("mine")
    assert experiment is not None and len(client.search_runs([experiment.experiment_id])) == 1
    assert not (run_dir / "mlruns").exists()

    off = tmp_path / "off"
    quiet = _teacher_dir(off)
    Tracker(PipelineConfig.model_validate({"data": {"train": "x.csv"}}), off).stage_done("t", quiet)
    assert not (off / "mlruns").exists() and not (off / STATE_FILE).exists()


def test_software_provenance_names_packages_and_commit() -> None:
    prov = software_provenance()
    packages = prov["packages"]
    assert isinstance(packages, dict) and {"torch", "transformers", "onnxruntime"} <= set(packages)
    git = prov["git"]
    assert isinstance(git, dict) and isinstance(git["dirty"], bool)


@pytest.mark.parametrize("uri", ["http://tracking.example:5000"])
def test_jobs_over_http_cannot_choose_a_tracking_server(uri: str, tmp_path: Path) -> None:
    from fastapi.exceptions import RequestValidationError

    from api.job_checks import check_job_config
    from api.settings import ApiSettings

    (tmp_path / "train.csv").write_text("text,label\na,b\n")
    cfg = PipelineConfig.model_validate(
        {"data": {"train": str(tmp_path / "train.csv")}, "tracking": {"mlflow": True, "uri": uri}}
    )
    with pytest.raises(RequestValidationError) as caught:
        check_job_config(cfg, ApiSettings(data_roots=[tmp_path], artifacts_dir=tmp_path))
    assert "tracking.uri" in str(caught.value.errors())
