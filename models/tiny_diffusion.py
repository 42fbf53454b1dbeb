"""A tiny Stable-Diffusion-shaped text-to-image pipeline with RANDOM weights.

No text-to-image weights can be downloaded here (docs/environment.md), yet the generation
code path must run offline: tests and the ``offline`` preset use this pipeline. It
has the components of Stable Diffusion (CLIP text encoder + CLIP BPE tokenizer,
conditional UNet, KL autoencoder with the usual 8x downsampling, DDIM scheduler),
each built from a small config with random weights. It is saved with
``save_pretrained`` and loaded back through the same ``from_pretrained`` call as a
real model, so the real loading path is exercised.

Its images are NOISE: nothing in them depends on the prompt in a meaningful way.
A teacher trained on them learns nothing from the image side.

The CLIP tokenizer needs ``vocab.json`` + ``merges.txt``; no CLIP vocabulary ships
offline, so we write a byte-level one with no merges: every character is one token
(the 256 byte symbols, each also in its end-of-word form, plus the two specials).
"""

from __future__ import annotations

import json
from pathlib import Path

# Part of the image cache key for "tiny-random": bump it when the architecture or
# the init seed below changes, so stale cached noise is not reused.
TINY_RANDOM_VERSION = "tiny-random-v1"
MAX_PROMPT_TOKENS = 77  # CLIP's context, specials included (as in Stable Diffusion)
_INIT_SEED = 0


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2/CLIP byte-to-symbol table: printable bytes map to themselves, the rest to
    # unused code points, so every byte has a visible symbol in the vocabulary.
    bs = list(range(ord("!"), ord("~") + 1))
    bs += list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs), strict=True))


def write_byte_level_clip_vocab(out_dir: Path) -> int:
    """Write ``vocab.json`` and ``merges.txt`` for ``CLIPTokenizer``; return the vocab size."""
    symbols = list(_bytes_to_unicode().values())
    tokens = symbols + [s + "</w>" for s in symbols] + ["<|startoftext|>", "<|endoftext|>"]
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(tokens)}))
    # CLIPTokenizer skips the first line of merges.txt (the version header).
    (out_dir / "merges.txt").write_text("#version: 0.2\n")
    return len(tokens)


def build_tiny_pipeline(out_dir: Path, image_size: int = 64) -> Path:
    """Build the tiny random pipeline and ``save_pretrained`` it to ``out_dir``.

    Deterministic: the same diffusers/transformers versions give the same weights, so
    the cached images of "tiny-random" stay valid across runs. ``image_size`` only sets
    the UNet's default sample size; any multiple of 8 can be generated.
    """
    import torch
    from diffusers import (
        AutoencoderKL,
        DDIMScheduler,
        StableDiffusionPipeline,
        UNet2DConditionModel,
    )
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tok_dir = out_dir / "_vocab"
    vocab_size = write_byte_level_clip_vocab(tok_dir)
    tokenizer = CLIPTokenizer(
        vocab_file=str(tok_dir / "vocab.json"),
        merges_file=str(tok_dir / "merges.txt"),
        model_max_length=MAX_PROMPT_TOKENS,
    )
    with torch.random.fork_rng():
        torch.manual_seed(_INIT_SEED)
        text_encoder = CLIPTextModel(
            CLIPTextConfig(
                vocab_size=vocab_size,
                hidden_size=32,
                intermediate_size=64,
                num_attention_heads=4,
                num_hidden_layers=2,
                max_position_embeddings=MAX_PROMPT_TOKENS,
                bos_token_id=tokenizer.bos_token_id,
                eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id,
            )
        )
        unet = UNet2DConditionModel(
            sample_size=image_size // 8,
            in_channels=4,
            out_channels=4,
            layers_per_block=1,
            block_out_channels=(32, 64),
            down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
            up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
            cross_attention_dim=32,
            attention_head_dim=8,
            norm_num_groups=16,
        )
        # Four blocks, as in SD: the latent is 1/8 of the image side (vae_scale_factor 8).
        vae = AutoencoderKL(
            in_channels=3,
            out_channels=3,
            down_block_types=("DownEncoderBlock2D",) * 4,
            up_block_types=("UpDecoderBlock2D",) * 4,
            block_out_channels=(8, 16, 16, 16),
            layers_per_block=1,
            latent_channels=4,
            norm_num_groups=8,
            sample_size=image_size,
        )
    scheduler = DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )
    pipe = StableDiffusionPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=scheduler,
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(out_dir)  # type: ignore[attr-defined]
    (out_dir / "LUGPI_README.txt").write_text(
        "Tiny Stable-Diffusion-shaped pipeline with RANDOM weights (models/tiny_diffusion.py).\n"
        "It generates noise images; it exists so the generation code path runs offline.\n"
    )
    return out_dir
