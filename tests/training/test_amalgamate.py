"""The StrataNet mode: the shared weighting module, bad input named by teacher or field,
the job checks, and the CLI end to end (bundle -> runtime/ -> union labels).

Teachers here are tiny random-init BERTs trained here for a few epochs on two classes each
(tests/support/strata_fixture.py); the generator is the shared tiny masked LM trained here
(conftest ``tiny_text_generator``). Whether the mode *works* is
tests/training/test_amalgamate_works.py.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from fastapi.exceptions import RequestValidationError
from support.strata_fixture import (
    TEACHER_CLASSES,
    foreign_vocabulary_teacher,
    held_out,
    seed_file,
    teacher_data,
    write_jsonl,
)
from typer.testing import CliRunner

from api.job_checks import check_job_config
from api.settings import ApiSettings
from contracts.bundle import verify_bundle
from contracts.config import PipelineConfig, parse_config
from contracts.errors import ConfigError, DataError, ModelLoadError
from runtime.classifier import open_bundle
from runtime.session import RuntimeOptions
from training.cli import app
from training.lugpi.distill import train_baseline
from training.strata.blocks import BlockTransfer, layer_map
from training.strata.mode import distinct_ngrams, load_generation, run_generation
from training.strata.rmd import fit_rmd, layer_confidences, p_values
from training.students.losses import teacher_weights as lugpi_teacher_weights
from training.students.teacher_weighting import (
    block_gates,
    rmd_confidence,
    strata_weights,
    teacher_weights,
    weights_from_confidence,
)
from training.tracking.progress import RunContext


# -- the weighting module -------------------------------------------------------------------
def test_distill_combine_modes_are_the_shared_module_and_unchanged() -> None:
    logits = torch.tensor([[[2.0, 0.0], [0.0, 0.0]], [[0.0, 0.0], [0.0, 3.0]]])  # (M=2, B=2, K)
    w = lugpi_teacher_weights(logits, "confidence")
    m = torch.softmax(logits, -1).amax(-1)
    assert torch.allclose(w, m / m.sum(0, keepdim=True))  # the formula distill always had
    assert torch.allclose(w, teacher_weights(logits, "max_prob"))
    assert torch.allclose(lugpi_teacher_weights(logits, "mean"), torch.full((2, 2), 0.5))


def test_chance_correction_compares_teachers_of_different_label_counts() -> None:
    # A 2-class teacher at 0.5 knows nothing; a 10-class one at 0.5 knows a lot.
    conf = torch.tensor([[0.5], [0.5]])
    w = weights_from_confidence(conf, normalise="chance", num_classes=[2, 10], sharpness=1.0)
    assert w[1, 0] > 0.99 and torch.allclose(w.sum(0), torch.ones(1))
    sharp = weights_from_confidence(
        torch.tensor([[0.9], [0.7]]), normalise="chance", num_classes=[2, 2], sharpness=4.0
    )
    flat = weights_from_confidence(
        torch.tensor([[0.9], [0.7]]), normalise="chance", num_classes=[2, 2], sharpness=1.0
    )
    assert sharp[0, 0] > flat[0, 0] > 0.5


def _gaussian_teacher(
    rng: np.random.Generator, n: int, dim: int, shift: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """States of ``n`` texts of two classes (class means +-2 on the first dimension),
    moved by ``shift`` on the next eight: (states, classes)."""
    y = np.arange(n) % 2
    x = rng.normal(size=(n, dim))
    x[:, 0] += np.where(y == 0, -2.0, 2.0)
    x[:, 1:9] += shift
    return x, y


def test_rmd_confidence_is_scored_by_fits_that_never_saw_the_text() -> None:
    # 48 dimensions, 60 own texts: a fit that saw a text would find it closer than a fresh
    # text of the same distribution. Texts of the same distribution not marked "own" must
    # score like the own ones (about uniform p-values), texts from elsewhere near 0.
    rng = np.random.default_rng(0)
    own_x, own_y = _gaussian_teacher(rng, 60, 48)
    twin_x, _ = _gaussian_teacher(rng, 60, 48)
    far_x, _ = _gaussian_teacher(rng, 60, 48, shift=3.0)
    x = np.concatenate([own_x, twin_x, far_x])
    own = np.arange(len(x)) < 60
    labels = np.concatenate([own_y, np.zeros(120, np.int64)])
    (fitted,) = layer_confidences({3: x}, own, labels, 2, folds=2, seed=0)
    conf = fitted.confidence
    assert 0.4 < conf[:60].mean() < 0.6  # conformal: about uniform on the own texts
    assert 0.35 < conf[60:120].mean() < 0.65, conf[60:120].mean()  # fresh twins alike
    assert conf[120:].mean() < 0.1
    # In-sample fitting (the defect this replaces) would rank the fresh twins below the
    # own texts: a fit on every own text, calibrated on the same texts.
    g = fit_rmd(own_x, own_y, 2, x)
    leaked = p_values(g.distances(own_x), g.distances(twin_x))
    assert leaked.mean() < conf[60:120].mean() - 0.1


def test_layer_reliability_and_the_self_regulating_rule() -> None:
    rng = np.random.default_rng(1)
    informative, y = _gaussian_teacher(rng, 80, 8)
    noise = rng.normal(size=(80, 8))  # carries no class
    own = np.ones(80, dtype=bool)
    by_layer = {f.layer: f for f in layer_confidences({1: noise, 2: informative}, own, y, 2)}
    assert by_layer[1].reliability < 0.3 < 0.9 < by_layer[2].reliability
    # The rule: layers weigh by reliability; an unreliable layer has no say; none
    # reliable -> the plain mean.
    layer_conf = torch.tensor([[0.9, 0.1], [0.2, 0.8]])
    assert torch.allclose(
        rmd_confidence(layer_conf, torch.tensor([0.0, 1.0])), torch.tensor([0.2, 0.8])
    )
    assert torch.allclose(
        rmd_confidence(layer_conf, torch.tensor([0.0, 0.0])), torch.tensor([0.55, 0.45])
    )
    mixed = rmd_confidence(layer_conf, torch.tensor([0.25, 0.75]))
    assert torch.allclose(mixed, torch.tensor([0.375, 0.625]))


def test_weighting_modes_in_the_one_module() -> None:
    probs = [torch.tensor([[0.99, 0.01], [0.6, 0.4]]), torch.tensor([[0.7, 0.3], [0.9, 0.1]])]
    w = strata_weights("owner", probs, owner=torch.tensor([1, 0]))
    assert torch.equal(w, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))
    assert torch.allclose(strata_weights("mean", probs), torch.full((2, 2), 0.5))
    # max_prob: chance-corrected, and not sharpened by default (0.98 : 0.4 stays 0.98 : 0.4)
    w = strata_weights("max_prob", probs)
    assert torch.allclose(w[:, 0], torch.tensor([0.98, 0.4]) / 1.38, atol=1e-3)
    conf = [torch.tensor([[0.9, 0.001]]), torch.tensor([[0.001, 0.001]])]
    w = strata_weights("rmd", probs, layer_confidence=conf, reliability=[torch.ones(1)] * 2)
    assert w[0, 0] > 0.99  # only teacher 0 finds text 0 its own
    assert torch.allclose(w[:, 1], torch.tensor([0.5, 0.5]), atol=0.01)  # nobody's: equal
    with pytest.raises(ValueError, match="owner"):
        strata_weights("owner", probs)
    g = block_gates([torch.tensor([[0.9], [0.1]]), torch.tensor([[0.3], [0.1]])])
    assert g.shape == (2, 2, 1) and torch.allclose(g.sum(0), torch.ones(2, 1))
    assert abs(float(g[0, 0, 0]) - 0.75) < 1e-3


def test_block_transfer_maps_layers_and_gates_each_teacher() -> None:
    assert layer_map(2, 2) == [1, 2]
    assert layer_map(2, 6) == [3, 6]  # a deeper teacher: the last block meets its last
    assert layer_map(4, 2) == [1, 1, 2, 2]
    torch.manual_seed(0)
    n, width = 6, 4
    states = [torch.randn(n, 2, 3), torch.randn(n, 2, 4)]  # teacher 0 is wider: projected
    gates = torch.zeros(2, 2, n)
    gates[0, :, :3] = 1.0  # teacher 0 on rows 0-2, teacher 1 on rows 3-5
    gates[1, :, 3:] = 1.0
    term = BlockTransfer(width, states, gates, weight=1.0)
    assert isinstance(term.proj[0][0], torch.nn.Linear)  # type: ignore[index]
    hidden = [torch.randn(3, 5, width, requires_grad=True) for _ in range(3)]
    mask = torch.ones(3, 5)
    rows = np.array([0, 1, 2])
    loss = term(hidden, mask, rows)
    loss.backward()
    assert float(loss.detach()) > 0 and hidden[2].grad is not None
    # Teacher 1 is gated off rows 0-2: its targets there do not count.
    other = BlockTransfer(width, [states[0], torch.randn(n, 2, 4) * 100], gates, weight=1.0)
    other.load_state_dict(term.state_dict())
    assert torch.allclose(other(hidden, mask, rows), loss)
    with pytest.raises(ValueError, match="blocks"):
        term(hidden[:2], mask, rows)


def test_distinct_ngrams() -> None:
    assert distinct_ngrams(["a b c", "a b c"], 2) == 0.5
    assert distinct_ngrams(["a b", "c d"], 1) == 1.0


# -- fixtures: two tiny teachers -----------------------------------------------------------
@pytest.fixture(scope="module")
def teachers(tmp_path_factory: pytest.TempPathFactory, tiny_text_model: Path) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("strata-teachers")
    out = {}
    for name in TEACHER_CLASSES:
        cfg = parse_config(
            {
                "device": "cpu",
                "data": {"train": "synthetic"},
                "student": {"text_model": str(tiny_text_model), "max_length": 16, "epochs": 20,
                            "learning_rate": 3e-3, "batch_size": 16},
            }
        )  # fmt: skip
        data = teacher_data(name, 0, n_train=80, n_dev=20)
        out[name] = train_baseline(cfg, data, root / f"teacher-{name}", RunContext())
    return out


def _raw(
    trained: dict[str, Path], text_model: Path, generator: Path, seeds: Path, **amalgamate: object
) -> dict[str, object]:
    return {
        "name": "strata",
        "device": "cpu",
        "student": {"text_model": str(text_model), "max_length": 16, "epochs": 1,
                    "batch_size": 16, "learning_rate": 3e-3},
        "distill": {"alpha": 1.0, "beta": 1.0, "tau": 1.0},
        "text_generator": {"model": str(generator), "batch_size": 64},
        "export": {"name": "strata-student", "require_int8": False},
        "strata": {
            "enabled": True,
            "seed_texts": str(seeds),
            "teachers": [{"name": n, "model": str(d), "max_length": 16}
                         for n, d in trained.items()],
            "steering": {"rounds": 1, "per_class": 8, "seeds_per_class": 4, "draws_per_seed": 2,
                         "seed_pool": 60},
            **amalgamate,
        },
    }  # fmt: skip


def _gen(cfg: PipelineConfig, tmp: Path) -> Path:
    return run_generation(cfg, tmp / "strata", RunContext(), text_cache=tmp / "cache")


# -- bad input ------------------------------------------------------------------------------
def test_bad_teachers_are_named(
    tmp_path: Path, teachers: dict[str, Path], tiny_text_model: Path, tiny_text_generator: Path
) -> None:
    seeds = seed_file(tmp_path / "seeds.txt", n=60)

    def cfg(**kw: object) -> PipelineConfig:
        return parse_config(_raw(teachers, tiny_text_model, tiny_text_generator, seeds, **kw))

    missing = {"name": "ghost", "model": str(tmp_path / "nowhere")}
    with pytest.raises(ModelLoadError, match=r"'ghost'.*not a directory"):
        _gen(cfg(teachers=[missing]), tmp_path)
    not_a_model = tmp_path / "empty-dir"
    not_a_model.mkdir()
    with pytest.raises(ModelLoadError, match=r"'broken'.*cannot load a sequence classifier"):
        _gen(cfg(teachers=[{"name": "broken", "model": str(not_a_model)}]), tmp_path)
    # A run directory whose export never finished.
    run_dir = tmp_path / "unfinished-run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("name: x\n")
    with pytest.raises(ModelLoadError, match=r"'half'.*without a finished export"):
        _gen(cfg(teachers=[{"name": "half", "model": str(run_dir)}]), tmp_path)

    # The same teacher twice under two names: one label set, spelled alike -> shared
    # classes, fine; the same classes spelled differently -> a conflict naming both.
    shouting = tmp_path / "shouting"
    import shutil

    shutil.copytree(teachers["left"], shouting)
    meta = json.loads((shouting / "lugpi.json").read_text())
    meta["labels"] = [x.upper() for x in meta["labels"]]
    (shouting / "lugpi.json").write_text(json.dumps(meta))
    both = [
        {"name": "left", "model": str(teachers["left"])},
        {"name": "loud", "model": str(shouting)},
    ]
    with pytest.raises(
        ConfigError, match=r"label names conflict: teacher 'left' has 'north'.*'loud'"
    ):
        _gen(cfg(teachers=both), tmp_path)

    with pytest.raises(ConfigError, match=r"'left'.prompts: labels \['nowhere'\]"):
        left = {"name": "left", "model": str(teachers["left"]), "prompts": {"nowhere": ["x"]}}
        _gen(cfg(teachers=[left]), tmp_path)

    # A tokenizer that cannot read the generator's language.
    with pytest.raises(ConfigError, match=r"'left'.*conflicting tokenizer"):
        alien = tmp_path / "alien.txt"
        alien.write_text("\n".join(["🦄🐙 🎉🎈 🦊🐢 the"] * 20))
        _gen(cfg(seed_texts=str(alien)), tmp_path)


def test_empty_classes_fail_by_name_or_continue(
    tmp_path: Path, teachers: dict[str, Path], tiny_text_model: Path, tiny_text_generator: Path
) -> None:
    seeds = seed_file(tmp_path / "seeds.txt", n=60)
    raw = _raw(teachers, tiny_text_model, tiny_text_generator, seeds)
    raw["strata"]["steering"]["min_confidence"] = 0.999999  # type: ignore[index]
    with pytest.raises(DataError, match="teacher 'left' accepted no generated text for class"):
        _gen(parse_config(raw), tmp_path / "fail")
    raw["strata"]["on_empty_class"] = "continue"  # type: ignore[index]
    with pytest.raises(DataError, match="no generated text was accepted for any teacher"):
        _gen(parse_config(raw), tmp_path / "continue")


def test_learned_steering_records_every_arm_at_one_budget_and_falls_back_by_name(
    tmp_path: Path,
    teachers: dict[str, Path],
    tiny_text_model: Path,
    tiny_text_generator: Path,
    tiny_latent_generator: Path,
) -> None:
    """The stage record of learned steering with ``compare``: per teacher the steering
    report of the learned arm, its unsteered control and reseeding at one filter (the
    learned run's bar) and one budget per class; a teacher on another vocabulary than the
    latent generator's is steered by reseeding, and the record says why, naming the
    settings."""
    foreign = foreign_vocabulary_teacher(tmp_path / "foreign")
    raw = _raw(teachers, tiny_text_model, tiny_text_generator, seed_file(tmp_path / "s.txt", n=60))
    a = raw["strata"]
    a["teachers"] = [a["teachers"][0], {"name": "foreign", "model": str(foreign)}]  # type: ignore[index]
    a["steering"].update(method="learned", compare=True, learned_steps=3)  # type: ignore[index]
    a["on_empty_class"] = "continue"  # type: ignore[index]
    raw["tgt"] = {"latent_model": str(tiny_latent_generator)}
    summary = load_generation(_gen(parse_config(raw), tmp_path))[1]
    assert summary["steering_method"] == "learned"
    left = summary["teachers"]["left"]
    assert left["steering_method"] == "learned" and "steering_fallback" not in left
    report = left["steering_report"]
    assert set(report["arms"]) == {"learned", "unsteered", "reseed"}
    budget = sum(report["budget_per_class"].values())
    assert budget > 0
    assert report["thresholds"] == left["thresholds"]  # one filter: the learned run's bar
    for arm in report["arms"].values():
        assert arm["decoded"] == budget  # one budget
        assert set(arm["accepted_per_class"]) == {"north", "south"}
        assert {"mean_class_confidence", "distinct_2", "embedding_spread"} <= set(arm)
    assert set(left["learning"]) == {"north", "south"}
    other = summary["teachers"]["foreign"]
    assert other["steering_method"] == "reseed"
    assert "strata.steering.method 'learned'" in other["steering_fallback"]
    assert "tgt.latent_model" in other["steering_fallback"]
    assert "not in the model's" in other["steering_vocabulary"]
    assert "steering_report" not in other  # reseeding alone: nothing to compare


def test_cli_runs_learned_steering_from_the_config(
    tmp_path: Path,
    teachers: dict[str, Path],
    tiny_text_model: Path,
    tiny_text_generator: Path,
    tiny_latent_generator: Path,
) -> None:
    """``lugpi strata CONFIG --set strata.steering.method=learned``: the stage record and
    the student's say which steering ran, and the report compares the arms. Without
    data.dev/test (data-free, nothing to evaluate): this failed at export, which wrote
    the score-temperature section into evaluate/results.md when no evaluate stage ran."""
    import yaml

    raw = _raw(teachers, tiny_text_model, tiny_text_generator, seed_file(tmp_path / "s.txt", n=60))
    raw["strata"]["steering"]["learned_steps"] = 2  # type: ignore[index]
    raw["strata"]["on_empty_class"] = "continue"  # type: ignore[index]
    raw["tgt"] = {"latent_model": str(tiny_latent_generator)}
    config = tmp_path / "strata.yaml"
    config.write_text(yaml.safe_dump(raw))
    run_dir = tmp_path / "run"
    sets = ["--set", "strata.steering.method=learned", "--set", "strata.steering.compare=true"]
    result = CliRunner().invoke(
        app, ["strata", str(config), *sets, "--run-dir", str(run_dir), "-q"]
    )
    assert result.exit_code == 0, result.output
    summary = json.loads((run_dir / "strata" / "stage.json").read_text())["summary"]
    assert summary["steering_method"] == "learned"
    arms = summary["teachers"]["left"]["steering_report"]["arms"]
    assert set(arms) == {"learned", "unsteered", "reseed"}
    strata = json.loads((run_dir / "student-strata" / "lugpi.json").read_text())["strata"]
    assert strata["steering_method"] == "learned"


def test_learned_steering_config_and_job_checks(tmp_path: Path) -> None:
    teacher = [{"name": "t", "model": "runs/job1"}]
    off = {"enabled": False, "method": "learned"}
    with pytest.raises(ConfigError, match=r"strata.steering.enabled is false.*'learned'"):
        parse_config({"strata": {"enabled": True, "teachers": teacher, "steering": off}})
    with pytest.raises(ConfigError, match=r"strata.steering.method"):
        parse_config({"strata": {"enabled": True, "teachers": teacher,
                                 "steering": {"method": "gradient"}}})  # fmt: skip
    artifacts = tmp_path / "artifacts"
    (artifacts / "runs" / "job1").mkdir(parents=True)
    (tmp_path / "data").mkdir()
    settings = ApiSettings(
        data_roots=[tmp_path / "data"], artifacts_dir=artifacts, allowed_models=[]
    )
    body: dict[str, Any] = {
        "student": {"text_model": "all-minilm-l6-v2"},
        "text_generator": {"model": "tiny-bbc-masked"},
        "tgt": {"latent_model": "someone/seq2seq"},
        "strata": {"enabled": True, "teachers": teacher, "steering": {"method": "learned"}},
    }
    # Learned steering loads tgt.latent_model: it goes through the allow-list.
    with pytest.raises(RequestValidationError) as e:
        check_job_config(PipelineConfig.model_validate(body), settings)
    assert [err["loc"] for err in e.value.errors()] == [("body", "tgt", "latent_model")]
    body["tgt"]["latent_model"] = "tiny-bbc-seq2seq"
    check_job_config(PipelineConfig.model_validate(body), settings)
    # Reseeding without compare never loads it.
    body["tgt"]["latent_model"] = "someone/seq2seq"
    body["strata"]["steering"] = {"method": "reseed"}
    check_job_config(PipelineConfig.model_validate(body), settings)


def test_config_refuses_an_empty_or_ambiguous_teacher_list() -> None:
    with pytest.raises(ConfigError, match="at least one teacher"):
        parse_config({"strata": {"enabled": True}})
    twice = [{"name": "a", "model": "x"}, {"name": "a", "model": "y"}]
    with pytest.raises(ConfigError, match="unique"):
        parse_config({"strata": {"enabled": True, "teachers": twice}})
    with pytest.raises(ConfigError, match=r"data.train"):
        parse_config({})  # the LUGPI mode still needs its data


def test_the_old_amalgamate_key_answers_with_its_new_name() -> None:
    # The data-free mode was 'amalgamate', a word the LUGPI multi-teacher student
    # (distill.students: amalgamated) also used; it is 'strata' now.
    with pytest.raises(ConfigError, match=r"amalgamate.*renamed.*strata"):
        parse_config({"amalgamate": {"enabled": True}})


def test_jobs_may_name_teachers_under_the_artifacts_root_only(tmp_path: Path) -> None:
    artifacts = tmp_path / "artifacts"
    inside = artifacts / "runs" / "job1"
    inside.mkdir(parents=True)
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    (tmp_path / "data").mkdir()
    settings = ApiSettings(
        data_roots=[tmp_path / "data"], artifacts_dir=artifacts, allowed_models=[]
    )
    body = {
        "student": {"text_model": "all-minilm-l6-v2"},
        "text_generator": {"model": "tiny-bbc-masked"},
        "strata": {
            "enabled": True,
            "teachers": [
                {"name": "ok", "model": "runs/job1"},
                {"name": "bad", "model": str(outside)},
                {"name": "hub", "model": "someone/classifier"},
            ],
        },
    }
    with pytest.raises(RequestValidationError) as e:
        check_job_config(PipelineConfig.model_validate(body), settings)
    locs = [err["loc"] for err in e.value.errors()]
    assert locs == [
        ("body", "strata", "teachers", 1, "model"),
        ("body", "strata", "teachers", 2, "model"),
    ]
    body["strata"]["teachers"] = body["strata"]["teachers"][:1]  # type: ignore[index]
    checked = check_job_config(PipelineConfig.model_validate(body), settings)
    assert checked.strata.teachers[0].model == str(inside.resolve())


# -- end to end -----------------------------------------------------------------------------
def test_cli_amalgamate_exports_a_bundle_runtime_serves_with_union_labels(
    tmp_path: Path, teachers: dict[str, Path], tiny_text_model: Path, tiny_text_generator: Path
) -> None:
    seeds = seed_file(tmp_path / "seeds.txt", n=60)
    raw = _raw(teachers, tiny_text_model, tiny_text_generator, seeds)
    raw["data"] = {"test": str(write_jsonl(tmp_path / "test.jsonl", held_out(0, 40)))}
    raw["strata"]["enabled"] = False  # type: ignore[index]  # the command turns it on
    raw["strata"]["steering"]["rounds"] = 2  # type: ignore[index]
    raw["tracking"] = {"mlflow": True}  # tracked like every other mode (a local store)
    config = tmp_path / "strata.yaml"
    import yaml

    config.write_text(yaml.safe_dump(raw))
    run_dir, repo = tmp_path / "run", tmp_path / "repo"
    args = ["strata", str(config), "--run-dir", str(run_dir), "--repository", str(repo), "-q"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "published: strata-student v1" in result.output
    manifest = verify_bundle(repo / "strata-student" / "v1")
    assert manifest.labels == ["north", "south", "east", "west"]
    provenance = manifest.provenance
    assert [t.split(":")[0] for t in provenance.teachers] == ["left", "right"]
    assert "student" in manifest.metrics and "teacher-left" in manifest.metrics
    clf = open_bundle(
        repo / "strata-student" / "v1", manifest, RuntimeOptions(device="cpu", intra_op_threads=1)
    )
    probs = clf.predict_proba(["the cloud of a horse", "apple and the river"])
    assert probs.shape == (2, 4)
    summary = json.loads((run_dir / "strata" / "stage.json").read_text())["summary"]
    # The default: RMD weights and the block-wise transfer, each 2-layer teacher mapped
    # onto the 2-block student, the block term trained beside the output-level one.
    strata = json.loads((run_dir / "student-strata" / "lugpi.json").read_text())["strata"]
    assert (strata["weighting"], strata["transfer"]) == ("rmd", "blocks")
    assert strata["layer_map"] == {"left": [1, 2], "right": [1, 2]}
    steps = json.loads((run_dir / "student-strata" / "history.json").read_text())["steps"]
    assert all(step["block"] > 0 for step in steps)
    assert (provenance.model_extra or {}).get("transfer") == "blocks"
    assert summary["union_labels"] == ["north", "south", "east", "west"]
    assert summary["teachers"]["left"]["kept_stats"]["texts"] > 0
    tracked = json.loads((run_dir / "mlflow.json").read_text())["logged"]
    assert {"strata", "student-strata", "evaluate", "export"} <= set(tracked)
    # A rerun resumes: every stage is complete, nothing is generated again.
    again = CliRunner().invoke(app, args)
    assert again.exit_code == 0, again.output
    assert "published: strata-student v1" in again.output
