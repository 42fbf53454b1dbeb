"""The worker side of ``POST /classify/teacher``: imagine, then ask the teacher.

The API sends ``{job_id, teacher, texts, text_pairs, return_images}``; everything else
comes from the job's own run directory (``<artifacts>/runs/<job_id>/``): the pinned
config (generator, seed, prompt style) and ``teacher-<name>/``. So a request cannot point
the worker at an arbitrary path. Images are drawn the way training draws them
(``training.images.cached_images``: the same prompt cleaning, CPU generators, cache key
and cache): a text's picture is seeded by its prompt alone (``prompt_seed``), drawn
once, and kept in the run's image cache, so asking again is served from it, on any device.

Generator and teachers stay loaded in this worker process between calls (module-level
caches), so only the first call pays for loading them.
"""

from __future__ import annotations

import base64
import io
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from PIL import Image

from contracts.config import PipelineConfig
from contracts.errors import ArtifactError, UserError
from contracts.layout import RunLayout
from jobs.store import check_job_id
from runtime.metrics import predictions, softmax
from training.devices import torch_device
from worker.settings import WorkerSettings

_lock = threading.Lock()  # one request at a time uses the cached models (threads pool)
_teachers: dict[Path, Any] = {}
_generators: dict[str, Any] = {}


def _device(cfg: PipelineConfig) -> Any:
    return torch_device(cfg.device)


def _teacher(teacher_dir: Path, device: Any) -> tuple[Any, Any]:
    from models.teacher import load_teacher

    if teacher_dir not in _teachers:
        teacher, meta = load_teacher(teacher_dir)
        _teachers[teacher_dir] = (teacher.to(device), meta)
    return _teachers[teacher_dir]


def _generator(cfg: PipelineConfig, cache_dir: Path) -> Any:
    from training.generation.images import LazyPipeline

    key = cfg.generator.model_dump_json(exclude={"batch_size", "num_shards", "cache_dir"})
    if key not in _generators:
        _generators[key] = LazyPipeline(cfg, cache_dir)
    return _generators[key]


def _images(
    cfg: PipelineConfig, run_dir: Path, prompts: list[str]
) -> tuple[list[Image.Image], int]:
    """One image per prompt, drawn into the run's image cache unless there; (images, drawn)."""
    from training.generation.images import cached_images, image_job, prompt_seed

    cache_dir = RunLayout(run_dir).image_cache(cfg.generator.cache_dir)
    jobs = [image_job(cfg, p, prompt_seed(cfg.seed, p)) for p in prompts]
    drawn = 0

    def count(n: int) -> None:
        nonlocal drawn
        drawn += n

    paths = cached_images(cfg, cache_dir, jobs, _generator(cfg, cache_dir), count)
    images = []
    for path in paths:
        with Image.open(path) as im:
            images.append(im.convert("RGB"))
    return images, drawn


def _png_b64(image: Image.Image) -> str:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _expired(payload: dict[str, Any], settings: WorkerSettings) -> dict[str, Any] | None:
    # The API stops waiting at payload["deadline"] (epoch seconds): past it, nobody reads
    # the answer, so the GPU is not spent on it. A request without one (an older API) is
    # dropped once it waited longer than this worker's teacher_timeout_s since "sent_at".
    deadline = payload.get("deadline")
    if deadline is not None and time.time() > float(deadline):
        return {"error": "the API gave up on this request before it ran", "code": "expired"}
    waited = time.time() - float(payload.get("sent_at") or time.time())
    if waited > settings.teacher_timeout_s:
        return {
            "error": f"dropped unanswered: waited {waited:.0f} s, longer than "
            f"teacher_timeout_s ({settings.teacher_timeout_s:g} s)",
            "code": "expired",
        }
    return None


def classify_with_teacher(payload: dict[str, Any], settings: WorkerSettings) -> dict[str, Any]:
    """Answer one request; a problem the user can fix comes back as ``{"error": ...}``
    (the API raises it as ``TeacherRefused``)."""
    if (gone := _expired(payload, settings)) is not None:
        return gone
    try:
        with _lock:
            if (gone := _expired(payload, settings)) is not None:  # it waited for the lock
                return gone
            return _classify(payload, settings)
    except UserError as e:
        return {"error": str(e)}


def _classify(payload: dict[str, Any], settings: WorkerSettings) -> dict[str, Any]:

    from models.teacher import pixel_inputs, predict_teacher
    from training.data.prompts import make_prompt

    t0 = time.perf_counter()
    run_dir = settings.run_dir(check_job_id(str(payload["job_id"])))
    layout = RunLayout(run_dir)
    config_file = layout.config
    if not config_file.is_file():
        raise ArtifactError(f"the run of job {payload['job_id']} is not on this worker ({run_dir})")
    cfg = PipelineConfig.model_validate(yaml.safe_load(config_file.read_text()))
    name = payload.get("teacher") or cfg.teachers[0].name
    if name not in [t.name for t in cfg.teachers]:
        raise ArtifactError(f"job {payload['job_id']} has no teacher {name!r}")
    texts: list[str] = list(payload["texts"])
    pairs: list[str] | None = payload.get("text_pairs")

    loaded = set(_teachers)
    device = _device(cfg)
    teacher, meta = _teacher(layout.teacher(name), device)
    t_load = time.perf_counter()
    seconds: list[str | None] = list(pairs) if pairs else [None] * len(texts)
    prompts = [
        make_prompt(t, p, cfg.data.prompt_style) for t, p in zip(texts, seconds, strict=True)
    ]
    images, drawn = _images(cfg, run_dir, prompts)
    t_gen = time.perf_counter()
    logits, _ = predict_teacher(
        teacher,
        texts,
        pairs if meta.text_pair else None,
        pixel_inputs(teacher, images),
        max_length=meta.max_length,
        batch_size=max(1, len(texts)),
        device=device,
    )
    t_teacher = time.perf_counter()
    return {
        "teacher": name,
        "labels": meta.labels,
        "predictions": predictions(softmax(logits), meta.labels),
        "prompts": prompts,
        "images": [_png_b64(im) for im in images] if payload.get("return_images") else None,
        "images_drawn": drawn,
        "timings_ms": {
            "load": round((t_load - t0) * 1000, 1),
            "generate": round((t_gen - t_load) * 1000, 1),
            "teacher": round((t_teacher - t_gen) * 1000, 1),
        },
        "warm": layout.teacher(name) in loaded,
    }
