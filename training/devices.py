"""Where a stage runs: the config's ``device`` setting resolved against what torch sees.

Every stage that places a model (training, image and text generation, amalgamation, the
worker's teacher service) resolves the setting here, so that "auto" means the same thing
everywhere and asking for a GPU that is not there fails the same way everywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from contracts.errors import ConfigError

if TYPE_CHECKING:
    import torch


def resolve_device(setting: str) -> str:
    """``setting``: "auto" (CUDA when torch sees a device, else CPU), "cpu" or "cuda".

    torch is imported here, not at module level, so that the callers that import this on a
    light path (the worker's task modules) load it only when a model is placed."""
    import torch

    cuda = torch.cuda.is_available()
    if setting == "cuda" and not cuda:
        raise ConfigError("device: 'cuda' but no CUDA device is visible; use 'auto' or 'cpu'")
    if setting == "auto":
        return "cuda" if cuda else "cpu"
    return setting


def torch_device(setting: str) -> torch.device:
    """``resolve_device`` as the ``torch.device`` models are moved to."""
    import torch

    return torch.device(resolve_device(setting))
