"""Publishing under crashes and settings: a resumed publish never adds a second version,
and the number of versions kept is the deployment's setting. Real processes (killed
between the two steps of a publish), a real model repository directory."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from contracts.repository import list_models, publish
from tests.chaos.bundles import make_bundle, make_exported_run
from tests.conftest import REPO_ROOT

if TYPE_CHECKING:  # the fixture's type
    from tests.worker.conftest import Stack

NAME = "chaos-model"


def _publish_in_child(
    run_dir: Path, repository: Path, keep_last: int, *, die: bool = False
) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "tests.chaos.publish_child"]
    cmd += [str(run_dir), str(repository), NAME, str(keep_last)]
    if die:
        cmd.append("--die-before-record")
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
    return subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)


def _versions(repository: Path) -> list[str]:
    return [e.version for e in list_models(repository, NAME) if e.ok]


def test_a_publish_killed_before_its_record_is_not_repeated(tmp_path: Path) -> None:
    """Weakness: a worker killed after the version was renamed into the repository but
    before published.json was written published the same model again on resume (v2 beside
    v1), which could also push a real, older version out of the kept set."""
    repository = tmp_path / "repo"
    publish(make_bundle(tmp_path / "earlier", NAME), repository, NAME)  # v1: another run
    run_dir = make_exported_run(tmp_path / "run", NAME)

    crashed = _publish_in_child(run_dir, repository, keep_last=2, die=True)
    assert crashed.returncode == 137, crashed.stderr
    assert _versions(repository) == ["v1", "v2"]  # renamed into place, then killed
    assert not (run_dir / "published.json").exists()

    resumed = _publish_in_child(run_dir, repository, keep_last=2)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.split() == [NAME, "v2"]  # found its own version
    assert _versions(repository) == ["v1", "v2"]  # nothing added, the earlier run kept
    assert (run_dir / "published.json").is_file()


def test_keep_last_versions_is_the_number_kept(tmp_path: Path) -> None:
    """Weakness: LUGPI_KEEP_LAST_VERSIONS was ignored; publish always kept its default 5."""
    repository = tmp_path / "repo"
    for i in range(3):
        publish(make_bundle(tmp_path / f"earlier-{i}", NAME), repository, NAME)
    run_dir = make_exported_run(tmp_path / "run", NAME)
    done = _publish_in_child(run_dir, repository, keep_last=2)
    assert done.returncode == 0, done.stderr
    assert _versions(repository) == ["v3", "v4"]


@pytest.mark.slow
def test_a_job_keeps_the_deployments_number_of_versions(embedded_stack: Stack) -> None:
    """Weakness: the API's (and the worker's) keep_last_versions never reached the job's
    publish step. A real embedded job (tiny random-weight models, 32 CWI News texts)
    publishes into a repository holding 3 versions of its name, with 2 to keep."""
    s = embedded_stack
    for i in range(3):
        publish(make_bundle(s.root / f"earlier-{i}", "kept"), s.repository, "kept")
    client = s.client(redis_url=None, keep_last_versions=2)
    r = client.post("/jobs/train", json=s.job("kept"))
    assert r.status_code == 202, r.text
    job_id = r.json()["job_id"]
    done = s.poll(client, job_id, lambda j: j["state"] not in ("queued", "running"), 300)
    assert done["state"] == "succeeded", done.get("error")
    assert done["published_version"] == "v4"
    assert [e.version for e in list_models(s.repository, "kept") if e.ok] == ["v3", "v4"]
