"""The web page, clicked through in a real headless Chromium against a real API server.

The server (uvicorn subprocess) serves a bundle exported from a tiny RANDOM-weight model:
its predictions mean nothing, but every byte on the way is what production runs. The
browser is driven over the W3C WebDriver protocol (Debian's chromium-driver) with httpx,
already a dev dependency, so the test needs no browser-automation package.

Install the browser with: apt-get install -y chromium chromium-driver
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from contracts.artifacts import STUDENT_META, TextModelMeta
from contracts.jobs import JobRecord, JobState, Progress, Stage
from jobs.store import SqliteJobStore, now_utc
from tests.live_server import free_port, serve, wait_until

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"
if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
    pytest.skip(
        "chromium and chromedriver not found; apt-get install -y chromium chromium-driver",
        allow_module_level=True,
    )

LABELS = ["business", "sports", "tech"]
API_KEY = "web-page-test-key"
ADMIN_KEY = "web-page-admin-key"  # may classify too, and see the jobs
DEV_TEXTS = ["Shares rose after the merger.", "The striker scored twice.", "A new phone chip."]
PAIR_LABELS = ["complex", "simple"]
DEV_PAIRS = ["merger", "striker", "chip"]
# A distill history.json (training/train_loop.History) as the pair student's.
PAIR_HISTORY = {
    "steps": [{"step": i, "epoch": i / 4, "loss": 1.5 / i, "lr": 1e-4} for i in range(1, 9)],
    "epochs": [
        {"epoch": 1, "step": 4, "dev_accuracy": 0.5, "dev_macro_f1": 0.4},
        {"epoch": 2, "step": 8, "dev_accuracy": 0.75, "dev_macro_f1": 0.7},
    ],
    "best_epoch": 2,
    "train_seconds": 1.0,
}
ELEMENT = "element-6066-11e4-a52e-4f735466cecf"  # the W3C WebDriver element reference key


class Browser:
    """Just enough of the W3C WebDriver protocol for a click-through."""

    def __init__(self, driver_url: str, user_data_dir: Path) -> None:
        self.http = httpx.Client(base_url=driver_url, timeout=60)
        args = [
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--window-size=1100,1900",
            f"--user-data-dir={user_data_dir}",
        ]  # fmt: skip
        caps = {"browserName": "chrome", "goog:chromeOptions": {"binary": CHROMIUM, "args": args}}
        reply = self.http.post("/session", json={"capabilities": {"alwaysMatch": caps}})
        reply.raise_for_status()
        self.session = f"/session/{reply.json()['value']['sessionId']}"

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        reply = self.http.request(method, self.session + path, json=body)
        if reply.status_code >= 400:
            raise AssertionError(f"WebDriver {method} {path}: {reply.text[:500]}")
        return reply.json()["value"]

    def open(self, url: str) -> None:
        self._call("POST", "/url", {"url": url})

    def find(self, css: str) -> str:
        return str(self._call("POST", "/element", {"using": "css selector", "value": css})[ELEMENT])

    def find_all(self, css: str) -> list[str]:
        found = self._call("POST", "/elements", {"using": "css selector", "value": css})
        return [str(e[ELEMENT]) for e in found]

    def type(self, css: str, text: str) -> None:
        self._call("POST", f"/element/{self.find(css)}/value", {"text": text})

    def _on(self, css: str, method: str, what: str, body: dict[str, Any] | None = None) -> Any:
        # The page redraws a model's versions after each change: an element found just
        # before a redraw is stale, so find it again.
        for attempt in range(5):
            try:
                return self._call(method, f"/element/{self.find(css)}/{what}", body)
            except AssertionError as e:
                if "stale element" not in str(e) or attempt == 4:
                    raise
                time.sleep(0.2)

    def click(self, css: str) -> None:
        self._on(css, "POST", "click", {})

    def text(self, css: str) -> str:
        return str(self._on(css, "GET", "text"))

    def visible(self, css: str) -> bool:
        return bool(self._on(css, "GET", "displayed"))

    def script(self, source: str) -> Any:
        return self._call("POST", "/execute/sync", {"script": source, "args": []})

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("GET", "/screenshot"))

    def close(self) -> None:
        self._call("DELETE", "")
        self.http.close()


def make_random_student(
    tiny_text_model: Path, out: Path, labels: list[str] = LABELS, text_pair: bool = False
) -> Path:
    """A student dir with a RANDOM head, scaled so its probabilities are far from uniform."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_text_model,
        num_labels=len(labels),
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_text_model).save_pretrained(out)
    meta = TextModelMeta(
        kind="student", labels=labels, max_length=32, text_pair=text_pair, base_model="tiny-random"
    )
    (out / STUDENT_META).write_text(meta.model_dump_json())
    return out


@pytest.fixture(scope="module")
def repository(tiny_text_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding news/v1, exported and published the production way."""
    from contracts.repository import publish
    from training.export import export_student

    root = tmp_path_factory.mktemp("web-repo")
    student = make_random_student(tiny_text_model, root / "student")
    # With labels for dev and test, export records the student's metrics the way a
    # pipeline run does, so the page shows (and the API describes) a real metrics block.
    bundle = export_student(
        student,
        root / "bundle",
        DEV_TEXTS,
        None,
        [0, 1, 2],
        name="news",
        test_texts=DEV_TEXTS,
        test_labels=[0, 1, 2],
        with_transformers=False,
    )
    publish(bundle, root / "repository", "news")
    # A text-pair model whose provenance names a teacher, in two versions (to pin and roll
    # back), with the training history distill writes beside a student (the bundle carries
    # its curves).
    pair_student = make_random_student(
        tiny_text_model, root / "pair-student", PAIR_LABELS, text_pair=True
    )
    (pair_student / "history.json").write_text(json.dumps(PAIR_HISTORY))
    pair_bundle = export_student(
        pair_student,
        root / "pair-bundle",
        DEV_TEXTS,
        DEV_PAIRS,
        [0, 1, 0],
        name="paired",
        provenance={"teachers": ["tiny-teacher"]},
        test_texts=DEV_TEXTS,
        test_pairs=DEV_PAIRS,
        test_labels=[0, 1, 0],
        with_transformers=False,
    )
    publish(pair_bundle, root / "repository", "paired")
    publish(pair_bundle, root / "repository", "paired")
    return root / "repository"


@pytest.fixture(scope="module")
def jobstore(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SqliteJobStore]:
    """The embedded job store the server will open, holding two finished jobs.

    Only terminal states: the server's embedded runner would start a queued job and its
    reaper would take over a running one; this test wants neither."""
    artifacts = tmp_path_factory.mktemp("web-artifacts")
    store = SqliteJobStore(artifacts / SqliteJobStore.FILE_NAME)

    def finished(state: JobState, **fields: Any) -> Callable[[JobRecord], JobRecord]:
        return lambda r: r.model_copy(update={"state": state, "finished_at": now_utc(), **fields})

    done = store.create({"name": "news"})
    store.update(
        done.job_id,
        finished(JobState.SUCCEEDED, published_model="news", published_version="v1",
                 progress=Progress(stage=Stage.PUBLISH, done=1, total=1, fraction=1.0)),
    )  # fmt: skip
    stopped = store.create({"name": "news"})
    store.update(
        stopped.job_id,
        finished(JobState.CANCELLED,
                 progress=Progress(stage=Stage.DISTILL, done=3, total=10, fraction=0.3)),
    )  # fmt: skip
    yield store
    store.close()


@pytest.fixture(scope="module")
def server(repository: Path, jobstore: SqliteJobStore) -> Iterator[str]:
    artifacts = jobstore.path.parent
    settings = {
        "LUGPI_MODEL_REPOSITORY": str(repository),
        "LUGPI_ARTIFACTS_DIR": str(artifacts),
        "LUGPI_API_KEYS": API_KEY,
        "LUGPI_ADMIN_KEYS": ADMIN_KEY,
    }
    with serve(settings, artifacts / "uvicorn.log") as url:
        yield url + "/"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Browser]:
    port = free_port()
    log = tmp_path_factory.mktemp("chromedriver") / "chromedriver.log"
    driver = subprocess.Popen(
        [CHROMEDRIVER, f"--port={port}", f"--log-path={log}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    driver_url = f"http://127.0.0.1:{port}"
    try:
        wait_until(
            lambda: httpx.get(driver_url + "/status").json()["value"]["ready"], 30, "chromedriver"
        )
        session = Browser(driver_url, tmp_path_factory.mktemp("chromium-profile"))
        try:
            yield session
        finally:
            session.close()
    finally:
        driver.terminate()
        driver.wait(timeout=20)


def choose_model(browser: Browser, name: str) -> None:
    browser.script(
        f"const s = document.getElementById('model'); s.value = {json.dumps(name)}; "
        "s.dispatchEvent(new Event('change'));"
    )


def save_screenshot(png: bytes, tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(png)
    if extra := os.environ.get("LUGPI_SCREENSHOT_DIR"):
        Path(extra).mkdir(parents=True, exist_ok=True)
        (Path(extra) / name).write_bytes(png)
    return path


def test_page_and_assets_are_served_locally(server: str) -> None:
    page = httpx.get(server)
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "http://" not in page.text and "https://" not in page.text  # no CDN, no network
    for asset in ("static/app.js", "static/style.css"):
        assert httpx.get(server + asset).status_code == 200, asset
    # The page is public; the API behind it is not.
    assert httpx.post(server + "classify", json={"texts": ["x"]}).status_code == 401


def test_click_through_key_classify_models_jobs(
    server: str, browser: Browser, jobstore: SqliteJobStore, tmp_path: Path
) -> None:
    browser.open(server)
    text = "The striker scored twice as the home side won the cup final."
    browser.type("#text", text)
    # The server has keys: a classification without one is refused, and the page asks for it.
    browser.click("#classify-button")
    wait_until(lambda: "401" in browser.text("#classify-status"), 20, "the 401 message")
    assert browser.visible("#key-section")
    assert not browser.find_all(".prediction")
    browser.type("#api-key", ADMIN_KEY)
    browser.click("#key-save")
    wait_until(lambda: browser.visible("#models-table"), 20, "the models table")
    assert browser.text("#models-table tbody tr td:first-child") == "news"
    models_row = browser.text("#models-table tbody")
    assert "business, sports, tech" in models_row
    assert re.search(r"\b[01]\.\d{3}\b", models_row), f"no test accuracy shown: {models_row}"
    assert "news" in browser.script("return [...document.querySelectorAll('#model option')]"
                                    ".map(o => o.value)")  # fmt: skip

    browser.click("#classify-button")
    wait_until(lambda: browser.find_all(".prediction .predicted-label"), 30, "a prediction")
    label = browser.text(".prediction .predicted-label")
    assert label in LABELS
    assert "Done." in browser.text("#classify-status")
    bars = browser.script(
        "return [...document.querySelectorAll('.score-bar')].map(b => ["
        "b.dataset.label, Number(b.getAttribute('aria-valuenow')), "
        "b.firstElementChild.getBoundingClientRect().width])"
    )
    assert sorted(b[0] for b in bars) == sorted(LABELS)
    assert sum(b[1] for b in bars) == pytest.approx(1.0, abs=1e-3)
    # The winning label's bar is drawn, and is the widest.
    widths = {b[0]: b[2] for b in bars}
    assert widths[label] == max(widths.values()) > 0
    assert "model news, version v1" in browser.text(".prediction")

    # news names no teacher: the page offers no teacher box, and no text-pair field.
    assert not browser.visible("#teacher-field") and not browser.visible("#pair-field")
    # paired names one, but the teacher needs a worker and a model trained by a job here:
    # this bundle has neither, and the page says so instead of failing silently; the
    # student's answer stays.
    choose_model(browser, "paired")
    assert browser.visible("#teacher-field") and browser.visible("#pair-field")
    browser.type("#text-pair", "striker")
    browser.click("#use-teacher")
    browser.click("#classify-button")
    wait_until(lambda: "Teacher" in browser.text("#classify-status"), 30, "the teacher's answer")
    assert "409" in browser.text("#classify-status")
    assert len(browser.find_all(".prediction")) == 1
    assert "model paired, version v2" in browser.text(".prediction")
    browser.click("#use-teacher")
    choose_model(browser, "news")
    assert not browser.visible("#teacher-field") and not browser.visible("#pair-field")

    # The jobs table follows the store: both jobs, with their progress...
    wait_until(lambda: browser.visible("#jobs-table"), 20, "the jobs table")
    rows = browser.text("#jobs-table tbody")
    assert "succeeded (published news v1)" in rows and "100.0%" in rows
    assert "cancelled" in rows and "distill 3/10" in rows and "30.0%" in rows
    # ...and, polling, it shows a change made behind its back.
    cancelled = next(r for r in jobstore.list_jobs()[0] if r.state is JobState.CANCELLED)
    jobstore.update(cancelled.job_id, lambda r: r.model_copy(update={"error": "disk full"}))
    wait_until(lambda: "cancelled: disk full" in browser.text("#jobs-table tbody"), 15, "a poll")

    # Nothing the page loaded came from anywhere but this server.
    origins = browser.script(
        "return performance.getEntriesByType('resource').map(r => new URL(r.name).origin)"
    )
    assert set(origins) <= {server.rstrip("/")}
    shot = save_screenshot(browser.screenshot(), tmp_path, "web-page-classify.png")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 5000


def _version_text(browser: Browser, version: str) -> str:
    return browser.text(f"#versions .version[data-version='{version}'] h4")


def test_model_versions_results_pin_and_job_detail(
    server: str, browser: Browser, repository: Path, jobstore: SqliteJobStore, tmp_path: Path
) -> None:
    from contracts.bundle import read_manifest

    browser.open(server)
    browser.script(f"sessionStorage.setItem('lugpi-api-key', {json.dumps(ADMIN_KEY)})")
    browser.open(server)
    wait_until(lambda: browser.visible("#jobs-table"), 20, "the jobs table (admin)")
    wait_until(lambda: browser.visible("#models-table"), 20, "the models table")

    # news: one version; its test metrics and the confusion matrix the bundle carries.
    browser.click("#models-table tbody tr[data-model='news'] button.details")
    wait_until(lambda: browser.find_all("#versions .version"), 20, "news' versions")
    news = read_manifest(repository / "news" / "v1")
    student_test = news.metrics["student"]["test"]
    row = browser.text("#versions .version[data-version='v1'] tr[data-metric='student/test']")
    assert f"{student_test.accuracy:.4f}" in row and row.split()[-1] == str(student_test.n)
    cells = browser.script(
        "return [...document.querySelectorAll(\"table.confusion[data-model='student'] tr\")]"
        ".slice(1).map(r => [...r.querySelectorAll('td')].map(td => Number(td.textContent)))"
    )
    assert cells == student_test.model_dump()["confusion"]
    assert sum(map(sum, cells)) == len(DEV_TEXTS)
    # The score temperature where export fitted one (on labelled dev texts), else said so;
    # no history behind this student: said, not broken.
    details = browser.text("#model-details")
    raw = json.loads((repository / "news" / "v1" / "bundle.json").read_text())
    if raw.get("score_temperature"):
        assert f"score temperature: {raw['score_temperature']['temperature']:.4f}" in details
    else:
        assert "No score temperature or calibration error recorded" in details
    assert "No training curves in this bundle" in details
    # The shape bundle.json's score_temperature has (fit at export; ECE/NLL/Brier before
    # and after), as the page words it.
    fitted = {
        "temperature": 2.5,
        "fitted_on": "dev",
        "before": {"student": {"test": {"ece": 0.31, "nll": 1.2, "brier": 0.5, "n": 10}}},
        "after": {"student": {"test": {"ece": 0.02, "nll": 0.4, "brier": 0.25, "n": 10}}},
    }
    shown = browser.script(f"return calibrationOf({{score_temperature: {json.dumps(fitted)}}})")
    assert shown == [
        ["score temperature", "2.5000 (fitted on dev)"],
        ["student test", "ECE 0.3100 → 0.0200, NLL 1.2000 → 0.4000, Brier 0.5000 → 0.2500"],
    ]
    assert "v1 (loaded, default)" in _version_text(browser, "v1")

    # paired: two versions; the newest is the default, the curves come from history.json.
    browser.click("#models-table tbody tr[data-model='paired'] button.details")
    wait_until(lambda: len(browser.find_all("#versions .version")) == 2, 20, "paired versions")
    assert "default" in _version_text(browser, "v2")
    assert len(browser.find_all("#versions .version[data-version='v2'] svg.curve")) == 3
    captions = browser.text("#versions .version[data-version='v2'] .curves")
    assert "dev accuracy per epoch: 0.5000 → 0.7500" in captions
    assert "training loss per step: 1.5000 → 0.1875" in captions

    # An admin pins v1, unpins it, then rolls back: the page and the repository agree.
    browser.click("#versions .version[data-version='v1'] button.pin")
    wait_until(lambda: "pinned" in _version_text(browser, "v1"), 20, "v1 pinned")
    assert "default" in _version_text(browser, "v1")
    assert (repository / "paired" / ".default-version").read_text().strip() == "v1"
    browser.click("#model-actions button.unpin")
    wait_until(lambda: "default" in _version_text(browser, "v2"), 20, "v2 default again")
    assert not (repository / "paired" / ".default-version").exists()
    browser.click("#model-actions button.rollback")
    wait_until(lambda: "pinned" in _version_text(browser, "v1"), 20, "rolled back to v1")
    browser.click("#model-actions button.unpin")
    wait_until(lambda: "default" in _version_text(browser, "v2"), 20, "v2 default at the end")

    # A job's detail view: its state, progress, what it published, and its log (or why not).
    done = next(r for r in jobstore.list_jobs()[0] if r.state is JobState.SUCCEEDED)
    browser.click(f"#jobs-table tbody tr[data-job='{done.job_id}'] button.details")
    wait_until(lambda: browser.visible("#job-detail"), 20, "the job detail")
    wait_until(lambda: browser.text("#job-log") != "", 20, "the job log")
    facts = browser.text("#job-facts")
    assert "succeeded" in facts and "100.0%" in facts and "news v1" in facts
    assert not browser.text("#job-log").startswith("Cannot read the log")
    shot = save_screenshot(browser.screenshot(), tmp_path, "web-page-versions.png")
    assert shot.stat().st_size > 5000
