"""The text generator: any transformers masked LM (infilling) or causal LM (continuation).

One request in, one text out; every request carries its own seed, so a text depends on
its source, its seed and the sampling settings, never on the batch it was drawn in.

- **masked** (e.g. ``distilbert-base-uncased``): the words of the source are grouped into
  spans of up to ``span_length`` words; spans are masked (one mask token per word) until
  ``mask_fraction`` of the words are, and every mask is sampled in one pass of the model.
  A masked word never comes back as itself, so every draw differs from its source.
  Words in ``protect`` (e.g. a CWI target phrase) are never masked.
- **causal** (e.g. ``distilgpt2``): the prompt is ``prefix`` plus the first
  ``keep_fraction`` of the source's words; up to ``max_new_tokens`` tokens are sampled
  after it (left-padded batch, one KV cache, one torch generator per row).

Steering hooks for callers that generate towards a goal: ``prefix`` (e.g. a
class-conditioned prompt), ``protect``, the per-request seed, and ``score`` callbacks the
caller applies to what comes back (see training/tgt/texts.py).

Built-in tiny models (``tiny-bbc-masked``, ``tiny-bbc-causal``) are trained on BBC News the
first time they are used; training them is training's job
(training/generation/tiny_text_generator.py), so a caller that allows them passes
``builtin``: the function that returns a built-in's trained directory.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from contracts.config import BUILTIN_TEXT_GENERATORS, TextGeneratorConfig
from contracts.errors import ModelLoadError


@dataclass(frozen=True)
class TextRequest:
    """What to generate from: a source text, a seed, and optional steering."""

    source: str
    seed: int
    prefix: str = ""  # causal: text put before the prompt (e.g. "A sports story:")
    protect: tuple[str, ...] = field(default=())  # masked: words never masked (lowercase)


BuiltinResolver = Callable[[str, Path], Path]
"""(built-in name, cache dir) -> the directory of that built-in generator, trained."""


def _resolve(model: str, cache_dir: Path, builtin: BuiltinResolver | None) -> str:
    if model in BUILTIN_TEXT_GENERATORS:
        if builtin is None:
            raise ModelLoadError(
                f"text_generator.model {model!r} is a built-in; it is trained by the training "
                "library, so load it through training.generation.texts.LazyTextGenerator"
            )
        return str(builtin(model, cache_dir))
    path = Path(model).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if model.startswith(("/", "./", "../", "~")) or path.exists():
        raise ModelLoadError(
            f"text_generator.model: {model!r} is not a directory; give a directory saved with "
            f"save_pretrained, a hub id, or a built-in: {', '.join(BUILTIN_TEXT_GENERATORS)}"
        )
    return model


def _kind(config: Any, wanted: str) -> str:
    if wanted != "auto":
        return wanted
    archs = " ".join(getattr(config, "architectures", None) or [])
    if "CausalLM" in archs or "LMHeadModel" in archs:
        return "causal"
    if "MaskedLM" in archs:
        return "masked"
    if getattr(config, "is_decoder", False):
        return "causal"
    raise ModelLoadError(
        f"text_generator.kind: cannot tell from the architectures {archs or '(none)'} whether "
        "the model is a masked or a causal LM; set text_generator.kind"
    )


class TextGenerator:
    """A loaded generator; ``generate`` draws one text per request."""

    def __init__(
        self,
        cfg: TextGeneratorConfig,
        cache_dir: Path,
        device: str = "cpu",
        builtin: BuiltinResolver | None = None,
    ) -> None:
        from transformers import (
            AutoConfig,
            AutoModelForCausalLM,
            AutoModelForMaskedLM,
            AutoTokenizer,
        )

        self.cfg, self.device = cfg, torch.device(device)
        self.model: Any
        self.tokenizer: Any
        target = _resolve(cfg.model, cache_dir, builtin)
        try:
            config = AutoConfig.from_pretrained(target, revision=cfg.revision)
            self.kind = _kind(config, cfg.kind)
            loader = AutoModelForCausalLM if self.kind == "causal" else AutoModelForMaskedLM
            self.model = loader.from_pretrained(target, revision=cfg.revision)
            self.tokenizer = AutoTokenizer.from_pretrained(target, revision=cfg.revision)
        except (OSError, ValueError, KeyError) as e:
            raise ModelLoadError(
                f"text_generator.model {cfg.model!r}: cannot load a {cfg.kind} language model "
                f"({type(e).__name__}: {str(e)[:300]}). Give a local directory saved with "
                "save_pretrained, a hub id on a machine with network access, or a built-in: "
                f"{', '.join(BUILTIN_TEXT_GENERATORS)}"
            ) from e
        self._check_tokenizer()
        self.model.to(self.device)
        self.model.eval()

    def _check_tokenizer(self) -> None:
        vocab = int(self.model.get_input_embeddings().num_embeddings)
        if len(self.tokenizer) > vocab:
            raise ModelLoadError(
                f"text_generator.model {self.cfg.model!r}: its tokenizer has "
                f"{len(self.tokenizer)} tokens but the model's embedding only {vocab}; the "
                "tokenizer does not belong to this model"
            )
        if self.kind == "masked" and self.tokenizer.mask_token_id is None:
            raise ModelLoadError(
                f"text_generator.model {self.cfg.model!r}: kind 'masked' needs a tokenizer "
                "with a mask token, and this one has none (a causal LM? set kind: causal)"
            )
        t = self.tokenizer
        if self.kind == "causal" and t.eos_token_id is None and t.sep_token_id is None:
            raise ModelLoadError(
                f"text_generator.model {self.cfg.model!r}: kind 'causal' needs a tokenizer "
                "with an end-of-sequence (or separator) token"
            )

    def generate(self, requests: Sequence[TextRequest]) -> list[str]:
        if not requests:
            return []
        with torch.inference_mode():
            if self.kind == "masked":
                return self._infill(requests)
            return self._continue(requests)

    # -- sampling -------------------------------------------------------------------------
    def _filter(self, logits: Tensor) -> Tensor:
        """Temperature, top-k and top-p on (N, V) logits; removed tokens get -inf."""
        logits = logits.float() / self.cfg.temperature
        if self.cfg.top_k and self.cfg.top_k < logits.shape[-1]:
            kth = torch.topk(logits, self.cfg.top_k, dim=-1).values[:, -1:]
            logits = logits.masked_fill(logits < kth, float("-inf"))
        if self.cfg.top_p < 1.0:
            sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
            cum = F.softmax(sorted_logits, dim=-1).cumsum(dim=-1)
            drop = cum - F.softmax(sorted_logits, dim=-1) > self.cfg.top_p  # keep the first
            sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
            logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
        return logits

    def _sample(self, logits: Tensor, gens: Sequence[torch.Generator]) -> list[int]:
        """One token per row of (N, V) logits, row i drawn with ``gens[i]``."""
        probs = F.softmax(self._filter(logits), dim=-1).cpu()
        return [int(torch.multinomial(p, 1, generator=g)) for p, g in zip(probs, gens, strict=True)]

    def _special_ids(self) -> list[int]:
        return [int(i) for i in self.tokenizer.all_special_ids]

    def _continuation_ids(self) -> list[int]:
        """WordPiece continuation pieces ('##s'): a masked whole word must not become one,
        or it would glue itself to the word before."""
        if not hasattr(self, "_continuations"):
            vocab = self.tokenizer.get_vocab()
            self._continuations = [i for t, i in vocab.items() if t.startswith("##")]
        return self._continuations

    # -- masked LM: infilling ---------------------------------------------------------------
    def _infill(self, requests: Sequence[TextRequest]) -> list[str]:
        tok = self.tokenizer
        rows: list[list[int]] = []
        masked: list[list[tuple[int, int]]] = []  # per row: (position, original id)
        for req in requests:
            ids, spots = self._mask_one(req)
            rows.append(ids)
            masked.append(spots)
        width = max(len(r) for r in rows)
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        input_ids = torch.tensor([r + [pad] * (width - len(r)) for r in rows])
        attention = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in rows])
        logits = self.model(
            input_ids=input_ids.to(self.device), attention_mask=attention.to(self.device)
        ).logits
        banned = self._special_ids() + self._continuation_ids()
        out = []
        for b, (req, spots) in enumerate(zip(requests, masked, strict=True)):
            ids = rows[b]
            if spots:
                pos = [p for p, _ in spots]
                row_logits = logits[b, pos].float().clone()
                row_logits[:, banned] = float("-inf")
                for i, (_, original) in enumerate(spots):
                    row_logits[i, original] = float("-inf")  # a masked word always changes
                gens = [torch.Generator().manual_seed(req.seed + 7919 * i) for i in range(len(pos))]
                for (p, _), new in zip(spots, self._sample(row_logits, gens), strict=True):
                    ids[p] = new
            out.append(str(tok.decode(ids, skip_special_tokens=True)).strip())
        return out

    def _mask_one(self, req: TextRequest) -> tuple[list[int], list[tuple[int, int]]]:
        """Token ids (with special tokens) of ``req.source`` with spans of words masked."""
        tok = self.tokenizer
        enc = tok(req.source, truncation=True, max_length=self.cfg.max_length)
        ids = list(enc["input_ids"])
        word_ids = enc.word_ids()
        words: dict[int, list[int]] = {}
        for pos, w in enumerate(word_ids):
            if w is not None:
                words.setdefault(w, []).append(pos)
        protect = {p.lower() for p in req.protect}
        order = sorted(words)
        maskable = [
            w
            for w in order
            if tok.decode([ids[p] for p in words[w]]).strip().lower() not in protect
        ]
        rng = random.Random(req.seed)
        goal = max(1, round(self.cfg.mask_fraction * len(order))) if maskable else 0
        chosen: set[int] = set()
        while len(chosen) < min(goal, len(maskable)):
            start = rng.randrange(len(maskable))
            for w in maskable[start : start + rng.randint(1, self.cfg.span_length)]:
                if len(chosen) < goal:
                    chosen.add(w)
        # One mask per chosen word: its first piece is masked, the other pieces dropped.
        spots: list[tuple[int, int]] = []
        new_ids: list[int] = []
        for pos, tid in enumerate(ids):
            w = word_ids[pos]
            if w is not None and w in chosen:
                if pos == words[w][0]:
                    spots.append((len(new_ids), tid))
                    new_ids.append(int(tok.mask_token_id))
                continue
            new_ids.append(tid)
        return new_ids, spots

    # -- causal LM: continuation ------------------------------------------------------------
    def _continue(self, requests: Sequence[TextRequest]) -> list[str]:
        tok = self.tokenizer
        eos = tok.eos_token_id if tok.eos_token_id is not None else tok.sep_token_id
        pad = tok.pad_token_id if tok.pad_token_id is not None else eos
        heads, prompts = [], []
        for req in requests:
            words = req.source.split()
            head = " ".join(words[: max(1, round(self.cfg.keep_fraction * len(words)))])
            heads.append(head)
            ids = tok((req.prefix + " " + head).strip(), add_special_tokens=False)["input_ids"]
            bos = tok.bos_token_id if tok.bos_token_id is not None else tok.cls_token_id
            prompts.append(([bos] if bos is not None else []) + ids[-self.cfg.max_length :])
        width = max(len(p) for p in prompts)
        input_ids = torch.tensor([[pad] * (width - len(p)) + p for p in prompts])
        attention = torch.tensor([[0] * (width - len(p)) + [1] * len(p) for p in prompts])
        gens = [torch.Generator().manual_seed(r.seed) for r in requests]
        new: list[list[int]] = [[] for _ in requests]
        done = [False] * len(requests)
        past = None
        step_ids = input_ids
        # transformers 5 renames past_key_values to cache; accept either generation.
        cache_arg = (
            "cache"
            if "cache" in inspect.signature(self.model.forward).parameters
            else "past_key_values"
        )
        banned = [i for i in self._special_ids() if i != eos]
        for _ in range(self.cfg.max_new_tokens):
            positions = (attention.cumsum(-1) - 1).clamp(min=0)
            out = self.model(
                input_ids=step_ids.to(self.device),
                attention_mask=attention.to(self.device),
                position_ids=positions[:, -step_ids.shape[1] :].to(self.device),
                use_cache=True,
                **{cache_arg: past},
            )
            past = getattr(out, "cache", None) or getattr(out, "past_key_values", None)
            logits = out.logits[:, -1].float()
            logits[:, banned] = float("-inf")
            picked = self._sample(logits, gens)
            for b, t in enumerate(picked):
                if not done[b]:
                    if t == eos:
                        done[b] = True
                    else:
                        new[b].append(t)
            if all(done):
                break
            step_ids = torch.tensor(
                [[t if not d else pad] for t, d in zip(picked, done, strict=True)]
            )
            attention = torch.cat(
                [attention, torch.ones(len(requests), 1, dtype=attention.dtype)], 1
            )
        texts = []
        for head, ids in zip(heads, new, strict=True):
            tail = str(tok.decode(ids, skip_special_tokens=True)).strip()
            texts.append(f"{head} {tail}".strip())
        return texts
