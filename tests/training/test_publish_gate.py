"""The publish gate (issue 26, item 2): a run that fails it is published held (listed,
never served by default, servable once an admin pins or promotes it) or not at all, and
its record says why.

Bundles: tiny RANDOM-weight BERT students exported by the real export with real Rotten
Tomatoes snippets (read from ../shared/datasets, never copied) as dev/test, so their
recorded metrics are real onnxruntime measurements; the gate's comparison evaluates the
current default on the same texts through runtime/. Thresholds are set from the measured
values, so each check is seen both passing and failing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from contracts.artifacts import STUDENT_META, TextModelMeta, write_stage_record
from contracts.bundle import read_manifest
from contracts.config import PipelineConfig, PublishGateConfig
from contracts.errors import RepositoryError
from contracts.jobs import Stage
from contracts.model_versions import pin_version, promote, rollback
from contracts.repository import HELD_FILE, format_models_table, list_models, publish, resolve
from training.export.publish_gate import GateSplit, decide
from training.pipeline import Run
from training.tracking.progress import RunContext

LABELS = ["negative", "positive"]
N = 60  # texts per split


def _read(path: Path) -> tuple[list[str], list[int]]:
    rows = [json.loads(line) for line in path.read_text().splitlines()][:N]
    return [r["text"] for r in rows], [LABELS.index(r["label"]) for r in rows]


@pytest.fixture(scope="module")
def splits(shared_datasets: Path) -> dict[str, tuple[list[str], list[int]]]:
    d = shared_datasets / "rotten-tomatoes"
    # The first rows of each file are sorted by label: take every other of a longer slice
    # so both labels occur, with a clear majority (a constant answer must be recognisable).
    out = {}
    for split in ("dev", "test"):
        rows = [json.loads(line) for line in (d / f"{split}.jsonl").read_text().splitlines()]
        pos = [r["text"] for r in rows if r["label"] == "positive"][:40]
        neg = [r["text"] for r in rows if r["label"] == "negative"][:20]
        out[split] = (pos + neg, [1] * len(pos) + [0] * len(neg))
    return out


def _student(tiny_text_model: Path, out: Path, seed: int, constant: int | None = None) -> Path:
    """A random-head student (``seed``); ``constant``: a head that always answers that label."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(seed)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_text_model, num_labels=2, id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )  # fmt: skip
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)
        if constant is not None:
            model.classifier.weight.zero_()
            model.classifier.bias.copy_(torch.tensor([5.0, 0.0] if constant == 0 else [0.0, 5.0]))
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_text_model).save_pretrained(out)
    meta = TextModelMeta(kind="student", labels=LABELS, max_length=32, text_pair=False,
                         base_model="tiny-random")  # fmt: skip
    (out / STUDENT_META).write_text(meta.model_dump_json())
    return out


@pytest.fixture(scope="module")
def bundles(
    tiny_text_model: Path,
    splits: dict[str, tuple[list[str], list[int]]],
    tmp_path_factory: pytest.TempPathFactory,
) -> dict[str, Path]:
    """{"a", "b": two random students (a scores higher on test than b), "constant": always
    answers the majority label of test}."""
    from training.export.bundle import export_student

    root = tmp_path_factory.mktemp("gate-bundles")
    made = {}
    for key, seed, constant in (("s0", 0, None), ("s1", 1, None), ("s2", 2, None),
                                ("constant", 0, 1)):  # fmt: skip
        student = _student(tiny_text_model, root / f"{key}-student", seed, constant)
        made[key] = export_student(
            student, root / key, *splits["dev"][:1], None, splits["dev"][1], name="gate",
            quantize=False, with_transformers=False, test_texts=splits["test"][0],
            test_labels=splits["test"][1],
        )  # fmt: skip
    accuracy = {k: read_manifest(b).metrics["student"]["test"].accuracy for k, b in made.items()}
    ranked = sorted(("s0", "s1", "s2"), key=lambda k: accuracy[k])
    assert accuracy[ranked[0]] < accuracy[ranked[-1]], accuracy  # the test needs two levels
    return {"a": made[ranked[-1]], "b": made[ranked[0]], "constant": made["constant"]}


def _acc(bundle: Path) -> float:
    return read_manifest(bundle).metrics["student"]["test"].accuracy


def _split(splits: dict[str, tuple[list[str], list[int]]]) -> GateSplit:
    return GateSplit(splits["test"][0], None, splits["test"][1])


def _status(decision: object, name: str) -> str:
    return next(c.status for c in decision.checks if c.name == name)  # type: ignore[attr-defined]


def test_minimum_on_a_named_metric(
    bundles: dict[str, Path], splits: dict[str, tuple[list[str], list[int]]], tmp_path: Path
) -> None:
    f1 = read_manifest(bundles["a"]).metrics["student"]["test"].macro_f1
    off = {"majority_margin": None}
    for minimum, action in ((f1 - 0.01, "publish"), (f1 + 0.01, "hold")):
        cfg = PublishGateConfig(metric="macro_f1", minimum=minimum, **off)  # type: ignore[arg-type]
        d = decide(cfg, bundles["a"], tmp_path / "repo", "gate", _split(splits))
        assert d.action == action and d.value == pytest.approx(f1)
        assert _status(d, "minimum") == ("passed" if action == "publish" else "failed")
    cfg = PublishGateConfig(minimum=0.99, majority_margin=None, on_fail="skip")
    d = decide(cfg, bundles["a"], tmp_path / "repo", "gate", _split(splits))
    assert d.action == "skip" and f"accuracy on test {_acc(bundles['a']):.4f} < minimum 0.99" in (
        d.reason
    )


def test_not_worse_than_the_current_default_on_the_same_split(
    bundles: dict[str, Path], splits: dict[str, tuple[list[str], list[int]]], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    cfg = PublishGateConfig(max_drop=0.0, majority_margin=None)
    # No default yet: skipped, and the record says so.
    d = decide(cfg, bundles["b"], repo, "gate", _split(splits))
    assert d.action == "publish" and _status(d, "not_worse_than_default") == "skipped"
    assert "no current default version" in d.checks[0].detail
    publish(bundles["a"], repo, "gate")
    # The default (a) is evaluated on the new run's texts: b is worse by more than 0.
    d = decide(cfg, bundles["b"], repo, "gate", _split(splits))
    assert d.action == "hold", d
    gap = _acc(bundles["a"]) - _acc(bundles["b"])
    assert f"vs current default v1 {_acc(bundles['a']):.4f} on the same 60 texts" in d.reason
    # A drop within max_drop passes.
    d = decide(PublishGateConfig(max_drop=gap + 1e-6, majority_margin=None), bundles["b"], repo,
               "gate", _split(splits))  # fmt: skip
    assert d.action == "publish"
    # Other labels: not comparable, skipped and said.
    d = decide(cfg, bundles["b"], repo, "other", _split(splits))
    assert _status(d, "not_worse_than_default") == "skipped"


def test_other_labels_skip_the_comparison(
    bundles: dict[str, Path], splits: dict[str, tuple[list[str], list[int]]], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    _, path = publish(bundles["a"], repo, "gate")
    manifest = read_manifest(path)
    relabelled = manifest.model_copy(update={"labels": ["bad", "good"]})
    (path / "bundle.json").write_text(relabelled.model_dump_json())
    cfg = PublishGateConfig(max_drop=0.0, majority_margin=None)
    d = decide(cfg, bundles["b"], repo, "gate", _split(splits))
    check = d.checks[0]
    assert check.status == "skipped" and "other labels" in check.detail, check
    assert d.action == "publish"


def test_a_model_at_the_majority_rate_is_refused_by_default(
    bundles: dict[str, Path], splits: dict[str, tuple[list[str], list[int]]], tmp_path: Path
) -> None:
    d = decide(PublishGateConfig(), bundles["constant"], tmp_path / "r", "gate", _split(splits))
    assert _acc(bundles["constant"]) == pytest.approx(40 / 60)  # always "positive"
    assert d.action == "hold" and _status(d, "above_majority") == "failed"
    assert "majority-class rate 0.6667 ('positive') + margin 0.02" in d.reason
    a = decide(PublishGateConfig(), bundles["a"], tmp_path / "r", "gate", _split(splits))
    expected = "passed" if _acc(bundles["a"]) > 40 / 60 + 0.02 else "failed"
    assert _status(a, "above_majority") == expected


def test_held_versions_are_listed_never_default_until_pinned_or_promoted(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    publish(bundles["a"], repo, "gate")
    publish(bundles["b"], repo, "gate", held="accuracy on test 0.4 < minimum 0.9")
    entries = {e.version: e for e in list_models(repo, "gate")}
    assert entries["v2"].held == "accuracy on test 0.4 < minimum 0.9" and entries["v2"].ok
    assert entries["v1"].default and not entries["v2"].default
    assert resolve(repo, "gate") == entries["v1"].path  # lugpi predict's default
    table = format_models_table(list_models(repo, "gate"))  # lugpi models
    assert "| gate | v2 | held |" in table and "| gate | v1 | yes |" in table
    # Pruning never lets held versions push out the served one.
    publish(bundles["b"], repo, "gate", keep_last=1, held="again")
    assert [e.version for e in list_models(repo, "gate")] == ["v1", "v3"]
    with pytest.raises(RepositoryError, match="not held"):
        promote(repo, "gate", "v1")

    settings = ApiSettings(model_repository=repo, poll_interval_s=0, intra_op_threads=1)
    with TestClient(create_app(settings)) as client:
        info = client.get("/models/gate").json()
        by_version = {v["version"]: v for v in info["versions"]}
        assert by_version["v3"]["held"] == "again" and not by_version["v3"]["is_default"]
        assert info["default_version"] == "v1"
        r = client.post("/classify", json={"texts": ["fine"], "model": "gate"})
        assert r.json()["version"] == "v1", r.text
        # Named explicitly, a held version answers (to try it before promoting it).
        r = client.post("/classify", json={"texts": ["fine"], "model": "gate", "version": "v3"})
        assert r.status_code == 200 and r.json()["version"] == "v3"

    pin_version(repo, "gate", "v3")  # an admin's pin serves it
    assert next(e for e in list_models(repo, "gate") if e.default).version == "v3"
    settings = ApiSettings(
        model_repository=repo, poll_interval_s=0, intra_op_threads=1, admin_keys=["admin"]
    )
    with TestClient(create_app(settings)) as client:
        url = "/models/gate/versions/v3/promote"
        assert client.post(url).status_code == 401
        r = client.post(url, headers={"X-API-Key": "admin"})  # the admin route: promote()
        assert r.status_code == 200, r.text
        assert {v["version"]: v["held"] for v in r.json()["versions"]}["v3"] is None
        again = client.post(url, headers={"X-API-Key": "admin"})
        assert again.status_code == 400 and "not held" in again.text
    assert not (repo / "gate" / "v3" / HELD_FILE).exists()
    # Rolling back never lands on a held version.
    publish(bundles["b"], repo, "gate", held="held again")
    pin_version(repo, "gate", "v4")
    assert rollback(repo, "gate").version == "v3"


def test_every_version_held_means_no_default(bundles: dict[str, Path], tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    publish(bundles["constant"], repo, "gate", held="accuracy at the majority rate")
    assert not any(e.default for e in list_models(repo, "gate"))
    settings = ApiSettings(model_repository=repo, poll_interval_s=0, intra_op_threads=1)
    with TestClient(create_app(settings)) as client:
        r = client.post("/classify", json={"texts": ["fine"], "model": "gate"})
        assert r.status_code == 404 and "held by the publish gate" in r.text, r.text


@pytest.mark.parametrize("on_fail", ["hold", "skip"])
def test_a_run_that_fails_the_gate_is_held_or_skipped_and_its_record_says_why(
    bundles: dict[str, Path], shared_datasets: Path, tmp_path: Path, on_fail: str
) -> None:
    d = shared_datasets / "rotten-tomatoes"
    cfg = PipelineConfig.model_validate({
        "data": {"train": str(d / "train.jsonl"), "dev": str(d / "dev.jsonl"),
                 "test": str(d / "test.jsonl"), "max_train_samples": 20, "max_eval_samples": 60},
        "export": {"name": "gate"},
        "publish_gate": {"minimum": 0.99, "on_fail": on_fail},
    })  # fmt: skip
    run = Run(cfg, tmp_path / "run", RunContext())
    run.make("prepare")
    # The export stage, as it leaves its directory: one bundle, selected.
    export = run.layout.export
    export.mkdir(parents=True)
    import shutil

    shutil.copytree(bundles["a"], export / "tiny")
    write_stage_record(export, Stage.EXPORT, 0.0, {"selected": "tiny"})
    repo = tmp_path / "repo"
    published = run.publish(repo)
    gate = run.gate_record()
    assert gate is not None and gate["action"] == on_fail
    why = next(c["detail"] for c in gate["checks"] if c["name"] == "minimum")
    assert "< minimum 0.99" in why
    if on_fail == "hold":
        assert published == ("gate", "v1")
        assert why in (repo / "gate" / "v1" / HELD_FILE).read_text()
    else:
        assert published is None and not (repo / "gate").exists()
    assert run.publish(repo) == published  # resumed: the same answer, nothing published again


def test_a_model_within_the_margin_above_the_majority_rate_is_refused(
    bundles: dict[str, Path], tmp_path: Path
) -> None:
    """Above the majority rate but by no more than the default margin (0.02): refused. The
    constant bundle scores 40/60 = 0.6667 on test; scored against labels whose majority
    rate is 0.65 (13 of 20), it is 0.0167 above it: within the margin."""
    labels = [1] * 13 + [0] * 7
    split = GateSplit(["a text"] * 20, None, labels)
    d = decide(PublishGateConfig(), bundles["constant"], tmp_path / "r", "gate", split)
    assert d.action == "hold" and _status(d, "above_majority") == "failed"
    assert "accuracy on test 0.6667 vs majority-class rate 0.6500 ('positive') + margin 0.02" in (
        d.reason
    )
    # The same bundle against a majority rate 0.03 below its accuracy passes the check.
    split = GateSplit(["a text"] * 100, None, [1] * 63 + [0] * 37)
    d = decide(PublishGateConfig(), bundles["constant"], tmp_path / "r", "gate", split)
    assert _status(d, "above_majority") == "passed" and d.action == "publish"


def test_a_run_that_learned_nothing_is_not_published_as_the_default_with_the_defaults(
    bundles: dict[str, Path],
    splits: dict[str, tuple[list[str], list[int]]],
    shared_datasets: Path,
    tmp_path: Path,
) -> None:
    """A run with the default config (no publish_gate section) whose selected bundle always
    answers the majority label of its test split (the texts it was exported with): published
    held, never the served default, and its publish record and the held marker say why."""
    files = {}
    for split in ("dev", "test"):
        texts, labels = splits[split]
        pairs = zip(texts, labels, strict=True)
        rows = [json.dumps({"text": t, "label": LABELS[y]}) for t, y in pairs]
        files[split] = tmp_path / f"{split}.jsonl"
        files[split].write_text("\n".join(rows) + "\n")
    train = shared_datasets / "rotten-tomatoes" / "train.jsonl"
    cfg = PipelineConfig.model_validate({
        "data": {"train": str(train), "dev": str(files["dev"]), "test": str(files["test"]),
                 "max_train_samples": 20},
        "export": {"name": "gate"},
    })  # fmt: skip
    assert cfg.publish_gate == PublishGateConfig()
    run = Run(cfg, tmp_path / "run", RunContext())
    run.make("prepare")
    export = run.layout.export
    export.mkdir(parents=True)
    import shutil

    shutil.copytree(bundles["constant"], export / "tiny")
    write_stage_record(export, Stage.EXPORT, 0.0, {"selected": "tiny"})
    repo = tmp_path / "repo"
    assert run.publish(repo) == ("gate", "v1")
    gate = run.gate_record()
    assert gate is not None and gate["action"] == "hold"
    why = next(c for c in gate["checks"] if c["name"] == "above_majority")
    assert why["status"] == "failed" and "vs majority-class rate" in why["detail"]
    assert why["detail"] in (repo / "gate" / "v1" / HELD_FILE).read_text()
    assert not any(e.default for e in list_models(repo, "gate"))
