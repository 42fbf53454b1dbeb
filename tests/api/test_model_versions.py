"""Model versions as users manage them: pin a default, roll back, delete one, through the
admin routes and `lugpi models`; and `lugpi predict` scoring a file with the runner the
API serves with. Bundles exported from RANDOM-weight tiny models (tests/api/conftest.py)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from contracts.errors import RepositoryError
from contracts.model_versions import delete_version, pin_version, rollback, unpin
from contracts.repository import list_models, publish
from tests.api.conftest import PAIR_LABELS, MakeClient
from training.cli import app as cli

ADMIN = {"X-API-Key": "admin"}
runner = CliRunner()


@pytest.fixture
def three_versions(repository: Path, random_bundles: dict[str, Path]) -> Path:
    """The repository with sentiment v1, v2, v3 (same weights) and cwi v1."""
    publish(random_bundles["single"], repository, "sentiment")
    publish(random_bundles["single"], repository, "sentiment")
    return repository


def _default(repo: Path, name: str) -> str:
    return next(e.version for e in list_models(repo, name) if e.default)


def test_random_pin_rollback_unpin_delete_in_the_repository(three_versions: Path) -> None:
    repo = three_versions
    assert _default(repo, "sentiment") == "v3"
    pin_version(repo, "sentiment", "v1")
    assert _default(repo, "sentiment") == "v1"
    publish_dir = next(e.path for e in list_models(repo, "sentiment") if e.version == "v3")
    publish(publish_dir, repo, "sentiment", keep_last=1)  # v4; pruning keeps the pin
    assert [e.version for e in list_models(repo, "sentiment")] == ["v1", "v4"]
    assert _default(repo, "sentiment") == "v1"
    with pytest.raises(RepositoryError, match="pinned"):
        delete_version(repo, "sentiment", "v1")
    assert unpin(repo, "sentiment") == "v1"
    assert _default(repo, "sentiment") == "v4"
    assert rollback(repo, "sentiment").version == "v1"
    with pytest.raises(RepositoryError, match="oldest"):
        rollback(repo, "sentiment")
    unpin(repo, "sentiment")
    delete_version(repo, "sentiment", "v1")
    assert [e.version for e in list_models(repo, "sentiment")] == ["v4"]
    with pytest.raises(RepositoryError, match="last valid"):
        delete_version(repo, "sentiment", "v4")
    with pytest.raises(RepositoryError, match="no version v9"):
        pin_version(repo, "sentiment", "v9")
    assert not [p for p in (repo / "sentiment").iterdir() if p.name.startswith(".trash-")]


def test_random_admin_routes_change_what_is_served(
    three_versions: Path, make_client: MakeClient
) -> None:
    client = make_client(api_keys=["user"], admin_keys=["admin"], max_loaded_versions=1)

    def served() -> str:
        r = client.post("/classify", json={"texts": ["x"], "model": "sentiment"}, headers=ADMIN)
        assert r.status_code == 200, r.text
        return str(r.json()["version"])

    assert served() == "v3"
    user = client.put(
        "/models/sentiment/default", json={"version": "v1"}, headers={"X-API-Key": "user"}
    )
    assert user.status_code == 403
    r = client.put("/models/sentiment/default", json={"version": "v1"}, headers=ADMIN)
    assert r.status_code == 200, r.text
    assert r.json()["default_version"] == "v1" and r.json()["pinned_version"] == "v1"
    assert served() == "v1"  # loaded although only the newest 1 is kept otherwise
    r = client.delete("/models/sentiment/default", headers=ADMIN)
    assert r.json()["pinned_version"] is None and served() == "v3"
    r = client.post("/models/sentiment/rollback", headers=ADMIN)
    assert r.status_code == 200 and r.json()["default_version"] == "v2" and served() == "v2"
    refused = client.delete("/models/sentiment/versions/v2", headers=ADMIN)
    assert refused.status_code == 400 and "pinned" in refused.json()["detail"]
    r = client.delete("/models/sentiment/versions/v3", headers=ADMIN)
    assert r.status_code == 200, r.text
    assert [v["version"] for v in r.json()["versions"]] == ["v2", "v1"]
    assert (
        client.put("/models/nope/default", json={"version": "v1"}, headers=ADMIN).status_code == 404
    )


def test_random_lugpi_models_subcommands(three_versions: Path) -> None:
    repo = str(three_versions)
    listed = runner.invoke(cli, ["models", "--repository", repo])
    assert listed.exit_code == 0 and "| sentiment | v3 | yes |" in listed.output
    pinned = runner.invoke(cli, ["models", "pin", "sentiment", "v2", "--repository", repo])
    assert pinned.exit_code == 0, pinned.output
    assert "| sentiment | v2 | yes, pinned |" in pinned.output
    back = runner.invoke(cli, ["models", "rollback", "sentiment", "--repository", repo])
    assert back.exit_code == 0 and "default is now v1" in back.output
    refused = runner.invoke(cli, ["models", "delete", "sentiment", "v1", "--repository", repo])
    assert refused.exit_code == 2 and "pinned" in refused.output
    assert runner.invoke(cli, ["models", "unpin", "sentiment", "--repository", repo]).exit_code == 0
    gone = runner.invoke(cli, ["models", "delete", "sentiment", "v1", "--repository", repo, "-y"])
    assert gone.exit_code == 0 and "| v1 |" not in gone.output


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_random_lugpi_predict_scores_a_file_like_the_api(
    repository: Path, client: TestClient, tmp_path: Path, fmt: str
) -> None:
    rows = [
        {"id": str(i), "sentence": f"text number {i} " + "long " * i, "target": "text"}
        for i in range(7)
    ]
    src = tmp_path / f"in.{fmt}"
    if fmt == "csv":
        with src.open("w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["id", "sentence", "target"])
            w.writeheader()
            w.writerows(rows)
    else:
        src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / f"out.{fmt}"
    args = ["predict", str(src), "--model", "cwi", "--output", str(out), "--repository",
            str(repository), "--text-column", "sentence", "--pair-column", "target",
            "--batch-size", "3"]  # fmt: skip
    result = runner.invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "7 rows scored" in result.output
    if fmt == "csv":
        with out.open() as f:
            got = list(csv.DictReader(f))
        scores = [[float(r[f"score_{label}"]) for label in PAIR_LABELS] for r in got]
    else:
        got = [json.loads(line) for line in out.read_text().splitlines()]
        scores = [[r["scores"][label] for label in PAIR_LABELS] for r in got]
    assert [r["id"] for r in got] == [r["id"] for r in rows]  # every column kept, in order
    api = client.post(
        "/classify",
        json={"texts": [r["sentence"] for r in rows], "text_pairs": [r["target"] for r in rows],
              "model": "cwi"},
    ).json()["predictions"]  # fmt: skip
    for mine, theirs, row in zip(scores, api, got, strict=True):
        assert mine == pytest.approx([theirs["scores"][label] for label in PAIR_LABELS], abs=2e-2)
        assert row["label"] in PAIR_LABELS


def test_random_lugpi_predict_refuses_bad_input_and_leaves_no_output(
    repository: Path, tmp_path: Path
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "fine"}\n{"body": "no text column"}\n')
    out = tmp_path / "out.jsonl"
    args = ["predict", str(src), "-m", "sentiment", "-o", str(out), "--repository", str(repository)]
    result = runner.invoke(cli, [*args, "--batch-size", "1"])
    assert result.exit_code == 2 and "'text' is missing" in result.output
    assert not out.exists() and not list(tmp_path.glob(".out.jsonl.tmp-*"))
    pairless = runner.invoke(cli, [*args[:3], "cwi", *args[4:]])
    assert pairless.exit_code == 2 and "--pair-column" in pairless.output
