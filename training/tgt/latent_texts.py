"""TGT's 'sampling' texts for the tgt stage: K latent samples around every labelled text.

For labelled text s and draw j (0 <= j < ``tgt.k``) the latent generator
(``tgt.latent_model``, training/tgt/latent_generator.py) encodes the text, moves its latent
to a random point at relative distance ``tgt.latent_distance`` (noise seeded by
``latent_seed(run seed, text, j)``, over that text's own positions) and decodes it
(training/tgt/exploration.py ``sample_per_text``).

**Cache** (resumable): one JSON file per request under
``<text cache>/latent/<key[:2]>/<key>.json``, key = sha256 of (generator identity, distance,
seed, text); written atomically as each batch finishes, so a stage cut short re-decodes only
what it had not written, and a second run (or another run sharing ``text_generator.
cache_dir``) decodes nothing. The built-in generator is trained once per cache, under
``<text cache>/_latent_generators/``.

Each text carries its source (the request it was made for), never a position: equal
labelled texts give equal requests and equal decodes, and each keeps its own source row.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from contracts.artifacts import write_json_atomic
from contracts.config import BUILTIN_LATENT_GENERATOR, PipelineConfig
from contracts.jobs import Stage
from training.data.prepare import PreparedData
from training.tracking.progress import RunContext

CACHE_VERSION = 1
BATCH = 32


@dataclass(frozen=True)
class LatentRequest:
    source: int  # index into the train split
    draw: int
    text: str
    seed: int


def latent_seed(run_seed: int, text: str, draw: int) -> int:
    """Seed of the ``draw``-th latent sample around ``text``: stable across processes, and
    distinct from the masked-LM draw seeds of the same text."""
    digest = hashlib.sha256(f"latent\0{run_seed}\0{draw}\0{text}".encode()).digest()
    return int.from_bytes(digest[:8], "big") & (2**62 - 1)


def latent_requests(cfg: PipelineConfig, data: PreparedData) -> list[LatentRequest]:
    """``tgt.k`` requests per training example, example-major."""
    return [
        LatentRequest(s, j, ex.text, latent_seed(cfg.seed, ex.text, j))
        for s, ex in enumerate(data.splits["train"])
        for j in range(cfg.tgt.k)
    ]


def generator_identity(name: str, cache_dir: Path) -> str:
    """The latent generator in the cache key: the built-in by its trained directory's
    content key, a local directory by its absolute path, a hub model by its id."""
    if name == BUILTIN_LATENT_GENERATOR:
        from training.tgt.latent_generator import latent_generator_dir

        return f"{name}:{latent_generator_dir(cache_dir).name}"
    path = Path(name).expanduser()
    return str(path.resolve()) if path.exists() else name


def _key(identity: str, distance: float, req: LatentRequest) -> str:
    head = json.dumps([CACHE_VERSION, identity, distance, req.seed], sort_keys=True)
    return hashlib.sha256(f"{head}\0{req.text}".encode()).hexdigest()


def latent_sampling_texts(
    cfg: PipelineConfig,
    requests: Sequence[LatentRequest],
    cache_dir: Path,
    ctx: RunContext,
    device: str = "cpu",
) -> tuple[list[str], int]:
    """One decoded text per request (in request order) and how many were newly decoded."""
    identity = generator_identity(cfg.tgt.latent_model, cache_dir)
    distance = cfg.tgt.latent_distance
    root = cache_dir / "latent"
    paths = [root / k[:2] / f"{k}.json" for k in (_key(identity, distance, r) for r in requests)]
    found: dict[Path, str] = {}
    for p in dict.fromkeys(paths):
        if p.is_file():
            with contextlib.suppress(OSError, ValueError, KeyError):  # torn: decode again
                found[p] = str(json.loads(p.read_text(encoding="utf-8"))["text"])
    missing = list(dict.fromkeys(p for p in paths if p not in found))
    if missing:
        from training.tgt.exploration import sample_per_text
        from training.tgt.latent_generator import load_latent_generator

        generator = load_latent_generator(cfg.tgt.latent_model, cache_dir, device)
        todo = {p: r for p, r in zip(paths, requests, strict=True) if p in set(missing)}
        work = list(todo.items())
        for start in range(0, len(work), BATCH):
            part = work[start : start + BATCH]
            texts = sample_per_text(
                generator, [r.text for _, r in part], [r.seed for _, r in part], distance=distance
            )
            for (p, r), text in zip(part, texts, strict=True):
                p.parent.mkdir(parents=True, exist_ok=True)
                write_json_atomic(p, {"text": text, "source_text": r.text, "seed": r.seed})
                found[p] = text
            done = min(start + BATCH, len(work))
            ctx.step(Stage.TGT, done, len(work), f"latent sampling, {done}/{len(work)} texts")
    return [found[p] for p in paths], len(missing)
