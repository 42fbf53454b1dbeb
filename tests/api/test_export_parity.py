"""Export checks what the server serves: the probabilities export recorded in bundle.json
for its sample dev texts are what ``POST /classify`` returns for the same texts.

Bundles: tiny RANDOM-weight BERTs exported by ``training.export.export_student``
(tests/api/conftest.py), served by the real app over its real onnxruntime sessions.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from contracts.bundle import MODEL_FP32, MODEL_INT8, read_manifest
from tests.api.conftest import MakeClient


@pytest.mark.parametrize("variant", ["fp32", "int8"])
def test_random_export_recorded_probabilities_equal_the_servers(
    make_client: MakeClient, random_bundles: dict[str, Path], variant: str
) -> None:
    client = make_client(model_variant=variant)
    graph = MODEL_INT8 if variant == "int8" else MODEL_FP32
    for name, kind in (("sentiment", "single"), ("cwi", "pair")):
        manifest = read_manifest(random_bundles[kind])
        assert manifest.export_checks is not None
        samples = manifest.export_checks.samples
        assert len(samples) == 8
        for sample in samples:
            body: dict[str, object] = {"texts": [sample.text], "model": name}
            if manifest.text_pair:
                assert sample.text_pair is not None
                body["text_pairs"] = [sample.text_pair]
            r = client.post("/classify", json=body)
            assert r.status_code == 200, r.text
            scores = r.json()["predictions"][0]["scores"]
            served = np.array([scores[label] for label in manifest.labels])
            recorded = np.array(sample.probabilities[graph])
            assert np.abs(served - recorded).max() <= 1e-6, (name, sample.text)
