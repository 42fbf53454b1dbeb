"""`lugpi models` as a user walks it: the group-level --repository reaches every
subcommand, `list` exists, a missing repository is an error, an unknown model names the
known ones, and `delete` asks first. Bundles from RANDOM-weight tiny models."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from contracts.repository import list_models, publish
from training.cli import app as cli

runner = CliRunner()


@pytest.fixture
def elsewhere(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with no ./model-repository and no LUGPI_MODEL_REPOSITORY."""
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    monkeypatch.delenv("LUGPI_MODEL_REPOSITORY", raising=False)
    return cwd


def _versions(repo: Path, name: str) -> list[str]:
    return [e.version for e in list_models(repo, name)]


def _default(repo: Path, name: str) -> str:
    return next(e.version for e in list_models(repo, name) if e.default)


def test_random_group_repository_reaches_every_subcommand(
    repository: Path, random_bundles: dict[str, Path], elsewhere: Path
) -> None:
    publish(random_bundles["single"], repository, "sentiment")  # v2
    repo = str(repository)
    pinned = runner.invoke(cli, ["models", "--repository", repo, "pin", "sentiment", "v1"])
    assert pinned.exit_code == 0, pinned.output
    assert _default(repository, "sentiment") == "v1"
    assert runner.invoke(cli, ["models", "--repository", repo, "unpin", "sentiment"]).exit_code == 0
    assert _default(repository, "sentiment") == "v2"
    back = runner.invoke(cli, ["models", "--repository", repo, "rollback", "sentiment"])
    assert back.exit_code == 0 and "default is now v1" in back.output
    runner.invoke(cli, ["models", "--repository", repo, "unpin", "sentiment"])
    gone = runner.invoke(cli, ["models", "--repository", repo, "delete", "sentiment", "v1", "-y"])
    assert gone.exit_code == 0, gone.output
    assert _versions(repository, "sentiment") == ["v2"]
    assert not (elsewhere / "model-repository").exists()
    # The option after the subcommand still works, and wins over the group's.
    other = elsewhere / "missing"
    at_end = runner.invoke(
        cli, ["models", "--repository", str(other), "list", "--repository", repo]
    )
    assert at_end.exit_code == 0 and "| sentiment | v2 |" in at_end.output


def test_random_models_list_and_the_bare_group_print_the_table(
    repository: Path, elsewhere: Path
) -> None:
    for args in (["models", "list", "--repository", str(repository)],
                 ["models", "--repository", str(repository), "list"],
                 ["models", "--repository", str(repository)]):  # fmt: skip
        result = runner.invoke(cli, args)
        assert result.exit_code == 0, result.output
        assert "| sentiment | v1 |" in result.output and "| cwi | v1 |" in result.output
    only = runner.invoke(cli, ["models", "list", "cwi", "--repository", str(repository)])
    assert only.exit_code == 0 and "| cwi |" in only.output and "sentiment" not in only.output


def test_a_missing_repository_is_an_error_not_an_empty_one(elsewhere: Path) -> None:
    for args in (["models"], ["models", "list"], ["models", "--repository", "nowhere", "list"],
                 ["models", "--repository", "nowhere", "pin", "x", "v1"]):  # fmt: skip
        result = runner.invoke(cli, args)
        assert result.exit_code == 2, (args, result.output)
        assert "does not exist" in result.output and "--repository" in result.output
        assert "nothing published" not in result.output and "no models" not in result.output
    empty = elsewhere / "empty"
    empty.mkdir()
    result = runner.invoke(cli, ["models", "list", "--repository", str(empty)])
    assert result.exit_code == 0 and "no models published" in result.output


def test_random_predict_with_an_unknown_model_lists_the_known_ones(
    repository: Path, tmp_path: Path
) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"text": "fine"}\n')
    args = ["predict", str(src), "-m", "sentimnet", "-o", str(tmp_path / "out.jsonl"),
            "--repository", str(repository)]  # fmt: skip
    result = runner.invoke(cli, args)
    assert result.exit_code == 2
    assert "sentimnet" in result.output and "cwi" in result.output
    assert "sentiment" in result.output.replace("sentimnet", "")
    missing = runner.invoke(cli, [*args[:-1], str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "does not exist" in missing.output


def test_random_delete_asks_first(
    repository: Path, random_bundles: dict[str, Path], elsewhere: Path
) -> None:
    publish(random_bundles["single"], repository, "sentiment")  # v2
    args = ["models", "--repository", str(repository), "delete", "sentiment", "v1"]
    declined = runner.invoke(cli, args, input="n\n")
    assert declined.exit_code != 0 and "Delete sentiment v1" in declined.output
    assert _versions(repository, "sentiment") == ["v1", "v2"]
    accepted = runner.invoke(cli, args, input="y\n")
    assert accepted.exit_code == 0, accepted.output
    assert _versions(repository, "sentiment") == ["v2"]


def test_random_promote_lifts_the_hold_through_the_group_repository(
    repository: Path, random_bundles: dict[str, Path], elsewhere: Path
) -> None:
    publish(random_bundles["single"], repository, "sentiment", held="accuracy 0.40 < 0.80")
    assert _default(repository, "sentiment") == "v1"  # held: listed, not the default
    repo = str(repository)
    result = runner.invoke(cli, ["models", "--repository", repo, "promote", "sentiment", "v2"])
    assert result.exit_code == 0, result.output
    assert "no longer held (was: accuracy 0.40 < 0.80)" in result.output
    assert _default(repository, "sentiment") == "v2"
    assert not (elsewhere / "model-repository").exists()
    # Twice, or a version that does not exist: a one-line error, exit 2.
    again = runner.invoke(cli, ["models", "--repository", repo, "promote", "sentiment", "v2"])
    assert again.exit_code == 2 and "is not held" in again.output
    missing = runner.invoke(cli, ["models", "promote", "sentiment", "v9", "--repository", repo])
    assert missing.exit_code == 2 and "v9" in missing.output
