"""Test support (not library code): small transformers classifiers built from config,
trained for seconds on a keyword task and saved with ``save_pretrained``, as a user of
another tool would bring them to ``lugpi models import``."""

from __future__ import annotations

import csv
import inspect
from pathlib import Path

LABELS = ["sport", "politics", "weather"]
KEYWORDS = {"sport": "match goal", "politics": "vote minister", "weather": "rain sunny"}
FILLERS = ["today", "in the city", "said the report", "again", "last night", "for everyone"]


def examples(n_per_label: int, pair: bool = False) -> list[tuple[str, str | None, str]]:
    """(text, pair, label): the label is told by keywords in the text (single) or by
    whether the pair word occurs in the text (pair)."""
    out: list[tuple[str, str | None, str]] = []
    for i in range(n_per_label):
        filler = FILLERS[i % len(FILLERS)]
        for label, words in KEYWORDS.items():
            word = words.split()[i % 2]
            if pair:
                out.append((f"the {word} {filler}", word, "present"))
                other = KEYWORDS[LABELS[(LABELS.index(label) + 1) % 3]].split()[i % 2]
                out.append((f"the {word} {filler}", other, "absent"))
            else:
                out.append((f"{filler} the {word} was big", None, label))
    return out


def train_and_save(model, tokenizer, examples, labels: list[str], out: Path, steps: int) -> Path:  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(0)
    texts = [t for t, _, _ in examples]
    pairs = [p for _, p, _ in examples] if examples[0][1] is not None else None
    y = torch.tensor([labels.index(label) for _, _, label in examples])
    enc = tokenizer(texts, pairs, padding=True, truncation=True, max_length=32, return_tensors="pt")
    if "token_type_ids" not in inspect.signature(model.forward).parameters:
        enc.pop("token_type_ids", None)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(steps):  # seconds: enough for confident, separable predictions
        loss = torch.nn.functional.cross_entropy(model(**enc).logits, y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


def bert(out: Path, labels: list[str], examples, steps: int = 60) -> Path:  # type: ignore[no-untyped-def]
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from models.tiny import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    import torch

    torch.manual_seed(0)
    model = BertForSequenceClassification(config)
    return train_and_save(model, tokenizer, examples, labels, out, steps)


def distilbert(out: Path, labels: list[str], examples) -> Path:  # type: ignore[no-untyped-def]
    import torch
    from transformers import AutoTokenizer, DistilBertConfig, DistilBertForSequenceClassification

    from models.tiny import minilm_path

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = DistilBertConfig(
        vocab_size=tokenizer.vocab_size,
        dim=32,
        n_layers=2,
        n_heads=2,
        hidden_dim=64,
        max_position_embeddings=128,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    torch.manual_seed(0)
    return train_and_save(
        DistilBertForSequenceClassification(config), tokenizer, examples, labels, out, 60
    )


def export_onnx(
    checkpoint: Path,
    out: Path,
    *,
    output: str = "logits",
    inputs: tuple[str, ...] = ("input_ids", "attention_mask", "token_type_ids"),
    softmax: bool = False,
    dynamic: bool = True,
) -> Path:
    """``checkpoint`` as a user's ONNX export (``torch.onnx.export`` of the logits, or
    of softmax with ``softmax``): the graph, the tokenizer, config.json."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(
        checkpoint, attn_implementation="eager"
    ).eval()
    tokenizer = AutoTokenizer.from_pretrained(checkpoint)

    class Head(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            logits = self.model(**dict(zip(inputs, tensors, strict=True))).logits
            return torch.softmax(logits, -1) if softmax else logits

    enc = tokenizer(
        ["a short one", "a somewhat longer text here"], padding=True, return_tensors="pt"
    )
    out.mkdir(parents=True)
    torch.onnx.export(
        Head().eval(),
        tuple(enc[name] for name in inputs),
        str(out / "model.onnx"),
        input_names=list(inputs),
        output_names=[output],
        dynamic_axes=(
            {**{n: {0: "batch", 1: "sequence"} for n in inputs}, output: {0: "batch"}}
            if dynamic
            else None
        ),
        opset_version=17,
        dynamo=False,
    )
    tokenizer.save_pretrained(out)
    model.config.save_pretrained(out)
    return out


def write_csv(path: Path, rows: list[tuple[str, str | None, str]], pair: bool) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["text", "target", "label"] if pair else ["text", "label"])
        for text, p, label in rows:
            w.writerow([text, p, label] if pair else [text, label])
    return path
