"""An exported ONNX classifier with its tokenizer, made into a bundle (``lugpi models import``).

The source is a directory with one ONNX graph (``model.onnx``, ``onnx/model.onnx``, or the
only ``*.onnx`` in it; a path to the ``.onnx`` file names its directory) and its tokenizer
(a transformers tokenizer directory, or ``tokenizer.json`` alone), and the label names
(``config.json``'s ``id2label``, or given). What optimum and ``torch.onnx.export`` write.

How the graph is read, and what is refused (each with a message saying what to do):

- inputs: by name, a subset of ``input_ids``, ``attention_mask``, ``token_type_ids``, int64,
  batch and sequence axes dynamic. ``attention_mask`` is required: the server pads a
  batch to its longest text, and a graph without a mask would read the padding as words.
  ``token_type_ids`` is fed when the graph takes it (zeros for single texts), else not.
- output: the one named ``logits``, else the only float output of shape (batch, labels).
  It must be raw scores: an output whose rows are already probabilities (non-negative,
  summing to 1 on every sample text) is refused, since served scores are softmax(logits/T).

The served graph is the source graph with a Softmax appended (``probabilities``) and the
scores output named ``logits``: the bundle contract every server reads. The reference the
bundle is checked against is onnxruntime on the *unchanged* source graph, fed by the
source's own transformers tokenizer; then ``training.export.bundle.write_checked_bundle``
does what it does for every bundle (fp32 parity, int8 with its agreement check, score
temperature, checksums, verification). There is one bundle writer; this module only
prepares its input.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from contracts.artifacts import TextModelMeta, atomic_dir
from contracts.bundle import (
    MODEL_FP32,
    ONNX_INPUTS,
    ONNX_LOGITS,
    ONNX_OUTPUT,
    TOKENIZER,
    Provenance,
)
from contracts.errors import ArtifactError, ModelLoadError
from models.text import encode
from runtime.classifier import OnnxClassifier
from runtime.encoding import TextEncoder
from training.export.bundle import write_checked_bundle
from training.export.graph_fusion import fuse_transformer
from training.export.quantize import MIN_INT8_AGREEMENT
from training.export.student_checkpoint import (
    TextSplit,
    check_tokenization,
    checked_split,
    serving_tokenizer,
)

log = logging.getLogger("lugpi.import")

# The longest input an imported model gets unless told otherwise (as for checkpoints).
DEFAULT_MAX_LENGTH = 512
# A row of an output this close to summing to 1 (and non-negative) is a probability row.
_PROBABILITY_ROW = 1e-4


@dataclass(frozen=True)
class GraphIO:
    """What the source graph takes and gives: inputs in ONNX_INPUTS order, the logits
    output's name, and the label count when the graph states it."""

    inputs: list[str]
    logits: str
    n_labels: int | None


def find_graph(source: Path) -> Path | None:
    """The ONNX graph of ``source`` (a ``.onnx`` file or a directory holding one); None when
    the directory has none (a transformers checkpoint, say); ``ModelLoadError`` when it has
    several and none is ``model.onnx``."""
    if source.is_file():
        if source.suffix != ".onnx":
            raise ModelLoadError(f"{source}: not an .onnx file; give the graph's directory")
        return source
    for candidate in (source / MODEL_FP32, source / "onnx" / MODEL_FP32):
        if candidate.is_file():
            return candidate
    graphs = sorted(source.glob("*.onnx"))
    if len(graphs) > 1:
        raise ModelLoadError(
            f"{source}: {len(graphs)} ONNX graphs ({', '.join(g.name for g in graphs)}) and "
            f"none named {MODEL_FP32}; give the path of the one to import"
        )
    return graphs[0] if graphs else None


def source_dir(graph: Path) -> Path:
    """Where the graph's tokenizer and config.json are: beside it, or above an ``onnx/``
    folder that holds the graph alone (optimum's and our transformers/ layout)."""
    here = graph.parent
    alone = not any((here / f).is_file() for f in (TOKENIZER, "tokenizer_config.json"))
    return here.parent if here.name == "onnx" and alone else here


def onnx_source(source: Path) -> Path | None:
    """The graph to import when ``source`` is an exported ONNX classifier (a ``.onnx`` file,
    or a directory with a graph and no PyTorch weights); None for anything else (a
    transformers checkpoint, a hub id), which the checkpoint import handles."""
    if source.is_file() and source.suffix == ".onnx":
        return source
    if not source.is_dir():
        return None
    weights = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin")
    if any((source / w).is_file() for w in weights):
        return None
    return find_graph(source)


def _dims(value: onnx.ValueInfoProto) -> list[int | str | None]:
    """Each axis: its fixed size, its symbolic name, or None when unnamed."""
    out: list[int | str | None] = []
    for d in value.type.tensor_type.shape.dim:
        out.append(d.dim_value if d.HasField("dim_value") else (d.dim_param or None))
    return out


def describe_graph(graph: Path) -> GraphIO:
    """The graph's inputs and logits output, or ``ModelLoadError`` saying why it cannot be
    served."""
    try:
        model = onnx.load(str(graph), load_external_data=False)
    except Exception as e:  # onnx raises DecodeError and friends
        raise ModelLoadError(f"{graph}: not a readable ONNX model: {e}") from e
    initializers = {i.name for i in model.graph.initializer}
    given = [i for i in model.graph.input if i.name not in initializers]
    unknown = [i.name for i in given if i.name not in ONNX_INPUTS]
    if unknown:
        raise ModelLoadError(
            f"{graph}: graph inputs {unknown} are not text-classifier inputs; the server feeds "
            f"{list(ONNX_INPUTS)} (by these names) and nothing else"
        )
    names = {i.name for i in given}
    for needed in ("input_ids", "attention_mask"):
        if needed not in names:
            why = (
                "the server pads a batch to its longest text and the graph could not tell "
                "the padding from words"
                if needed == "attention_mask"
                else "it holds the token ids"
            )
            raise ModelLoadError(f"{graph}: the graph takes no {needed!r} input ({why})")
    for value in given:
        if value.type.tensor_type.elem_type != TensorProto.INT64:
            raise ModelLoadError(
                f"{graph}: input {value.name!r} is "
                f"{TensorProto.DataType.Name(value.type.tensor_type.elem_type)}; the server "
                "feeds int64 (re-export with int64 inputs)"
            )
        dims = _dims(value)
        if len(dims) != 2 or any(isinstance(d, int) and d > 0 for d in dims):
            raise ModelLoadError(
                f"{graph}: input {value.name!r} has shape {dims}; the server needs "
                "(batch, sequence) with both axes dynamic (export with dynamic_axes)"
            )
    outputs = list(model.graph.output)
    named = [o for o in outputs if o.name == ONNX_LOGITS]
    floats = [
        o
        for o in outputs
        if o.type.tensor_type.elem_type == TensorProto.FLOAT and len(_dims(o)) == 2
    ]
    chosen = named[0] if named else floats[0] if len(floats) == 1 else None
    if chosen is None:
        raise ModelLoadError(
            f"{graph}: cannot tell which output holds the scores: outputs "
            f"{[(o.name, _dims(o)) for o in outputs]}; name it {ONNX_LOGITS!r} (or leave one "
            "float (batch, labels) output)"
        )
    if chosen.type.tensor_type.elem_type != TensorProto.FLOAT or len(_dims(chosen)) != 2:
        raise ModelLoadError(
            f"{graph}: output {chosen.name!r} must be float32 of shape (batch, labels), is "
            f"{TensorProto.DataType.Name(chosen.type.tensor_type.elem_type)} {_dims(chosen)}"
        )
    batch, labels = _dims(chosen)
    if isinstance(batch, int) and batch > 0:
        raise ModelLoadError(
            f"{graph}: output {chosen.name!r} has a fixed batch of {batch}; export with a "
            "dynamic batch axis"
        )
    used = {t for n in model.graph.node for t in (*n.input, *n.output)} | names
    if ONNX_OUTPUT in used or (chosen.name != ONNX_LOGITS and ONNX_LOGITS in used):
        raise ModelLoadError(
            f"{graph}: the graph already has a tensor named {ONNX_OUTPUT!r} or "
            f"{ONNX_LOGITS!r} that is not its scores output; rename it and export again"
        )
    inputs = [name for name in ONNX_INPUTS if name in names]
    return GraphIO(inputs, chosen.name, labels if isinstance(labels, int) and labels else None)


def serving_graph(src: Path, dst: Path, io: GraphIO) -> None:
    """``src`` with its scores output named ``logits`` and ``probabilities`` = softmax of it
    beside: the two outputs every bundle's graph has."""
    model = onnx.load(str(src))  # external weights, if any, come in from beside it
    graph = model.graph
    scores = next(o for o in graph.output if o.name == io.logits)
    if io.logits != ONNX_LOGITS:
        graph.node.append(helper.make_node("Identity", [io.logits], [ONNX_LOGITS]))
    graph.node.append(helper.make_node("Softmax", [ONNX_LOGITS], [ONNX_OUTPUT], axis=-1))
    shape = [d if d is not None else "batch" for d in _dims(scores)]
    del graph.output[:]
    graph.output.extend(
        [
            helper.make_tensor_value_info(ONNX_OUTPUT, TensorProto.FLOAT, shape),
            helper.make_tensor_value_info(ONNX_LOGITS, TensorProto.FLOAT, shape),
        ]
    )
    onnx.checker.check_model(model, full_check=False)
    onnx.save(model, str(dst))


def load_tokenizer(model_dir: Path, inputs: Sequence[str]) -> PreTrainedTokenizerFast:
    """The source's fast tokenizer: a transformers tokenizer directory, or tokenizer.json
    alone (its padding entry, if any, names the pad token)."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, use_fast=True)
    except (OSError, ValueError, KeyError) as e:
        if not (model_dir / TOKENIZER).is_file():
            raise ModelLoadError(
                f"{model_dir}: no tokenizer (a transformers tokenizer directory or "
                f"{TOKENIZER}) beside the graph: {e}"
            ) from e
        tokenizer = PreTrainedTokenizerFast(tokenizer_file=str(model_dir / TOKENIZER))
        padding = json.loads((model_dir / TOKENIZER).read_text()).get("padding") or {}
        if padding.get("pad_token"):
            tokenizer.pad_token = padding["pad_token"]
    if not isinstance(tokenizer, PreTrainedTokenizerFast):
        raise ModelLoadError(
            f"{model_dir}: no fast tokenizer ({TOKENIZER}); the server needs one for the "
            "`tokenizers` library"
        )
    if tokenizer.pad_token is None:
        raise ModelLoadError(
            f"{model_dir}: the tokenizer names no pad token; add tokenizer_config.json with "
            "pad_token (or a padding entry in tokenizer.json)"
        )
    if "token_type_ids" in inputs and "token_type_ids" not in tokenizer.model_input_names:
        # The graph takes them and the tokenizer does not make them: the server feeds the
        # tokenizer's type ids (zeros for single texts), and so must the reference.
        tokenizer.model_input_names = [*tokenizer.model_input_names, "token_type_ids"]
    return tokenizer


def config_labels(model_dir: Path) -> list[str] | None:
    """``config.json``'s ``id2label`` in id order; None when there is no config.json."""
    path = model_dir / "config.json"
    if not path.is_file():
        return None
    try:
        id2label = json.loads(path.read_text()).get("id2label")
        if not id2label:
            raise ModelLoadError(f"{path}: no id2label; give the label names (--labels)")
        by_id = {int(k): str(v) for k, v in id2label.items()}
    except (ValueError, AttributeError) as e:
        raise ModelLoadError(f"{path}: cannot read id2label: {e}") from e
    if sorted(by_id) != list(range(len(by_id))):
        raise ModelLoadError(f"{path}: id2label ids {sorted(by_id)} are not 0..{len(by_id) - 1}")
    return [by_id[i] for i in range(len(by_id))]


def source_logits(
    graph: Path,
    io: GraphIO,
    tokenizer: PreTrainedTokenizerFast,
    split: TextSplit,
    max_length: int,
    batch_size: int,
) -> np.ndarray:
    """The reference: onnxruntime on the unchanged source graph, fed by the source's own
    transformers tokenizer (``models.text.encode``, as for our students)."""
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
    out = []
    for start in range(0, len(split.texts), batch_size):
        texts, pairs = split.batch(start, batch_size)
        enc = encode(tokenizer, texts, pairs, max_length)
        feeds = {name: enc[name].numpy() for name in io.inputs}
        out.append(np.asarray(session.run([io.logits], feeds)[0], dtype=np.float32))
    return np.concatenate(out)


def onnx_max_length(model_dir: Path, tokenizer: PreTrainedTokenizerFast, wanted: int | None) -> int:
    """``wanted`` (checked against config.json's position table, when there is one), or
    the longest the model takes: the position table, the tokenizer's model_max_length and
    DEFAULT_MAX_LENGTH, whichever is least."""
    path = model_dir / "config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    positions = config.get("max_position_embeddings")
    positions = positions if isinstance(positions, int) and positions > 0 else None
    if wanted is not None:
        if positions is not None and wanted > positions:
            raise ModelLoadError(f"--max-length {wanted} exceeds the model's {positions} positions")
        return wanted
    limits = [DEFAULT_MAX_LENGTH]
    if positions is not None:
        limits.append(positions)
    # transformers reports "no limit" as a huge number.
    if int(tokenizer.model_max_length) < 1_000_000:
        limits.append(int(tokenizer.model_max_length))
    return min(limits)


def _fuse(model_dir: Path) -> Callable[[Path, Path], Path | None] | None:
    """A ``fuse`` for write_checked_bundle when config.json says what the encoder is."""
    path = model_dir / "config.json"
    config = json.loads(path.read_text()) if path.is_file() else {}
    kind = config.get("model_type")
    heads = config.get("num_attention_heads", config.get("n_heads"))
    hidden = config.get("hidden_size", config.get("dim"))
    if not (isinstance(kind, str) and isinstance(heads, int) and isinstance(hidden, int)):
        return None

    def fuse(traced: Path, dst: Path) -> Path | None:
        return dst if fuse_transformer(traced, dst, kind, heads, hidden) is not None else None

    return fuse


def _check_max_length(
    bundle: Path, io: GraphIO, labels: list[str], max_length: int, text_pair: bool
) -> None:
    """The server's own load check (``OnnxClassifier.warm_up``: a text of max_length
    tokens, batches of 1 and 8) on the served graph, before anything is published: a graph
    whose position table is shorter than max_length would be refused by every server."""
    try:
        OnnxClassifier.from_files(
            bundle / MODEL_FP32,
            bundle / TOKENIZER,
            inputs=io.inputs,
            output=ONNX_OUTPUT,
            max_length=max_length,
            labels=labels,
        ).warm_up(text_pair)
    except ModelLoadError as e:
        raise ModelLoadError(
            f"{e}; give the longest input the model takes (--max-length N, its position "
            "table; a config.json beside the graph with max_position_embeddings tells it)"
        ) from e


def export_onnx_classifier(
    graph: Path,
    out_dir: Path,
    dev: TextSplit,
    *,
    name: str,
    labels: list[str] | None,
    max_length: int | None,
    text_pair: bool,
    source: str,
    test: TextSplit | None = None,
    quantize: bool = True,
    require_int8: bool = False,
    provenance: dict[str, object] | None = None,
    batch_size: int = 32,
) -> Path:
    """Check and write the bundle of the ONNX classifier ``graph`` (its tokenizer and
    config.json beside it) to ``out_dir``; return ``out_dir``."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise ArtifactError(f"{out_dir} already exists; choose a new output directory")
    model_dir = source_dir(graph)
    io = describe_graph(graph)
    labels = labels or config_labels(model_dir)
    if labels is None:
        raise ModelLoadError(
            f"{model_dir}: no config.json with id2label beside the graph; give the label "
            "names in the order of the graph's outputs (--labels a,b,c)"
        )
    if len(set(labels)) != len(labels) or len(labels) < 2:
        raise ModelLoadError(f"labels {labels}: need at least 2 distinct names")
    if io.n_labels is not None and io.n_labels != len(labels):
        raise ModelLoadError(
            f"{graph}: output {io.logits!r} has {io.n_labels} scores per text but "
            f"{len(labels)} labels were named ({labels})"
        )
    tokenizer = load_tokenizer(model_dir, io.inputs)
    max_length = onnx_max_length(model_dir, tokenizer, max_length)
    n = len(labels)
    dev = checked_split(dev.texts, dev.pairs, dev.labels, n, text_pair, "dev")
    if test is not None:
        test = checked_split(test.texts, test.pairs, test.labels, n, text_pair, "test")
    reference_logits = source_logits(graph, io, tokenizer, dev, max_length, batch_size)
    if reference_logits.shape[1] != n:
        raise ModelLoadError(
            f"{graph}: output {io.logits!r} gives {reference_logits.shape[1]} scores per text "
            f"but {n} labels were named ({labels})"
        )
    rows = reference_logits.sum(-1)
    if (reference_logits >= 0).all() and np.abs(rows - 1).max() < _PROBABILITY_ROW:
        raise ModelLoadError(
            f"{graph}: output {io.logits!r} is already probabilities (every row sums to 1); "
            "the bundle needs the raw scores before softmax: export the logits"
        )
    meta = TextModelMeta(
        kind="student",
        labels=labels,
        max_length=max_length,
        text_pair=text_pair,
        base_model=source,
    )
    prov = Provenance.model_validate(
        {
            **(provenance or {}),
            "export": {
                "exporter": f"imported ONNX graph {graph.name} (output {io.logits!r}), "
                f"softmax appended; onnx {onnx.__version__}",
            },
        }
    )
    with (
        atomic_dir(out_dir, "export", overwrite=True) as tmp,
        tempfile.TemporaryDirectory(prefix="lugpi-import-onnx-") as scratch,
    ):
        serving_tokenizer(tokenizer, max_length).save(str(tmp / TOKENIZER))
        encoder = TextEncoder.from_file(tmp / TOKENIZER, max_length, io.inputs)
        for split in (dev, test):
            if split is not None:
                check_tokenization(tokenizer, encoder, split, max_length, batch_size)
        serving_graph(graph, tmp / MODEL_FP32, io)
        _check_max_length(tmp, io, labels, max_length, text_pair)
        write_checked_bundle(
            tmp,
            Path(scratch),
            name=name,
            meta=meta,
            inputs=io.inputs,
            encoder=encoder,
            dev=dev,
            test=test,
            reference_logits=reference_logits,
            fuse=_fuse(model_dir),
            quantize=quantize,
            require_int8=require_int8,
            min_int8_agreement=MIN_INT8_AGREEMENT,
            provenance=prov,
            metrics=None,
            references={},
            batch_size=batch_size,
        )
    log.info("imported ONNX graph %s as bundle %s", graph, out_dir)
    return out_dir
