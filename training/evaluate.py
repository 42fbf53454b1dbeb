"""The evaluate stage: every teacher, the baseline and the student on dev and test.

Output (an atomic stage directory)::

    evaluate/  results.json  results.md  curves.png

``results.json``: per model and split, accuracy, macro-F1, per-class F1 and the confusion
matrix (rows = true label, columns = prediction). ``results.md`` is shaped like the paper's
Table 1 (and Table 2 when ablation students are given); ``markdown_table`` takes plain rows
so the benchmark can reuse it. Metrics: ``runtime.metrics`` (plain numpy), shared with
export and the API.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from contracts.artifacts import ImageIndex, atomic_dir, write_json_atomic
from contracts.config import PipelineConfig
from contracts.errors import ArtifactError
from contracts.jobs import Stage
from runtime.metrics import accuracy_f1, confusion_matrix, f1_per_class
from training.data import PreparedData
from training.progress import RunContext
from training.train_loop import History, select_runtime

RESULTS_FILE = "results.json"
TABLE1_COLUMNS = (("accuracy", "Accuracy"), ("macro_f1", "Macro-F1"))
MODALITY_NAMES = {"text+image": "text + image", "image": "image only", "text": "text only"}


def classification_report(
    y_true: np.ndarray, y_pred: np.ndarray, labels: Sequence[str]
) -> dict[str, object]:
    cm = confusion_matrix(y_true, y_pred, len(labels))
    f1 = f1_per_class(cm)
    return {
        **accuracy_f1(y_true, y_pred, len(labels)),
        "per_class_f1": {name: float(v) for name, v in zip(labels, f1, strict=True)},
        "confusion": cm.tolist(),
    }


@dataclass
class ResultRow:
    """One table row: a model's name and its metric values (missing ones print as "-")."""

    name: str
    values: dict[str, float]


def markdown_table(
    rows: Sequence[ResultRow], columns: Sequence[tuple[str, str]] = TABLE1_COLUMNS
) -> str:
    """A Markdown table; ``columns`` = (metric key, header). Values print with 3 decimals."""
    head = "| Model | " + " | ".join(h for _, h in columns) + " |"
    rule = "|---|" + "---:|" * len(columns)
    body = [
        "| "
        + r.name
        + " | "
        + " | ".join(f"{r.values[k]:.3f}" if k in r.values else "-" for k, _ in columns)
        + " |"
        for r in rows
    ]
    return "\n".join([head, rule, *body])


def results_markdown(
    title: str, table1: Sequence[ResultRow], table2: Sequence[ResultRow] | None = None
) -> str:
    parts = [f"# {title}", "", "## Table 1: test results", "", markdown_table(table1)]
    if table2:
        parts += ["", "## Table 2: ablations (student)", "", markdown_table(table2)]
    return "\n".join(parts) + "\n"


def plot_curves(histories: dict[str, History], path: Path) -> None:
    """Training loss per step (left) and dev accuracy per epoch (right), one line per model."""
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and workers
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 4))
    for name, h in histories.items():
        if h.steps:
            x = [s["epoch"] for s in h.steps]
            loss = np.asarray([s["loss"] for s in h.steps])
            w = max(1, len(loss) // 50)  # smooth long runs; keep short ones readable
            smooth = np.convolve(loss, np.ones(w) / w, mode="valid")
            ax_loss.plot(x[w - 1 :], smooth, label=name)
        if h.epochs:
            ax_acc.plot(
                [e["epoch"] for e in h.epochs],
                [e["dev_accuracy"] for e in h.epochs],
                marker="o",
                label=name,
            )
    ax_loss.set(xlabel="epoch", ylabel="training loss", title="Training loss")
    ax_acc.set(xlabel="epoch", ylabel="dev accuracy", title="Dev accuracy (best kept)")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _student_label(key: str, entry: dict[str, object]) -> str:
    teachers = entry.get("teachers")
    if key == "student" or not isinstance(teachers, list):
        return "Student (LUGPI)"
    if len(teachers) == 1:
        return f"Student from teacher {teachers[0]} (LUGPI)"
    return f"Student from teachers {', '.join(map(str, teachers))} (LUGPI, amalgamated)"


def _history(model_dir: Path) -> History | None:
    path = model_dir / "history.json"
    return History.load(path) if path.is_file() else None


def evaluate(
    cfg: PipelineConfig,
    data: PreparedData,
    images: ImageIndex,
    teacher_dirs: list[Path],
    student_dir: Path | Mapping[str, Path],
    baseline_dir: Path | None,
    out_dir: Path,
    ctx: RunContext,
    *,
    ablation_dirs: dict[str, Path] | None = None,
    token_store: Path | None = None,
) -> Path:
    """Score every model on dev and test; write results.json, results.md and curves.png.

    ``student_dir``: one student (results key "student"), or key -> dir of several (keys
    "student:<key>"; a key names the teacher it learned from, or "amalgamated").
    ``ablation_dirs`` (name -> student dir, e.g. {"alpha=0": ...}) adds Table 2 rows.
    ``token_store``: frozen image-encoder tokens shared with the other stages.
    """
    import torch

    from models.teacher import load_teacher, predict_teacher
    from models.text import load_text_classifier, predict_logits
    from training.image_tokens import teacher_image_inputs

    runtime = select_runtime(cfg.device, cfg.mixed_precision)
    splits = [s for s in ("dev", "test") if data.splits.get(s)]
    if isinstance(student_dir, Mapping):
        text_models = {f"student:{k}": Path(v) for k, v in student_dir.items()}
    else:
        text_models = {"student": Path(student_dir)}
    if baseline_dir is not None:
        text_models["baseline"] = baseline_dir
    text_models.update({f"ablation:{k}": v for k, v in (ablation_dirs or {}).items()})
    n_models = len(teacher_dirs) + len(text_models)
    bs = cfg.student.batch_size
    total = n_models * sum(math.ceil(len(data.splits[s]) / bs) for s in splits)
    done = 0

    def tick(_: int, __: int) -> None:
        nonlocal done
        done += 1
        ctx.step(Stage.EVALUATE, done, total)

    results: dict[str, dict[str, object]] = {}
    histories: dict[str, History] = {}
    for tdir in teacher_dirs:
        teacher, meta = load_teacher(tdir)
        if meta.labels != data.labels:
            raise ArtifactError(
                f"{tdir}: teacher labels {meta.labels} differ from the data's {data.labels}; "
                "retrain the teacher on this data"
            )
        teacher.to(runtime.device)
        entry: dict[str, object] = {
            "kind": "teacher",
            "modality": meta.modality,
            "dir": str(tdir),
        }
        for split in splits:
            no_images = len(images.get(split, [])) != len(data.splits[split])
            if meta.modality != "text" and no_images:
                raise ArtifactError(
                    f"image index has no aligned images for split {split!r}; rerun generate"
                )
            logits, _ = predict_teacher(
                teacher,
                data.texts(split),
                data.pairs(split),
                teacher_image_inputs(teacher, images.get(split, []), runtime, bs, token_store),
                max_length=meta.max_length,
                batch_size=bs,
                device=runtime.device,
                amp_dtype=runtime.amp_dtype,
                on_batch=tick,
            )
            y = np.asarray(data.label_ids(split))
            entry[split] = classification_report(y, logits.argmax(-1), data.labels)
        results[f"teacher:{meta.name}"] = entry
        if (h := _history(tdir)) is not None:
            histories[f"teacher {meta.name}"] = h
        del teacher
    for name, mdir in text_models.items():
        model, tokenizer, tmeta = load_text_classifier(mdir, runtime.device)
        if tmeta.labels != data.labels:
            raise ArtifactError(f"{mdir}: labels {tmeta.labels} differ from the data's")
        entry = {"kind": tmeta.kind, "dir": str(mdir)}
        if tmeta.kind == "student":
            entry["teachers"] = (tmeta.model_extra or {}).get("teachers", [])
        for split in splits:
            logits = predict_logits(
                model,
                tokenizer,
                data.texts(split),
                data.pairs(split),
                max_length=tmeta.max_length,
                batch_size=bs,
                device=runtime.device,
                amp_dtype=runtime.amp_dtype,
                on_batch=tick,
            )
            y = np.asarray(data.label_ids(split))
            entry[split] = classification_report(y, logits.argmax(-1), data.labels)
        results[name] = entry
        if (h := _history(mdir)) is not None:
            histories[name] = h
        del model
    if runtime.device.type == "cuda":
        torch.cuda.empty_cache()

    report_split = "test" if "test" in splits else "dev"

    def row(label: str, key: str) -> ResultRow:
        split_metrics = results[key][report_split]
        assert isinstance(split_metrics, dict)
        return ResultRow(label, {k: split_metrics[k] for k, _ in TABLE1_COLUMNS})

    table1 = [row("Baseline (text only, CE)", "baseline")] if "baseline" in results else []
    table1 += [
        row(f"Teacher {k.split(':', 1)[1]} ({MODALITY_NAMES[str(results[k]['modality'])]})", k)
        for k in results
        if k.startswith("teacher:")
    ]
    students = [k for k in results if k == "student" or k.startswith("student:")]
    table1 += [row(_student_label(k, results[k]), k) for k in students]
    table2 = [row(f"Student, {k.split(':', 1)[1]}", k) for k in results if k.startswith("abl")]
    if table2:
        table2.append(row("Student (full loss)", students[0]))
    with atomic_dir(out_dir, Stage.EVALUATE.value) as tmp:
        write_json_atomic(
            tmp / RESULTS_FILE,
            {"labels": data.labels, "report_split": report_split, "models": results},
        )
        title = f"{cfg.name}: {report_split} split, {len(data.splits[report_split])} examples"
        (tmp / "results.md").write_text(results_markdown(title, table1, table2))
        plot_curves(histories, tmp / "curves.png")
    return out_dir
