"""Prompt cleaning as in the paper, and cutting prompts to the generator's context."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from training.data.prompts import (
    MAX_PROMPT_WORDS,
    cut_words,
    fit_to_tokenizer,
    make_prompt,
    strip_html,
    strip_newsgroup_headers,
)


def test_html_tags_and_entities_are_removed() -> None:
    review = "A <b>great</b> film.<br /><br />Tom &amp; Jerry&#39;s best &lt;3"
    assert strip_html(review) == "A great film. Tom & Jerry's best <3"
    assert make_prompt(review, None, "html") == "A great film. Tom & Jerry's best <3"


def test_newsgroup_headers_and_emails_are_removed() -> None:
    post = (
        "From: john.doe@cs.example.edu (John Doe)\n"
        "Subject: Re: Space shuttle launch\n"
        "Organization: Example University\n"
        "Lines: 12\n"
        "Reply-To: jd@example.org\n"
        "\n"
        "In article <1993Apr5@news.example.com> smith@foo.bar.com writes:\n"
        "The shuttle launched on time; subject: not a header mid-line.\n"
    )
    prompt = make_prompt(post, None, "newsgroups")
    assert "john.doe@cs.example.edu" not in prompt and "smith@foo.bar.com" not in prompt
    assert "Organization" not in prompt and "Lines" not in prompt and "Re: Space" not in prompt
    assert "In article writes:" in prompt
    assert "The shuttle launched on time; subject: not a header mid-line." in prompt
    assert strip_newsgroup_headers("mail me at a.b@c.de today") == "mail me at today"


def test_cwi_prompts_with_the_target_alone() -> None:
    sentence = "The barren islands are believed to be rich in oil."
    assert make_prompt(sentence, "barren islands", "cwi") == "barren islands"


def test_plain_squashes_whitespace_and_empty_cleaning_falls_back_to_text() -> None:
    assert make_prompt("  two\n\twords ", None, "plain") == "two words"
    # A post that is only headers would give an empty prompt: fall back to the raw text.
    assert make_prompt("Subject: hello", None, "newsgroups") == "Subject: hello"


def test_prompts_are_cut_by_words_without_a_tokenizer() -> None:
    long_text = " ".join(f"w{i}" for i in range(200))
    assert len(make_prompt(long_text, None, "plain").split()) == MAX_PROMPT_WORDS
    assert cut_words("a b c d", 2) == "a b"


@pytest.fixture(scope="module")
def char_clip_tokenizer(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The tiny CLIP tokenizer of the random pipeline: one token per character."""
    from transformers import CLIPTokenizer

    from models.tiny_diffusion import write_byte_level_clip_vocab

    d: Path = tmp_path_factory.mktemp("clip-vocab")
    write_byte_level_clip_vocab(d)
    return CLIPTokenizer(str(d / "vocab.json"), str(d / "merges.txt"), model_max_length=77)


def test_fit_to_tokenizer_cuts_at_word_boundary_within_77_tokens(char_clip_tokenizer: Any) -> None:
    tok = char_clip_tokenizer
    prompt = " ".join(["island"] * 30)  # 6 tokens per word with one token per character
    fitted = fit_to_tokenizer(prompt, tok)
    assert len(tok(fitted).input_ids) <= 77
    assert fitted == " ".join(["island"] * 12)  # 12 * 6 = 72 <= 75 < 13 * 6
    assert fit_to_tokenizer("short one", tok) == "short one"
    assert fit_to_tokenizer(prompt, tok, max_tokens=20) == "island island island"
