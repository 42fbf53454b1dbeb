"""The tgt stage (Teacher Guided Training): texts near the labelled ones, and their images.

1. **Sample.** For every labelled training text, ``tgt.k`` neighbours are drawn with the
   text generator (``tgt.k * tgt.pool_factor`` when the 'disagreement' search is on:
   its pool), each with its own seed (``draw_seed``), cached and sharded
   (training/text_generation.py).
2. **Filter** (training/near_copies.py). Dropped, in this order: a text equal (after
   normalisation) to one generated before it or to any labelled training text
   ("duplicate"); a near-copy of its own source ("near_source"); a near-copy of any dev or
   test text ("near_eval": no evaluation text, or something nearly equal to one, ever
   trains a student); for text pairs, a text that lost its second text's words
   ("lost_pair", e.g. a CWI target no longer in the sentence). Then ``tgt.budget`` keeps a
   seeded subset. An empty result is an error naming the settings to change.
3. **Images.** The teacher is multimodal, so every kept text gets its image from the image
   generator: same prompt cleaning, same cache, key and per-sample seeding as the training
   images (training/images.py), drawn shard by shard through the same shard strategy
   as the texts (a worker hands both kinds of shard to the other workers).

Output (an atomic stage directory)::

    tgt/  generated.jsonl  stage.json

One line per kept text: text, text_pair, source (index into train), draw, prompt, image.
With ``tgt.control: copies`` every kept text is replaced by its source (the control).
The teachers label these texts in the distill step (training/tgt_distill.py).
"""

from __future__ import annotations

import json
import os
import random
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from contracts.artifacts import STAGE_FILE, StageRecord, atomic_dir, is_complete, write_json_atomic
from contracts.config import PipelineConfig
from contracts.errors import ArtifactError, DataError
from contracts.jobs import Stage
from models.text_generator import TextRequest
from training.data.prepare import Example, PreparedData
from training.data.prompts import make_prompt
from training.generation.generate_images import GenerationPlan
from training.generation.images import ImageJob, LazyPipeline, image_job, sample_seed
from training.generation.near_copies import near_any, normalise
from training.generation.texts import draw_seed, generate_for
from training.sharding import InProcess, ShardStrategy, plan_shards
from training.tracking.progress import RunContext

GENERATED_FILE = "generated.jsonl"


@dataclass(frozen=True)
class Generated:
    text: str
    text_pair: str | None
    source: int  # index into the train split
    draw: int  # 0 .. draws per text - 1; draw < tgt.k is the 'sampling' set
    prompt: str
    image: str | None  # path of its image; None when no teacher reads images
    # Which mode's texts: 'augment' (masked-LM rewrites, both augment modes) or 'sampling'
    # (latent samples). Stage directories written before issue 24 hold 'augment' rows only.
    origin: str = "augment"


def draws_per_text(cfg: PipelineConfig) -> int:
    """Masked-LM rewrites per labelled text: none unless an 'augment' mode is on."""
    t = cfg.tgt
    if not any(m.startswith("augment") for m in t.modes):
        return 0
    return t.k * (t.pool_factor if "augment-disagreement" in t.modes else 1)


@dataclass(frozen=True)
class Neighbour:
    """One request of the stage, with the training row it was made from."""

    source: int  # index into the train split
    draw: int
    request: TextRequest


def neighbours(cfg: PipelineConfig, data: PreparedData) -> list[Neighbour]:
    """draws_per_text requests per training example, example-major."""
    n = draws_per_text(cfg)
    out = []
    for s, ex in enumerate(data.splits["train"]):
        protect = tuple(normalise(ex.text_pair).split()) if ex.text_pair else ()
        out += [
            Neighbour(s, j, TextRequest(ex.text, draw_seed(cfg.seed, ex.text, j), "", protect))
            for j in range(n)
        ]
    return out


def neighbour_requests(cfg: PipelineConfig, data: PreparedData) -> list[TextRequest]:
    return [nb.request for nb in neighbours(cfg, data)]


def filter_generated(
    cfg: PipelineConfig,
    data: PreparedData,
    texts: list[str],
    made_from: Sequence[tuple[int, int]] | None = None,
) -> tuple[list[tuple[int, int, str]], Counter[str]]:
    """(source, draw, text) of the kept texts and the count dropped per reason. ``texts``:
    one per (source, draw) of ``made_from`` (default: the requests of ``neighbours``, as
    ``text_generation.texts_for`` returns them), in that order."""
    train = data.splits["train"]
    thr = cfg.tgt.max_similarity
    dropped: Counter[str] = Counter()
    seen = {normalise(ex.text) for ex in train}
    candidates: list[tuple[int, int, str]] = []
    if made_from is None:
        made_from = [(nb.source, nb.draw) for nb in neighbours(cfg, data)]
    for (source, draw), text in zip(made_from, texts, strict=True):
        key = normalise(text)
        if not key or key in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(key)
        candidates.append((source, draw, text))
    near_src = [bool(near_any([t], [train[s].text], thr)[0]) for s, _, t in candidates]
    evaluation = [ex.text for split in ("dev", "test") for ex in data.splits.get(split, [])]
    near_eval = near_any([t for _, _, t in candidates], evaluation, thr)
    kept = []
    for (s, j, t), src, ev in zip(candidates, near_src, near_eval, strict=True):
        pair = train[s].text_pair
        if src:
            dropped["near_source"] += 1
        elif ev:
            dropped["near_eval"] += 1
        elif pair and not set(normalise(pair).split()) <= set(normalise(t).split()):
            dropped["lost_pair"] += 1
        else:
            kept.append((s, j, t))
    budget = cfg.tgt.budget
    if budget is not None and len(kept) > budget:
        rng = random.Random(f"lugpi:{cfg.seed}:tgt-budget")
        chosen = set(rng.sample(range(len(kept)), budget))
        dropped["over_budget"] += len(kept) - budget
        kept = [x for i, x in enumerate(kept) if i in chosen]
    return kept, dropped


def generated_rows(
    cfg: PipelineConfig,
    data: PreparedData,
    texts: list[str],
    made_from: Sequence[tuple[int, int]] | None = None,
    origin: str = "augment",
) -> tuple[list[Generated], Counter[str]]:
    """The kept texts (filtered, budgeted; copies of their sources under the control) as
    rows without images yet, and the count dropped per reason. Deterministic in the
    texts, so a worker that draws some of their images rebuilds the same rows."""
    kept, dropped = filter_generated(cfg, data, texts, made_from)
    if not kept:
        raise DataError(
            f"tgt: all {len(texts)} generated texts were dropped ({dict(dropped)}); lower "
            "tgt.max_similarity's strictness (raise it towards 1), raise "
            "text_generator.mask_fraction or temperature, or raise tgt.k"
        )
    train = data.splits["train"]
    style = cfg.data.prompt_style
    rows: list[Generated] = []
    for s, j, t in kept:
        src = train[s]
        text = src.text if cfg.tgt.control == "copies" else t
        prompt = src.prompt if cfg.tgt.control == "copies" else make_prompt(t, src.text_pair, style)
        rows.append(Generated(text, src.text_pair, s, j, prompt, None, origin))
    return rows, dropped


def image_plan(cfg: PipelineConfig, rows: list[Generated], cache_dir: Path) -> GenerationPlan:
    """The images of generated texts as a work list of the image generator: one per text,
    seeded like a training sample's (split "generated", index source * draws + draw, so a
    text keeps its image when filtering changes around it), or one per distinct prompt with
    ``generator.share_identical_prompts``."""
    jobs: list[ImageJob] = []
    index: dict[str, int] = {}
    ids = []
    n = max(draws_per_text(cfg), cfg.tgt.k)
    for r in rows:
        if not cfg.generator.share_identical_prompts or r.prompt not in index:
            # Latent samples seed under a name of their own: (source, draw) repeats across
            # origins.
            split = "generated" if r.origin == "augment" else f"generated-{r.origin}"
            seed = sample_seed(cfg.seed, split, r.source * n + r.draw, r.prompt)
            index[r.prompt] = len(jobs)
            jobs.append(image_job(cfg, r.prompt, seed))
        ids.append(index[r.prompt])
    shards = plan_shards(len(jobs), cfg.generator.num_shards)
    return GenerationPlan(jobs, shards, cache_dir, {"generated": ids})


@dataclass
class StageTexts:
    """The kept texts of every origin the modes need, and their counts."""

    rows: list[Generated]
    by_origin: dict[str, dict[str, object]]
    requested: int
    newly_generated: int
    dropped: Counter[str]


def stage_texts(
    cfg: PipelineConfig,
    data: PreparedData,
    text_cache: Path,
    ctx: RunContext,
    strategy: ShardStrategy | None = None,
) -> StageTexts:
    """Masked-LM rewrites (an 'augment' mode on) then latent samples ('sampling' on), each
    origin filtered on its own; whatever is not cached is generated. A worker that draws
    some of the kept texts' images rebuilds the same rows with it (worker/shards.py)."""
    out = StageTexts([], {}, 0, 0, Counter())
    if draws_per_text(cfg):
        texts, n_made = generate_for(cfg, neighbour_requests(cfg, data), text_cache, ctx, strategy)
        part, why = generated_rows(cfg, data, texts)
        out.by_origin["augment"] = _origin_summary(
            cfg.text_generator.model, texts, n_made, part, why
        )
        out.rows += part
        out.requested += len(texts)
        out.newly_generated += n_made
        out.dropped += why
    if "sampling" in cfg.tgt.modes:
        from training.tgt.latent_texts import latent_requests, latent_sampling_texts

        requests = latent_requests(cfg, data)
        texts, n_made = latent_sampling_texts(cfg, requests, text_cache, ctx)
        made_from = [(r.source, r.draw) for r in requests]
        part, why = generated_rows(cfg, data, texts, made_from, "sampling")
        out.by_origin["sampling"] = _origin_summary(cfg.tgt.latent_model, texts, n_made, part, why)
        out.rows += part
        out.requested += len(texts)
        out.newly_generated += n_made
        out.dropped += why
    return out


def run_tgt(
    cfg: PipelineConfig,
    data: PreparedData,
    out_dir: Path,
    ctx: RunContext,
    *,
    text_cache: Path,
    image_cache: Path | None,
    image_pipe: Any = None,
    strategy: ShardStrategy | None = None,
    extra: dict[str, object] | None = None,
) -> Path:
    """Generate, filter and draw; write the stage directory. ``extra``: more for its stage
    record (the students' labelled subset). ``image_cache`` None: no
    teacher reads images. ``image_pipe``: an object with ``get()`` returning a text-to-image
    pipeline (default: the configured generator, loaded on first use). ``strategy`` runs
    the text-generation shards, then the image shards (default: here, in turn)."""
    started = time.perf_counter()
    made = stage_texts(cfg, data, text_cache, ctx, strategy)
    rows, by_origin, requested, dropped = made.rows, made.by_origin, made.requested, made.dropped
    drawn = 0
    if image_cache is not None:
        iplan = image_plan(cfg, rows, image_cache)
        pipe = image_pipe or LazyPipeline(cfg, image_cache)
        before = sum(iplan.cached(sh) for sh in iplan.shards)

        def report(stage: Stage, done: int, total: int, msg: str) -> None:
            ctx.report(Stage.TGT, done, total, f"images, {msg}")

        work = iplan.work(cfg, pipe, Stage.TGT, "tgt-images")
        (strategy or InProcess()).run(work, RunContext(report, ctx.cancel_requested))
        drawn = len(iplan.jobs) - before
        paths = [str(iplan.path(iplan.jobs[i]).resolve()) for i in iplan.example_jobs["generated"]]
        rows = [Generated(**{**r.__dict__, "image": p}) for r, p in zip(rows, paths, strict=True)]
    summary: dict[str, object] = {
        "generator": cfg.text_generator.model if draws_per_text(cfg) else cfg.tgt.latent_model,
        "requested": requested,
        "newly_generated": made.newly_generated,
        "kept": len(rows),
        # The augment rows that the 'augment' student trains on (draw < k).
        "kept_sampling": sum(r.draw < cfg.tgt.k and r.origin == "augment" for r in rows),
        "dropped": dict(sorted(dropped.items())),
        "control": cfg.tgt.control,
        "images_drawn": drawn,
        "by_origin": by_origin,
        **(extra or {}),
    }
    with atomic_dir(out_dir, Stage.TGT.value) as tmp:
        with (tmp / GENERATED_FILE).open("w", encoding="utf-8") as f:
            for r in rows:
                f.write(json.dumps(r.__dict__, ensure_ascii=False) + "\n")
        record = StageRecord(
            stage=Stage.TGT.value,
            finished_at=datetime.now(UTC),
            seconds=round(time.perf_counter() - started, 3),
            summary=summary,
        )
        write_json_atomic(tmp / STAGE_FILE, record.model_dump(mode="json"))
    return out_dir


def _origin_summary(
    generator: str, texts: list[str], made: int, rows: list[Generated], dropped: Counter[str]
) -> dict[str, object]:
    return {
        "generator": generator,
        "requested": len(texts),
        "newly_generated": made,
        "kept": len(rows),
        "dropped": dict(sorted(dropped.items())),
    }


def load_generated(stage_dir: Path) -> tuple[list[Generated], dict[str, Any]]:
    """The kept texts and the stage summary; ``ArtifactError`` if the stage is not done."""
    if not is_complete(stage_dir):
        raise ArtifactError(f"{stage_dir}: no finished tgt stage; run `lugpi tgt` first")
    try:
        with (stage_dir / GENERATED_FILE).open(encoding="utf-8") as f:
            rows = [Generated(**json.loads(line)) for line in f if line.strip()]
        summary = json.loads((stage_dir / STAGE_FILE).read_text())["summary"]
    except (OSError, json.JSONDecodeError, TypeError, KeyError) as e:
        raise ArtifactError(f"{stage_dir}: unreadable ({e}); delete it and rerun") from e
    for r in rows:
        if r.image is not None and not os.path.isfile(r.image):
            raise ArtifactError(f"{stage_dir}: image {r.image} is missing; delete it and rerun")
    return rows, summary


def as_examples(rows: list[Generated]) -> list[Example]:
    return [Example(r.text, r.text_pair, None, r.prompt) for r in rows]
