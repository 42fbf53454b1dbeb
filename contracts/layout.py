"""The run directory: every name in it spelled once, for every process that reads it.

    runs/<name>/      (a job's: <artifacts>/runs/<job_id>/)
        config.yaml   the pinned config of the run
        data/  images/  image-cache/  teacher-<name>/  student-<key>/
        baseline/  evaluate/  export/<key>/  published.json  job.log
        tgt/  text-cache/  tgt-student-<mode>/   Teacher Guided Training (tgt.enabled)
        strata/  student-strata/   the data-free StrataNet mode (strata.enabled)
        mlruns/  mlflow.json   the experiment tracker's default store and its run id

Each stage directory is atomic (contracts.artifacts). ``image-cache/`` is the default
place of the image cache (``generator.cache_dir`` moves it, e.g. to share it between
runs). The training pipeline, the CLI, the worker (its job runs, shard tasks and teacher
service), the API (job logs) and the benchmarks all find files through ``RunLayout``.
Torch-free.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from contracts.jobs import Stage

RUNS_DIR = "runs"


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @classmethod
    def for_job(cls, artifacts_dir: Path, job_id: str) -> RunLayout:
        """A job's run directory; ``job_id`` must already be checked (jobs.store)."""
        return cls(Path(artifacts_dir) / RUNS_DIR / job_id)

    @classmethod
    def named(cls, name: str, base: Path = Path(".")) -> RunLayout:
        """The CLI's default: ``runs/<config name>`` below ``base``."""
        return cls(base / RUNS_DIR / name)

    # -- files -------------------------------------------------------------------------------
    @property
    def config(self) -> Path:
        return self.root / "config.yaml"

    @property
    def published(self) -> Path:
        return self.root / "published.json"

    @property
    def job_log(self) -> Path:
        return self.root / "job.log"

    @property
    def mlruns(self) -> Path:
        return self.root / "mlruns"

    @property
    def tracking_state(self) -> Path:
        return self.root / "mlflow.json"

    # -- stage directories -------------------------------------------------------------------
    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def images(self) -> Path:
        return self.root / "images"

    def image_cache(self, cache_dir: str | None = None) -> Path:
        """``generator.cache_dir`` when set (shared across runs), else ``image-cache/``."""
        return Path(cache_dir) if cache_dir else self.root / "image-cache"

    def teacher(self, name: str) -> Path:
        return self.root / f"teacher-{name}"

    def student(self, key: str) -> Path:
        return self.root / f"student-{key}"

    @property
    def tgt(self) -> Path:
        return self.root / "tgt"

    def text_cache(self, cache_dir: str | None = None) -> Path:
        """``text_generator.cache_dir`` when set (shared across runs), else ``text-cache/``."""
        return Path(cache_dir) if cache_dir else self.root / "text-cache"

    @property
    def strata(self) -> Path:
        """The StrataNet mode's generated texts (strata.enabled)."""
        return self.root / "strata"

    def tgt_student(self, mode: str) -> Path:
        return self.root / f"tgt-student-{mode}"

    @property
    def baseline(self) -> Path:
        return self.root / "baseline"

    @property
    def evaluate(self) -> Path:
        return self.root / "evaluate"

    @property
    def export(self) -> Path:
        return self.root / "export"

    def stage(self, stage: Stage) -> Path:
        """The directory of a stage that has exactly one (teachers and students have one
        per name: ``teacher`` and ``student``)."""
        one = {
            Stage.PREPARE: self.data,
            Stage.GENERATE: self.images,
            Stage.TGT: self.tgt,
            Stage.STRATA_TEXTS: self.strata,
            Stage.BASELINE: self.baseline,
            Stage.EVALUATE: self.evaluate,
            Stage.EXPORT: self.export,
        }
        if stage not in one:
            raise ValueError(f"stage {stage.value} has one directory per model; name it")
        return one[stage]
