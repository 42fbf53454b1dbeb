"""The prepare stage: read the splits, hold out dev, subsample, fix the label order.

Output (an atomic stage directory, see contracts.artifacts)::

    data/  labels.json  data.json  train.jsonl  dev.jsonl  test.jsonl  [unlabelled.jsonl]

``labels.json`` is the one label order (sorted names) every later artifact uses.
Each ``<split>.jsonl`` line is an ``Example``. Subsets and the held-out dev split are
stratified and seeded, so a rerun with the same config gives the same examples.
Torch-free.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass
from pathlib import Path

from contracts.artifacts import atomic_dir, is_complete, write_json_atomic
from contracts.config import PipelineConfig
from contracts.errors import ArtifactError, DataError
from contracts.jobs import Stage
from training.data.prompts import make_prompt
from training.data.readers import read_rows
from training.data.rows import RawRow
from training.tracking.progress import RunContext

SPLITS = ("train", "dev", "test", "unlabelled")
LABELS_FILE = "labels.json"
META_FILE = "data.json"


@dataclass(frozen=True)
class Example:
    text: str
    text_pair: str | None  # CWI: the target phrase; classifier input = (sentence, target)
    label: str | None  # None for unlabelled
    prompt: str  # cleaned generator prompt (training/data/prompts.py)


@dataclass
class PreparedData:
    labels: list[str]  # ordered once (sorted names), saved with every artifact
    text_pair: bool
    splits: dict[str, list[Example]]  # "train", "dev", "test", optional "unlabelled"

    def label_ids(self, split: str) -> list[int]:
        """Label indices (into ``labels``) of a labelled split."""
        index = {name: i for i, name in enumerate(self.labels)}
        out = []
        for ex in self.splits[split]:
            if ex.label is None:
                raise ValueError(f"split {split!r} has unlabelled examples; no label ids")
            out.append(index[ex.label])
        return out

    def texts(self, split: str) -> list[str]:
        return [ex.text for ex in self.splits[split]]

    def pairs(self, split: str) -> list[str] | None:
        """Second texts of a text-pair task (CWI targets), else None."""
        if not self.text_pair:
            return None
        return [ex.text_pair or "" for ex in self.splits[split]]


def stratified_sample(labels: list[str | None], n: int, rng: random.Random) -> list[int]:
    """Indices of a seeded sample of size ``n`` keeping class shares (largest remainder).

    Every class keeps at least one example when ``n`` allows it. Indices come back
    sorted, so the sample keeps the file's order.
    """
    if n >= len(labels):
        return list(range(len(labels)))
    by_class: dict[str | None, list[int]] = defaultdict(list)
    for i, label in enumerate(labels):
        by_class[label].append(i)
    classes = sorted(by_class, key=lambda c: (c is None, c or ""))
    quota = {c: n * len(by_class[c]) / len(labels) for c in classes}
    take = {c: int(quota[c]) for c in classes}
    if n >= len(classes):
        for c in classes:
            take[c] = max(take[c], 1)
    # Hand out what is left by largest remainder; take back from the largest classes if
    # the minimum of one per class overshot.
    by_remainder = sorted(classes, key=lambda c: quota[c] - int(quota[c]), reverse=True)
    while sum(take.values()) < n:
        c = next(c for c in by_remainder if take[c] < len(by_class[c]))
        take[c] += 1
        by_remainder.remove(c)
        by_remainder.append(c)
    while sum(take.values()) > n:
        c = max(classes, key=lambda c: take[c])
        take[c] -= 1
    chosen: list[int] = []
    for c in classes:
        chosen.extend(rng.sample(by_class[c], take[c]))
    return sorted(chosen)


def _rng(seed: int, purpose: str) -> random.Random:
    # String seeds hash with SHA-512 in CPython: stable across processes and runs.
    return random.Random(f"lugpi:{seed}:{purpose}")


def _load_splits(cfg: PipelineConfig, ctx: RunContext) -> dict[str, list[RawRow]]:
    d = cfg.data
    files = {"train": d.train, "dev": d.dev, "test": d.test, "unlabelled": d.unlabelled}
    wanted = [s for s in SPLITS if files[s] is not None]
    raw: dict[str, list[RawRow]] = {}
    for i, split in enumerate(wanted):
        ctx.step(Stage.PREPARE, i, len(wanted) + 1, f"reading {split}")  # +1: writing
        raw[split] = read_rows(
            Path(str(files[split])), d, labelled=split != "unlabelled", split=split
        )
    if "dev" not in raw:
        labels = [r.label for r in raw["train"]]
        n_dev = max(1, round(len(labels) * d.dev_fraction))
        dev_idx = set(stratified_sample(labels, n_dev, _rng(cfg.seed, "dev-holdout")))
        raw["dev"] = [r for i, r in enumerate(raw["train"]) if i in dev_idx]
        raw["train"] = [r for i, r in enumerate(raw["train"]) if i not in dev_idx]
    limits = {"train": d.max_train_samples, "dev": d.max_eval_samples, "test": d.max_eval_samples}
    for split, limit in limits.items():
        if limit is not None and split in raw and len(raw[split]) > limit:
            rows = raw[split]
            idx = stratified_sample([r.label for r in rows], limit, _rng(cfg.seed, split))
            raw[split] = [rows[i] for i in idx]
    return raw


def _check(cfg: PipelineConfig, raw: dict[str, list[RawRow]]) -> list[str]:
    train_counts = Counter(r.label for r in raw["train"])
    if not raw["train"]:
        raise DataError(f"{cfg.data.train}: no training examples left after the dev hold-out")
    if len(train_counts) < 2:
        raise DataError(
            f"{cfg.data.train}: training data has a single class {sorted(map(str, train_counts))}; "
            "a classifier needs at least two (check data.label_column)"
        )
    labels = sorted(str(label) for label in train_counts)
    for split in ("dev", "test"):
        unseen = sorted({str(r.label) for r in raw.get(split, [])} - set(labels))
        if unseen:
            source = getattr(cfg.data, split) or cfg.data.train
            raise DataError(
                f"{source}: {split} labels {unseen} never occur in train {labels}; "
                "the model could not predict them"
            )
    return labels


def prepare_data(cfg: PipelineConfig, out_dir: Path, ctx: RunContext) -> Path:
    """Write the prepared splits to the stage directory ``out_dir``; return it."""
    started = time.perf_counter()
    d = cfg.data
    raw = _load_splits(cfg, ctx)
    labels = _check(cfg, raw)
    # CWI rows always carry the target; other formats when data.text_pair_column is set.
    text_pair = any(r.text_pair is not None for r in raw["train"])
    style = cfg.data.prompt_style
    with atomic_dir(out_dir, Stage.PREPARE.value, started=started) as tmp:
        counts: dict[str, dict[str, int]] = {}
        for split, rows in raw.items():
            with (tmp / f"{split}.jsonl").open("w", encoding="utf-8") as f:
                for r in rows:
                    ex = Example(
                        r.text, r.text_pair, r.label, make_prompt(r.text, r.text_pair, style)
                    )
                    f.write(json.dumps(asdict(ex), ensure_ascii=False) + "\n")
            counts[split] = dict(sorted(Counter(str(r.label) for r in rows).items()))
        write_json_atomic(tmp / LABELS_FILE, labels)
        meta = {
            "text_pair": text_pair,
            "prompt_style": style,
            "sources": cfg.data.model_dump(mode="json"),
            "label_counts": counts,
        }
        write_json_atomic(tmp / META_FILE, meta)
        n_files = sum(x is not None for x in (d.dev, d.test, d.unlabelled)) + 1
        ctx.step(Stage.PREPARE, n_files + 1, n_files + 1, "written")
    return out_dir


STUDENT_TRAIN_PURPOSE = "student-train"  # the seed stream of tgt.student_train_samples


def student_train_rows(cfg: PipelineConfig, data: PreparedData) -> list[int] | None:
    """Rows of the train split the students learn from when ``tgt.student_train_samples``
    is set (stratified, seeded by ``cfg.seed``, in file order); None: all of them. The
    teachers always train on the whole split."""
    n = cfg.tgt.student_train_samples
    if n is None or not cfg.tgt.enabled:
        return None
    train = data.splits["train"]
    if n >= len(train):
        raise DataError(
            f"tgt.student_train_samples is {n} but the train split has {len(train)} texts: "
            "the teachers would see nothing the students do not; lower it, or raise "
            "data.max_train_samples"
        )
    return stratified_sample([ex.label for ex in train], n, _rng(cfg.seed, STUDENT_TRAIN_PURPOSE))


def student_view(cfg: PipelineConfig, data: PreparedData) -> PreparedData:
    """``data`` as the students see it: the train split cut to ``student_train_rows``."""
    rows = student_train_rows(cfg, data)
    if rows is None:
        return data
    train = data.splits["train"]
    splits = {**data.splits, "train": [train[i] for i in rows]}
    return PreparedData(data.labels, data.text_pair, splits)


def student_train_record(cfg: PipelineConfig, data: PreparedData) -> dict[str, object]:
    """What a stage record says of the setting: the students' and the teachers' labelled
    counts (empty when students and teachers see the same texts)."""
    rows = student_train_rows(cfg, data)
    if rows is None:
        return {}
    labels = [str(data.splits["train"][i].label) for i in rows]
    return {
        "student_train": {
            "samples": len(rows),
            "of": len(data.splits["train"]),
            "seed": cfg.seed,
            "label_counts": dict(sorted(Counter(labels).items())),
        }
    }


def load_prepared(stage_dir: Path) -> PreparedData:
    """Read what ``prepare_data`` wrote; ``ArtifactError`` if it is missing or incomplete."""
    if not is_complete(stage_dir):
        raise ArtifactError(f"{stage_dir}: no finished prepare stage; run `lugpi prepare` first")
    try:
        labels = json.loads((stage_dir / LABELS_FILE).read_text())
        meta = json.loads((stage_dir / META_FILE).read_text())
        splits: dict[str, list[Example]] = {}
        for split in SPLITS:
            path = stage_dir / f"{split}.jsonl"
            if path.is_file():
                with path.open(encoding="utf-8") as f:
                    splits[split] = [Example(**json.loads(line)) for line in f if line.strip()]
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise ArtifactError(
            f"{stage_dir}: prepared data is corrupt ({e}); delete it and rerun"
        ) from e
    for split in ("train", "dev"):
        if split not in splits:
            raise ArtifactError(f"{stage_dir}: {split}.jsonl missing; delete the dir and rerun")
    return PreparedData(labels=labels, text_pair=bool(meta["text_pair"]), splits=splits)
