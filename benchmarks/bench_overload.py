"""Drive the API past its capacity and show that it sheds load instead of falling over.

    python benchmarks/bench_overload.py [--requests 3000] [--concurrency 400] [--seconds 90]

Loopback only, bounded in count and time. The server is ``uvicorn api.main:create_app``
in its own process with the API image's flags (docker/api.Dockerfile: --limit-concurrency,
--timeout-keep-alive, the header-timeout protocol), serving the pretrained
all-MiniLM-L6-v2 with a RANDOM 2-label pair head (CWI: sentence + target; predictions
meaningless, speed real), exported once and cached under the system temp dir.

Phases: (1) one client, one pair per request: the unloaded latency; (2) a burst of
``--requests`` requests of 16 CWI pairs from ``--concurrency`` connections at once, far
beyond what 2 cores answer: how many are answered, refused (429 from the queue bound,
503 from uvicorn's concurrency limit or a deadline), their latencies, errors; (3) one
client again, right after: does it serve normally; (4) one request at the production
limits: 64 pairs of 10,000 + 10,000 characters. The server's RSS is sampled throughout
(max printed). The client shares the cores with the server: its figures are pessimistic.

    python benchmarks/bench_overload.py --attacks [--attack-seconds 20]

The attacks of the second hardening round, each on a fresh server (the image's flags,
default settings) serving two versions (v1, v2) of the demo's graph (the pretrained
all-MiniLM-L6-v2, RANDOM 2-label head) exported with max_length 512: validation-error
amplification (a 2 MB body of a million items that each fail validation, on the four
JSON surfaces), 260 idle sockets + 260 bodies trickling a byte every 2 s, one client
sending 1,000 '!' (or CJK) characters back to back, and both versions flooded with 64 x
10,000-character texts. Throughout each, a prober GETs /healthz every 50 ms and a
legitimate client POSTs one short text every 250 ms; the table gives /healthz's latency,
how many legitimate requests were answered, and the server's peak RSS (it is killed past
``--guard-mb``, so a blow-up is reported, not suffered).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks.bench_api import free_port, percentile  # noqa: E402

MODEL = "cwi-random"
DATASETS = Path(os.environ.get("LUGPI_SHARED_DATASETS", REPO_ROOT.parent / "shared" / "datasets"))
CWI_TEST = DATASETS / "cwi2018" / "News_Test.tsv"


def cwi_pairs(path: Path) -> list[tuple[str, str]]:
    import csv

    with path.open(newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return list(dict.fromkeys((r[1], r[4]) for r in rows if len(r) > 4))


def export_pair_bundle(out_dir: Path, pairs: list[tuple[str, str]]) -> Path:
    """all-MiniLM-L6-v2 (pretrained encoder) + a RANDOM 2-label pair head, as a bundle."""
    from contracts.bundle import verify_bundle
    from contracts.errors import ArtifactError

    try:
        verify_bundle(out_dir)
        return out_dir
    except ArtifactError:
        pass
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from contracts.artifacts import STUDENT_META, TextModelMeta
    from training.export import export_student
    from training.tiny import minilm_path

    print(f"exporting all-MiniLM-L6-v2 with a random pair head to {out_dir} ...", flush=True)
    student = out_dir.with_name(out_dir.name + "-student")
    shutil.rmtree(student, ignore_errors=True)
    labels = ["simple", "complex"]
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_path(), num_labels=2, id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )  # fmt: skip
    model.save_pretrained(student)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(student)
    meta = TextModelMeta(kind="student", labels=labels, max_length=128, text_pair=True,
                         base_model="all-minilm-l6-v2 (random head)")  # fmt: skip
    (student / STUDENT_META).write_text(meta.model_dump_json())
    dev = pairs[:64]
    return export_student(student, out_dir, [a for a, _ in dev], [b for _, b in dev], None,
                          name=MODEL, with_transformers=False, overwrite=True)  # fmt: skip


def deployed_flags() -> list[str]:
    cmd = (REPO_ROOT / "docker" / "api.Dockerfile").read_text().rsplit("\nCMD [", 1)[1]
    words = re.findall(r'"([^"]*)"', cmd.split("]", 1)[0])
    flags = words[words.index("--factory") + 1 :]
    for flag in ("--host", "--port"):
        i = flags.index(flag)
        del flags[i : i + 2]
    return flags


class RssWatch:
    def __init__(self, pid: int) -> None:
        self.proc = psutil.Process(pid)
        self.max_mb = 0.0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            try:
                self.max_mb = max(self.max_mb, self.proc.memory_info().rss / 2**20)
            except psutil.Error:
                return

    def now_mb(self) -> float:
        return float(self.proc.memory_info().rss / 2**20)

    def stop(self) -> None:
        self._stop.set()


async def drive(
    url: str, bodies: list[dict[str, object]], concurrency: int, seconds: float
) -> tuple[Counter[object], dict[object, list[float]], float]:
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    outcome: Counter[object] = Counter()
    latencies: dict[object, list[float]] = {}
    stop_at = time.monotonic() + seconds
    queue = list(reversed(bodies))
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:

        async def user() -> None:
            while queue and time.monotonic() < stop_at:
                body = queue.pop()
                t0 = time.perf_counter()
                try:
                    key: object = (await client.post("/classify", json=body)).status_code
                except httpx.HTTPError as e:
                    key = type(e).__name__
                outcome[key] += 1
                latencies.setdefault(key, []).append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(user() for _ in range(concurrency)))
        return outcome, latencies, time.perf_counter() - started


def lat(values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return f"{percentile(ms, 0.5):.0f} / {percentile(ms, 0.99):.0f} / {max(ms):.0f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--requests", type=int, default=3000)
    p.add_argument("--concurrency", type=int, default=400)
    p.add_argument("--seconds", type=float, default=90.0, help="cap on the burst phase")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "benchmarks/results/overload.md")
    p.add_argument("--attacks", action="store_true", help="run the attack phases instead")
    p.add_argument("--attack-seconds", type=float, default=20.0, help="length of each attack")
    p.add_argument("--guard-mb", type=float, default=2500.0, help="kill the server past this")
    p.add_argument("--only", default="", help="attacks whose name has one of these words")
    args = p.parse_args()
    if args.attacks:
        from benchmarks.overload_attacks import run_attacks

        run_attacks(args.out, args.attack_seconds, args.guard_mb, args.only)
        return

    work = Path(tempfile.gettempdir()) / "lugpi-bench"
    work.mkdir(exist_ok=True)
    if not CWI_TEST.is_file():
        raise SystemExit(f"no CWI News test file at {CWI_TEST} (set LUGPI_SHARED_DATASETS)")
    pairs = cwi_pairs(CWI_TEST)
    bundle = export_pair_bundle(work / "minilm-random-pair-bundle", pairs)
    from contracts.repository import publish

    repo = work / "overload-repo"
    shutil.rmtree(repo, ignore_errors=True)
    publish(bundle, repo, MODEL)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "LUGPI_MODEL_REPOSITORY": str(repo), "LUGPI_POLL_INTERVAL_S": "0"}
    cmd = [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory", "--host",
           "127.0.0.1", "--port", str(port), "--no-access-log", *deployed_flags()]  # fmt: skip
    server = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(url + "/readyz").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline or server.poll() is not None:
                raise SystemExit("the server did not become ready")
            time.sleep(0.3)
        rss = RssWatch(server.pid)
        idle_mb = rss.now_mb()
        rng = random.Random(0)

        def body(n: int) -> dict[str, object]:
            chosen = [rng.choice(pairs) for _ in range(n)]
            return {"texts": [a for a, _ in chosen], "text_pairs": [b for _, b in chosen]}

        lines = [f"# Overload on loopback ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC)", "",
                 f"`python benchmarks/bench_overload.py --requests {args.requests} "
                 f"--concurrency {args.concurrency} --seconds {args.seconds:g}`; "
                 f"{os.cpu_count()} cores shared with the load generator; uvicorn flags: "
                 f"`{' '.join(deployed_flags())}`; default limits (LUGPI_MAX_QUEUED_TEXTS "
                 "1024, LUGPI_REQUEST_TIMEOUT_S 10).", "",
                 "| phase | requests sent | answered 200 | 429 | 503 | errors | "
                 "p50 / p99 / max ms (200) | p50 / p99 / max ms (429+503) | wall s |",
                 "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip

        def row(
            name: str, n: int, result: tuple[Counter[object], dict[object, list[float]], float]
        ) -> None:
            outcome, latencies, wall = result
            errors = {k: v for k, v in outcome.items() if not isinstance(k, int)}
            shed = latencies.get(429, []) + latencies.get(503, [])
            other = {
                k: v for k, v in outcome.items() if isinstance(k, int) and k not in (200, 429, 503)
            }
            sent = sum(outcome.values())  # the burst stops sending at --seconds
            lines.append(
                f"| {name} | {sent} of {n} | {outcome[200]} | {outcome[429]} | {outcome[503]} | "
                f"{sum(errors.values())} {dict(errors) or ''}{' other: ' + str(other) if other else ''} | "  # noqa: E501
                f"{lat(latencies[200]) if 200 in latencies else '-'} | "
                f"{lat(shed) if shed else '-'} | {wall:.1f} |"
            )
            print(lines[-1], flush=True)

        row("1 client, 1 pair", 200, asyncio.run(drive(url, [body(1) for _ in range(200)], 1, 60)))
        burst = [body(16) for _ in range(args.requests)]
        row(f"burst: {args.concurrency} clients, 16 pairs", args.requests,
            asyncio.run(drive(url, burst, args.concurrency, args.seconds)))  # fmt: skip
        burst_max = rss.max_mb
        row(
            "1 client, right after",
            100,
            asyncio.run(drive(url, [body(1) for _ in range(100)], 1, 60)),
        )
        long_texts = [
            " ".join(rng.choice(pairs)[0] for _ in range(100))[:10_000] for _ in range(64)
        ]
        long_body = {"texts": long_texts, "text_pairs": [t[::-1] for t in long_texts]}
        row("64 pairs of 10,000 + 10,000 chars", 1, asyncio.run(drive(url, [long_body], 1, 120)))
        rss.stop()
        metrics = httpx.get(url + "/metrics").text
        dropped = [m for m in metrics.splitlines() if m.startswith("lugpi_dropped_requests_total")]
        rss_line = (
            f"Server RSS: {idle_mb:.0f} MB idle, max {burst_max:.0f} MB during the burst, "
            f"max {rss.max_mb:.0f} MB overall."
        )
        drops = ", ".join(f"`{m}`" for m in dropped) or "no drops"
        lines += ["", rss_line, "", f"`/metrics` afterwards: {drops}"]
        print("\n".join(lines[-3:]))
        args.out.write_text("\n".join(lines) + "\n")
        print(f"written to {args.out}")
    finally:
        server.terminate()
        server.wait(30)


if __name__ == "__main__":
    main()
