"""The README's benchmark figures are the blocks benchmarks/readme_blocks.py generates from
benchmarks/results/*.json: a rerun that changes a results file fails here until
`python benchmarks/readme_blocks.py` rewrites the README. Reads files only: well under a
second."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from benchmarks import readme_blocks


def test_every_generated_readme_block_matches_the_results_files() -> None:
    readme = readme_blocks.README.read_text()
    assert readme_blocks.stale_blocks(readme) == [], (
        "README figures differ from benchmarks/results/*.json: run "
        "python benchmarks/readme_blocks.py"
    )
    names = {m["name"] for m in readme_blocks.MARKER.finditer(readme)}
    assert names == set(readme_blocks.BLOCKS)


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
