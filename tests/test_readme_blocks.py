"""The README's (and docs/stratanet.md's) benchmark figures are the blocks
benchmarks/readme_blocks.py generates from benchmarks/results/*.json: a rerun that changes
a results file fails here until `python benchmarks/readme_blocks.py` rewrites them. Reads
files only: a few seconds."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import readme_blocks


def test_every_generated_block_matches_the_results_files() -> None:
    texts = [path.read_text() for path in readme_blocks.DOCUMENTS]
    for path, text in zip(readme_blocks.DOCUMENTS, texts, strict=True):
        assert readme_blocks.stale_blocks(text) == [], (
            f"{path.name} figures differ from benchmarks/results/*.json: run "
            "python benchmarks/readme_blocks.py"
        )
    assert readme_blocks.missing_blocks(texts) == []
    # The StrataNet tables are in both the README and docs/stratanet.md.
    for text in texts:
        names = {m["name"] for m in readme_blocks.MARKER.finditer(text)}
        assert {"amalgamate-20ng-halves", "amalgamate-cross-domain"} <= names


def test_a_changed_results_file_makes_its_block_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results = tmp_path / "results"
    shutil.copytree(readme_blocks.RESULTS, results)
    tgt = results / "tgt_rotten_tomatoes.json"
    data = json.loads(tgt.read_text())
    data["seeds"][0]["test_accuracy"]["baseline"] += 0.1
    tgt.write_text(json.dumps(data))
    monkeypatch.setattr(readme_blocks, "RESULTS", results)
    readme = readme_blocks.README.read_text()
    assert readme_blocks.stale_blocks(readme) == ["tgt-rotten-tomatoes"]
    # Rewriting the README from the changed file makes it current again.
    rewritten = readme_blocks.render(readme)
    assert readme_blocks.stale_blocks(rewritten) == []
    assert "baseline 0.763 ± " in rewritten


def test_an_amalgamation_setting_without_a_report_gives_its_commands_then_its_table(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readme_blocks, "RESULTS", tmp_path)
    block = readme_blocks.BLOCKS["amalgamate-cross-domain"]()
    assert block.startswith("Not run yet.")
    assert "amalgamate_benchmark.py --setting cross-domain --seed $seed" in block
    assert "amalgamate_report.py --setting cross-domain" in block

    from benchmarks.amalgamate_report import RMD, aggregate, tables

    seed = {
        "command": "python benchmarks/amalgamate_benchmark.py --setting cross-domain",
        "setting": {"seed": 0, "setting": "cross-domain"},
        "halves": {"rt": ["negative", "positive"], "ng": ["sci.space", "rec.autos"]},
        "models": {RMD: {"accuracy": {"overall": 0.5, "rt": 0.6, "ng": 0.4}, "seconds": 9}},
    }
    report = aggregate([seed], "cross-domain")
    (tmp_path / "amalgamate_crossdomain.json").write_text(json.dumps(report))
    block = readme_blocks.BLOCKS["amalgamate-cross-domain"]()
    assert block == tables(report)
    assert "| data-free student (RMD, output only) | 0.500 (n=1) | 0.600 (n=1) |" in block
