"""The publish gate (issue 26): may a run's bundle become the model's served default?

Checked just before publishing, on the new run's ``publish_gate.split`` (the config:
``contracts.config.PublishGateConfig``):

    minimum                 the metric is at least ``minimum``
    not_worse_than_default  the metric is at most ``max_drop`` below the current default
                            version's, which is evaluated here on the same texts (fp32,
                            through runtime/ as it is served); skipped when there is no
                            default, when its labels or input kind differ, or no texts
    above_majority          accuracy is more than ``majority_margin`` above the share of
                            the most frequent label (a constant answer scores that)

A run that fails any check is published held (``contracts.repository.HELD_FILE``) or not
at all (``on_fail``); the ``GateDecision`` says which checks failed or were skipped and why,
and goes into the run's publish record and the job's metrics (``publish_gate``).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from pydantic import BaseModel

from contracts.bundle import read_manifest
from contracts.config import PublishGateConfig
from contracts.errors import LugpiError
from contracts.repository import list_models
from runtime.classifier import open_bundle
from runtime.metrics import accuracy_f1
from runtime.session import RuntimeOptions

log = logging.getLogger("lugpi.publish_gate")

CheckName = Literal["minimum", "not_worse_than_default", "above_majority"]
Status = Literal["passed", "failed", "skipped"]


@dataclass(frozen=True)
class GateSplit:
    """The texts the gate measures on (the new run's split), labels as ids."""

    texts: Sequence[str]
    pairs: Sequence[str] | None
    labels: Sequence[int]


class GateCheck(BaseModel):
    name: CheckName
    status: Status
    detail: str


class GateDecision(BaseModel):
    action: Literal["publish", "hold", "skip"]
    metric: str
    split: str
    value: float | None
    checks: list[GateCheck]

    @property
    def reason(self) -> str:
        """The failed checks in a sentence ("" when it passed)."""
        return "; ".join(c.detail for c in self.checks if c.status == "failed")

    def summary(self) -> str:
        """One line for logs and the CLI."""
        if self.action == "publish":
            return "publish gate passed"
        verb = "held back" if self.action == "hold" else "not published"
        return f"publish gate failed, {verb}: {self.reason}"


def _metric(labels: Sequence[int], pred: Sequence[int], k: int, metric: str) -> float:
    return accuracy_f1(labels, pred, k)[metric]


def decide(
    cfg: PublishGateConfig,
    bundle_dir: Path,
    repository: Path,
    name: str,
    split: GateSplit | None,
) -> GateDecision:
    """Run the gate's checks for the bundle at ``bundle_dir`` about to be published as
    ``name`` in ``repository``. ``split``: the texts of ``cfg.split``, None when the run
    has none (the checks that need them are skipped, or fail for ``minimum``)."""
    manifest = read_manifest(bundle_dir)
    measured = manifest.metrics.get("student", {}).get(cfg.split)
    value = None if measured is None else float(getattr(measured, cfg.metric))
    accuracy = None if measured is None else measured.accuracy
    where = f"{cfg.metric} on {cfg.split}"
    checks: list[GateCheck] = []
    status: Status

    if cfg.minimum is not None:
        if value is None:
            status, text = "failed", f"no {where} to check against minimum {cfg.minimum}"
        elif value < cfg.minimum:
            status, text = "failed", f"{where} {value:.4f} < minimum {cfg.minimum}"
        else:
            status, text = "passed", f"{where} {value:.4f} >= minimum {cfg.minimum}"
        checks.append(GateCheck(name="minimum", status=status, detail=text))

    if cfg.majority_margin is not None:
        if accuracy is None or split is None or not split.labels:
            checks.append(
                GateCheck(
                    name="above_majority", status="skipped", detail=f"no labelled {cfg.split} split"
                )
            )
        else:
            top, count = Counter(split.labels).most_common(1)[0]
            rate = count / len(split.labels)
            label = manifest.labels[top] if 0 <= top < len(manifest.labels) else str(top)
            text = (
                f"accuracy on {cfg.split} {accuracy:.4f} vs majority-class rate {rate:.4f} "
                f"({label!r}) + margin {cfg.majority_margin}"
            )
            ok = accuracy > rate + cfg.majority_margin
            checks.append(
                GateCheck(name="above_majority", status="passed" if ok else "failed", detail=text)
            )

    if cfg.max_drop is not None:
        kind = (manifest.labels, manifest.text_pair)
        checks.append(
            _compare_with_default(cfg, cfg.max_drop, kind, value, repository, name, split)
        )

    failed = any(c.status == "failed" for c in checks)
    action: Literal["publish", "hold", "skip"] = cfg.on_fail if failed else "publish"
    decision = GateDecision(
        action=action, metric=cfg.metric, split=cfg.split, value=value, checks=checks
    )
    log.info("%s: %s", name, decision.summary())
    return decision


def _compare_with_default(
    cfg: PublishGateConfig,
    max_drop: float,
    kind: tuple[list[str], bool],
    value: float | None,
    repository: Path,
    name: str,
    split: GateSplit | None,
) -> GateCheck:
    labels, text_pair = kind

    def skipped(why: str) -> GateCheck:
        return GateCheck(name="not_worse_than_default", status="skipped", detail=why)

    default = next((e for e in list_models(repository, name) if e.default), None)
    if default is None:
        return skipped(f"no current default version of {name!r} to compare with")
    if default.labels != labels or default.text_pair != text_pair:
        return skipped(
            f"the current default {default.version} has other labels or inputs "
            f"({default.labels}, text_pair={default.text_pair}; this run: {labels}, "
            f"text_pair={text_pair}): not comparable"
        )
    if value is None or split is None or not split.labels:
        return skipped(f"no labelled {cfg.split} split to evaluate {default.version} on")
    try:
        manifest = read_manifest(default.path)
        # fp32, as export measured the new bundle's metric: the same graph kind on both sides.
        clf = open_bundle(default.path, manifest, RuntimeOptions(variant="fp32", device="cpu"))
        probs = clf.predict_proba(split.texts, split.pairs)
    except LugpiError as e:
        return skipped(f"the current default {default.version} could not be evaluated: {e}")
    theirs = _metric(split.labels, probs.argmax(-1).tolist(), len(labels), cfg.metric)
    detail = (
        f"{cfg.metric} on {cfg.split} {value:.4f} vs current default {default.version} "
        f"{theirs:.4f} on the same {len(split.labels)} texts (max drop {max_drop})"
    )
    ok = value >= theirs - max_drop
    return GateCheck(
        name="not_worse_than_default", status="passed" if ok else "failed", detail=detail
    )
