"""The model repository: atomic, versioned, concurrent publishing; listing; resolving.

Bundles here are fake (random bytes for the models): the repository only checks the
manifest and the files' sha256, so no torch is needed and each test takes milliseconds.
"""

from __future__ import annotations

import multiprocessing
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from contracts import repository as repo_mod
from contracts.bundle import (
    MANIFEST,
    MODEL_FP32,
    MODEL_INT8,
    TOKENIZER,
    BundleManifest,
    SplitMetrics,
    read_manifest,
    sha256_file,
    verify_bundle,
)
from contracts.errors import ArtifactError, RepositoryError
from contracts.repository import (
    COUNTER_FILE,
    list_models,
    models_command,
    publish,
    resolve,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


def make_fake_bundle(path: Path, size: int = 4096, extra: bool = True) -> Path:
    """A bundle whose model files are random bytes, with a valid manifest."""
    path.mkdir(parents=True)
    for f in (MODEL_FP32, MODEL_INT8):
        (path / f).write_bytes(os.urandom(size))
    (path / TOKENIZER).write_text('{"version": "1.0"}')
    (path / "transformers").mkdir()
    (path / "transformers" / "config.json").write_text("{}")
    if extra:  # written by the export stage, not part of the bundle
        (path / "stage.json").write_text("{}")
    listed = [MODEL_FP32, MODEL_INT8, TOKENIZER, "transformers/config.json"]
    manifest = BundleManifest(
        name="exported",
        version="v0",
        labels=["no", "yes"],
        max_length=64,
        metrics={"student": {"test": SplitMetrics(accuracy=0.875, macro_f1=0.8, n=200)}},
        files={f: sha256_file(path / f) for f in listed},
        created_at=datetime.now(UTC),
    )
    (path / MANIFEST).write_text(manifest.model_dump_json())
    return path


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    return make_fake_bundle(tmp_path / "bundle")


def test_publish_numbers_versions_keeps_last_n_and_never_reuses_a_number(
    bundle: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    versions = [publish(bundle, repo, "cwi", keep_last=2)[0] for _ in range(4)]
    assert versions == ["v1", "v2", "v3", "v4"]
    assert sorted(p.name for p in (repo / "cwi").iterdir() if p.is_dir()) == ["v3", "v4"]
    entries = list_models(repo)
    assert [(e.version, e.default, e.ok) for e in entries] == [
        ("v3", False, True),
        ("v4", True, True),
    ]
    # Even if every version is deleted by hand, numbers keep increasing: an API that
    # cached "cwi/v4" must never get another model under that name.
    for v in ("v3", "v4"):
        shutil.rmtree(repo / "cwi" / v)
    assert publish(bundle, repo, "cwi")[0] == "v5"
    assert (repo / "cwi" / COUNTER_FILE).read_text().strip() == "5"


def test_publish_copies_only_listed_files_and_stamps_name_and_version(
    bundle: Path, tmp_path: Path
) -> None:
    version, path = publish(bundle, tmp_path / "repo", "cwi-news")
    assert (version, path) == ("v1", tmp_path / "repo" / "cwi-news" / "v1")
    manifest = verify_bundle(path)
    assert (manifest.name, manifest.version) == ("cwi-news", "v1")
    assert not (path / "stage.json").exists()
    assert (path / "transformers" / "config.json").is_file()
    assert read_manifest(bundle).version == "v0"  # the source bundle is left as it was
    entry = list_models(tmp_path / "repo")[0]
    assert entry.labels == ["no", "yes"]
    assert entry.sizes[MODEL_FP32] == 4096 and entry.total_bytes > 8192
    assert entry.metrics["student"]["test"].accuracy == 0.875


def test_list_models_reports_partial_and_corrupt_dirs_and_never_defaults_to_them(
    bundle: Path, tmp_path: Path
) -> None:
    repo = tmp_path / "repo"
    publish(bundle, repo, "cwi")
    model_dir = repo / "cwi"
    shutil.copytree(model_dir / "v1", model_dir / "v7")  # copied: bundle.json says v1
    shutil.copytree(model_dir / "v1", model_dir / "v8")
    with (model_dir / "v8" / MODEL_FP32).open("r+b") as f:  # one flipped byte
        first = f.read(1)
        f.seek(0)
        f.write(bytes([first[0] ^ 0xFF]))
    (model_dir / "v9").mkdir()  # a crash before bundle.json
    (model_dir / ".tmp-123-abcd").mkdir()
    (model_dir / "latest-copy").mkdir()

    entries = {e.version: e for e in list_models(repo)}
    assert entries["v1"].ok and entries["v1"].default
    assert "moved" in entries["v7"].problems[0]
    assert "sha256" in entries["v8"].problems[0] and "corrupt" in entries["v8"].problems[0]
    assert "no bundle.json" in entries["v9"].problems[0]
    assert "partial publish" in entries[".tmp-123-abcd"].problems[0]
    assert "not a version" in entries["latest-copy"].problems[0]
    assert not any(e.default for v, e in entries.items() if v != "v1")

    assert resolve(repo, "cwi") == model_dir / "v1"
    assert resolve(repo, "cwi", "latest") == model_dir / "v1"
    with pytest.raises(RepositoryError, match=r"v8 is broken.*sha256"):
        resolve(repo, "cwi", "v8")
    # The next publish skips every number in use, broken or not.
    assert publish(bundle, repo, "cwi", keep_last=10)[0] == "v10"


def test_resolve_rejects_unknown_and_malicious_names(bundle: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    publish(bundle, repo, "cwi")
    with pytest.raises(RepositoryError, match=r"no valid version of model 'other'"):
        resolve(repo, "other")
    with pytest.raises(RepositoryError, match=r"no version v3; available: \['v1'\]"):
        resolve(repo, "cwi", "v3")
    for bad_name in ("../repo", "CWI", ".tmp", "a/b"):
        with pytest.raises(RepositoryError, match=r"invalid model name"):
            resolve(repo, bad_name)
    with pytest.raises(RepositoryError, match=r"invalid version"):
        resolve(repo, "cwi", "../v1")
    assert list_models(tmp_path / "nothing-here") == []


def test_publish_into_unwritable_repository_fails_clearly(bundle: Path, tmp_path: Path) -> None:
    # Tests run as root, for whom chmod does not stop writes. So: a regular file where
    # the repository (or the model's directory) should be, and a location the kernel
    # refuses even to root (sysfs).
    blocker = tmp_path / "repo-file"
    blocker.write_text("not a directory")
    with pytest.raises(RepositoryError, match=r"cannot write to the model repository"):
        publish(bundle, blocker, "cwi")
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "cwi").write_text("a file named like the model")
    with pytest.raises(RepositoryError, match=r"repo/cwi.*writable directory"):
        publish(bundle, repo, "cwi")
    if Path("/sys").is_dir():
        with pytest.raises(RepositoryError, match=r"cannot write"):
            publish(bundle, Path("/sys/lugpi-test-repository"), "cwi")
    assert blocker.read_text() == "not a directory"


def test_failed_copy_leaves_the_repository_as_it_was(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    repo = tmp_path / "repo"
    publish(bundle, repo, "cwi")
    real_copy = shutil.copyfile
    calls = []

    def disk_full_on_second_file(src: Path, dst: Path) -> object:
        calls.append(src)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        return real_copy(src, dst)

    monkeypatch.setattr(repo_mod.shutil, "copyfile", disk_full_on_second_file)
    with pytest.raises(RepositoryError, match=r"No space left on device.*nothing was published"):
        publish(bundle, repo, "cwi")
    monkeypatch.undo()
    assert sorted(p.name for p in (repo / "cwi").iterdir() if p.is_dir()) == ["v1"]
    assert [e.version for e in list_models(repo)] == ["v1"]
    assert publish(bundle, repo, "cwi")[0] == "v2"


def test_publish_refuses_bad_bundles(bundle: Path, tmp_path: Path) -> None:
    (bundle / TOKENIZER).write_text("changed after export")
    with pytest.raises(ArtifactError, match=r"tokenizer.json sha256"):
        publish(bundle, tmp_path / "repo", "cwi")
    with pytest.raises(RepositoryError, match=r"keep_last"):
        publish(bundle, tmp_path / "repo", "cwi", keep_last=0)
    evil = make_fake_bundle(tmp_path / "evil")
    manifest = read_manifest(evil)
    outside = tmp_path / "secret.txt"
    outside.write_text("secret")
    manifest.files["../secret.txt"] = sha256_file(outside)
    (evil / MANIFEST).write_text(manifest.model_dump_json())
    with pytest.raises(ArtifactError, match=r"outside the bundle"):
        publish(evil, tmp_path / "repo", "cwi")
    assert not (tmp_path / "repo" / "cwi").exists() or not any(
        p.is_dir() for p in (tmp_path / "repo" / "cwi").iterdir()
    )


def test_processes_publishing_the_same_name_concurrently_get_distinct_versions(
    tmp_path: Path,
) -> None:
    # Bundles of 2 MB so that copies overlap in time; 4 processes x 4 publishes each.
    bundle = make_fake_bundle(tmp_path / "bundle", size=1 << 20)
    repo = tmp_path / "repo"
    ctx = multiprocessing.get_context("spawn")  # the test process has torch loaded: no fork
    with ctx.Pool(4) as pool:
        results = pool.starmap(publish, [(bundle, repo, "cwi", 100)] * 16)
    versions = sorted(int(v[1:]) for v, _ in results)
    assert versions == list(range(1, 17))
    entries = list_models(repo)
    assert len(entries) == 16 and all(e.ok for e in entries)
    assert [e.version for e in entries if e.default] == ["v16"]

    # Racing with pruning: still distinct versions, exactly keep_last left, no leftovers.
    with ctx.Pool(4) as pool:
        results = pool.starmap(publish, [(bundle, repo, "cwi", 3)] * 8)
    assert sorted(int(v[1:]) for v, _ in results) == list(range(17, 25))
    assert sorted(p.name for p in (repo / "cwi").iterdir()) == [
        ".last-version",
        ".lock",
        "v22",
        "v23",
        "v24",
    ]


def test_models_command_lists_labels_metrics_and_sizes(bundle: Path, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    assert "no models published" in models_command(repo)
    publish(bundle, repo, "cwi")
    publish(bundle, repo, "cwi")
    table = models_command(repo).splitlines()
    assert table[0].startswith("| model | version | default | labels")
    assert table[2].startswith("| cwi | v1 |  | no, yes | 0.8750 / - |")
    assert table[3].startswith("| cwi | v2 | yes | no, yes | 0.8750 / - |")


def test_repository_and_the_bundle_runner_import_without_torch() -> None:
    code = (
        "import sys, contracts.repository, runtime.classifier, runtime.metrics\n"
        "bad = [m for m in ('torch', 'transformers', 'diffusers') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO_ROOT, timeout=60)
