"""Test support for the data-free amalgamation (StrataNet): a synthetic 4-class keyword
task split between two teachers, each trained on two classes only.

- The class of a text is the class of its one keyword among filler words.
- Teacher "left" knows classes north/south (keyword sets 0, 1); teacher "right" knows
  east/west (sets 2, 3). Each is a tiny random-init BERT trained here on its own labelled
  texts. Neither can label the other's classes: alone, each is right on at most half of
  a balanced 4-class test set.
- The generator (a tiny masked LM trained here from random init) learns from an unlabelled
  corpus over the same vocabulary (every keyword and the filler words, plus BBC News
  sentences), drawn with other seeds than every labelled text, and with every text a
  teacher trained on or a test set holds removed (``generator_corpus``).
- Data-free: generation starts from each class's description (``DESCRIPTIONS``: a few of
  its keywords, the fixture's analogue of a class name such as "sports: football,
  tennis"); no seed text is drawn from the test distribution. Held-out test texts are
  drawn apart from all of them.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from training.data.prepare import Example, PreparedData

CLASS_WORDS = (
    ("apple", "river", "garden", "summer", "music", "window", "silver", "market", "forest"),
    ("stone", "engine", "winter", "castle", "letter", "bridge", "camera", "bottle", "planet"),
    ("cloud", "horse", "ocean", "pencil", "mirror", "farmer", "candle", "valley", "rocket"),
    ("tiger", "doctor", "island", "coffee", "hammer", "violin", "desert", "jacket", "tunnel"),
)
FILLER = ("the", "a", "of", "and", "to", "in", "is", "was", "for", "on", "with", "as", "by")
LABELS = ("north", "south", "east", "west")
TEACHER_CLASSES = {"left": (0, 1), "right": (2, 3)}
# Per class, three descriptions naming three of its keywords each: what generation starts
# from.
DESCRIPTIONS = {
    LABELS[c]: [" and ".join(words[i : i + 3]) for i in (0, 3, 6)]
    for c, words in enumerate(CLASS_WORDS)
}


def _text(rng: random.Random, c: int) -> str:
    out = [rng.choice(CLASS_WORDS[c])] + [rng.choice(FILLER) for _ in range(5)]
    rng.shuffle(out)
    return " ".join(out)


def teacher_data(name: str, seed: int, n_train: int = 120, n_dev: int = 40) -> PreparedData:
    """A teacher's own labelled texts (its two classes only)."""
    rng = random.Random(f"strata-teacher:{name}:{seed}")
    classes = TEACHER_CLASSES[name]
    splits = {}
    for split, n in (("train", n_train), ("dev", n_dev)):
        rows = []
        for i in range(n):
            c = classes[i % 2]
            text = _text(rng, c)
            rows.append(Example(text, None, LABELS[c], text))
        splits[split] = rows
    return PreparedData(labels=sorted(LABELS[c] for c in classes), text_pair=False, splits=splits)


def held_out(seed: int, n: int = 200) -> list[tuple[str, str]]:
    """Real held-out texts of all four classes: (text, label)."""
    rng = random.Random(f"strata-test:{seed}")
    return [(_text(rng, i % 4), LABELS[i % 4]) for i in range(n)]


def domain_corpus(n: int, seed: int) -> list[str]:
    """Unlabelled texts of the domain: every keyword, no labels."""
    rng = random.Random(f"strata-corpus:{seed}")
    return [_text(rng, i % 4) for i in range(n)]


def write_jsonl(path: Path, rows: list[tuple[str, str]]) -> Path:
    path.write_text("".join(json.dumps({"text": t, "label": y}) + "\n" for t, y in rows))
    return path


def seed_file(path: Path, n: int = 400, seed: int = 777) -> Path:
    """Unlabelled seed texts (one per line), disjoint from every teacher's texts."""
    path.write_text("\n".join(domain_corpus(n, seed)) + "\n")
    return path


def generator_corpus(seeds: range = range(10)) -> list[str]:
    """BBC News sentences plus the unlabelled domain corpus, without any text a teacher of
    ``seeds`` trained on or a held-out set of ``seeds`` holds."""
    from training.generation.tiny_text_generator import bbc_sentences

    used = {
        ex.text
        for seed in seeds
        for name in TEACHER_CLASSES
        for rows in teacher_data(name, seed).splits.values()
        for ex in rows
    }
    used |= {t for seed in seeds for t, _ in held_out(seed)}
    return [t for t in bbc_sentences()[:2000] + domain_corpus(3000, seed=99) if t not in used]


def train_strata_generator(out_dir: Path) -> Path:
    """A tiny masked LM trained here (random init) on ``generator_corpus``."""
    from training.generation.tiny_text_generator import train_text_generator

    corpus = generator_corpus()
    return train_text_generator(
        out_dir, corpus, "masked", steps=300, hidden_size=64, max_length=24, batch_size=32
    )


def keyword_class(text: str) -> int | None:
    for word in text.lower().split():
        for c, words in enumerate(CLASS_WORDS):
            if word in words:
                return c
    return None


def train_teachers(root: Path, seed: int, text_model: Path) -> dict[str, Path]:
    """Each teacher on its own two classes (CE, the pipeline's trainer)."""
    from contracts.config import parse_config
    from training.lugpi.distill import train_baseline
    from training.tracking.progress import RunContext

    out = {}
    for name in TEACHER_CLASSES:
        cfg = parse_config(
            {
                "seed": seed,
                "device": "cpu",
                "data": {"train": "synthetic"},
                "student": {"text_model": str(text_model), "max_length": 16, "epochs": 30,
                            "learning_rate": 3e-3, "batch_size": 16},
            }
        )  # fmt: skip
        out[name] = train_baseline(
            cfg, teacher_data(name, seed), root / f"teacher-{name}", RunContext()
        )
    return out


def neutral_seed_texts(n: int = 300) -> list[str]:
    """Unlabelled seed texts without any of the task's keywords: BBC News sentences of up
    to 14 words from past the slice ``generator_corpus`` takes (so neither a teacher's
    data nor a test text, and not what the generator trained on)."""
    from training.generation.tiny_text_generator import bbc_sentences

    texts = bbc_sentences()[5000:6000]
    return [t for t in texts if len(t.split()) <= 14 and keyword_class(t) is None][:n]


def train_strata_latent_generator(cache: Path) -> Path:
    """TGT's latent generator, small (tests/support/latent_fixture.py's settings), trained
    here on ``generator_corpus``: what learned steering steers."""
    from support.latent_fixture import SETTINGS
    from training.tgt.latent_generator import latent_generator_dir

    return latent_generator_dir(cache, generator_corpus(), SETTINGS)


def foreign_vocabulary_teacher(out_dir: Path) -> Path:
    """A tiny random BERT classifier over north/south whose WordPiece vocabulary is its own
    (specials, single characters, the task's words): not the MiniLM vocabulary the latent
    generator writes, so learned steering cannot read it through the generator."""
    import string

    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    words = [w for ws in CLASS_WORDS for w in ws] + list(FILLER) + list(LABELS)
    chars = list(string.ascii_lowercase + string.digits + string.punctuation)
    pieces = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + chars + [f"##{c}" for c in chars]
    vocab = {p: i for i, p in enumerate(dict.fromkeys(pieces + words))}
    tokenizer = BertTokenizerFast(vocab=vocab, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, id2label={0: "north", 1: "south"},
        label2id={"north": 0, "south": 1},
    )  # fmt: skip
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = BertForSequenceClassification(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir
