"""The student bundle contract: what export writes and the API reads.

    <model-repository>/<name>/<version>/
        model.onnx  model.int8.onnx  tokenizer.json  bundle.json
        transformers/  config.json  tokenizer.json  model.safetensors  [onnx/model.onnx: reference]

``bundle.json`` is a ``BundleManifest``. This is the only definition of it.
``transformers/`` (optional) is the student as other tools load a model directory:
transformers' ``from_pretrained``, and ONNX loaders (text-embeddings-inference's ort
backend, optimum) that look for ``onnx/model.onnx`` beside ``config.json`` and the
tokenizer and read the ``logits`` output.

Schema versions: 1 (graphs with ``probabilities`` only) and 2 (``logits`` beside them,
named in ``logits_output``). Both are read; export writes 2.
A file that would be byte-identical to another (``transformers/onnx/model.onnx`` is
``model.onnx``) is stored once: ``references`` maps its path to the file that holds it
(not a symlink: ``bundle_file`` refuses links). ``score_temperature`` (schema 2 only) is the
scalar the served probabilities are divided by (runtime/score_temperature.py).
Torch-free and transformers-free: the API imports it.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from contracts.errors import ArtifactError

SCHEMA_VERSION = 2
MANIFEST = "bundle.json"
MODEL_FP32 = "model.onnx"
MODEL_INT8 = "model.int8.onnx"
TOKENIZER = "tokenizer.json"
# Names of the ONNX graph's inputs and output, declared once (optimum-style).
ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
ONNX_OUTPUT = "probabilities"
# Raw scores (pre-softmax), a second output of graphs exported since bundle schema 2.
ONNX_LOGITS = "logits"
VERSION_PATTERN = r"^v[0-9]+$"


_JOB_ID = re.compile(r"^[0-9a-f]{32}$")
_TOKEN = re.compile(r"\S+")


def _public_token(token: str) -> str:
    # An absolute (or home-relative) local path shows as its last part, unless that part
    # is a job id (a run directory); hub ids ("org/name") and names are kept.
    if not (token.startswith(("/", "~")) or re.match(r"^[A-Za-z]:[\\/]", token)):
        return token
    parts = [p for p in re.split(r"[\\/]", token) if p and p != "~"]
    last = parts[-1] if parts else ""
    return "(a local run)" if not last or _JOB_ID.match(last) else last


def public_reference(value: str) -> str:
    """What anyone may see of a model reference in provenance: ``"t1: /srv/.../runs/<job>/
    student-effnet"`` -> ``"t1: student-effnet"``; names and hub ids unchanged. The API's
    public view applies it to every provenance value it shows (old bundles included)."""
    return _TOKEN.sub(lambda m: _public_token(m.group()), value)


class Provenance(BaseModel):
    model_config = ConfigDict(extra="allow", protected_namespaces=())

    job_id: str | None = None
    dataset: str | None = None
    config: dict[str, object] = Field(default_factory=dict)
    generator: str | None = None
    teachers: list[str] = Field(default_factory=list)
    student_base_model: str | None = None
    # Set by publishing: the export this version was made from (see repository.publish), so
    # that a publish resumed after a crash finds its version instead of adding another.
    export_id: str | None = None

    @field_validator("teachers")
    @classmethod
    def _public_teachers(cls, teachers: list[str]) -> list[str]:
        # Stored as anyone may see them: the full references (paths of this machine, job
        # ids) are in ``config``, which only admins see.
        return [public_reference(t) for t in teachers]


class SplitMetrics(BaseModel):
    """Metrics of one model on one split."""

    model_config = ConfigDict(extra="allow")

    accuracy: float
    macro_f1: float
    n: int


# onnxruntime fp32 against PyTorch at export, and any other engine against the
# probabilities export recorded (bundle.json samples): at most this apart.
FP32_TOLERANCE = 1e-4


class CheckedSample(BaseModel):
    """A dev text and the probabilities export measured for it with each shipped graph,
    the text alone in its batch: a server given the same text alone returns these numbers
    (dynamic int8 quantizes activations per batch, so batch-mates move int8 results)."""

    text: str
    text_pair: str | None = None
    probabilities: dict[str, list[float]] = Field(description="graph file -> one per label")


class ExportChecks(BaseModel):
    """onnxruntime vs PyTorch on real dev texts, recorded at export time."""

    n_texts: int
    fp32_max_abs_prob_diff: float
    fp32_argmax_agreement: float
    # Schema 2: the logits output against PyTorch's logits (scale-relative difference).
    fp32_max_rel_logit_diff: float | None = None
    int8_max_abs_prob_diff: float | None = None
    int8_argmax_agreement: float | None = None
    dev_accuracy_torch: float | None = None
    dev_accuracy_fp32: float | None = None
    dev_accuracy_int8: float | None = None
    # How the int8 model was made (training/quantize.py QuantSettings.as_dict): method,
    # fused graph or not, per_channel, weights, fp32 embeddings and fp32 layers.
    int8_settings: dict[str, bool | str | list[int]] | None = None
    samples: list[CheckedSample] = Field(default_factory=list)


class ScoreQuality(BaseModel):
    """How far probabilities are from what they claim, on one split (lower is better)."""

    model_config = ConfigDict(extra="forbid")

    ece: float = Field(ge=0, description="expected calibration error, 15 equal-width bins")
    nll: float = Field(ge=0, description="mean negative log-likelihood of the gold label")
    brier: float = Field(ge=0, description="mean squared distance to the one-hot label")
    n: int = Field(ge=1)


class ScoreTemperature(BaseModel):
    """The score temperature T: served probabilities are softmax(logits / T). Fitted by NLL
    on ``fitted_on`` at export. ``before``/``after``: ``[model][split]`` as in
    ``BundleManifest.metrics`` (``student``: model.onnx, ``student-int8``), at T = 1 and at T."""

    model_config = ConfigDict(extra="forbid")

    temperature: float = Field(gt=0)
    fitted_on: str = "dev"
    before: dict[str, dict[str, ScoreQuality]] = Field(default_factory=dict)
    after: dict[str, dict[str, ScoreQuality]] = Field(default_factory=dict)


class BundleManifest(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    # Absent in the oldest bundles, which are schema 1.
    schema_version: Literal[1, 2] = 1
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    version: str = Field(pattern=VERSION_PATTERN)
    labels: list[str] = Field(min_length=2)
    max_length: int = Field(ge=1)
    text_pair: bool = False
    # Inputs the ONNX graph takes, in order; a subset of ONNX_INPUTS.
    inputs: list[str] = Field(default_factory=lambda: list(ONNX_INPUTS[:2]))
    output: str = ONNX_OUTPUT
    # Schema 2: the graph output of raw scores (pre-softmax); None in schema 1 bundles.
    logits_output: str | None = None
    provenance: Provenance = Field(default_factory=Provenance)
    # metrics[model][split], e.g. metrics["student"]["test"]; models: baseline, teacher-<name>,
    # student, student-int8.
    metrics: dict[str, dict[str, SplitMetrics]] = Field(default_factory=dict)
    export_checks: ExportChecks | None = None
    files: dict[str, str] = Field(description="file name -> sha256 hex digest")
    # A path that holds the same bytes as a listed file, stored once: path -> listed file.
    references: dict[str, str] = Field(default_factory=dict)
    # None (bundles exported before it, or without dev labels): T = 1.
    score_temperature: ScoreTemperature | None = None
    created_at: datetime

    @model_validator(mode="after")
    def _logits_need_schema_2(self) -> BundleManifest:
        if self.schema_version == 1 and self.logits_output is not None:
            raise ValueError("logits_output is a schema 2 field; set schema_version to 2")
        if self.score_temperature is not None and self.logits_output is None:
            raise ValueError("score_temperature needs a graph with a logits output")
        for path, target in self.references.items():
            if path in self.files or target not in self.files:
                raise ValueError(
                    f"references: {path!r} -> {target!r} must name a path not in files and "
                    "a file that is"
                )
        return self

    @property
    def temperature(self) -> float:
        """The score temperature to serve with (1 when the bundle has none)."""
        return 1.0 if self.score_temperature is None else self.score_temperature.temperature


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_manifest(bundle_dir: Path) -> BundleManifest:
    """Parse ``bundle.json`` of a bundle directory; raise ``ArtifactError`` naming the problem."""
    path = bundle_dir / MANIFEST
    if path.is_symlink():
        try:
            inside = path.resolve(strict=True).is_relative_to(bundle_dir.resolve())
        except (OSError, RuntimeError):  # dangling, or a loop
            inside = False
        if not inside:
            # Read through it, a manifest from anywhere would name this bundle's files.
            raise ArtifactError(f"{bundle_dir}: {MANIFEST} is a symlink out of the bundle")
    if not path.is_file():
        raise ArtifactError(f"{bundle_dir}: no {MANIFEST}; not a complete bundle")
    try:
        return BundleManifest.model_validate(json.loads(path.read_text()))
    except (json.JSONDecodeError, ValidationError) as e:
        raise ArtifactError(f"{path}: invalid bundle manifest: {e}") from e


def bundle_file(bundle_dir: Path, name: str) -> Path:
    """The file ``name`` (as bundle.json lists it) inside ``bundle_dir``; ``ArtifactError``
    when it would lie outside: an absolute name, ``..``, or a symlink that leads out. A
    manifest is input like any other (a bundle may be copied in by hand), so nothing it
    names is opened before this check."""
    rel = PurePosixPath(name)
    if not name or rel.is_absolute() or ".." in rel.parts or "\\" in name:
        raise ArtifactError(f"{bundle_dir}: {MANIFEST} lists a file outside the bundle: {name!r}")
    path = bundle_dir / rel
    try:
        real = path.resolve(strict=True)
    except (OSError, RuntimeError):  # missing, or a symlink loop
        return path  # the caller reports it missing
    if not real.is_relative_to(bundle_dir.resolve()):
        raise ArtifactError(
            f"{bundle_dir}: {name} is a symlink that leads outside the bundle; copy the file in"
        )
    return path


def materialize(bundle_dir: Path, dest: Path, under: str = "") -> Path:
    """Copy the verified bundle's files below ``under`` (e.g. ``"transformers"``) to
    ``dest``, each reference as the bytes it names: a directory other tools can load
    (text-embeddings-inference's ort backend and optimum want ``onnx/model.onnx`` beside
    ``config.json``). ``dest`` must not exist. Returns ``dest``."""
    manifest = verify_bundle(bundle_dir)
    prefix = PurePosixPath(under) if under else None
    names = {**{f: f for f in manifest.files}, **manifest.references}
    dest.mkdir(parents=True)
    for name, source in sorted(names.items()):
        rel = PurePosixPath(name)
        if prefix is not None:
            if not rel.is_relative_to(prefix):
                continue
            rel = rel.relative_to(prefix)
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(bundle_file(bundle_dir, source), target)
    return dest


def verify_bundle(bundle_dir: Path) -> BundleManifest:
    """Read the manifest and check every listed file exists with its sha256.

    A bundle that fails here is never served or taken for a model.
    """
    manifest = read_manifest(bundle_dir)
    for required in (MODEL_FP32, TOKENIZER):
        if required not in manifest.files:
            raise ArtifactError(f"{bundle_dir}: {MANIFEST} lists no {required}")
    for name, digest in manifest.files.items():
        f = bundle_file(bundle_dir, name)
        if not f.is_file():
            raise ArtifactError(f"{bundle_dir}: {name} is listed in {MANIFEST} but missing")
        actual = sha256_file(f)
        if actual != digest:
            raise ArtifactError(
                f"{bundle_dir}: {name} sha256 {actual[:12]}... does not match "
                f"{MANIFEST} ({digest[:12]}...); the bundle is corrupt"
            )
    for name in manifest.references:
        bundle_file(bundle_dir, name)  # a reference is a path in the bundle, like a file
    return manifest
