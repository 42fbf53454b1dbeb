"""The StrataNet mode (StrataNet): one student over the union of several teachers' label
sets, without any of their training data (docs/stratanet.md).

    teachers (checked) -> steered generation -> RMD confidences + weights -> student
    -> evaluate -> export -> publish

1. **Steered generation** (``strata/``, job stage ``strata-texts``).
   For each teacher and each of its classes, generation starts from the class's
   descriptions (``teachers[].prompts``, else its name): data-free. With
   ``strata.seed_texts`` (optional; never the teachers' data or a test set) the seeds also
   include the pool texts the teacher scores highest for the class. Each round the text
   generator (models/text_generator.py) rewrites every seed ``draws_per_seed`` times
   (cached, sharded, resumable: training/generation/texts.py); the teacher scores what
   comes back; a text is *accepted* for class c when c is the teacher's answer with
   probability at least the class's bar (``min_confidence``; by default the median
   probability the teacher gives c on the seed texts it labels c, or without seed texts
   on the first round's texts: its own calibration) and it is new; the accepted texts,
   the most diverse first, seed the next round. ``steering.enabled: false`` is the
   control: one round, every text kept with the teacher's label.
2. **Confidences and weights** (``student-strata/``, job stage ``strata-student``). Every
   teacher reads every generated text; per chosen layer, its Relative-Mahalanobis
   confidence is fitted on part of the texts and scored on the rest (training/strata/
   rmd.py); the weighting module (training/students/teacher_weighting.py) combines the
   layers by their reliability and turns confidences into per-sample weights
   (``weighting``: rmd, max_prob, mean, or the owner-routing control).
3. **Student.** The union-label student learns the weighted mixture of the teachers'
   softened distributions, each teacher putting mass on its own labels only (masked soft
   targets), through the one student trainer (training/students/trainer.py); with
   ``transfer: blocks`` its blocks also learn the teachers' corresponding blocks, gated per
   sample by each teacher's layer confidence (training/strata/blocks.py). Its best epoch
   is picked on a held-out share of the generated texts labelled by the mixture's argmax:
   no real data anywhere.
4. **Evaluate / export.** With ``data.test`` (or ``data.dev``), labelled real texts over
   the union labels, the student and each teacher are scored (report only), by the
   pipeline's one evaluation (``evaluation_texts``, ``score_teachers``). The bundle is
   exported, checked and published like any other, its provenance naming the teachers.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from contracts.artifacts import (
    atomic_dir,
    is_complete,
    read_stage,
    write_json_atomic,
    write_stage_record,
    write_text_atomic,
)
from contracts.config import PipelineConfig
from contracts.errors import ArtifactError, ConfigError, DataError
from contracts.jobs import Stage
from contracts.layout import RunLayout
from models.latent_text_generator import Latent
from models.text import text_encoder_shape
from models.text_generator import TextRequest
from training.data.prepare import Example, PreparedData
from training.devices import torch_device
from training.evaluation.evaluate import classification_report
from training.generation.near_copies import normalise
from training.generation.texts import draw_seed, generate_for
from training.sharding import ShardStrategy
from training.strata.blocks import BlockTransfer, layer_map, standardise
from training.strata.rmd import layer_confidences
from training.strata.teachers import (
    LoadedTeacher,
    check_reads,
    chosen_layers,
    load_teachers,
    num_layers,
    read_teacher,
    union_labels,
)
from training.students.teacher_weighting import block_gates, strata_weights
from training.tgt.latent_generator import LatentGenerator
from training.tracking.progress import RunContext

log = logging.getLogger("lugpi.strata")
STUDENT_KEY = "strata"
GENERATED_FILE = "generated.jsonl"
TEACHERS_FILE = "teachers.json"
MASKED_LOGIT = -1e4  # a teacher's logit for a label it does not have: no probability


@dataclass(frozen=True)
class GeneratedText:
    teacher: str  # whose class it was generated for (and accepted by)
    label: str
    text: str
    confidence: float  # the teacher's probability of ``label``
    round: int


# -- seeds ----------------------------------------------------------------------------------
def load_seed_texts(cfg: PipelineConfig) -> list[str]:
    """strata.seed_texts (one text per line, or a CSV/TSV/JSONL's text column), a seeded
    sample of ``steering.seed_pool``; none when it is not given: the mode is data-free and
    starts from the class descriptions (``class_descriptions``)."""
    a = cfg.strata
    if a.seed_texts is None:
        return []
    path = Path(a.seed_texts)
    if not path.is_file():
        raise DataError(f"strata.seed_texts: no such file {path}")
    if path.suffix == ".txt":
        texts = [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines()]
    else:
        from training.data.readers import read_rows

        texts = [r.text for r in read_rows(path, cfg.data, labelled=False, split="unlabelled")]
    texts = list(dict.fromkeys(t for t in texts if t))
    if not texts:
        raise DataError("strata.seed_texts: no texts")
    n = min(a.steering.seed_pool, len(texts))
    rng = random.Random(f"lugpi:{cfg.seed}:strata-seeds")
    return [texts[i] for i in sorted(rng.sample(range(len(texts)), n))]


def class_descriptions(t: LoadedTeacher, label: str) -> list[str]:
    """What generation starts from for one class: its prompts, else its name (with
    separators read as spaces: ``sci.space`` -> ``sci space``)."""
    given = [p for p in t.prompts.get(label, []) if p.strip()]
    return given or [re.sub(r"[._/-]+", " ", label).strip() or label]


# -- steering statistics --------------------------------------------------------------------
def distinct_ngrams(texts: Sequence[str], n: int) -> float:
    """Distinct n-grams / all n-grams over ``texts`` (1.0: no n-gram repeats)."""
    grams: list[tuple[str, ...]] = []
    for t in texts:
        w = t.lower().split()
        grams += [tuple(w[i : i + n]) for i in range(len(w) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0


def text_stats(
    texts: Sequence[str], probs: np.ndarray, labels: Sequence[str], bar: Sequence[float]
) -> dict[str, object]:
    """What a set of texts gives a teacher: mean confidence, the texts it would accept per
    class (its answer, with probability >= that class's bar), distinct 1- and 2-grams."""
    if len(texts) == 0:
        return {"texts": 0, "mean_confidence": 0.0, "accepted_per_class": {}, "distinct_1": 0.0}
    top = probs.max(axis=1)
    answer = probs.argmax(axis=1)
    accepted = Counter(labels[int(a)] for a, p in zip(answer, top, strict=True) if p >= bar[int(a)])
    return {
        "texts": len(texts),
        "mean_confidence": round(float(top.mean()), 4),
        "accepted_per_class": {c: accepted.get(c, 0) for c in labels},
        "classes_covered": sum(accepted.get(c, 0) > 0 for c in labels),
        "distinct_1": round(distinct_ngrams(texts, 1), 4),
        "distinct_2": round(distinct_ngrams(texts, 2), 4),
    }


def steering_report(
    t: LoadedTeacher, arms: dict[str, Decoded], bar: Sequence[float]
) -> dict[str, Any]:
    """The steering arms of one teacher side by side, at one acceptance filter (``accept``
    at ``bar``) and one generation budget: per class, every arm's first n_c decodes for it,
    n_c the fewest any arm decoded for it. Per arm: the teacher's mean probability of the
    class each text was decoded for, the texts accepted per class, distinct 2-grams of the
    decodes and of the accepted texts, and the embedding spread (the mean pairwise cosine
    distance of the teacher's sentence embeddings of a class's decodes, averaged over the
    classes)."""
    k = len(t.labels)
    budget = [min(sum(w == c for w in a.wanted) for a in arms.values()) for c in range(k)]
    out: dict[str, Any] = {
        "budget_per_class": {t.labels[c]: budget[c] for c in range(k)},
        "thresholds": [round(float(b), 4) for b in bar],
        "arms": {},
    }
    for name, arm in arms.items():
        taken: list[int] = []
        for c in range(k):
            taken += [i for i, w in enumerate(arm.wanted) if w == c][: budget[c]]
        texts = [arm.texts[i] for i in taken]
        wanted = [arm.wanted[i] for i in taken]
        readout = read_teacher(t, texts, [])
        probs = readout.probs
        fresh = accept(t, texts, wanted, probs, bar, set(), 0) if texts else {}
        got = [g.text for c in fresh for g in fresh[c]]
        conf = [float(probs[i, c]) for i, c in enumerate(wanted)]
        spread = [
            embedding_spread(readout.embedding[[i for i, w in enumerate(wanted) if w == c]])
            for c in range(k)
            if budget[c] >= 2
        ]
        out["arms"][name] = {
            "decoded": len(texts),
            "mean_class_confidence": round(float(np.mean(conf)), 4) if conf else 0.0,
            "accepted_per_class": {t.labels[c]: len(fresh.get(c, [])) for c in range(k)},
            "accepted": len(got),
            "distinct_2": round(distinct_ngrams(texts, 2), 4),
            "distinct_2_accepted": round(distinct_ngrams(got, 2), 4),
            "embedding_spread": round(float(np.mean(spread)), 4) if spread else 0.0,
        }
    return out


def embedding_spread(emb: np.ndarray) -> float:
    """Mean pairwise cosine distance of the rows of ``emb`` (0: all point the same way)."""
    if len(emb) < 2:
        return 0.0
    unit = emb / np.maximum(np.linalg.norm(emb, axis=1, keepdims=True), 1e-12)
    sim = unit @ unit.T
    n = len(emb)
    return float(1.0 - (sim.sum() - np.trace(sim)) / (n * (n - 1)))


# -- generation -----------------------------------------------------------------------------
@dataclass
class Decoded:
    """Every text one steering arm decoded for a teacher, in order, with the class it was
    decoded for (index into the teacher's labels): what the steering report compares."""

    texts: list[str]
    wanted: list[int]


def first_seeds(
    cfg: PipelineConfig,
    t: LoadedTeacher,
    pool: list[str],
    pool_probs: np.ndarray,
    bar: Sequence[float] | None,
) -> dict[int, list[str]]:
    """Per class, what generation starts from: its descriptions; with seed texts also the
    pool texts the teacher labels it above the bar (the most diverse first), then the most
    probable for it."""
    s = cfg.strata.steering
    seeds: dict[int, list[str]] = {}
    for c, label in enumerate(t.labels):
        given = class_descriptions(t, label)
        if not len(pool):
            seeds[c] = given
            continue
        assert bar is not None
        answer = pool_probs.argmax(axis=1)
        sure = [i for i in range(len(pool)) if answer[i] == c and pool_probs[i, c] >= bar[c]]
        order = sorted(range(len(pool)), key=lambda i: -float(pool_probs[i, c]))
        picked = diverse_pick([pool[i] for i in sure], [float(pool_probs[i, c]) for i in sure],
                              s.seeds_per_class)  # fmt: skip
        rest = [pool[i] for i in order]
        seeds[c] = list(dict.fromkeys(given + picked + rest))[: max(s.seeds_per_class, len(given))]
    return seeds


def steer_teacher(
    cfg: PipelineConfig,
    t: LoadedTeacher,
    pool: list[str],
    pool_probs: np.ndarray,
    text_cache: Path,
    ctx: RunContext,
    strategy: ShardStrategy | None = None,
    bar: Sequence[float] | None = None,
) -> tuple[list[GeneratedText], dict[str, Any], Decoded]:
    """Reject-and-reseed: the accepted texts of one teacher, a record of every round and
    every text decoded. ``bar``: a fixed acceptance bar (the steering report runs every
    arm at one filter); default from the seed texts, else from the first round."""
    s = cfg.strata.steering
    k = len(t.labels)
    seen = {normalise(p) for p in pool}
    accepted: dict[int, list[GeneratedText]] = {c: [] for c in range(k)}
    # Without seed texts the bar comes from the first round's texts (the teacher's own
    # calibration on what the generator wrote from the class descriptions).
    if bar is None and len(pool):
        bar = thresholds(cfg, t, pool_probs)
    seeds = first_seeds(cfg, t, pool, pool_probs, bar)
    decoded = Decoded([], [])
    rounds: list[dict[str, object]] = []
    generated = 0
    for r in range(s.rounds):
        active = [c for c in range(k) if len(accepted[c]) < s.per_class]
        if not active:
            break
        requests, wanted = [], []
        for c in active:
            for seed_text in seeds[c]:
                for j in range(s.draws_per_seed):
                    tag = f"strata:{t.name}:{t.labels[c]}:{r}\0{seed_text}"
                    requests.append(TextRequest(seed_text, draw_seed(cfg.seed, tag, j)))
                    wanted.append(c)
        texts, _ = generate_for(cfg, requests, text_cache, ctx, strategy, Stage.STRATA_TEXTS)
        generated += len(texts)
        decoded.texts += texts
        decoded.wanted += wanted
        fresh, bar, this_round = score_round(cfg, t, texts, wanted, bar, seen, r, active)
        for c in active:
            accepted[c] += fresh[c][: s.per_class - len(accepted[c])]
            # Re-seed from what the teacher accepted, the most diverse first (keeping to the
            # most confident texts alone would collapse a class onto a few words); keep old
            # seeds while few were accepted.
            best = diverse_pick(
                [g.text for g in fresh[c]], [g.confidence for g in fresh[c]], s.seeds_per_class
            )
            seeds[c] = list(dict.fromkeys(best + seeds[c]))[: s.seeds_per_class]
        rounds.append(this_round)
    rows = [g for c in range(k) for g in accepted[c]]
    kept_bar = [round(b, 4) for b in bar or []]
    record = {"rounds": rounds, "generated": generated, "thresholds": kept_bar}
    return rows, record, decoded


def score_round(
    cfg: PipelineConfig,
    t: LoadedTeacher,
    texts: Sequence[str],
    wanted: Sequence[int],
    bar: Sequence[float] | None,
    seen: set[str],
    r: int,
    active: Sequence[int],
) -> tuple[dict[int, list[GeneratedText]], Sequence[float], dict[str, object]]:
    """One round of any steering arm as the teacher sees it: its answers on the round's
    decodes, the acceptance bar (fixed from this round when none was given), the texts
    accepted per class and the round's record."""
    probs = read_teacher(t, texts, []).probs
    if bar is None:
        bar = thresholds(cfg, t, probs)
    fresh = accept(t, texts, wanted, probs, bar, seen, r)
    return fresh, bar, round_record(t, r, active, fresh, probs)


def accept(
    t: LoadedTeacher,
    texts: Sequence[str],
    wanted: Sequence[int],
    probs: np.ndarray,
    bar: Sequence[float],
    seen: set[str],
    r: int,
) -> dict[int, list[GeneratedText]]:
    """The acceptance filter of every steering arm: a text decoded for class c is accepted
    when c is the teacher's answer with probability at least bar[c] and it is new
    (normalised; ``seen`` is updated)."""
    fresh: dict[int, list[GeneratedText]] = {c: [] for c in sorted(set(wanted))}
    for c, text, p in zip(wanted, texts, probs, strict=True):
        key = normalise(text)
        if not key or key in seen:
            continue
        if int(p.argmax()) == c and p[c] >= bar[c]:
            seen.add(key)
            fresh[c].append(GeneratedText(t.name, t.labels[c], text, float(p[c]), r))
    return fresh


def round_record(
    t: LoadedTeacher,
    r: int,
    active: Sequence[int],
    fresh: dict[int, list[GeneratedText]],
    probs: np.ndarray,
) -> dict[str, object]:
    return {
        "round": r,
        "requested": len(probs),
        "accepted": {t.labels[c]: len(fresh.get(c, [])) for c in active},
        "mean_confidence": round(float(probs.max(axis=1).mean()), 4) if len(probs) else 0,
    }


def diverse_pick(texts: Sequence[str], scores: Sequence[float], n: int) -> list[str]:
    """Up to ``n`` of ``texts``: greedily the one adding the most words not yet covered by
    those picked (ties: the higher score), so that seeds spread over the class's words."""
    left = sorted(range(len(texts)), key=lambda i: -scores[i])
    words = [set(texts[i].lower().split()) for i in range(len(texts))]
    covered: set[str] = set()
    out: list[str] = []
    while left and len(out) < n:
        best = max(left, key=lambda i: len(words[i] - covered))  # max keeps the first tie
        left.remove(best)
        covered |= words[best]
        out.append(texts[best])
    return out


def thresholds(cfg: PipelineConfig, t: LoadedTeacher, pool_probs: np.ndarray) -> list[float]:
    """Per class: the probability a text needs to be accepted (steering.min_confidence, or
    the median over the seed texts the teacher labels that class)."""
    fixed = cfg.strata.steering.min_confidence
    k = len(t.labels)
    if fixed is not None:
        return [fixed] * k
    answer = pool_probs.argmax(axis=1) if len(pool_probs) else np.zeros(0, np.int64)
    out = []
    for c in range(k):
        mine = pool_probs[answer == c, c]
        top = float(pool_probs[:, c].max()) if len(pool_probs) else 1.0
        out.append(float(np.median(mine)) if len(mine) else (1.0 / k + top) / 2)
    return out


def unsteered_teacher(
    cfg: PipelineConfig,
    t: LoadedTeacher,
    pool: list[str],
    text_cache: Path,
    ctx: RunContext,
    strategy: ShardStrategy | None = None,
) -> tuple[list[GeneratedText], dict[str, Any]]:
    """The control: the most texts the steered rounds may generate (rounds x classes x
    seeds_per_class x draws_per_seed; steering stops early once a class is full), from
    seed texts (else from every class's descriptions) the teacher never looked at, each
    kept with the teacher's answer. The report scores both with the same acceptance
    filter (``text_stats``: the teacher's answer at its class's bar)."""
    s = cfg.strata.steering
    n_seeds = s.rounds * len(t.labels) * s.seeds_per_class
    rng = random.Random(f"lugpi:{cfg.seed}:strata-unsteered:{t.name}")
    sources = pool or [d for label in t.labels for d in class_descriptions(t, label)]
    chosen = [sources[rng.randrange(len(sources))] for _ in range(n_seeds)]
    requests = [
        TextRequest(x, draw_seed(cfg.seed, f"strata-unsteered:{t.name}:{i}\0{x}", j))
        for i, x in enumerate(chosen)
        for j in range(s.draws_per_seed)
    ]
    texts, _ = generate_for(cfg, requests, text_cache, ctx, strategy, Stage.STRATA_TEXTS)
    probs = read_teacher(t, texts, []).probs
    seen: set[str] = set()
    rows = []
    for text, p in zip(texts, probs, strict=True):
        key = normalise(text)
        if key and key not in seen:
            seen.add(key)
            c = int(p.argmax())
            rows.append(GeneratedText(t.name, t.labels[c], text, float(p[c]), 0))
    return rows, {"rounds": [{"round": 0, "requested": len(texts)}], "generated": len(texts)}


def round_tag(t: LoadedTeacher, label: str, r: int) -> str:
    """What seeds the perturbations of learned steering's round ``r`` for one class."""
    return f"strata-learned:{t.name}:{label}:{r}"


def learned_teacher(
    cfg: PipelineConfig,
    t: LoadedTeacher,
    pool: list[str],
    pool_probs: np.ndarray,
    generator: LatentGenerator,
    ctx: RunContext,
    bar: Sequence[float] | None = None,
) -> tuple[list[GeneratedText], dict[str, Any], dict[str, Decoded]]:
    """Learned steering (training/strata/learned.py): per class a steering vector on the
    latent generator's states of the class's starts (``first_seeds``), then rounds of
    ``seeds_per_class`` x ``draws_per_seed`` decodes at seeded perturbations around the
    steered starts, each filtered like reseeding's (``accept``), until ``per_class`` are
    accepted. Returns the accepted texts, the record, and the decodes of the arm and of
    its unsteered control (the same requests without the vector). ``ConfigError`` when
    the teacher's vocabulary lacks the generator's pieces."""
    from training.strata.learned import LearnedSettings, decode_around, learn_vector
    from training.tgt.exploration import hf_classifier, piece_ids

    s = cfg.strata.steering
    k = len(t.labels)
    classifier = hf_classifier(t.model, t.tokenizer, t.max_length)
    ids = piece_ids(generator, classifier)
    if bar is None and len(pool):
        bar = thresholds(cfg, t, pool_probs)
    seeds = first_seeds(cfg, t, pool, pool_probs, bar)
    settings = LearnedSettings(s.learned_steps, s.learned_rate, s.diversity, s.latent_distance)
    starts, vectors, learning = {}, {}, {}
    per_round = s.seeds_per_class * s.draws_per_seed
    for c, label in enumerate(t.labels):
        ctx.step(Stage.STRATA_TEXTS, c, k, f"teacher {t.name}: learning to steer to {label}")
        starts[c] = generator.encode(seeds[c])
        # It learns on a batch shaped like a round's: every start, perturbed as often as
        # a round decodes it (the diversity term needs several rows even from one start).
        picks = [j % len(seeds[c]) for j in range(per_round)]
        batch = Latent(starts[c].states[picks], starts[c].mask[picks])
        # The perturbations of round 0's decodes: the vector is fitted where it is used.
        row_seeds = [draw_seed(cfg.seed, round_tag(t, label, 0), j) for j in range(per_round)]
        vectors[c], history = learn_vector(
            generator, classifier, ids, batch, c, settings, row_seeds
        )
        best = min(range(len(history)), key=lambda i: history[i]["loss"])
        learning[label] = {
            "starts": len(seeds[c]),
            "start": history[0],
            "kept": {"step": best, **history[best]},
            "vector_norm": round(float(vectors[c].norm()), 4),
        }
    seen = {normalise(p) for p in pool}
    accepted: dict[int, list[GeneratedText]] = {c: [] for c in range(k)}
    asked: dict[int, list[tuple[int, int]]] = {c: [] for c in range(k)}  # (start, seed)
    steered = Decoded([], [])
    rounds: list[dict[str, object]] = []
    for r in range(s.rounds):
        active = [c for c in range(k) if len(accepted[c]) < s.per_class]
        if not active:
            break
        texts, wanted = [], []
        for c in active:
            picks = [j % len(seeds[c]) for j in range(per_round)]
            draws = [draw_seed(cfg.seed, round_tag(t, t.labels[c], r), j) for j in range(per_round)]
            asked[c] += list(zip(picks, draws, strict=True))
            texts += decode_around(
                generator, starts[c], vectors[c], picks, draws, s.latent_distance
            )
            wanted += [c] * per_round
        steered.texts += texts
        steered.wanted += wanted
        fresh, bar, this_round = score_round(cfg, t, texts, wanted, bar, seen, r, active)
        for c in active:
            accepted[c] += fresh[c][: s.per_class - len(accepted[c])]
        rounds.append(this_round)
    control = Decoded([], [])
    for c in range(k):
        picks, draws = [p for p, _ in asked[c]], [d for _, d in asked[c]]
        control.texts += decode_around(generator, starts[c], None, picks, draws, s.latent_distance)
        control.wanted += [c] * len(picks)
    rows = [g for c in range(k) for g in accepted[c]]
    record = {
        "rounds": rounds,
        "generated": len(steered.texts),
        "thresholds": [round(b, 4) for b in bar or []],
        "learning": learning,
    }
    return rows, record, {"learned": steered, "unsteered": control}


class LatentSource:
    """The latent generator (tgt.latent_model), loaded on first use: only learned steering
    and the steering report's learned arms need it."""

    def __init__(self, cfg: PipelineConfig, text_cache: Path) -> None:
        self.cfg, self.cache = cfg, text_cache
        self.loaded: LatentGenerator | None = None

    def get(self) -> LatentGenerator:
        if self.loaded is None:
            from training.tgt.latent_generator import load_latent_generator

            device = str(select_device(self.cfg))
            self.loaded = load_latent_generator(self.cfg.tgt.latent_model, self.cache, device)
        return self.loaded


def vocabulary_gap(generator: LatentGenerator, t: LoadedTeacher) -> str | None:
    """Why the teacher cannot be steered through the latent generator's differentiable path
    (some of the generator's pieces are not in its vocabulary), or None."""
    from training.tgt.exploration import hf_classifier, piece_ids

    try:
        piece_ids(generator, hf_classifier(t.model, t.tokenizer, t.max_length))
    except ConfigError as e:
        return str(e).split(";")[0]
    return None


def steered_arms(
    cfg: PipelineConfig,
    t: LoadedTeacher,
    pool: list[str],
    pool_probs: np.ndarray,
    latent: LatentSource,
    text_cache: Path,
    ctx: RunContext,
    strategy: ShardStrategy | None,
) -> tuple[list[GeneratedText], dict[str, Any], dict[str, Any]]:
    """One teacher's steered texts by ``steering.method``, and what the stage record adds:
    the method used (a teacher whose vocabulary lacks the latent generator's pieces falls
    back to 'reseed', with the reason) and the steering report. The report compares the
    arms run: the method's, learned steering's unsteered control, and with
    ``steering.compare`` the other method's, every one at the method's bar."""
    s = cfg.strata.steering
    out: dict[str, Any] = {"steering_method": s.method}
    arms: dict[str, Decoded] = {}
    gap = vocabulary_gap(latent.get(), t) if s.method == "learned" or s.compare else None
    if gap is not None:
        out["steering_vocabulary"] = gap
    got: list[GeneratedText] = []
    record: dict[str, Any] = {}
    if s.method == "learned" and gap is None:
        got, record, arms = learned_teacher(cfg, t, pool, pool_probs, latent.get(), ctx)
        out["learning"] = record["learning"]
    else:
        if s.method == "learned":
            out["steering_method"] = "reseed"
            out["steering_fallback"] = (
                f"strata.steering.method 'learned' needs teacher {t.name!r} to read the latent "
                f"generator tgt.latent_model {cfg.tgt.latent_model!r}: {gap}; this teacher was "
                "steered by 'reseed'"
            )
            log.warning("strata: %s", out["steering_fallback"])
        got, record, arms["reseed"] = steer_teacher(
            cfg, t, pool, pool_probs, text_cache, ctx, strategy
        )
    bar = record["thresholds"]
    if s.compare and "reseed" not in arms:
        _, _, arms["reseed"] = steer_teacher(
            cfg, t, pool, pool_probs, text_cache, ctx, strategy, bar=bar
        )
    if s.compare and gap is None and "learned" not in arms:
        _, _, more = learned_teacher(cfg, t, pool, pool_probs, latent.get(), ctx, bar=bar)
        arms.update(more)
    if len(arms) > 1 and bar:
        out["steering_report"] = steering_report(t, arms, bar)
    return got, record, out


def select_device(cfg: PipelineConfig) -> torch.device:
    return torch_device(cfg.device)


def run_generation(
    cfg: PipelineConfig,
    out_dir: Path,
    ctx: RunContext,
    *,
    text_cache: Path,
    strategy: ShardStrategy | None = None,
) -> Path:
    """Steered (or unsteered) generation for every teacher -> ``strata/``."""
    started = time.perf_counter()
    a = cfg.strata
    ctx.step(Stage.STRATA_TEXTS, 0, len(a.teachers), "loading the teachers")
    teachers = load_teachers(a.teachers, select_device(cfg))
    union = union_labels(teachers)
    pool = load_seed_texts(cfg)
    latent = LatentSource(cfg, text_cache)
    rows: list[GeneratedText] = []
    per_teacher: dict[str, Any] = {}
    empty: list[str] = []
    for i, t in enumerate(teachers):
        ctx.step(Stage.STRATA_TEXTS, i, len(teachers), f"teacher {t.name}: scoring the seed texts")
        described = [d for label in t.labels for d in class_descriptions(t, label)]
        unknown_share = check_reads(t, (pool or described)[:500])
        pool_probs = read_teacher(t, pool, []).probs
        steering: dict[str, Any] = {}
        if a.steering.enabled:
            got, record, steering = steered_arms(
                cfg, t, pool, pool_probs, latent, text_cache, ctx, strategy
            )
        else:
            got, record = unsteered_teacher(cfg, t, pool, text_cache, ctx, strategy)
        counts = Counter(g.label for g in got)
        missing = [c for c in t.labels if counts.get(c, 0) == 0]
        if missing and a.on_empty_class == "fail":
            raise DataError(
                f"strata: teacher {t.name!r} accepted no generated text for class(es) "
                f"{missing}; add strata.teachers[].prompts for them, lower "
                "strata.steering.min_confidence, raise steering.rounds, or set "
                "strata.on_empty_class: continue"
            )
        empty += [f"{t.name}:{c}" for c in missing]
        got_probs = read_teacher(t, [g.text for g in got], []).probs
        bar = list(
            record.get("thresholds") or thresholds(cfg, t, pool_probs if pool else got_probs)
        )
        per_teacher[t.name] = {
            "source": t.source,
            "labels": t.labels,
            "unknown_token_share": round(unknown_share, 4),
            "kept": len(got),
            "kept_per_class": {c: counts.get(c, 0) for c in t.labels},
            "generated": record["generated"],
            "rounds": record["rounds"],
            "thresholds": bar,
            "kept_stats": text_stats([g.text for g in got], got_probs, t.labels, bar),
            "seed_stats": text_stats(pool, pool_probs, t.labels, bar),
            "seeds": "seed_texts" if pool else "class descriptions",
            **steering,
        }
        rows += got
    if not rows:
        raise DataError("strata: no generated text was accepted for any teacher")
    summary: dict[str, object] = {
        "generator": cfg.text_generator.model,
        "steering": a.steering.enabled,
        "steering_method": a.steering.method if a.steering.enabled else "unsteered",
        "union_labels": union,
        "kept": len(rows),
        "generated": sum(int(v["generated"]) for v in per_teacher.values()),
        "empty_classes": empty,
        "teachers": per_teacher,
    }
    with atomic_dir(out_dir, Stage.STRATA_TEXTS.value) as tmp:
        lines = "".join(json.dumps(asdict(g), ensure_ascii=False) + "\n" for g in rows)
        write_text_atomic(tmp / GENERATED_FILE, lines)
        write_json_atomic(
            tmp / TEACHERS_FILE,
            {t.name: {"source": t.source, "labels": t.labels} for t in teachers},
        )
        write_stage_record(tmp, Stage.STRATA_TEXTS, time.perf_counter() - started, summary)
    return out_dir


def load_generation(stage_dir: Path) -> tuple[list[GeneratedText], dict[str, Any]]:
    if not is_complete(stage_dir):
        raise ArtifactError(f"{stage_dir}: no finished StrataNet generation; rerun the mode")
    try:
        with (stage_dir / GENERATED_FILE).open(encoding="utf-8") as f:
            rows = [GeneratedText(**json.loads(line)) for line in f if line.strip()]
    except (OSError, json.JSONDecodeError, TypeError) as e:
        raise ArtifactError(f"{stage_dir}: unreadable ({e}); delete it and rerun") from e
    return rows, dict(read_stage(stage_dir).summary)


# -- targets and the student -----------------------------------------------------------------
@dataclass
class AmalgamatedTargets:
    union: list[str]
    logits: torch.Tensor  # (M, N, U): each teacher's logits on its own labels, masked elsewhere
    embeddings: list[torch.Tensor]  # M x (N, D_i)
    weights: torch.Tensor  # (M, N)
    names: list[str]
    # Per teacher: hidden-state index -> (N,) RMD confidence, and -> reliability.
    layer_confidence: list[dict[int, np.ndarray]]
    reliability: list[dict[int, float]]
    # Per teacher: hidden-state index -> (N, D_i) pooled states (the block-wise transfer's
    # targets); empty unless asked for.
    states: list[dict[int, np.ndarray]]
    record: dict[str, list[dict[str, float]]]  # teacher -> per layer: reliability, accuracy


def strata_targets(
    cfg: PipelineConfig,
    teachers: Sequence[LoadedTeacher],
    rows: Sequence[GeneratedText],
    ctx: RunContext,
    mode: str | None = None,
    *,
    keep_states: bool = False,
) -> AmalgamatedTargets:
    """Every teacher on every text; its RMD confidence per layer (fitted on part of its own
    texts, training/strata/rmd.py); the per-sample weights of ``mode`` (default
    strata.weighting). ``keep_states``: also every layer's pooled states (block-wise)."""
    a = cfg.strata
    union = union_labels(teachers)
    col = {label: j for j, label in enumerate(union)}
    texts = [r.text for r in rows]
    n, u = len(texts), len(union)
    logits = torch.full((len(teachers), n, u), MASKED_LOGIT)
    own_probs, embeddings, confs, rels, states = [], [], [], [], []
    chosen_conf, chosen_rel = [], []
    record: dict[str, list[dict[str, float]]] = {}
    for i, t in enumerate(teachers):
        ctx.step(Stage.STRATA_STUDENT, i, len(teachers), f"teacher {t.name}: layers and RMD")
        chosen = chosen_layers(t, a.confidence.layers)
        every = list(range(1, num_layers(t) + 1)) if keep_states else []
        read = sorted(set(chosen) | set(every))
        readout = read_teacher(t, texts, read)
        cols = [col[label] for label in t.labels]
        logits[i][:, cols] = torch.from_numpy(readout.logits)
        own_probs.append(torch.from_numpy(readout.probs))
        embeddings.append(torch.from_numpy(readout.embedding))
        mine = np.asarray([r.teacher == t.name for r in rows])
        index = {label: c for c, label in enumerate(t.labels)}
        y = np.asarray([index.get(r.label, 0) if r.teacher == t.name else 0 for r in rows])
        if int(mine.sum()) >= 2 * a.confidence.folds:
            fitted = layer_confidences(
                {layer: readout.layers[layer] for layer in read}, mine, y, len(t.labels),
                folds=a.confidence.folds, seed=cfg.seed,
            )  # fmt: skip
            conf = {f.layer: f.confidence for f in fitted}
            rel = {f.layer: f.reliability for f in fitted}
            record[t.name] = [
                {"layer": f.layer, "reliability": round(f.reliability, 4),
                 "held_out_accuracy": round(f.held_out_accuracy, 4)}
                for f in fitted if f.layer in chosen
            ]  # fmt: skip
        else:  # too few texts of its own to fit and score apart: no text is its own
            conf = {layer: np.zeros(n) for layer in read}
            rel = {layer: 0.0 for layer in read}
            record[t.name] = []
        confs.append(conf)
        rels.append(rel)
        chosen_conf.append(torch.from_numpy(np.stack([conf[layer] for layer in chosen])))
        chosen_rel.append(torch.tensor([rel[layer] for layer in chosen]))
        states.append({layer: readout.layers[layer] for layer in every})
    owner = torch.tensor([[t.name for t in teachers].index(r.teacher) for r in rows])
    weights = strata_weights(
        (mode or a.weighting),  # type: ignore[arg-type]
        own_probs, layer_confidence=chosen_conf, reliability=chosen_rel, owner=owner,
        sharpness=a.sharpness,
    )  # fmt: skip
    return AmalgamatedTargets(
        union, logits, embeddings, weights, [t.name for t in teachers], confs, rels, states,
        record,
    )  # fmt: skip


def block_transfer(
    cfg: PipelineConfig, targets: AmalgamatedTargets, rows: torch.Tensor
) -> tuple[BlockTransfer, dict[str, list[int]]]:
    """The block-wise term on training ``rows``: each teacher's layers mapped onto the
    student's blocks, its states standardised, its gates from its layer confidences."""
    depth, width = text_encoder_shape(cfg.student.text_model)
    idx = rows.numpy()
    mapped: dict[str, list[int]] = {}
    teacher_states, gate_parts = [], []
    for name, conf, st in zip(targets.names, targets.layer_confidence, targets.states, strict=True):
        layers = layer_map(depth, max(st))
        mapped[name] = layers
        teacher_states.append(
            torch.from_numpy(np.stack([standardise(st[layer])[idx] for layer in layers], axis=1))
        )
        gate_parts.append(torch.from_numpy(np.stack([conf[layer][idx] for layer in layers])))
    gates = block_gates(gate_parts)
    return BlockTransfer(width, teacher_states, gates, cfg.strata.block_weight), mapped


def mixture(targets: AmalgamatedTargets, tau: float = 1.0) -> torch.Tensor:
    """(N, U): the weighted mixture of the teachers' softened distributions."""
    probs = torch.softmax(targets.logits / tau, dim=-1)
    return (targets.weights.unsqueeze(-1) * probs).sum(dim=0)


def routing(targets: AmalgamatedTargets, rows: Sequence[GeneratedText]) -> dict[str, float]:
    """How the weights route: the mean weight a teacher gets on its own texts and on the
    others', the share of texts whose heaviest teacher is the one they were made for, and
    how much a teacher's weight varies across its own texts (a per-sample gate, not a
    constant per teacher)."""
    out: dict[str, float] = {}
    heaviest = targets.weights.argmax(dim=0).numpy()
    owner = np.asarray([targets.names.index(r.teacher) for r in rows])
    out["routed_to_owner"] = round(float((heaviest == owner).mean()), 4)
    for i, name in enumerate(targets.names):
        w = targets.weights[i].numpy()
        mine = owner == i
        out[f"{name}_own"] = round(float(w[mine].mean()), 4) if mine.any() else 0.0
        out[f"{name}_others"] = round(float(w[~mine].mean()), 4) if (~mine).any() else 0.0
        out[f"{name}_own_std"] = round(float(w[mine].std()), 4) if mine.any() else 0.0
    return out


def train_strata_student(
    cfg: PipelineConfig,
    generation_dir: Path,
    out_dir: Path,
    ctx: RunContext,
    *,
    mode: str | None = None,
    transfer: str | None = None,
) -> Path:
    """RMD confidences, weights (and block gates) and the union-label student -> ``out_dir``
    (a student directory). ``mode``/``transfer``: override strata.weighting/transfer."""
    from training.students.train_loop import select_runtime
    from training.students.trainer import StudentOptions, TeacherTargets, train_text_classifier

    started = time.perf_counter()
    a = cfg.strata
    rows, gen_summary = load_generation(generation_dir)
    if a.budget is not None and len(rows) > a.budget:
        rng = random.Random(f"lugpi:{cfg.seed}:strata-budget")
        keep = set(rng.sample(range(len(rows)), a.budget))
        rows = [r for i, r in enumerate(rows) if i in keep]
    teachers = load_teachers(a.teachers, select_device(cfg))
    blocks = (transfer or a.transfer) == "blocks"
    targets = strata_targets(cfg, teachers, rows, ctx, mode, keep_states=blocks)
    del teachers
    # A seeded share of the generated texts, labelled by the mixture, picks the best epoch.
    rng = random.Random(f"lugpi:{cfg.seed}:strata-dev")
    n = len(rows)
    n_dev = max(1, round(n * a.pseudo_dev_fraction)) if n > 1 else 0
    dev_idx = sorted(rng.sample(range(n), n_dev))
    dev_set = set(dev_idx)
    train_idx = [i for i in range(n) if i not in dev_set] or dev_idx
    pseudo = mixture(targets).argmax(dim=-1).numpy()
    union = targets.union
    data = PreparedData(
        labels=union,
        text_pair=False,
        splits={
            "generated": [Example(rows[i].text, None, None, rows[i].text) for i in train_idx],
            "dev": [Example(rows[i].text, None, union[pseudo[i]], rows[i].text) for i in dev_idx],
        },
    )
    ti = torch.as_tensor(train_idx)
    teacher_targets = TeacherTargets(
        logits=targets.logits[:, ti],
        embeddings=[e[ti] for e in targets.embeddings],
        names=targets.names,
        weights=targets.weights[:, ti],
    )
    runtime = select_runtime(cfg.device, cfg.mixed_precision)
    aux, mapped = block_transfer(cfg, targets, ti) if blocks else (None, {})
    extra: dict[str, object] = {
        "strata": {
            "weighting": mode or a.weighting,
            "transfer": transfer or a.transfer,
            "layer_map": mapped,
            "sharpness": a.sharpness,
            "steering": a.steering.enabled,
            "steering_method": gen_summary.get("steering_method"),
            "union_labels": union,
            "teachers": {name: gen_summary["teachers"][name]["source"] for name in targets.names},
            "teacher_labels": {
                name: gen_summary["teachers"][name]["labels"] for name in targets.names
            },
            "confidence_layers": targets.record,
            "routing": routing(targets, rows),
            "train_texts": len(train_idx),
            "pseudo_dev_texts": len(dev_idx),
            "empty_classes": gen_summary.get("empty_classes", []),
        }
    }
    return train_text_classifier(
        cfg, data, "student", teacher_targets, ["generated"], runtime, out_dir, ctx, started,
        StudentOptions(extra_meta=extra, stage=Stage.STRATA_STUDENT, aux_loss=aux),
    )  # fmt: skip


# -- what the shared evaluation and export need (training/strata/method.py) -----------------
def eval_split(cfg: PipelineConfig, union: list[str], split: str) -> list[tuple[str, str]] | None:
    """(text, label) of data.<split> when given: real held-out texts, for the report only."""
    path = getattr(cfg.data, split)
    if path is None:
        return None
    from training.data.readers import read_rows

    rows = read_rows(Path(path), cfg.data, labelled=True, split=split)
    unknown = sorted({str(r.label) for r in rows} - set(union))
    if unknown:
        raise DataError(
            f"data.{split} {path}: labels {unknown} are in no teacher's label set {union}"
        )
    limit = cfg.data.max_eval_samples
    if limit is not None and len(rows) > limit:
        rng = random.Random(f"lugpi:{cfg.seed}:{split}")
        rows = [rows[i] for i in sorted(rng.sample(range(len(rows)), limit))]
    return [(r.text, str(r.label)) for r in rows]


def evaluation_texts(cfg: PipelineConfig, layout: RunLayout) -> PreparedData:
    """The texts the StrataNet student is scored and checked on, over its union labels:
    data.dev/test when given (real held-out texts, report only); without data.dev, a
    seeded share of the generated texts (unlabelled) for export's checks ("check")."""
    meta = json.loads((layout.student(STUDENT_KEY) / "lugpi.json").read_text())
    union = list(meta["labels"])
    splits: dict[str, list[Example]] = {}
    for split in ("dev", "test"):
        if rows := eval_split(cfg, union, split):
            splits[split] = [Example(text, None, label, text) for text, label in rows]
    if "dev" not in splits:
        generated, _ = load_generation(layout.strata)
        rng = random.Random(f"lugpi:{cfg.seed}:strata-export")
        picked = sorted(rng.sample(range(len(generated)), min(64, len(generated))))
        splits["check"] = [
            Example(generated[i].text, None, None, generated[i].text) for i in picked
        ]
    return PreparedData(labels=union, text_pair=False, splits=splits)


def score_teachers(cfg: PipelineConfig, data: PreparedData) -> dict[str, dict[str, object]]:
    """Each teacher on the labelled splits of ``data``, its answer mapped into the union
    labels (results rows "teacher:<name>")."""
    splits = [s for s in ("dev", "test") if data.splits.get(s)]
    if not splits:
        return {}
    union = data.labels
    out: dict[str, dict[str, object]] = {}
    for t in load_teachers(cfg.strata.teachers, select_device(cfg)):
        entry: dict[str, object] = {"kind": "teacher", "modality": "text", "dir": t.source}
        for split in splits:
            answer = read_teacher(t, data.texts(split), []).logits.argmax(-1)
            pred = np.asarray([union.index(t.labels[int(a)]) for a in answer])
            gold = np.asarray(data.label_ids(split))
            entry[split] = classification_report(gold, pred, union)
        out[f"teacher:{t.name}"] = entry
    return out


def provenance(cfg: PipelineConfig, layout: RunLayout) -> dict[str, object]:
    """What a StrataNet bundle's provenance adds: the mode, its teachers (name: source) and
    their label sets, the weighting, the text generator."""
    meta = json.loads((layout.student(STUDENT_KEY) / "lugpi.json").read_text())
    a = meta.get("strata", {})
    return {
        "mode": "strata",
        "text_generator": cfg.text_generator.model,
        "teachers": [f"{n}: {src}" for n, src in a.get("teachers", {}).items()],
        "teacher_labels": a.get("teacher_labels", {}),
        "weighting": a.get("weighting"),
        "transfer": a.get("transfer"),
    }
