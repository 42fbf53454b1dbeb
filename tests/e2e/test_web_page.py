"""The web page, clicked through in a real headless Chromium against a real API server.

The server (uvicorn subprocess) serves a bundle exported from a tiny RANDOM-weight model:
its predictions mean nothing, but every byte on the way is what production runs. The
browser is driven over the W3C WebDriver protocol (Debian's chromium-driver) with httpx,
already a dev dependency, so the test needs no browser-automation package.

Install the browser with: apt-get install -y chromium chromium-driver
"""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
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

    def click(self, css: str) -> None:
        self._call("POST", f"/element/{self.find(css)}/click", {})

    def text(self, css: str) -> str:
        return str(self._call("GET", f"/element/{self.find(css)}/text"))

    def visible(self, css: str) -> bool:
        return bool(self._call("GET", f"/element/{self.find(css)}/displayed"))

    def script(self, source: str) -> Any:
        return self._call("POST", "/execute/sync", {"script": source, "args": []})

    def screenshot(self) -> bytes:
        return base64.b64decode(self._call("GET", "/screenshot"))

    def close(self) -> None:
        self._call("DELETE", "")
        self.http.close()


def make_random_student(tiny_text_model: Path, out: Path) -> Path:
    """A student dir with a RANDOM head, scaled so its probabilities are far from uniform."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        tiny_text_model,
        num_labels=len(LABELS),
        id2label=dict(enumerate(LABELS)),
        label2id={label: i for i, label in enumerate(LABELS)},
    )
    with torch.no_grad():
        model.classifier.weight.mul_(30.0)
    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tiny_text_model).save_pretrained(out)
    meta = TextModelMeta(
        kind="student", labels=LABELS, max_length=32, text_pair=False, base_model="tiny-random"
    )
    (out / STUDENT_META).write_text(meta.model_dump_json())
    return out


@pytest.fixture(scope="module")
def repository(tiny_text_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A model repository holding news/v1, exported and published the production way."""
    from contracts.repository import publish
    from training.export.bundle import export_student

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

    # The teacher needs a worker and a model trained by a job here: this bundle has neither,
    # and the page says so instead of failing silently; the student's answer stays.
    browser.click("#use-teacher")
    browser.click("#classify-button")
    wait_until(lambda: "Teacher" in browser.text("#classify-status"), 30, "the teacher's answer")
    assert "409" in browser.text("#classify-status")
    assert len(browser.find_all(".prediction")) == 1
    browser.click("#use-teacher")

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
