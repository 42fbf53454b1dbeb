"""The score temperature at export: fit T on the dev split, measure before and after.

The numbers (runtime/score_temperature.py) go into ``bundle.json`` as
``contracts.bundle.ScoreTemperature`` and, for a run, into ``evaluate/results.md``
(``write_results_section``). Why a student needs it: runtime/score_temperature.py.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from contracts.artifacts import write_text_atomic
from contracts.bundle import ScoreQuality, ScoreTemperature
from contracts.errors import ArtifactError
from runtime.score_temperature import fit_temperature, score_quality

FIT_MODEL, FIT_SPLIT = "student", "dev"  # model.onnx's dev logits


def fit_score_temperature(
    logits: Mapping[tuple[str, str], np.ndarray | None],
    labels: Mapping[str, Sequence[int] | None],
) -> ScoreTemperature | None:
    """T fitted by NLL on ``logits[("student", "dev")]``, and ECE/NLL/Brier of every
    ``logits[(model, split)]`` at T = 1 and at T. None when dev has no labels or no logits
    (the bundle is then served at T = 1)."""
    dev_logits, dev_labels = logits.get((FIT_MODEL, FIT_SPLIT)), labels.get(FIT_SPLIT)
    if dev_logits is None or not dev_labels:
        return None
    temperature = fit_temperature(dev_logits, dev_labels)
    before: dict[str, dict[str, ScoreQuality]] = {}
    after: dict[str, dict[str, ScoreQuality]] = {}
    for (model, split), z in logits.items():
        gold = labels.get(split)
        if z is None or not gold:
            continue
        before.setdefault(model, {})[split] = ScoreQuality.model_validate(score_quality(z, gold))
        after.setdefault(model, {})[split] = ScoreQuality.model_validate(
            score_quality(z, gold, temperature)
        )
    return ScoreTemperature(temperature=temperature, before=before, after=after)


SECTION_TITLE = "## Score temperature"


def results_section(by_student: Mapping[str, ScoreTemperature | None]) -> str:
    """A Markdown section: per exported student, T and ECE/NLL/Brier before -> after."""
    lines = [
        SECTION_TITLE,
        "",
        "Served probabilities are softmax(logits / T), T fitted by NLL on dev at export "
        "(model.onnx). ECE: 15 bins. Before: T = 1.",
        "",
        "| student | T | graph | split | ECE before -> after | NLL before -> after | "
        "Brier before -> after | n |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for key, st in by_student.items():
        if st is None:
            lines.append(f"| {key} | 1 (no labelled dev split) | | | | | | |")
            continue
        for model, splits in st.after.items():
            for split, a in splits.items():
                b = st.before[model][split]
                lines.append(
                    f"| {key} | {st.temperature:.3f} | {model} | {split} | "
                    f"{b.ece:.4f} -> {a.ece:.4f} | {b.nll:.4f} -> {a.nll:.4f} | "
                    f"{b.brier:.4f} -> {a.brier:.4f} | {a.n} |"
                )
    return "\n".join(lines) + "\n"


def write_results_section(results_md: Path, section: str) -> None:
    """Put ``section`` at the end of ``results_md`` (evaluate's report), replacing the one a
    previous export wrote, so that a redone export leaves one section."""
    text = results_md.read_text() if results_md.is_file() else ""
    text = re.split(rf"(?m)^{re.escape(SECTION_TITLE)}$", text, maxsplit=1)[0].rstrip()
    write_text_atomic(results_md, (text + "\n\n" if text else "") + section, ArtifactError)
