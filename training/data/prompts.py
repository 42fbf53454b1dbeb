"""Generator prompts from classifier texts, cleaned as in the paper (docs/method.md, step 1).

- ``html`` (movie reviews, IMDB): HTML tags and entities removed.
- ``newsgroups`` (20 Newsgroups): e-mail addresses and header lines (From:, Subject:,
  Organization:, ...) removed.
- ``cwi`` (complex word identification): the target word or phrase alone; the
  classifier still reads sentence + target as a text pair.
- ``plain``: whitespace normalised only.

Text-to-image models read a bounded prompt (CLIP: 77 tokens, specials included).
``make_prompt`` cuts by words without a tokenizer (conservatively, at
``MAX_PROMPT_WORDS``); ``fit_to_tokenizer`` cuts exactly with the generator's own
tokenizer once the pipeline is loaded. Torch-free.
"""

from __future__ import annotations

import html
import re
from typing import Protocol

from contracts.config import PromptStyle

# English averages ~1.3 CLIP tokens per word; 50 words stay near the 75 usable tokens.
MAX_PROMPT_WORDS = 50

_TAG = re.compile(r"<[^>]{0,500}>")
_EMAIL = re.compile(r"<?[\w.+-]+@[\w-]+(?:\.[\w-]+)+>?")
# Usenet/mail header lines; "Subject:" is the one the paper names, the others carry no
# content worth drawing either.
_HEADER_LINE = re.compile(
    r"^\s*(?:from|subject|organi[sz]ation|lines|reply-to|nntp-posting-host|distribution|"
    r"keywords|summary|article-i\.d\.|message-id|date|newsgroups|path|sender|expires|"
    r"followup-to|references|in-reply-to|x-[\w-]+)\s*:.*$",
    re.IGNORECASE | re.MULTILINE,
)
_SPACE = re.compile(r"\s+")


class Tokenizer(Protocol):
    """What ``fit_to_tokenizer`` needs of a (transformers) tokenizer."""

    model_max_length: int

    def tokenize(self, text: str) -> list[str]: ...


def _squash(text: str) -> str:
    return _SPACE.sub(" ", text).strip()


def strip_html(text: str) -> str:
    """Remove tags (``<br />``) and decode entities (``&amp;``); tags become spaces."""
    return _squash(html.unescape(_TAG.sub(" ", text)))


def strip_newsgroup_headers(text: str) -> str:
    """Drop header lines (From:, Subject:, ...) and e-mail addresses from a post."""
    return _squash(_EMAIL.sub(" ", _HEADER_LINE.sub(" ", text)))


def cut_words(text: str, max_words: int = MAX_PROMPT_WORDS) -> str:
    words = text.split()
    return " ".join(words[:max_words])


def make_prompt(
    text: str, text_pair: str | None, style: PromptStyle, max_words: int = MAX_PROMPT_WORDS
) -> str:
    """The generator prompt for one example. Never empty: falls back to the raw text."""
    if style == "cwi":
        cleaned = _squash(text_pair) if text_pair else _squash(text)
    elif style == "html":
        cleaned = strip_html(text)
    elif style == "newsgroups":
        cleaned = strip_newsgroup_headers(text)
    else:
        cleaned = _squash(text)
    # A post that was all headers, or a review that was all markup, still gets a picture.
    return cut_words(cleaned or _squash(text), max_words)


def fit_to_tokenizer(prompt: str, tokenizer: Tokenizer, max_tokens: int | None = None) -> str:
    """Cut ``prompt`` at a word boundary so that it fits the tokenizer's context.

    ``max_tokens`` counts the begin/end specials (CLIP: 77); default the tokenizer's
    ``model_max_length``. Words are tokenized independently (BPE never merges across
    spaces), so counting per word is exact for CLIP and close for others; the final
    check re-tokenizes the whole prompt and drops words until it fits.
    """
    limit = (max_tokens or tokenizer.model_max_length) - 2
    if len(tokenizer.tokenize(prompt)) <= limit:
        return prompt
    words = prompt.split()
    kept: list[str] = []
    used = 0
    for word in words:
        used += len(tokenizer.tokenize(word))
        if used > limit:
            break
        kept.append(word)
    while len(kept) > 1 and len(tokenizer.tokenize(" ".join(kept))) > limit:
        kept.pop()
    # One word longer than the context: leave it whole; the pipeline truncates tokens.
    return " ".join(kept) or prompt
