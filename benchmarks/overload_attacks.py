"""The attack phases of ``benchmarks/bench_overload.py --attacks`` (its docstring says what
they are). Loopback only, each attack bounded in time; every server runs under an RSS
guard that kills it past ``guard_mb``."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

from benchmarks.bench_api import free_port, percentile
from benchmarks.bench_overload import REPO_ROOT, deployed_flags

MODEL = "minilm"
MARKER = "<!-- attacks: benchmarks/bench_overload.py --attacks writes below this line -->"
SHORT = {"texts": ["The striker scored twice in the second half."], "model": MODEL}
N_SLOW = 260  # past the image's --limit-concurrency 256
ITEMS = 1_048_000  # "1," each: a 2 MB body


class Server:
    """uvicorn as the image starts it, in a child process, its RSS sampled and guarded."""

    def __init__(self, repo: Path, guard_mb: float) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("LUGPI_")}
        env.update(LUGPI_MODEL_REPOSITORY=str(repo), LUGPI_POLL_INTERVAL_S="0",
                   PYTHONPATH=str(REPO_ROOT))  # fmt: skip
        cmd = [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(self.port), "--no-access-log",
               *deployed_flags()]  # fmt: skip
        self.proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)  # fmt: skip
        self.guard_mb = guard_mb
        self.peak_mb = 0.0
        self.killed = False
        self._stop = threading.Event()
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(self.url + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise SystemExit("the server did not become ready")
            time.sleep(0.3)
        self.idle_mb = psutil.Process(self.proc.pid).memory_info().rss / 2**20
        self._watch = threading.Thread(target=self._guard, daemon=True)
        self._watch.start()

    def _guard(self) -> None:
        p = psutil.Process(self.proc.pid)
        while not self._stop.wait(0.05):
            try:
                rss = p.memory_info().rss / 2**20
            except psutil.Error:
                return
            self.peak_mb = max(self.peak_mb, rss)
            if rss > self.guard_mb:
                self.killed = True
                self.proc.kill()
                return

    def close(self) -> None:
        self._stop.set()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@dataclass
class Watchers:
    """/healthz every 50 ms, one short /classify every 250 ms, each on its own connection."""

    url: str
    healthz_ms: list[float] = field(default_factory=list)
    healthz_failed: int = 0
    legit: Counter[object] = field(default_factory=Counter)
    stop: threading.Event = field(default_factory=threading.Event)

    def _probe(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            while not self.stop.wait(0.05):
                t0 = time.perf_counter()
                try:
                    ok = c.get("/healthz").status_code == 200
                except httpx.HTTPError:
                    ok = False
                if ok:
                    self.healthz_ms.append((time.perf_counter() - t0) * 1000)
                else:
                    self.healthz_failed += 1

    def _classify(self) -> None:
        with httpx.Client(base_url=self.url, timeout=30) as c:
            while not self.stop.wait(0.25):
                try:
                    self.legit[c.post("/classify", json=SHORT).status_code] += 1
                except httpx.HTTPError as e:
                    self.legit[type(e).__name__] += 1

    def __enter__(self) -> Watchers:
        jobs = (self._probe, self._classify)
        self.threads = [threading.Thread(target=f, daemon=True) for f in jobs]
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


Attack = Callable[[str, int, threading.Event], Counter[object]]


def post_once(path: str, body: bytes) -> Attack:
    def attack(url: str, port: int, stop: threading.Event) -> Counter[object]:
        t0 = time.perf_counter()
        try:
            r = httpx.post(url + path, content=body, timeout=120,
                           headers={"Content-Type": "application/json"})  # fmt: skip
            key: object = f"{r.status_code} ({len(r.content)} B answer)"
        except httpx.HTTPError as e:
            key = type(e).__name__
        return Counter({f"{key} in {time.perf_counter() - t0:.1f} s": 1})

    return attack


def repeat(body: dict[str, object], clients: int) -> Attack:
    """``clients`` threads, each POSTing ``body`` back to back (``version`` per client
    alternates v1/v2 when the body names one)."""

    def attack(url: str, port: int, stop: threading.Event) -> Counter[object]:
        out: Counter[object] = Counter()

        def client(i: int) -> None:
            mine = dict(body)
            if "version" in mine:
                mine["version"] = ("v1", "v2")[i % 2]
            with httpx.Client(base_url=url, timeout=120) as c:
                while not stop.is_set():
                    try:
                        out[c.post("/classify", json=mine).status_code] += 1
                    except httpx.HTTPError as e:
                        out[type(e).__name__] += 1

        threads = [threading.Thread(target=client, args=(i,), daemon=True) for i in range(clients)]
        for t in threads:
            t.start()
        stop.wait()
        for t in threads:
            t.join(180)
        return out

    return attack


def slow_clients(url: str, port: int, stop: threading.Event) -> Counter[object]:
    """N_SLOW idle sockets and N_SLOW bodies trickling a byte every 2 s, each reopened when
    the server closes it; counts how often the server closed one."""
    out: Counter[object] = Counter()
    idle: list[socket.socket | None] = [None] * N_SLOW
    slow: list[socket.socket | None] = [None] * N_SLOW
    head = (b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000\r\n\r\n{")  # fmt: skip
    last_trickle = 0.0
    while not stop.is_set():
        for i, s in enumerate(idle):
            if s is not None:
                s.setblocking(False)
                try:
                    if s.recv(1) == b"":
                        raise ConnectionResetError
                    continue
                except BlockingIOError:
                    continue
                except OSError:
                    out["idle closed by server"] += 1
                    s.close()
            try:
                idle[i] = socket.create_connection(("127.0.0.1", port), timeout=5)
            except OSError:
                idle[i] = None
        if time.monotonic() - last_trickle >= 2.0:
            last_trickle = time.monotonic()
            for i, s in enumerate(slow):
                try:
                    if s is None:
                        slow[i] = socket.create_connection(("127.0.0.1", port), timeout=5)
                        slow[i].sendall(head)  # type: ignore[union-attr]
                    else:
                        s.sendall(b" ")
                except OSError:
                    if s is not None:
                        out["slow body closed by server"] += 1
                        s.close()
                    slow[i] = None
        stop.wait(0.2)
    for s in idle + slow:
        if s is not None:
            s.close()
    return out


@dataclass
class Row:
    phase: str
    outcome: str
    healthz: str
    legit: str
    idle_mb: float
    peak_mb: float
    killed: bool

    def line(self) -> str:
        killed = " (killed past the guard)" if self.killed else ""
        return (f"| {self.phase} | {self.outcome} | {self.healthz} | {self.legit} | "
                f"{self.idle_mb:.0f} | {self.peak_mb:.0f}{killed} |")  # fmt: skip


def run_phase(name: str, repo: Path, attack: Attack, seconds: float, guard_mb: float) -> Row:
    server = Server(repo, guard_mb)
    try:
        stop = threading.Event()
        result: list[Counter[object]] = []
        with Watchers(server.url) as w:
            time.sleep(1.0)
            t = threading.Thread(
                target=lambda: result.append(attack(server.url, server.port, stop))
            )
            t.start()
            t.join(seconds)
            stop.set()
            t.join(300)
            time.sleep(0.5)
        ms = w.healthz_ms
        healthz = "-"
        if ms:
            healthz = f"{percentile(ms, 0.5):.0f} / {percentile(ms, 0.99):.0f} / {max(ms):.0f}"
        if w.healthz_failed:
            healthz += f", {w.healthz_failed} failed"
        sent = sum(w.legit.values())
        others = {k: v for k, v in w.legit.items() if k != 200}
        legit = f"{w.legit[200]} of {sent}" + (f" {others}" if others else "")
        outcome = ", ".join(f"{k}: {v}" for k, v in (result[0] if result else {}).items()) or "-"
        row = Row(name, outcome, healthz, legit, server.idle_mb, server.peak_mb, server.killed)
        print(row.line(), flush=True)
        return row
    finally:
        server.close()


def run_attacks(out: Path, seconds: float, guard_mb: float, only: str = "") -> None:
    """``only``: comma-separated words; run just the attacks whose name has one of them."""
    from contracts.repository import publish
    from tests.chaos.bundles import export_minilm_bundle

    work = Path(tempfile.gettempdir()) / "lugpi-bench"
    work.mkdir(exist_ok=True)
    bundle = export_minilm_bundle(work / "minilm-random-512-bundle", 512)
    repo = work / "attack-repo"
    shutil.rmtree(repo, ignore_errors=True)
    publish(bundle, repo, MODEL)
    publish(bundle, repo, MODEL)  # v2: the same graph, loaded beside v1
    ones = b"[" + b"1," * (ITEMS - 1) + b"1]"
    oip = (b'{"inputs": [{"name": "text", "shape": [%d], "datatype": "BYTES", "data": '
           % ITEMS + ones + b"}]}")  # fmt: skip
    long_text = ("the market fell again! 日本 interdisciplinary 42, " * 250)[:10_000]
    phases: list[tuple[str, Attack]] = [
        ("quiet (no attack)", lambda url, port, stop: (stop.wait(), Counter())[1]),
        ("amplification: /classify `{\"texts\": [1, 1, ...]}` 2 MB",
         post_once("/classify", b'{"texts": ' + ones + b"}")),
        ("amplification: TEI /predict `{\"inputs\": [1, ...]}` 2 MB",
         post_once("/predict", b'{"inputs": ' + ones + b"}")),
        ("amplification: OIP /v2/models/minilm/infer, 1M BYTES items `1`",
         post_once(f"/v2/models/{MODEL}/infer", oip)),
        ("amplification: /v1/classify `{\"input\": [1, ...]}` 2 MB",
         post_once("/v1/classify", b'{"model": "minilm", "input": ' + ones + b"}")),
        (f"{N_SLOW} idle sockets + {N_SLOW} bodies at 1 byte / 2 s", slow_clients),
        ("1 client: 1,000 '!' back to back", repeat({"texts": ["!" * 1000], "model": MODEL}, 1)),
        ("1 client: 1,000 CJK chars back to back",
         repeat({"texts": ["日本語の文章です" * 125], "model": MODEL}, 1)),
        ("2 clients: 64 x 10,000 chars to v1 and v2",
         repeat({"texts": [long_text] * 64, "model": MODEL, "version": "v"}, 2)),
    ]  # fmt: skip
    if only:
        words = [w.strip() for w in only.split(",") if w.strip()]
        phases = [(n, a) for n, a in phases if any(w in n for w in words)]
    load = os.getloadavg()
    command = f"python benchmarks/bench_overload.py --attacks --attack-seconds {seconds:g}"
    command += f" --only '{only}'" if only else ""
    lines = [
        MARKER, "",
        f"## Attacks ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
        f"`{command}`; {os.cpu_count()} cores, load average {load[0]:.1f} at the start "
        "(the machine was shared with other engineers' jobs, and the load generator runs "
        "on it too); the image's uvicorn flags and default settings; two versions of "
        "all-MiniLM-L6-v2 (random head) at max_length 512. Each row is a fresh server; "
        "/healthz probed every 50 ms, a legitimate short /classify every 250 ms, both "
        "throughout the attack.", "",
        "| attack | what the attacker got | /healthz p50 / p99 / max ms | legitimate "
        "requests answered 200 | RSS idle MB | RSS peak MB |",
        "|---|---|---|---|---|---|",
    ]  # fmt: skip
    print("\n".join(lines), flush=True)
    for name, attack in phases:
        lines.append(run_phase(name, repo, attack, seconds, guard_mb).line())
    lines.append("")
    lines.append(f"Load average at the end: {os.getloadavg()[0]:.1f}.")
    text = out.read_text() if out.is_file() else ""
    head = text.split(MARKER)[0].rstrip("\n")
    out.write_text((head + "\n\n" if head else "") + "\n".join(lines) + "\n")
    print(f"written to {out}")
