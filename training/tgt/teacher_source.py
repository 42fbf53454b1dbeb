"""Which teacher(s) the TGT students learn from (``tgt.teacher``).

- ``pipeline``: every teacher of ``teachers``, trained in this run (on the whole train
  split, also when ``tgt.student_train_samples`` cuts the students' share);
- a run directory of this project (``config.yaml``): its finished teachers
  (``teacher-<name>/``), in its config's order;
- a teacher directory (``teacher.json``);
- any transformers sequence classifier: a ``save_pretrained`` directory (a student or
  baseline directory of this project too), or a hub id (models/teacher.py
  ``ClassifierTeacher``).

A teacher made elsewhere must read text only: it labels texts that have no image drawn
for it (the tgt stage draws images only for the config's own image-reading teachers).
Torch-free: the teachers are loaded where they are used.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from contracts.config import TGT_PIPELINE_TEACHER, PipelineConfig
from contracts.errors import ConfigError, ModelLoadError
from contracts.layout import RunLayout
from models.hub import looks_like_path

TEACHER_META = "teacher.json"  # models/teacher.py META_FILE (that module imports torch)


def tgt_teacher_dirs(cfg: PipelineConfig, layout: RunLayout) -> list[Path]:
    """The teacher directories (or a hub id as a path) of the TGT students."""
    source = cfg.tgt.teacher
    if source == TGT_PIPELINE_TEACHER:
        return [layout.teacher(t.name) for t in cfg.teachers]
    where = f"tgt.teacher {source!r}"
    path = Path(source).expanduser()
    if not path.is_dir():
        if looks_like_path(source) or path.exists():
            raise ModelLoadError(
                f"{where} is not a directory: name 'pipeline', a run directory, a teacher "
                "directory or a transformers sequence classifier (directory or hub id)"
            )
        return [Path(source)]  # a hub id; loaded as a sequence classifier
    path = path.resolve()
    if (path / TEACHER_META).is_file():
        return [_text_only(path, where)]
    other = RunLayout(path)
    if other.config.is_file() and not (path / "config.json").is_file():
        pinned = yaml.safe_load(other.config.read_text()) or {}
        names = [str(t.get("name")) for t in pinned.get("teachers", []) if isinstance(t, dict)]
        found = [other.teacher(n) for n in names if (other.teacher(n) / TEACHER_META).is_file()]
        if not found:
            raise ModelLoadError(
                f"{where} is a run directory without a finished teacher (its teachers: "
                f"{names}); run its teacher stage first"
            )
        return [_text_only(d, where) for d in found]
    if (path / "config.json").is_file():
        return [path]
    raise ModelLoadError(
        f"{where}: {path} holds neither a run (config.yaml), a teacher ({TEACHER_META}) nor a "
        "transformers classifier (config.json)"
    )


def _text_only(teacher_dir: Path, where: str) -> Path:
    modality = json.loads((teacher_dir / TEACHER_META).read_text()).get("modality", "text+image")
    if modality != "text":
        raise ConfigError(
            f"{where}: teacher {teacher_dir.name} reads {modality!r}; a teacher made elsewhere "
            "must read text only (no image is drawn for it here): use a text-only teacher, "
            "or tgt.teacher: pipeline"
        )
    return teacher_dir
