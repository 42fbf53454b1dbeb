"""Benchmark the inference API as a user runs it: ``uvicorn api.main:app`` in its own
process, driven over loopback from this one, next to raw onnxruntime on the same bundle.

    python benchmarks/bench_api.py [--bundle DIR] [--duration 10] [--levels 1,8,32,64]

Without --bundle it exports the pretrained all-MiniLM-L6-v2 with a RANDOM 2-label head
(training.export.export_student; predictions meaningless, speed real), cached under
the system temp dir. Texts: CWI 2018 News test sentences (column 2), one per request.

Accounting for the load generator, which shares the cores with the server: it is a
raw-asyncio HTTP/1.1 client (uvloop if present), one keep-alive connection per
concurrent user, requests pre-encoded, responses parsed only for status and length;
its CPU time and the server's are measured per level and printed, so the reader can
see how much of the machine the client took.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))
CWI_TEST = REPO_ROOT.parent / "shared" / "datasets" / "cwi2018" / "News_Test.tsv"
RESULTS = REPO_ROOT / "benchmarks" / "results" / "api.md"
MODEL_NAME = "minilm-random"
TARGETS = (
    "p50(c=1) <= 1.5x raw batch-1; throughput(c=64) >= 0.8x raw batch-32; "
    "max(c=64) < 1 s; RSS <= 250 MB"
)


def cwi_sentences(path: Path) -> list[str]:
    with path.open(newline="") as f:
        rows = csv.reader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
        return list(dict.fromkeys(row[1] for row in rows if len(row) > 1))


def export_random_minilm(out_dir: Path, dev_texts: list[str]) -> Path:
    """all-MiniLM-L6-v2 (pretrained encoder) + a RANDOM 2-label head, as a bundle."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from contracts.artifacts import STUDENT_META, TextModelMeta
    from models.tiny import minilm_path
    from training.export.bundle import export_student

    student = out_dir.with_name(out_dir.name + "-student")
    shutil.rmtree(student, ignore_errors=True)
    labels = ["simple", "complex"]
    # A seeded head: an unseeded one is a different model per machine, and some draws have
    # so many near-ties that the export's int8 agreement check refuses them.
    torch.manual_seed(0)
    model = AutoModelForSequenceClassification.from_pretrained(
        minilm_path(),
        num_labels=2,
        id2label=dict(enumerate(labels)),
        label2id={label: i for i, label in enumerate(labels)},
    )
    model.save_pretrained(student)
    AutoTokenizer.from_pretrained(minilm_path()).save_pretrained(student)
    meta = TextModelMeta(
        kind="student",
        labels=labels,
        max_length=128,
        text_pair=False,
        base_model="all-minilm-l6-v2 (random head)",
    )
    (student / STUDENT_META).write_text(meta.model_dump_json())
    return export_student(
        student,
        out_dir,
        dev_texts,
        None,
        None,
        name=MODEL_NAME,
        with_transformers=False,
        overwrite=True,
    )


def ensure_bundle(given: Path | None, work: Path, texts: list[str]) -> Path:
    from contracts.bundle import verify_bundle
    from contracts.errors import ArtifactError

    if given is not None:
        return given
    cached = work / "minilm-random-bundle"
    try:
        verify_bundle(cached)
        return cached
    except ArtifactError:
        print(f"exporting all-MiniLM-L6-v2 with a random head to {cached} ...", flush=True)
        return export_random_minilm(cached, texts[:64])


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def load_classifier(
    bundle: Path,
    spinning: bool | None = None,
    threads: int | None = None,
    variant: Literal["auto", "int8", "fp32"] | None = None,
) -> Any:
    """onnxruntime + tokenizers exactly as the server builds them (default settings);
    ``spinning``, ``threads`` and ``variant`` override the server's thread-spinning,
    intra-op thread and graph settings."""
    from api.settings import ApiSettings
    from contracts.bundle import read_manifest
    from runtime.classifier import open_bundle
    from runtime.session import RuntimeOptions

    s = ApiSettings()
    spin = bool(s.ort_spinning) if spinning is None else spinning
    options = RuntimeOptions(
        variant=s.model_variant if variant is None else variant,
        device="cpu",
        intra_op_threads=s.ort_intra_op_threads if threads is None else threads,
        inter_op_threads=s.inter_op_threads,
        spinning=spin,
    )
    return open_bundle(bundle, read_manifest(bundle), options)


def raw_batch1(clf: Any, texts: list[str], seconds: float) -> dict[str, float]:
    """One text per call, closed loop, tokenization included. CPU ms per text counts every
    thread of this process (onnxruntime's included)."""
    lat: list[float] = []
    i, start, cpu = 0, time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        clf.predict([texts[i % len(texts)]])
        lat.append(time.perf_counter() - t)
        i += 1
    return {
        "b1_p50_ms": statistics.median(lat) * 1e3,
        "b1_per_s": len(lat) / sum(lat),
        "b1_cpu_ms": (time.process_time() - cpu) / len(lat) * 1e3,
    }


def raw_batched(
    clf: Any, texts: list[str], seconds: float, size: int = 32, grouped: bool = False
) -> dict[str, float]:
    """Batches of ``size`` consecutive sentences (mixed lengths), tokenization included:
    one onnxruntime call each, or, ``grouped``, cut by length as the server's batcher
    cuts them (api.batching.length_groups) so that a short text is not padded to a long
    one. Returns texts/s and CPU ms per text."""
    from api.batching import length_groups

    n, busy, i, cpu = 0, 0.0, 0, time.process_time()
    while busy < seconds:
        batch = [texts[(i + k) % len(texts)] for k in range(size)]
        t = time.perf_counter()
        if grouped:
            encodings = clf.encode(batch)
            for group in length_groups([len(e.ids) for e in encodings], size):
                clf.run_scores([encodings[g] for g in group])
        else:
            clf.predict(batch)
        busy += time.perf_counter() - t
        n += size
        i += size
    return {"per_s": n / busy, "cpu_ms": (time.process_time() - cpu) / n * 1e3}


def raw_figures(clf: Any, texts: list[str], seconds: float) -> dict[str, float]:
    """Batch 1 and batch 32 (consecutive sentences: mixed lengths), tokenization included."""
    out = raw_batch1(clf, texts, seconds)
    b32 = raw_batched(clf, texts, seconds, 32)
    out["b32_per_s"] = b32["per_s"]
    out["b32_cpu_ms"] = b32["cpu_ms"]
    return out


def mean_raw(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    return {k: (before[k] + after[k]) / 2 for k in before}


def describe_raw(raw: dict[str, float]) -> str:
    return (
        f"batch 1 p50 {raw['b1_p50_ms']:.2f} ms ({raw['b1_per_s']:.0f} texts/s, "
        f"{raw['b1_cpu_ms']:.2f} CPU ms/text); batch 32 {raw['b32_per_s']:.0f} texts/s "
        f"({raw['b32_cpu_ms']:.2f} CPU ms/text)"
    )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(
    repo: Path,
    work: Path,
    port: int,
    root: Path = REPO_ROOT,
    settings: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """``uvicorn api.main:app`` of the code under ``root`` (this checkout, or another
    worktree of the repository: benchmarks/bench_peers.py runs an older commit's), with
    ``settings`` (LUGPI_* variables) on top of the defaults."""
    env = {
        **(settings or {}),
        "LUGPI_MODEL_REPOSITORY": str(repo),
        "LUGPI_DEFAULT_MODEL": MODEL_NAME,
        "LUGPI_ARTIFACTS_DIR": str(work / "artifacts"),
    }
    if root != REPO_ROOT:  # ahead of the venv's editable install of the main checkout
        env["PYTHONPATH"] = str(root)
    return start_uvicorn("api.main:app", port, env, cwd=root)


def start_uvicorn(
    app: str,
    port: int,
    env: dict[str, str],
    cwd: Path = REPO_ROOT,
    factory: bool = False,
    ready_s: float = 180.0,
) -> subprocess.Popen[bytes]:
    """One uvicorn worker serving ``app`` on loopback, returned once GET /readyz is 200;
    uvloop and httptools when installed, access log off."""
    cmd = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        *(["--factory"] if factory else []),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    for module, flag in (("uvloop", ["--loop", "uvloop"]), ("httptools", ["--http", "httptools"])):
        if _importable(module):
            cmd += flag
    proc = subprocess.Popen(cmd, cwd=cwd, env={**os.environ, **env})
    return wait_ready(proc, f"http://127.0.0.1:{port}/readyz", app, ready_s)


def wait_ready(
    proc: subprocess.Popen[bytes], url: str, name: str, ready_s: float, poll_s: float = 0.3
) -> subprocess.Popen[bytes]:
    """``proc`` once ``url`` answers 200; exits the benchmark if it dies or takes too long."""
    deadline = time.monotonic() + ready_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(poll_s)
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited with {proc.returncode}")
    proc.terminate()
    raise SystemExit(f"{name} not ready after {ready_s:.0f} s")


def _importable(module: str) -> bool:
    try:
        __import__(module)
        return True
    except ImportError:
        return False


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> tuple[float, float]:
    status = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines()
    )
    return int(status["VmRSS"].split()[0]) / 1024, int(status["VmHWM"].split()[0]) / 1024


@dataclass
class Level:
    concurrency: int
    n: int
    errors: int
    seconds: float
    latencies: list[float]
    client_cpu: float
    server_cpu: float


async def exchange(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, body: bytes) -> bool:
    """One pre-encoded request on a keep-alive connection; whether the answer was a 200.
    Only the status and the length are parsed: the client stays cheap."""
    writer.write(body)
    head = await reader.readuntil(b"\r\n\r\n")
    length = int(head.split(b"content-length:", 1)[1].split(b"\r\n", 1)[0])
    await reader.readexactly(length)
    return head.startswith(b"HTTP/1.1 200")


async def _user(
    port: int,
    bodies: list[bytes],
    offset: int,
    stop: list[bool],
    window: list[float],
    lat: list[float],
    errors: list[int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    i = offset
    while not stop[0]:
        body = bodies[i % len(bodies)]
        i += 7
        t = time.perf_counter()
        ok = await exchange(reader, writer, body)
        done = time.perf_counter()
        # Counted when it finishes inside the window, whenever it started: in a closed
        # loop that is the window's throughput without bias. (Counting only requests that
        # both started and finished inside it undercounts by latency / window, about 15 %
        # at c=64 with second-long latencies, and inflated CPU ms per request alike.)
        if window[0] <= done <= window[1]:
            lat.append(done - t)
            if not ok:
                errors[0] += 1
    writer.close()


async def run_level(port: int, bodies: list[bytes], c: int, seconds: float, pid: int) -> Level:
    stop = [False]
    window = [float("inf"), float("inf")]
    lat: list[float] = []
    errors = [0]
    users = [
        asyncio.create_task(_user(port, bodies, k, stop, window, lat, errors)) for k in range(c)
    ]
    await asyncio.sleep(1.0)  # warm-up: connections open, batches at steady state
    cpu0, srv0 = time.process_time(), cpu_seconds(pid)
    window[0] = time.perf_counter()
    window[1] = window[0] + seconds
    await asyncio.sleep(seconds)
    cpu1, srv1 = time.process_time(), cpu_seconds(pid)
    stop[0] = True
    await asyncio.gather(*users)
    return Level(c, len(lat), errors[0], seconds, lat, cpu1 - cpu0, srv1 - srv0)


def request_bytes(texts: list[str]) -> list[bytes]:
    out = []
    for text in texts:
        body = json.dumps({"texts": [text]}).encode()
        out.append(
            b"POST /classify HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bundle", type=Path, help="bundle dir (default: MiniLM + random head)")
    ap.add_argument("--duration", type=float, default=10.0, help="seconds per level")
    ap.add_argument("--levels", default="1,8,32,64")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lugpi-bench-api")
    args = ap.parse_args()
    texts = cwi_sentences(CWI_TEST)
    args.work.mkdir(parents=True, exist_ok=True)
    bundle = ensure_bundle(args.bundle, args.work, texts)
    load_before = os.getloadavg()

    clf = load_classifier(bundle)
    raw_seconds = min(args.duration, 5.0)
    before = raw_figures(clf, texts, raw_seconds)
    print(f"raw onnxruntime {clf.variant} before: {describe_raw(before)}", flush=True)

    from contracts.repository import publish

    repo = args.work / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    publish(bundle, repo, MODEL_NAME)
    port = free_port()
    server = start_server(repo, args.work, port)
    rss_idle = rss_mb(server.pid)[0]
    bodies = request_bytes(texts)
    levels: list[Level] = []
    try:
        # The client's own event loop: uvloop when installed (less CPU per request).
        runner: Callable[[Coroutine[Any, Any, Level]], Level] = asyncio.run
        if _importable("uvloop"):
            import uvloop

            runner = uvloop.run
        for c in (int(x) for x in args.levels.split(",")):
            level = runner(run_level(port, bodies, c, args.duration, server.pid))
            levels.append(level)
            print(format_row(level), flush=True)
        rss_now, rss_peak = rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(timeout=30)
    # Measured again after the server is gone: on a shared machine the two differ, and
    # the ratios below use their mean.
    after = raw_figures(clf, texts, raw_seconds)
    print(f"raw onnxruntime {clf.variant} after: {describe_raw(after)}", flush=True)
    raw = {"before": before, "after": after, "mean": mean_raw(before, after)}

    report = render(raw, clf.variant, levels, rss_idle, rss_now, rss_peak, load_before, args)
    print(report)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(report)
    print(f"written to {RESULTS}")


def format_row(lv: Level) -> str:
    ms = [x * 1e3 for x in lv.latencies] or [float("nan")]
    per_req = 1e3 * lv.server_cpu / max(lv.n, 1)
    return (
        f"| {lv.concurrency:>3} | {lv.n / lv.seconds:7.0f} | {percentile(ms, 0.5):7.2f} | "
        f"{percentile(ms, 0.99):7.2f} | {max(ms):8.2f} | {lv.errors:>6} | "
        f"{100 * lv.server_cpu / lv.seconds:6.0f}% | {per_req:6.2f} | "
        f"{100 * lv.client_cpu / lv.seconds:6.0f}% |"
    )


def render(
    raws: dict[str, dict[str, float]],
    variant: str,
    levels: list[Level],
    rss_idle: float,
    rss_now: float,
    rss_peak: float,
    load: tuple[float, float, float],
    args: argparse.Namespace,
) -> str:
    raw = raws["mean"]
    by_c = {lv.concurrency: lv for lv in levels}
    lines = [
        "# Inference API benchmark",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores ({platform.machine()}); "
        f"load average before the run {load[0]:.2f} (other work shares the machine: figures "
        f"are noisy); {args.duration:.0f} s per level after 1 s warm-up; one text (a CWI 2018 "
        "News test sentence) per request; `uvicorn api.main:app`, 1 worker, default settings, "
        "access log off.",
        "Model: all-MiniLM-L6-v2 with a RANDOM 2-label head (speed is real, predictions are not)."
        if args.bundle is None
        else f"Bundle: {args.bundle}",
        "",
        f"Raw onnxruntime ({variant}, the server's session settings, tokenization included), "
        "measured before starting the server and after stopping it:",
        f"- before: {describe_raw(raws['before'])}",
        f"- after: {describe_raw(raws['after'])}",
        "",
        "| c | req/s | p50 ms | p99 ms | max ms | errors | server CPU | server CPU ms/req "
        "| client CPU |",
        "|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        *(format_row(lv) for lv in levels),
        "",
        f"Server RSS: {rss_idle:.0f} MB after start-up, {rss_now:.0f} MB after the run, "
        f"peak {rss_peak:.0f} MB. CPU: 100% = one core busy; the client is the load generator "
        "(this process).",
        "",
        f"Targets: {TARGETS}. Ratios against the mean of the two raw measurements:",
    ]
    if 1 in by_c and by_c[1].latencies:
        ratio = percentile(by_c[1].latencies, 0.5) * 1e3 / raw["b1_p50_ms"]
        lines.append(f"- p50 at c=1 / raw batch-1 p50 = **{ratio:.2f}x** (target <= 1.5x)")
    if 64 in by_c and by_c[64].latencies:
        lv = by_c[64]
        ratio = (lv.n / lv.seconds) / raw["b32_per_s"]
        lines.append(f"- throughput at c=64 / raw batch-32 = **{ratio:.2f}** (target >= 0.8)")
        cpu_ratio = raw["b32_cpu_ms"] / (1e3 * lv.server_cpu / max(lv.n, 1))
        lines.append(
            f"- CPU efficiency at c=64 (raw batch-32 CPU ms/text / server CPU ms/request) = "
            f"**{cpu_ratio:.2f}**: less sensitive to the machine's other load than req/s"
        )
        worst = max(lv.latencies) * 1e3
        lines.append(f"- max latency at c=64 = **{worst:.0f} ms** (target < 1000)")
    lines.append(f"- peak RSS = **{rss_peak:.0f} MB** (target <= 250)")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
