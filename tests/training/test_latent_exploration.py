"""Mechanism tests of TGT's latent exploration (issue #24, "Evidence that can fail").

The generator is the built-in architecture trained HERE, small (hidden 64, 2,000 pieces,
160 steps, about 30 s on one thread), on the BBC News training sentences of up to 16
words (tests/support/latent_fixture.py, the session fixture ``tiny_latent_generator``);
reconstruction is measured on HELD-OUT sentences (every tenth article, never
trained on). The teacher and student are tiny random BERT classifiers on the MiniLM
vocabulary (different seeds): a mechanism test of the search, not of a useful teacher.

Settings (relative latent distance 1.0; gradient: 3 steps of 0.5 radius; classifier init 0.2)
were chosen on seeds 0-2 (text slices and classifier seeds); the test asserts on 3-5.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import torch
from support.latent_fixture import MAX_WORDS, SETTINGS
from torch import Tensor

from contracts.errors import ConfigError
from models.latent_text_generator import Latent
from training.tgt.exploration import (
    TextClassifier,
    explore_batch,
    explore_gradient,
    explore_sampling,
    hf_classifier,
    piece_ids,
    text_kl,
)
from training.tgt.latent_generator import (
    WEIGHTS,
    TinyLatentGenerator,
    TrainSettings,
    bbc_corpus_split,
    latent_generator_dir,
    load_latent_generator,
)

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
DISTANCE = 1.0
# Stated rates (measured values in the report): a generator must reconstruct at least
# RECONSTRUCT of the held-out texts exactly, change at least DISTINCT of them when the
# latent moves by DISTANCE, and keep the changed ones near their source (SIMILAR).
RECONSTRUCT, DISTINCT, SIMILAR = 0.6, 0.5, 0.6


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[str]]:
    return bbc_corpus_split(MAX_WORDS)


@pytest.fixture(scope="module")
def generator_dir(tiny_latent_generator: Path) -> Path:
    return tiny_latent_generator


@pytest.fixture(scope="module")
def cache(generator_dir: Path) -> Path:
    return generator_dir.parent.parent  # <cache>/_latent_generators/<key>


@pytest.fixture(scope="module")
def generator(generator_dir: Path) -> TinyLatentGenerator:
    return TinyLatentGenerator(generator_dir)


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _normalised(generator: Any, texts: Sequence[str]) -> list[str]:
    """What a perfect reconstruction reads: the text through the generator's tokenizer (cut
    at its length, lowercased)."""
    tok = generator.tokenizer
    return [
        tok.decode(tok(t, truncation=True, max_length=SETTINGS.max_length)["input_ids"][1:-1])
        for t in texts
    ]


def _neighbourhood(generator: Any, texts: Sequence[str]) -> dict[str, float]:
    """Reconstruction rate at distance 0; at DISTANCE, 3 draws per text: the share of draws
    unlike the text's reconstruction, and their mean character similarity to it."""
    reference = _normalised(generator, texts)
    rebuilt = explore_sampling(generator, texts, distance=0.0).texts
    moved = explore_sampling(generator, texts, distance=DISTANCE, per_text=3, seed=11)
    changed = [
        (text, rebuilt[src])
        for text, src in zip(moved.texts, moved.sources, strict=True)
        if text != rebuilt[src]
    ]
    sims = [difflib.SequenceMatcher(None, a, b).ratio() for a, b in changed]
    return {
        "reconstructed": sum(a == b for a, b in zip(reference, rebuilt, strict=True)) / len(texts),
        "distinct": len(changed) / len(moved.texts),
        "similarity": sum(sims) / len(sims) if sims else 0.0,
    }


def _passes(report: dict[str, float]) -> bool:
    return (
        report["reconstructed"] >= RECONSTRUCT
        and report["distinct"] >= DISTINCT
        and report["similarity"] >= SIMILAR
    )


class NearestEmbeddingCopier:
    """The identity model: its latent is each piece's (random, fixed) embedding, and it
    decodes each position to the nearest embedding. It reconstructs every text; the
    combined test must not let it pass."""

    def __init__(self, like: TinyLatentGenerator) -> None:
        self.tokenizer = like.tokenizer
        self.tokens = like.tokens
        gen = torch.Generator().manual_seed(0)
        self.table = torch.randn(len(self.tokens), 64, generator=gen)

    def encode(self, texts: Sequence[str]) -> Latent:
        enc = self.tokenizer(
            list(texts), truncation=True, max_length=SETTINGS.max_length, padding=True,
            return_tensors="pt",
        )  # fmt: skip
        return Latent(self.table[enc["input_ids"]], enc["attention_mask"].bool())

    def decode(self, latent: Latent) -> list[str]:
        ids = torch.cdist(latent.states, self.table[None]).argmin(-1)
        return [
            self.tokenizer.decode(row[m], skip_special_tokens=True)
            for row, m in zip(ids, latent.mask, strict=True)
        ]

    def token_distributions(
        self, latent: Latent, temperature: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        raise NotImplementedError


def test_reconstructs_held_out_texts_and_moves_to_distinct_neighbours(
    generator: TinyLatentGenerator, corpus: tuple[list[str], list[str]]
) -> None:
    held_out = corpus[1][::12][:60]
    assert not set(held_out) & set(corpus[0])
    report = _neighbourhood(generator, held_out)
    print("tiny generator:", report)
    assert _passes(report), report
    copier = _neighbourhood(NearestEmbeddingCopier(generator), held_out)
    print("identity model:", copier)
    assert copier["reconstructed"] == 1.0  # it reconstructs perfectly...
    assert not _passes(copier)  # ...and still fails the combined test


def _classifier(seed: int, tokenizer: Any) -> TextClassifier:
    from transformers import BertConfig, BertForSequenceClassification

    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        num_labels=3,
        initializer_range=0.2,  # random heads with input-dependent, non-flat outputs
        hidden_dropout_prob=0.0,
        attention_probs_dropout_prob=0.0,
    )
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertForSequenceClassification(config).eval()
    return hf_classifier(model, tokenizer, max_length=64)


@pytest.fixture(scope="module")
def minilm_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from models.tiny import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path())


@pytest.mark.parametrize("seed", [3, 4, 5])  # settings were chosen on seeds 0, 1, 2
def test_gradient_mode_finds_higher_kl_than_sampling_at_the_same_distance(
    generator: TinyLatentGenerator,
    corpus: tuple[list[str], list[str]],
    minilm_tokenizer: Any,
    seed: int,
) -> None:
    teacher = _classifier(100 + seed, minilm_tokenizer)
    student = _classifier(200 + seed, minilm_tokenizer)
    texts = corpus[1][seed * 24 : (seed + 1) * 24]
    sampled = explore_sampling(generator, texts, distance=DISTANCE, seed=seed)
    steered = explore_gradient(generator, texts, teacher, student, distance=DISTANCE, seed=seed)
    for found in (sampled, steered):
        assert found.distances == pytest.approx([DISTANCE] * len(texts), rel=1e-4)
    kl_sampled = text_kl(teacher, student, sampled.texts)
    kl_steered = text_kl(teacher, student, steered.texts)
    print(
        f"seed {seed}: KL sampling {kl_sampled.mean():.4f}, gradient {kl_steered.mean():.4f}, "
        f"gradient higher on {(kl_steered > kl_sampled).float().mean():.2f} of texts"
    )
    assert kl_steered.mean() > kl_sampled.mean()
    assert (kl_steered > kl_sampled).float().mean() > 0.5


def test_gradient_mode_refuses_a_generator_on_another_vocabulary(
    generator: TinyLatentGenerator, minilm_tokenizer: Any
) -> None:
    from transformers import BertTokenizerFast  # type: ignore[attr-defined]

    small = BertTokenizerFast(
        vocab={t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a"])}
    )
    student = _classifier(0, minilm_tokenizer)
    assert piece_ids(generator, student).shape == (len(generator.tokens),)
    foreign = TextClassifier(student.forward, small, student.embeddings)
    with pytest.raises(ConfigError, match="share a vocabulary"):
        explore_gradient(generator, ["a text"], foreign, student, distance=DISTANCE)


def test_explore_batch_keeps_to_its_budget_and_drops_copies(
    generator: TinyLatentGenerator, corpus: tuple[list[str], list[str]], minilm_tokenizer: Any
) -> None:
    teacher, student = _classifier(1, minilm_tokenizer), _classifier(2, minilm_tokenizer)
    batch = corpus[1][:8]
    for mode in ("sampling", "gradient"):
        found = explore_batch(
            generator, batch, teacher, student, mode=mode, budget=5, distance=DISTANCE, seed=0
        )
        assert 0 < len(found.texts) <= 5
        assert all(0 <= s < 5 for s in found.sources)
        assert not {t.lower() for t in found.texts} & {t.lower() for t in batch}
        assert len(set(found.texts)) == len(found.texts)
    unmoved = explore_batch(
        generator, batch, teacher, student, mode="sampling", budget=8, distance=0.0
    )
    assert len(unmoved.texts) < 8  # reconstructions equal to their source are dropped


def _child(code: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout.strip().splitlines()[-1]


_BUILD = """
import json, sys
from pathlib import Path
import training.tgt.latent_generator as m
if sys.argv[3] == "forbid-training":
    def refuse(*args, **kwargs):
        raise AssertionError("retrained a cached generator")
    m.train_latent_generator = refuse
settings = m.TrainSettings(**json.loads(sys.argv[2]))
print(m.latent_generator_dir(Path(sys.argv[1]), m.bbc_corpus_split(16)[0], settings))
"""


def test_cached_generator_loads_in_a_fresh_process_without_retraining(
    generator_dir: Path, cache: Path
) -> None:
    before = _sha(generator_dir / WEIGHTS)
    found = _child(_BUILD, str(cache), json.dumps(asdict(SETTINGS)), "forbid-training")
    assert Path(found) == generator_dir
    assert _sha(Path(found) / WEIGHTS) == before
    assert [p.name for p in generator_dir.parent.iterdir() if ".tmp-" in p.name] == []


def test_training_gives_the_same_weights_in_every_process(tmp_path: Path) -> None:
    few = TrainSettings(**{**asdict(SETTINGS), "steps": 3})
    here = latent_generator_dir(tmp_path / "a", bbc_corpus_split(MAX_WORDS)[0], few)
    there = Path(_child(_BUILD, str(tmp_path / "b"), json.dumps(asdict(few)), "train"))
    assert here.name == there.name  # the same content key
    assert _sha(here / WEIGHTS) == _sha(there / WEIGHTS)
    other = TrainSettings(**{**asdict(few), "seed": 1})
    assert latent_generator_dir(tmp_path / "a", bbc_corpus_split(MAX_WORDS)[0], other) != here


def test_any_transformers_seq2seq_loads_by_path_and_explores(
    tmp_path: Path, minilm_tokenizer: Any
) -> None:
    """The hub path, offline: a random tiny BART saved with save_pretrained, on the MiniLM
    vocabulary, so the gradient mode runs through it too."""
    from transformers import BartConfig, BartForConditionalGeneration

    tok = minilm_tokenizer
    config = BartConfig(
        vocab_size=tok.vocab_size, d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=32,
        decoder_ffn_dim=32, max_position_embeddings=64, pad_token_id=tok.pad_token_id,
        bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id,
        decoder_start_token_id=tok.cls_token_id, forced_bos_token_id=None,
        forced_eos_token_id=None,
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        BartForConditionalGeneration(config).save_pretrained(tmp_path / "bart")
    tok.save_pretrained(tmp_path / "bart")
    bart = load_latent_generator(str(tmp_path / "bart"), tmp_path / "cache")
    texts = ["the bank raised rates", "shares fell on monday"]
    latent = bart.encode(texts)
    assert latent.states.shape[:2] == latent.mask.shape
    teacher, student = _classifier(1, tok), _classifier(2, tok)
    found = explore_gradient(bart, texts, teacher, student, distance=DISTANCE, steps=1)
    assert found.sources == [0, 1] and found.distances == pytest.approx([DISTANCE] * 2, rel=1e-4)
    assert all(isinstance(t, str) for t in found.texts)


def _teacher(text_model: Path, image_model: Path | None) -> Any:
    from models.image import load_image_encoder
    from models.teacher import Teacher
    from models.text import load_text_encoder, load_tokenizer

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        teacher = Teacher(
            load_text_encoder(str(text_model)),
            load_image_encoder(str(image_model)) if image_model else None,
            load_tokenizer(str(text_model)),
            num_labels=3,
            fusion_heads=2,
            hidden_size=16,
            freeze_image_encoder=True,
        )
    return teacher.eval()


def test_text_only_teacher_reads_the_soft_path_as_it_reads_the_text(
    generator: TinyLatentGenerator, tiny_text_model: Path, minilm_tokenizer: Any
) -> None:
    """One-hot distributions through the expected-embedding path give the teacher's logits
    of the text itself: the gradient mode steers the function that labels the texts."""
    from training.tgt.exploration import teacher_classifier

    teacher = teacher_classifier(_teacher(tiny_text_model, None))
    text = "the government said on monday that the bank would cut rates"
    own = generator.tokenizer(text, add_special_tokens=False)["input_ids"]
    ids = piece_ids(generator, teacher)
    assert ids[own].tolist() == minilm_tokenizer(text, add_special_tokens=False)["input_ids"]
    one_hot = torch.nn.functional.one_hot(torch.tensor([own]), len(generator.tokens)).float()
    soft = teacher.soft_logits(one_hot, torch.ones(1, len(own), dtype=torch.bool), ids)
    with torch.no_grad():
        assert torch.allclose(soft, teacher.logits([text]), atol=1e-5)
    student = _classifier(2, minilm_tokenizer)
    found = explore_gradient(generator, [text], teacher, student, distance=DISTANCE, steps=1)
    assert len(found.texts) == 1


def test_gradient_mode_refuses_a_teacher_that_reads_images(
    tiny_text_model: Path, tmp_path: Path
) -> None:
    from models.tiny import make_tiny_image_model
    from training.tgt.exploration import teacher_classifier

    image_model = make_tiny_image_model(tmp_path / "vit")
    with pytest.raises(ConfigError, match=r"text-only teacher.*'sampling'"):
        teacher_classifier(_teacher(tiny_text_model, image_model))
