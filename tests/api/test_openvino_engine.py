"""LUGPI_ENGINE=openvino: the fp32 graph on OpenVINO, served through the same batcher,
instances and scores as onnxruntime, and held to the probabilities export recorded.

Bundles: tiny RANDOM-weight BERTs exported by ``training.export.export_student``
(tests/api/conftest.py); the real OpenVINO runtime (the openvino extra) runs them.
"""

from __future__ import annotations

import json
import shutil
import threading
from pathlib import Path

import numpy as np
import pytest

from api.execution import ENGINE_GAIN, Overrides, choose_engine, engines
from api.registry import bundle_samples
from api.settings import usable_cores
from contracts.bundle import FP32_TOLERANCE, MANIFEST, MODEL_FP32, read_manifest
from contracts.repository import publish
from runtime.classifier import open_bundle
from runtime.openvino_engine import PROVIDER
from runtime.session import RuntimeOptions
from tests.api.conftest import MakeClient

OPENVINO = RuntimeOptions(variant="auto", engine="openvino")


def _scores(client: object, body: dict[str, object], labels: list[str]) -> np.ndarray:
    r = client.post("/classify", json=body)  # type: ignore[attr-defined]
    assert r.status_code == 200, r.text
    scores = r.json()["predictions"][0]["scores"]
    return np.array([scores[label] for label in labels])


def test_random_openvino_serves_the_probabilities_export_recorded(
    make_client: MakeClient, random_bundles: dict[str, Path]
) -> None:
    client = make_client(engine="openvino")
    for name, kind in (("sentiment", "single"), ("cwi", "pair")):
        info = client.get(f"/models/{name}").json()["versions"][0]
        assert info["status"] == "loaded", info
        assert (info["provider"], info["variant"]) == (PROVIDER, "fp32")
        manifest = read_manifest(random_bundles[kind])
        assert manifest.export_checks is not None
        for sample in manifest.export_checks.samples:
            body: dict[str, object] = {"texts": [sample.text], "model": name}
            if manifest.text_pair:
                body["text_pairs"] = [sample.text_pair]
            served = _scores(client, body, manifest.labels)
            recorded = np.array(sample.probabilities[MODEL_FP32])
            assert np.abs(served - recorded).max() <= FP32_TOLERANCE, (name, sample.text)
            assert served.argmax() == recorded.argmax()


def test_random_a_version_openvino_disagrees_with_is_refused_and_onnxruntime_still_serves_it(
    make_client: MakeClient, repository: Path, random_bundles: dict[str, Path], tmp_path: Path
) -> None:
    publish(_shifted(random_bundles["single"], tmp_path / "shifted"), repository, "shifted")

    on_openvino = make_client(engine="openvino", api_keys=["k"], admin_keys=["admin"])
    admin = {"X-API-Key": "admin"}
    version = on_openvino.get("/models/shifted", headers=admin).json()["versions"][0]
    assert version["status"] == "failed"
    assert "OpenVINO disagrees" in version["error_detail"]
    assert "LUGPI_ENGINE=onnxruntime" in version["error_detail"]
    good = on_openvino.get("/models/sentiment", headers=admin).json()["versions"][0]
    assert good["status"] == "loaded"  # one refused version costs the others nothing

    on_onnxruntime = make_client()
    r = on_onnxruntime.post("/classify", json={"texts": ["fine"], "model": "shifted"})
    assert r.status_code == 200, r.text


def test_random_openvino_with_the_int8_variant_is_a_clear_load_error(
    make_client: MakeClient,
) -> None:
    client = make_client(engine="openvino", model_variant="int8", api_keys=["k"], admin_keys=["a"])
    version = client.get("/models/sentiment", headers={"X-API-Key": "a"}).json()["versions"][0]
    assert version["status"] == "failed"
    assert "serves the fp32 graph" in version["error_detail"]


def test_random_openvino_instances_each_get_a_session_and_run_at_once(
    random_bundles: dict[str, Path],
) -> None:
    """An OpenVINO session runs one call at a time, so one-thread instances must not share
    one (onnxruntime's do); concurrent calls on them give the serial answers."""
    path = random_bundles["single"]
    manifest = read_manifest(path)
    base = open_bundle(path, manifest, OPENVINO)
    samples = bundle_samples(base, manifest)
    instances, plan = engines(
        base,
        OPENVINO,
        samples,
        cores=2,
        max_batch=8,
        forced=Overrides(instances=2, threads=1, batch_cap=8),
        measure_on=False,
        lone_allowed=False,
    )
    assert (plan.instances, plan.threads) == (2, 1)
    assert instances[0].session is not instances[1].session
    assert all(i.lone_session is i.session for i in instances)
    serial = [instances[0].run_scores([s]).probs[0] for s in samples]
    out: dict[int, list[np.ndarray]] = {}

    def work(k: int) -> None:
        out[k] = [instances[k].run_scores([s]).probs[0] for s in samples * 5]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(2):
        np.testing.assert_allclose(np.array(out[k]), np.array(serial * 5), atol=1e-6)


def test_choose_engine_takes_another_only_where_it_measured_cheaper_by_the_margin() -> None:
    int8 = {1: 2.0, 16: 1.0}
    ov, fp32 = "openvino fp32", "onnxruntime fp32"
    default = "onnxruntime int8"
    assert choose_engine({default: int8, ov: {1: 1.6, 16: 0.9}}, default)[0] == ov
    # Mean ratio (0.95 + 0.95) / 2 = 0.95 > ENGINE_GAIN: noise must not flip the engine.
    assert choose_engine({default: int8, ov: {1: 1.9, 16: 0.95}}, default)[0] == default
    # Cheaper at batch 16 only, dearer at batch 1: the mean decides (0.5 + 1.5) / 2 = 1.0.
    assert choose_engine({default: int8, ov: {1: 3.0, 16: 0.5}}, default)[0] == default
    # Three candidates: the cheapest of those under the margin (fp32 0.8x, OpenVINO 0.85x).
    three = {default: int8, ov: {1: 1.7, 16: 0.85}, fp32: {1: 1.6, 16: 0.8}}
    chosen, why = choose_engine(three, default)
    assert chosen == fp32 and why.startswith(f"engine {fp32}:")
    assert "onnxruntime fp32 0.80x" in why and "openvino fp32 0.85x" in why
    three[fp32] = {1: 1.9, 16: 0.95}  # fp32 now within the margin: OpenVINO, still under it
    assert choose_engine(three, default)[0] == ov
    engine, why = choose_engine({default: int8}, default)
    assert engine == default and "no other engine measured" in why
    assert ENGINE_GAIN < 1.0


def _shifted(bundle: Path, out: Path) -> Path:
    """A copy of ``bundle`` whose recorded fp32 probabilities moved by 0.01 (bundle.json's
    own bytes are not hashed): what a graph OpenVINO runs differently would look like."""
    shutil.copytree(bundle, out)
    raw = json.loads((out / MANIFEST).read_text())
    for sample in raw["export_checks"]["samples"]:
        probs = sample["probabilities"][MODEL_FP32]
        probs[0], probs[1] = probs[0] + 0.01, probs[1] - 0.01
    (out / MANIFEST).write_text(json.dumps(raw))
    return out


def test_random_auto_engine_says_which_engine_and_serves_on_it(
    make_client: MakeClient, repository: Path, random_bundles: dict[str, Path], tmp_path: Path
) -> None:
    publish(_shifted(random_bundles["single"], tmp_path / "shifted"), repository, "shifted")
    client = make_client(engine="auto")
    for name in ("sentiment", "cwi"):
        info = client.get(f"/models/{name}").json()["versions"][0]
        first = info["execution"]["why"][0]
        assert first.startswith("engine "), first
        on_openvino = first.startswith("engine openvino fp32")
        on_fp32 = on_openvino or first.startswith("engine onnxruntime fp32")
        assert on_fp32 or first.startswith("engine onnxruntime int8"), first
        assert (info["provider"] == PROVIDER) == on_openvino, (info["provider"], first)
        assert info["variant"] == ("fp32" if on_fp32 else "int8")
        # Every candidate measured: onnxruntime int8 against its fp32 graph and OpenVINO.
        assert "onnxruntime fp32 " in first and "openvino fp32 " in first, first
    shifted = client.get("/models/shifted").json()["versions"][0]
    assert shifted["status"] == "loaded" and shifted["provider"] != PROVIDER
    assert "OpenVINO refused" in shifted["execution"]["why"][0]
    # OpenVINO refused, onnxruntime's two graphs still weighed against each other.
    assert "onnxruntime fp32 " in shifted["execution"]["why"][0]
    r = client.post("/classify", json={"texts": ["fine"], "model": "shifted"})
    assert r.status_code == 200, r.text


def test_random_auto_engine_serves_the_fp32_graph_where_it_measured_cheapest(
    make_client: MakeClient, random_bundles: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The wiring from the choice to what serves: the measurement's figures are fixed here
    (onnxruntime fp32 0.7x int8, OpenVINO dearer), since which graph is cheaper depends on
    the CPU (docs/environment.md); every call after it is real. The version then runs every
    instance on model.onnx and answers what export recorded for that graph."""
    table = {
        "onnxruntime int8": {1: 2.0, 16: 1.0},
        "onnxruntime fp32": {1: 1.4, 16: 0.7},
        "openvino fp32": {1: 3.0, 16: 1.5},
    }
    measured: list[set[str]] = []

    def fixed(samples: object, calls: dict[str, object]) -> dict[str, dict[int, float]]:
        measured.append(set(calls))
        return {name: table[name] for name in calls}

    monkeypatch.setattr("api.registry.measure_engines", fixed)
    client = make_client(engine="auto")
    registry = client.app.state.registry  # type: ignore[attr-defined]
    assert {"onnxruntime int8", "onnxruntime fp32"} <= measured[0]
    info = client.get("/models/sentiment").json()["versions"][0]
    first = info["execution"]["why"][0]
    assert first.startswith("engine onnxruntime fp32:"), first
    assert (info["variant"], info["provider"]) == ("fp32", "CPUExecutionProvider")
    loaded = registry.resolve("sentiment", None)
    graphs = {i.model_file.name for i in loaded.batcher.instances}
    assert graphs == {MODEL_FP32}, graphs
    manifest = read_manifest(random_bundles["single"])
    assert manifest.export_checks is not None
    for sample in manifest.export_checks.samples:
        served = _scores(client, {"texts": [sample.text], "model": "sentiment"}, manifest.labels)
        recorded = np.array(sample.probabilities[MODEL_FP32])
        assert np.abs(served - recorded).max() <= FP32_TOLERANCE, sample.text


def test_random_auto_engine_keeps_a_pinned_variant(make_client: MakeClient) -> None:
    """LUGPI_MODEL_VARIANT=int8 with LUGPI_ENGINE=auto: the fp32 graph is no candidate, and
    OpenVINO (fp32 only) refuses; the version runs int8 on onnxruntime and says why."""
    client = make_client(engine="auto", model_variant="int8")
    info = client.get("/models/sentiment").json()["versions"][0]
    first = info["execution"]["why"][0]
    assert info["variant"] == "int8" and info["provider"] != PROVIDER
    assert first.startswith("engine onnxruntime int8") and "OpenVINO refused" in first, first
    assert "onnxruntime fp32" not in first


def test_random_openvino_lone_requests_are_weighed_for_a_session_of_every_core(
    make_client: MakeClient,
) -> None:
    """With one-thread instances (the plan on most 2-core machines) a lone request ran on
    one core under OpenVINO whatever the measurement said, since the lone session was
    taken for an onnxruntime spinning switch: on 2 quiet AVX2 cores its batch-1 call took
    14.8 ms on one thread and 8.4 ms on two. The plan now weighs a session of every core
    for lone requests, as it does for onnxruntime, and says what it chose."""
    if usable_cores() < 2:
        pytest.skip("one usable core: no session of every core to weigh")
    client = make_client(engine="openvino")  # one intra-op thread per instance (fixture)
    info = client.get("/models/sentiment").json()["versions"][0]
    assert info["provider"] == PROVIDER
    lone = [w for w in info["execution"]["why"] if w.startswith("lone requests")]
    assert len(lone) == 1, info["execution"]["why"]
    r = client.post("/classify", json={"texts": ["fine"], "model": "sentiment"})
    assert r.status_code == 200, r.text
