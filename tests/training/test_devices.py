"""The one device rule every stage resolves its ``device`` setting with (no model needed)."""

from __future__ import annotations

import pytest
import torch

from contracts.errors import ConfigError
from training.devices import resolve_device

NO_CUDA = not torch.cuda.is_available()


def test_auto_is_cuda_exactly_when_torch_sees_a_device() -> None:
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == "cpu"


@pytest.mark.skipif(not NO_CUDA, reason="a CUDA device is visible")
def test_asking_for_a_gpu_that_is_not_there_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="no CUDA device is visible"):
        resolve_device("cuda")


@pytest.mark.skipif(not NO_CUDA, reason="a CUDA device is visible")
def test_the_worker_teacher_service_no_longer_falls_back_to_cpu_silently() -> None:
    from contracts.config import load_config
    from worker.teacher_service import _device

    with pytest.raises(ConfigError):
        _device(load_config("smoke", {"device": "cuda"}))
    assert _device(load_config("smoke", {"device": "auto"})).type == "cpu"
