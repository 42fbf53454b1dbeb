"""Weakness guarded: one request could run the API out of memory. tokenizers' truncation
of a pair computes every combination of overflow windows of both texts, so cost grew
with len(text) x len(pair): 64 pairs of 10,000 + 10,000 characters (1.28 MB, under the
body limit) were killed for memory. The fix (contracts/truncation.py) cuts characters
first and truncates pairs in one pass; results for texts that fit are unchanged."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from tokenizers import Tokenizer

from contracts.truncation import HOLD_GIL_CHARS, PairCutter, char_budget, pair_lengths
from runtime.encoding import TextEncoder
from tests.chaos.servers import ChildServer
from tests.chaos.test_child_server import deployed_uvicorn_flags

WORDS = [
    "the",
    "quick",
    "brown",
    "fox",
    "jumps",
    "over",
    "lazy",
    "dog",
    "interdisciplinary",
    ",",
    ".",
    "!",
    "é",
    "日本",
    "Bellaghy",
]


@pytest.fixture
def tokenizer(random_bundles: dict[str, Path]) -> Tokenizer:
    """The real MiniLM tokenizer.json of the RANDOM-weight test bundle."""
    return Tokenizer.from_file(str(random_bundles["pair"] / "tokenizer.json"))


@pytest.mark.parametrize("direction", ["right", "left"])
def test_random_cut_equals_tokenizers_own_truncation(tokenizer: Tokenizer, direction: str) -> None:
    """Texts and pairs of 1-60 words, cut to 24 tokens at either end: ids, type ids and
    the truncated flag equal what tokenizers' own (quadratic) truncation gives."""
    reference = Tokenizer.from_str(tokenizer.to_str())
    reference.no_padding()
    reference.enable_truncation(24, direction=direction)
    encoder = TextEncoder(tokenizer, 24, ["input_ids", "attention_mask", "token_type_ids"])
    rng = random.Random(0)
    for _ in range(300):
        a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60)))
        b = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60)))
        for inputs, expected in (((a, b), reference.encode(a, b)), (a, reference.encode(a))):
            (got,) = encoder.encode([inputs], direction)
            assert got.ids == expected.ids, inputs
            assert got.type_ids == expected.type_ids, inputs
            assert encoder.was_truncated(got) == bool(expected.overflowing), inputs


def test_pair_lengths_follow_longest_first() -> None:
    assert pair_lengths(3, 4, 10) == (3, 4)
    assert pair_lengths(3, 40, 10) == (3, 7)
    assert pair_lengths(40, 3, 10) == (7, 3)
    assert pair_lengths(40, 40, 11) == (5, 6)
    assert pair_lengths(8, 40, 10) == (5, 5)


def test_random_char_budget_is_what_max_length_tokens_can_cover(tokenizer: Tokenizer) -> None:
    cutter = PairCutter(tokenizer, 24)
    # WordPiece: a whole unknown word of up to 100 characters is one [UNK] token.
    assert cutter.char_budget == char_budget(24, 100) == 24 * 101
    long_text = "word " * 5000
    (whole,) = cutter([long_text])
    (short,) = cutter([long_text[: cutter.char_budget]])
    assert whole == short


@pytest.fixture
def pair_server(random_bundles: dict[str, Path], tmp_path: Path) -> Iterator[ChildServer]:
    from contracts.repository import publish

    repo = tmp_path / "repo"
    publish(random_bundles["pair"], repo, "cwi")
    server = ChildServer(
        {
            "LUGPI_MODEL_REPOSITORY": str(repo),
            "LUGPI_POLL_INTERVAL_S": "0",
            "LUGPI_INTRA_OP_THREADS": "1",
            "OMP_NUM_THREADS": "1",
        },
        tmp_path / "server.log",
        deployed_uvicorn_flags(),
        max_rss_mb=1200,
    )
    server.wait_ready()
    yield server
    server.close()


def test_random_64_long_pairs_answer_under_a_memory_guard(pair_server: ChildServer) -> None:
    """The production limits: 64 pairs of 10,000 + 10,000 characters in one request."""
    rng = random.Random(1)
    texts = [" ".join(rng.choice(WORDS) for _ in range(1800))[:10_000] for _ in range(64)]
    pairs = [t[::-1] for t in texts]
    body = {"texts": texts, "text_pairs": pairs, "model": "cwi"}
    try:
        r = httpx.post(pair_server.url + "/classify", json=body, timeout=300)
    except httpx.HTTPError as e:
        memory = f"killed for memory: {pair_server.killed_for_memory}"
        pytest.fail(f"no answer ({type(e).__name__}); {memory}, {pair_server.peak_rss_mb:.0f} MB")
    assert not pair_server.killed_for_memory
    assert r.status_code == 200, r.text[:300]
    assert r.json()["truncated"] == list(range(64))
    short = {"texts": ["The girl shot dead in Bellaghy was 18."], "text_pairs": ["Bellaghy"]}
    assert httpx.post(pair_server.url + "/classify", json=short).status_code == 200


def test_random_training_encode_matches_transformers_and_serving(
    tiny_text_model: Path, tokenizer: Tokenizer
) -> None:
    """models/text.py ``encode`` (training, teacher) cuts as serving does, and as the
    transformers tokenizer's own truncation does for texts that fit the budget."""
    from transformers import AutoTokenizer

    from models.text import encode

    hf = AutoTokenizer.from_pretrained(tiny_text_model)
    serving = TextEncoder(tokenizer, 24, ["input_ids", "attention_mask", "token_type_ids"])
    rng = random.Random(2)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 50))) for _ in range(40)]
    pairs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 50))) for _ in range(40)]
    for second in (None, pairs):
        ours = encode(hf, texts, second, 24)
        theirs = hf(texts, second, padding="longest", truncation=True, max_length=24,
                    return_tensors="pt")  # fmt: skip
        for key in theirs:
            assert ours[key].tolist() == theirs[key].tolist(), key
        fed = serving.feed(serving.encode(serving.pair_up(texts, second)))
        assert fed["input_ids"].tolist() == ours["input_ids"].tolist()


def test_random_texts_cut_alike_one_by_one_and_in_one_batch(tokenizer: Tokenizer) -> None:
    """A short batch is tokenized text by text (the GIL held, HOLD_GIL_CHARS), a long one in
    one encode_batch call: the cuts are the same either way, pairs included."""
    cutter = PairCutter(tokenizer, 24)
    rng = random.Random(1)
    texts = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60))) for _ in range(80)]
    pairs = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60))) for _ in range(80)]
    assert sum(map(len, texts)) > HOLD_GIL_CHARS  # the batch path
    for direction in ("right", "left"):
        together = cutter(texts, pairs, direction)
        alone = [cutter([t], [p], direction)[0] for t, p in zip(texts, pairs, strict=True)]
        assert together == alone
        assert cutter(texts, None, direction) == [cutter([t], None, direction)[0] for t in texts]
