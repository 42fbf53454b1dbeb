"""TGT's 'gradient' mode, online: new texts explored while the student trains.

Before each epoch of the TGT student, or with ``tgt.explore_every_steps`` N > 0 every N
training steps (the ``add_rows`` hook of training/students/trainer.py
``StudentOptions``), one round:

1. **Choose** labelled training texts: before an epoch, ``tgt.explore_per_epoch`` of them
   (a seeded permutation per epoch, cycling through the set); every N steps, the labelled
   rows of the batch about to train (at most ``explore_per_epoch``).
2. **Explore** around them with ``explore_batch`` (training/tgt/exploration.py): each
   latent moved along the gradient of KL(teacher || student) of the *current* student, on
   the sphere of relative radius ``tgt.latent_distance``, decoded. The first teacher
   steers; the student is the one being trained (eval mode for the search).
3. **Filter** like the tgt stage: empty texts, texts already seen (labelled or explored
   before), near-copies of their source and of any dev/test text are dropped.
4. **Label** what is left with every teacher, through a cache of teacher outputs by text
   on disk (``<cache>/<teacher name>.jsonl``, one line per text, appended and flushed after
   each labelling): a text already in the cache costs no query. ``tgt.query_budget``
   bounds the explored texts of the whole run (cached or not); the teacher queries made
   are the ones not in the cache. A run cut short and started again explores the same
   texts (seeded, and the student's weights at each epoch are the same) and re-queries
   nothing it had labelled.
5. The new rows join the training set; each epoch trains on the labelled rows and
   ``tgt.explore_per_epoch`` generated rows: the last round's new texts first, then
   earlier ones (seeded), then labelled rows again if the exploration has found fewer
   (budget spent, or everything filtered). A round every N steps re-chooses the generated
   rows of the epoch's remaining batches, so its texts train in the same epoch.

The summary (``summary``: explored, queries, cache hits, per round) is written into the
student's stage record and lugpi.json under ``tgt``; the explored texts themselves, with
their epoch and source row, into ``<cache>/explored.jsonl``.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from contracts.config import PipelineConfig
from contracts.jobs import Stage
from models.teacher import load_teacher, predict_teacher
from training.data.prepare import PreparedData
from training.generation.near_copies import near_any, normalise
from training.students.trainer import AddedRows
from training.tracking.progress import RunContext

EXPLORED_FILE = "explored.jsonl"


class TeacherCache:
    """Teacher outputs by text, one JSON line per text in ``path``; a torn last line (a
    crash mid-write) is ignored and that text labelled again."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: dict[str, tuple[list[float], list[float]]] = {}
        if path.is_file():
            for line in path.read_text(encoding="utf-8").splitlines():
                try:
                    row = json.loads(line)
                    self.rows[row["text"]] = (row["logits"], row["embedding"])
                except (ValueError, KeyError, TypeError):
                    continue

    def add(self, texts: list[str], logits: np.ndarray, embeddings: np.ndarray) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as f:
            for t, lg, em in zip(texts, logits.tolist(), embeddings.tolist(), strict=True):
                f.write(json.dumps({"text": t, "logits": lg, "embedding": em}) + "\n")
                self.rows[t] = (lg, em)
            f.flush()
            os.fsync(f.fileno())


class OnlineExplorer:
    """The ``add_rows`` and ``select_rows`` hooks of one online TGT student."""

    def __init__(
        self,
        cfg: PipelineConfig,
        data: PreparedData,
        teacher_dirs: list[Path],
        n_fixed: int,
        cache_dir: Path,
        ctx: RunContext,
        device: torch.device,
        generator_cache: Path,
    ) -> None:
        from training.tgt.exploration import teacher_classifier
        from training.tgt.latent_generator import load_latent_generator

        self.cfg, self.data, self.ctx, self.device = cfg, data, ctx, device
        self.n_fixed = n_fixed
        self.per_epoch = cfg.tgt.explore_per_epoch
        self.teachers: list[tuple[Any, Any, TeacherCache]] = []
        for tdir in teacher_dirs:
            teacher, meta = load_teacher(tdir)
            teacher.to(device)
            self.teachers.append((teacher, meta, TeacherCache(cache_dir / f"{meta.name}.jsonl")))
        # The first teacher steers the search (teacher_classifier refuses image readers).
        self.steer = teacher_classifier(self.teachers[0][0], self.teachers[0][1].max_length)
        self.generator = load_latent_generator(cfg.tgt.latent_model, generator_cache, str(device))
        train = data.splits["train"]
        self.train = train
        self.seen = {normalise(ex.text) for ex in train}
        self.evaluation = [ex.text for s in ("dev", "test") for ex in data.splits.get(s, [])]
        self.explored: list[int] = []  # row ids (into the student's rows) of explored texts
        self.new_rows: list[int] = []  # this epoch's
        self.total_rows = n_fixed
        # What this run explored, per epoch (rewritten by a restarted run); the texts stay
        # out of the student's lugpi.json, which the published bundle carries.
        cache_dir.mkdir(parents=True, exist_ok=True)
        self.explored_file = cache_dir / EXPLORED_FILE
        self.explored_file.write_text("", encoding="utf-8")
        self.summary: dict[str, Any] = {
            "mode": "gradient",
            "generator": cfg.tgt.latent_model,
            "query_budget": cfg.tgt.query_budget,
            "explore_per_epoch": self.per_epoch,
            # "epoch": a round before each epoch; N: a round every N training steps.
            "explore_every": cfg.tgt.explore_every_steps or "epoch",
            "explored": 0,
            "teacher_queries": 0,
            "cache_hits": 0,
            "rounds": [],
            "trained_explored": [],  # per selection of the training rows
        }

    def _chosen(self, epoch: int) -> list[int]:
        order = list(range(len(self.train)))
        random.Random(f"lugpi:{self.cfg.seed}:tgt-online:{epoch}").shuffle(order)
        start = (epoch * self.per_epoch) % max(len(order), 1)
        return (order[start:] + order[:start])[: self.per_epoch]

    def add_rows(
        self,
        epoch: int,
        model: PreTrainedModel,
        tok: PreTrainedTokenizerBase,
        around: np.ndarray | None = None,
    ) -> AddedRows | None:
        """Explore around ``explore_per_epoch`` labelled texts (``around`` None: before an
        epoch, a seeded choice) or around the labelled rows of the current batch."""
        from training.tgt.exploration import explore_batch, hf_classifier

        self.new_rows = []
        left = self.cfg.tgt.query_budget - self.summary["explored"]
        n_round = len(self.summary["rounds"])
        record: dict[str, Any] = {
            "round": n_round, "epoch": epoch, "decoded": 0, "explored": 0, "queries": 0
        }  # fmt: skip
        self.summary["rounds"].append(record)
        if left <= 0:
            return None
        self.ctx.step(Stage.DISTILL, 0, 1, f"tgt: exploring, epoch {epoch + 1}")
        if around is None:
            chosen = self._chosen(epoch)
        else:
            in_train = (int(i) for i in around if int(i) < len(self.train))
            chosen = list(dict.fromkeys(in_train))[: self.per_epoch]
        if not chosen:
            return None
        student = hf_classifier(model, tok, self.cfg.student.max_length)
        found = explore_batch(
            self.generator,
            [self.train[i].text for i in chosen],
            self.steer,
            student,
            mode="gradient",
            budget=len(chosen),
            distance=self.cfg.tgt.latent_distance,
            seed=self.cfg.seed * 1_000_003 + n_round,
            steps=self.cfg.tgt.gradient_steps,
        )
        record["decoded"] = len(found.texts)  # before filtering
        thr = self.cfg.tgt.max_similarity
        near_eval = near_any(found.texts, self.evaluation, thr)
        kept: list[tuple[str, int]] = []
        for text, src, ev in zip(found.texts, found.sources, near_eval, strict=True):
            key = normalise(text)
            source = self.train[chosen[src]]
            if not key or key in self.seen or ev:
                continue
            if near_any([text], [source.text], thr)[0]:
                continue
            if source.text_pair and not set(normalise(source.text_pair).split()) <= set(
                key.split()
            ):
                continue  # lost its pair's words (e.g. a CWI target)
            self.seen.add(key)
            kept.append((text, chosen[src]))
        kept = kept[:left]
        if not kept:
            return None
        texts = [t for t, _ in kept]
        pairs = [self.train[s].text_pair or "" for _, s in kept] if self.data.text_pair else None
        logits, embeddings = [], []
        for teacher, meta, cache in self.teachers:
            todo = [i for i, t in enumerate(texts) if t not in cache.rows]
            if todo:
                lg, em = predict_teacher(
                    teacher,
                    [texts[i] for i in todo],
                    [pairs[i] for i in todo] if pairs else None,
                    lambda idx: {},
                    max_length=meta.max_length,
                    batch_size=self.cfg.student.batch_size,
                    device=self.device,
                )
                cache.add([texts[i] for i in todo], lg, em)
            record["queries"] += len(todo)
            self.summary["cache_hits"] += len(texts) - len(todo)
            logits.append(torch.tensor([cache.rows[t][0] for t in texts]))
            embeddings.append(torch.tensor([cache.rows[t][1] for t in texts]))
        record["explored"] = len(texts)
        with self.explored_file.open("a", encoding="utf-8") as f:
            for text, row in kept:
                line = {"round": n_round, "epoch": epoch, "text": text, "source": row}
                f.write(json.dumps(line) + "\n")
        self.summary["explored"] += len(texts)
        self.summary["teacher_queries"] += record["queries"]
        self.new_rows = list(range(self.total_rows, self.total_rows + len(texts)))
        self.explored += self.new_rows
        self.total_rows += len(texts)
        return AddedRows(texts, pairs, torch.stack(logits), embeddings, self.cfg.tgt.weight)

    def select_rows(
        self, epoch: int, model: PreTrainedModel, tok: PreTrainedTokenizerBase
    ) -> np.ndarray:
        """The labelled rows, then ``explore_per_epoch`` generated rows: this epoch's new
        ones, earlier ones (seeded), labelled rows again when there are too few."""
        picked = list(self.new_rows[: self.per_epoch])
        earlier = [r for r in self.explored if r not in set(self.new_rows)]
        rng = random.Random(f"lugpi:{self.cfg.seed}:tgt-online-select:{epoch}")
        rng.shuffle(earlier)
        picked += earlier[: self.per_epoch - len(picked)]
        # How many explored texts the rows about to train hold (the rest: labelled again).
        self.summary["trained_explored"].append(len(picked))
        while len(picked) < self.per_epoch:
            picked.append(rng.randrange(self.n_fixed))
        return np.concatenate([np.arange(self.n_fixed), np.asarray(picked, dtype=np.int64)])
