"""How a text (or a text pair) is cut to ``max_length`` tokens: one rule for training,
export checks and serving, in linear time.

Two steps:

1. **Characters first.** Before tokenizing, a text is cut to ``char_budget`` characters:
   ``max_length`` tokens can never cover more than ``max_length x (longest token + 1)``
   characters, where the longest token is the vocabulary's longest entry, or a whole
   unknown word (WordPiece maps up to ``max_input_chars_per_word`` characters to one
   [UNK]), and + 1 is the space between two tokens. The cut is exact for ordinary text;
   only a text whose first ``max_length`` tokens are spread over longer runs of
   characters the tokenizer drops (whitespace, control characters) is cut earlier.

2. **Tokens, longest first.** Each side is tokenized on its own without special tokens,
   then cut with tokenizers' own "longest_first" arithmetic (``pair_lengths``), then the
   special tokens are put around the pieces (``Template``). tokenizers' own truncation of
   a pair also computes every combination of overflow windows of both texts, which is
   what made a 10,000 + 10,000 character pair cost seconds and gigabytes; this costs one
   pass over each text.

Pure Python over token ids; the tokenizer is duck-typed (no tokenizers or torch import),
so every layer can use it.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol


def char_budget(max_length: int, longest_token_chars: int) -> int:
    """Most characters ``max_length`` tokens can come from (step 1 above)."""
    return max_length * (longest_token_chars + 1)


def longest_token_chars(vocab: Iterable[str], unknown_word_chars: int = 0) -> int:
    """Characters of text the longest token can stand for. WordPiece's ``##`` continuation
    mark is not text; byte-level BPE spells a character as one or more symbols, so its
    entries' lengths are upper bounds already."""
    longest = max((len(t.removeprefix("##")) for t in vocab), default=1)
    return max(longest, unknown_word_chars, 1)


def cut(text: str, budget: int, direction: str = "right") -> str:
    """``text`` cut to ``budget`` characters, at its end ("right") or its start ("left")."""
    if len(text) <= budget:
        return text
    return text[:budget] if direction == "right" else text[len(text) - budget :]


def _keep(ids: Sequence[int], k: int, direction: str) -> list[int]:
    return list(ids[:k]) if direction == "right" else list(ids[max(0, len(ids) - k) :])


def pair_lengths(n1: int, n2: int, room: int) -> tuple[int, int]:
    """Tokens kept of each side of a pair when ``room`` tokens are left after the special
    ones: tokenizers' "longest_first" (the shorter side is kept whole when it fits in half,
    else both get half), so that results match a tokenizer that truncates by itself."""
    if n1 + n2 <= room:
        return n1, n2
    short, long_ = min(n1, n2), max(n1, n2)
    long_ = short if short > room else max(short, room - short)
    if short + long_ > room:
        short = room // 2
        long_ = short + room % 2
    return (long_, short) if n1 > n2 else (short, long_)


@dataclass(frozen=True)
class Template:
    """Where a tokenizer puts its special tokens: ``prefix A middle B suffix`` (for a single
    text: ``prefix A suffix``), with the token type of each part."""

    prefix: tuple[int, ...]
    middle: tuple[int, ...]
    suffix: tuple[int, ...]
    single_suffix: tuple[int, ...]
    type_prefix: int = 0
    type_a: int = 0
    type_middle: int = 0
    type_b: int = 1
    type_suffix: int = 1

    @property
    def pair_specials(self) -> int:
        return len(self.prefix) + len(self.middle) + len(self.suffix)

    @property
    def single_specials(self) -> int:
        return len(self.prefix) + len(self.single_suffix)


@dataclass(frozen=True)
class Cut:
    """One model input: token ids, token type ids, and whether anything was cut off."""

    ids: list[int]
    type_ids: list[int]
    truncated: bool


def assemble(
    template: Template,
    a: Sequence[int],
    b: Sequence[int] | None,
    max_length: int,
    direction: str = "right",
) -> Cut:
    """Special tokens around ``a`` (and ``b``), cut to ``max_length`` tokens in all; tokens
    are dropped from the end of each side ("right") or from its start ("left")."""
    t = template
    if b is None:
        keep = max(0, max_length - t.single_specials)
        ids = [*t.prefix, *_keep(a, keep, direction), *t.single_suffix]
        types = [t.type_prefix] * (len(t.prefix) + min(keep, len(a)))
        types += [t.type_prefix] * len(t.single_suffix)
        return Cut(ids, types, len(a) > keep)
    k1, k2 = pair_lengths(len(a), len(b), max(0, max_length - t.pair_specials))
    ids = [*t.prefix, *_keep(a, k1, direction), *t.middle, *_keep(b, k2, direction), *t.suffix]
    types = [t.type_prefix] * len(t.prefix) + [t.type_a] * k1 + [t.type_middle] * len(t.middle)
    types += [t.type_b] * k2 + [t.type_suffix] * len(t.suffix)
    return Cut(ids, types, k1 < len(a) or k2 < len(b))


class _Encoding(Protocol):
    @property
    def ids(self) -> list[int]: ...
    @property
    def type_ids(self) -> list[int]: ...
    @property
    def special_tokens_mask(self) -> list[int]: ...


# A ``tokenizers.Tokenizer`` (or a transformers fast tokenizer's ``backend_tokenizer``):
# duck-typed, so that this module imports neither.
TokenizerLike = Any


def _template(tokenizer: TokenizerLike) -> Template:
    """Read the special-token layout off the tokenizer's own post-processor, by putting
    it around two one-token texts."""
    a = tokenizer.encode("a", add_special_tokens=False)
    b = tokenizer.encode("b", add_special_tokens=False)
    if len(a.ids) != 1 or len(b.ids) != 1:
        raise ValueError("cannot read the tokenizer's template: 'a' or 'b' is not one token")
    pair: _Encoding = tokenizer.post_process(a, b, add_special_tokens=True)
    single: _Encoding = tokenizer.post_process(a, None, add_special_tokens=True)
    i_a, i_b = [i for i, special in enumerate(pair.special_tokens_mask) if not special]
    ids, types = pair.ids, pair.type_ids
    (s_a,) = [i for i, special in enumerate(single.special_tokens_mask) if not special]
    return Template(
        prefix=tuple(ids[:i_a]),
        middle=tuple(ids[i_a + 1 : i_b]),
        suffix=tuple(ids[i_b + 1 :]),
        single_suffix=tuple(single.ids[s_a + 1 :]),
        type_prefix=types[0],
        type_a=types[i_a],
        type_middle=types[i_a + 1] if i_b > i_a + 1 else types[i_a],
        type_b=types[i_b],
        type_suffix=types[-1],
    )


def _unknown_word_chars(tokenizer: TokenizerLike) -> int:
    model = json.loads(tokenizer.to_str()).get("model") or {}
    return int(model.get("max_input_chars_per_word") or 0)


# Texts of at most this many characters in all are tokenized one by one, holding the GIL:
# ``encode_batch`` releases it, and getting it back waits for whichever thread took it
# meanwhile, up to the interpreter's switch interval (5 ms). With a Python thread busy beside
# it, encode_batch of one sentence ran 200 times a second and encode 40,000 (tokenizers
# 0.23); a server's batch thread waited so on every batch while its event loop ran. Past
# this size, tokenizing takes long enough that the event loop should run meanwhile.
HOLD_GIL_CHARS = 4000


class PairCutter:
    """The two steps above for one tokenizer (a ``tokenizers.Tokenizer``, or a
    transformers fast tokenizer's ``backend_tokenizer``); works on a private copy with
    truncation and padding off, so the caller's tokenizer is never changed."""

    def __init__(self, tokenizer: TokenizerLike, max_length: int) -> None:
        plain: TokenizerLike = type(tokenizer).from_str(tokenizer.to_str())
        plain.no_truncation()
        plain.no_padding()
        self.tokenizer = plain
        self.max_length = max_length
        self.template = _template(plain)
        longest = longest_token_chars(plain.get_vocab(), _unknown_word_chars(plain))
        self.char_budget = char_budget(max_length, longest)

    def __call__(
        self, texts: Sequence[str], pairs: Sequence[str] | None = None, direction: str = "right"
    ) -> list[Cut]:
        """One ``Cut`` per text (or pair), cut at the ``direction`` end; two tokenizer calls
        in all."""
        if direction not in ("right", "left"):
            raise ValueError(f"truncation direction {direction!r}: use 'right' or 'left'")
        budget, n = self.char_budget, self.max_length
        first = self._encode([cut(t, budget, direction) for t in texts])
        if pairs is None:
            return [assemble(self.template, e.ids, None, n, direction) for e in first]
        if len(pairs) != len(texts):
            raise ValueError(f"{len(texts)} texts but {len(pairs)} text pairs")
        second = self._encode([cut(p, budget, direction) for p in pairs])
        return [
            assemble(self.template, a.ids, b.ids, n, direction)
            for a, b in zip(first, second, strict=True)
        ]

    def _encode(self, texts: list[str]) -> list[_Encoding]:
        """Without special tokens: one by one while short (``HOLD_GIL_CHARS``), else one
        ``encode_batch`` call (in parallel, the GIL released)."""
        if sum(len(t) for t in texts) <= HOLD_GIL_CHARS:
            return [self.tokenizer.encode(t, add_special_tokens=False) for t in texts]
        return list(self.tokenizer.encode_batch(texts, add_special_tokens=False))
