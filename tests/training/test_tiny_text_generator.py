"""The tiny masked/causal LM (training/generation/tiny_text_generator.py) is the same in
every process: its vocabulary must not depend on the order a fast tokenizer's
``get_vocab()`` happens to return (a Rust hash map's, which changes per process)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

_VOCAB = """
import hashlib, json
from transformers import AutoTokenizer
from models.tiny import minilm_path
from training.generation.tiny_text_generator import _corpus_tokenizer
tok = _corpus_tokenizer(AutoTokenizer.from_pretrained(minilm_path()), ["the bank cut rates"], 50)
vocab = tok.get_vocab()
print(hashlib.sha256(json.dumps(sorted(vocab.items())).encode()).hexdigest())
"""


def _vocab_digest() -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", _VOCAB], cwd=REPO, env=env, capture_output=True, text=True,
        timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


def test_the_generator_vocabulary_is_the_same_in_every_process() -> None:
    digests = {_vocab_digest() for _ in range(3)}
    assert len(digests) == 1, digests
