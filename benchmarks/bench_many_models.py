"""Many versions in one process: a repository of 20 MiniLM-size versions behind one server.

    python benchmarks/bench_many_models.py [--versions 20] [--max-loaded 8] [--seconds 10]

One model, versions v1..vN of the same exported bundle (bench_api.py's all-MiniLM-L6-v2
with a random head, int8), so every version costs what a real MiniLM-size student costs.
The server starts with the default version (vN) loaded; the others are loaded by the first
request naming them, and with ``LUGPI_MAX_LOADED_VERSIONS`` below N the least recently
used leave (api/residency.py). Figures:

- RSS: the server's resident set after start-up, and its growth per loaded version (while
  the bound has not been reached), next to the registry's own per-version figure
  (``memory_mb`` of GET /models/{name}, what LUGPI_MAX_LOADED_MB counts).
- Time to first answer of a cold version: one request naming it, sent while nothing else
  loads (the hot client below runs meanwhile), median and max over the N-1 versions.
- The hot version's latency (one client, closed loop, requests naming no version) alone,
  then while the cold versions load one after another, then alone again: p50 and p99
  side by side in one run, so that the machine's load falls on all three.

Loopback only; one text per request (CWI 2018 News test sentences).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import bench_api as ba  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results" / "many_models.md"


def post(port: int, text: str, version: str | None = None) -> float:
    """Seconds until the answer (a 200, or SystemExit)."""
    body: dict[str, object] = {"texts": [text], "model": ba.MODEL_NAME}
    if version is not None:
        body["version"] = version
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/classify",
        data=json.dumps(body).encode(),
        headers={"content-type": "application/json"},
    )
    t = time.perf_counter()
    with urllib.request.urlopen(req, timeout=120) as r:
        r.read()
        if r.status != 200:
            raise SystemExit(f"{version}: HTTP {r.status}")
    return time.perf_counter() - t


class HotClient:
    """One closed-loop client on the default version, in a thread; latencies per phase."""

    def __init__(self, port: int, texts: list[str]) -> None:
        self.port, self.texts = port, texts
        self.phase = "idle"
        self.latencies: dict[str, list[float]] = {}
        self._stop = False
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        i = 0
        while not self._stop:
            phase = self.phase
            took = post(self.port, self.texts[i % len(self.texts)])
            if phase == self.phase and phase != "idle":
                self.latencies.setdefault(phase, []).append(took)
            i += 7

    def __enter__(self) -> HotClient:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop = True
        self._thread.join()


def pct(values: list[float], q: float) -> float:
    return ba.percentile(values, q) * 1e3 if values else float("nan")


def uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--versions", type=int, default=20)
    ap.add_argument("--max-loaded", type=int, default=8, help="LUGPI_MAX_LOADED_VERSIONS")
    ap.add_argument("--seconds", type=float, default=10.0, help="each hot-alone phase")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lugpi-bench-api")
    ap.add_argument("--out", type=Path, default=RESULTS)
    args = ap.parse_args()
    command = "python benchmarks/bench_many_models.py " + shlex.join(sys.argv[1:])
    texts = ba.cwi_sentences(ba.CWI_TEST)
    args.work.mkdir(parents=True, exist_ok=True)
    bundle = ba.ensure_bundle(None, args.work, texts)

    from contracts.repository import publish

    repo = args.work / "many-repo"
    shutil.rmtree(repo, ignore_errors=True)
    for _ in range(args.versions):
        publish(bundle, repo, ba.MODEL_NAME, keep_last=args.versions)
    loads = [uptime()]
    port = ba.free_port()
    settings = {"LUGPI_MAX_LOADED_VERSIONS": str(args.max_loaded), "LUGPI_POLL_INTERVAL_S": "0"}
    proc = ba.start_server(repo, args.work, port, settings=settings)
    try:
        for _ in range(20):
            post(port, "warm up the server")
        rss0 = ba.rss_mb(proc.pid)[0]
        cold: list[float] = []
        rss_after: list[float] = []
        with HotClient(port, texts) as hot:
            hot.phase = "alone, before"
            time.sleep(args.seconds)
            hot.phase = "while the others load"
            for n in range(1, args.versions):
                cold.append(post(port, texts[n], f"v{n}"))
                rss_after.append(ba.rss_mb(proc.pid)[0])
                print(
                    f"  v{n}: first answer {cold[-1] * 1e3:.0f} ms, RSS {rss_after[-1]:.0f} MB",
                    flush=True,
                )
            hot.phase = "alone, after"
            time.sleep(args.seconds)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/models/{ba.MODEL_NAME}") as r:
            info = json.loads(r.read())
        peak = ba.rss_mb(proc.pid)[1]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    loads.append(uptime())

    registry_mb = [v["memory_mb"] for v in info["versions"] if v["status"] == "loaded"]
    filling = min(args.max_loaded - 1, args.versions - 1)  # loads before the first eviction
    per_version = (rss_after[filling - 1] - rss0) / filling if filling > 0 else float("nan")
    lines = [
        f"# {args.versions} versions in one process (LUGPI_MAX_LOADED_VERSIONS={args.max_loaded})",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores; `uptime` at the "
        f"start: {loads[0]}; at the end: {loads[1]}.",
        f"Command: `{command}`",
        "",
        "all-MiniLM-L6-v2 with a random 2-label head, int8, max_length 128; one model, "
        f"versions v1..v{args.versions} of the same bundle; default settings otherwise.",
        "",
        "| | figure |",
        "|---|--:|",
        f"| RSS after start-up (the default version loaded, warm) | {rss0:.0f} MB |",
        f"| RSS growth per loaded version (the first {filling} cold loads) "
        f"| {per_version:.1f} MB |",
        "| registry's memory_mb per loaded version (median, what LUGPI_MAX_LOADED_MB counts) "
        f"| {statistics.median(registry_mb):.1f} MB |",
        f"| RSS at the end ({len(registry_mb)} loaded) / peak | {rss_after[-1]:.0f} / "
        f"{peak:.0f} MB |",
        f"| time to first answer of a cold version, median / max of {len(cold)} "
        f"| {statistics.median(cold) * 1e3:.0f} / {max(cold) * 1e3:.0f} ms |",
    ]
    for phase in ("alone, before", "while the others load", "alone, after"):
        lat = hot.latencies.get(phase, [])
        lines.append(
            f"| hot default version, {phase}: p50 / p99 ({len(lat)} requests) "
            f"| {pct(lat, 0.5):.2f} / {pct(lat, 0.99):.1f} ms |"
        )
    report = "\n".join(lines) + "\n"
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
