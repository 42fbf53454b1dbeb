"""The tiny latent generator the tests train (issue 24): the built-in architecture, small
(hidden 64, 2,000 pieces, 160 steps, about 30 s on one thread), on the BBC News training
sentences of up to 16 words. Trained once per test session (tests/conftest.py
``tiny_latent_generator``), cached by content like the built-in one."""

from __future__ import annotations

from pathlib import Path

from training.tgt.latent_generator import TrainSettings, bbc_corpus_split, latent_generator_dir

SETTINGS = TrainSettings(
    steps=160, batch_size=16, learning_rate=6e-3, vocab_size=2000, hidden_size=64, max_length=24
)
MAX_WORDS = 16


def train_fixture_latent_generator(cache: Path) -> Path:
    """The trained generator's directory (``cache/_latent_generators/<key>``)."""
    return latent_generator_dir(cache, bbc_corpus_split(MAX_WORDS)[0], SETTINGS)
