"""Fixtures for the API tests: real bundles exported from tiny RANDOM-weight models.

Nothing here is pretrained: predictions are meaningless, but every file is what a real
export writes (training.export.export_student), so the API is tested on real bundles
with real onnxruntime sessions. Fixtures may import torch; the api package may not.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from api.main import create_app
from api.settings import ApiSettings
from contracts.artifacts import STUDENT_META, TextModelMeta
from contracts.repository import publish

SINGLE_LABELS = ["negative", "neutral", "positive"]
PAIR_LABELS = ["complex", "simple"]
MAX_LENGTH = 24  # short, so that tests can truncate a text cheaply
DEV_TEXTS = [
    "a gripping and beautifully shot film",
    "dull",
    "the plot never quite comes together, but the acting is superb throughout",
    "I would not watch it again",
    "an instant classic",
    "the teenage girl shot dead in Bellaghy was 18",
    "the weather was fine",
    "nothing happened for two hours and then it ended",
]
DEV_PAIRS = ["film", "dull", "plot", "watch", "classic", "Bellaghy", "weather", "hours"]


def make_random_student(
    tiny_text_model: Path, out: Path, labels: list[str], text_pair: bool
) -> Path:
    """A student dir (save_pretrained + tokenizer + lugpi.json) with a RANDOM head.

    The head's weights are scaled up so that the random probabilities are far from uniform:
    export's int8-vs-PyTorch argmax check is then meaningful instead of a coin toss.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_text_model,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_text_model).save_pretrained(out)
    meta = TextModelMeta(
        kind="student",
        labels=labels,
        max_length=MAX_LENGTH,
        text_pair=text_pair,
        base_model="tiny-random",
    )
    (out / STUDENT_META).write_text(meta.model_dump_json())
    return out


def export_random_bundle(tiny_text_model: Path, root: Path, name: str, text_pair: bool) -> Path:
    from training.export.bundle import export_student

    labels = PAIR_LABELS if text_pair else SINGLE_LABELS
    student = make_random_student(tiny_text_model, root / f"{name}-student", labels, text_pair)
    return export_student(
        student,
        root / f"{name}-bundle",
        DEV_TEXTS,
        DEV_PAIRS if text_pair else None,
        None,
        name=name,
        with_transformers=False,
    )


@pytest.fixture(scope="session")
def random_bundles(
    tiny_text_model: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Path]:
    """{"single": a 3-label single-text bundle, "pair": a 2-label text-pair bundle}."""
    root = tmp_path_factory.mktemp("random-bundles")
    return {
        "single": export_random_bundle(tiny_text_model, root, "sentiment", text_pair=False),
        "pair": export_random_bundle(tiny_text_model, root, "cwi", text_pair=True),
    }


@pytest.fixture
def repository(tmp_path: Path, random_bundles: dict[str, Path]) -> Path:
    """A model repository with sentiment/v1 (single texts) and cwi/v1 (text pairs)."""
    repo = tmp_path / "repo"
    repo.mkdir()
    publish(random_bundles["single"], repo, "sentiment")
    publish(random_bundles["pair"], repo, "cwi")
    return repo


MakeClient = Callable[..., TestClient]


@pytest.fixture
def make_client(repository: Path) -> Iterator[MakeClient]:
    """Build an app on ``repository`` (settings overridable) and run its lifespan."""
    started: list[TestClient] = []

    def make(**overrides: object) -> TestClient:
        fields: dict[str, object] = {
            "model_repository": repository,
            "poll_interval_s": 0,
            "intra_op_threads": 1,
        }
        fields.update(overrides)
        client = TestClient(create_app(ApiSettings(**fields)))  # type: ignore[arg-type]
        client.__enter__()
        started.append(client)
        return client

    yield make
    for client in started:
        client.__exit__(None, None, None)


@pytest.fixture
def client(make_client: MakeClient) -> TestClient:
    return make_client()
