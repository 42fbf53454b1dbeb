"""Our API next to its peers on the same exported student, in one run:

    python benchmarks/bench_peers.py [--seconds 10] [--passes 3] [--old-ref REF]

Rows: our API at this checkout; our API at an older commit (``git worktree add`` of
``--old-ref``, so a change shows as a ratio measured side by side); raw onnxruntime in
this process (batch 1 with threads spinning, batch 1 with the API's setting, and the
API's length-grouped batches of 32); a one-at-a-time FastAPI + onnxruntime server and a
transformers pipeline server (fp32 torch) from benchmarks/peer_servers.py; infinity-emb
from its own virtual environment (``--infinity-venv``: its pins never touch this one;
``--setup-infinity`` creates it under ``--work``); raw OpenVINO (fp32 graph, batch 1 and
length-grouped 32, the runtime's engine of LUGPI_ENGINE=openvino) where the ``openvino``
package is importable (runtime/openvino_engine.py says why not its int8 graph).

Method: every server is started once and warmed up. Each pass drives each row ALONE
(the others idle) at c=1, c=8 and c=64 with bench_api.py's closed-loop loopback client,
``--seconds`` per level after 1 s of warm-up, the rows' order rotated from pass to pass;
and, for the paired ratio of this checkout over the old commit, c=1 of our rows and raw
onnxruntime (no spinning) in lockstep: one request in flight in all, the same text sent
to each row in turn, so that the shared machine's drifting load falls on them alike.
The table shows medians over passes, ratios to raw onnxruntime, the server's CPU ms per
request (utime + stime of its process, every thread, from /proc) and its RSS. The model
and texts are bench_api.py's: all-MiniLM-L6-v2 with a RANDOM 2-label head (speed real,
predictions meaningless) exported by training.export, int8 graph; CWI 2018 News test
sentences, one per request. Loopback only; bounded by passes x rows x levels x seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import bench_api as ba  # noqa: E402

RESULTS = REPO_ROOT / "benchmarks" / "results" / "peers.md"
# The commit before issue #17's request-path changes (inline lone requests, one-pass
# responses): the "old" row by default, so that their effect is a ratio in one run.
DEFAULT_OLD_REF = "3a1f2f9"
LEVELS = (1, 8, 64)
LOCKSTEP = 0  # Row.levels key of the c=1 lockstep measurements (ours and raw, no spinning)


@dataclass
class Row:
    name: str
    # c -> one ba.Level per pass (servers), or raw figures per pass (in-process rows)
    levels: dict[int, list[ba.Level]] = field(default_factory=dict)
    raw: list[dict[str, float]] = field(default_factory=list)
    rss: tuple[float, float] = (float("nan"), float("nan"))  # warm, peak (MB)
    mean_batch: list[float] = field(default_factory=list)  # texts per onnxruntime call, c=64
    proc: subprocess.Popen[bytes] | None = None
    port: int = 0
    note: str = ""
    bodies: list[bytes] | None = None  # its own request bodies (a peer with another schema)
    peer: bool = False  # another project's server (the "ahead of every peer" comparison)
    plan: list[str] = field(default_factory=list)  # our server's execution plan, as it says


def old_worktree(ref: str, work: Path) -> Path:
    """A detached worktree of ``ref`` under ``work`` (reused when it exists)."""
    sha = subprocess.check_output(
        ["git", "-C", str(REPO_ROOT), "rev-parse", "--short", ref], text=True
    ).strip()
    path = work / f"old-{sha}"
    if not (path / "api" / "main.py").exists():
        shutil.rmtree(path, ignore_errors=True)
        subprocess.run(
            ["git", "-C", str(REPO_ROOT), "worktree", "add", "--detach", str(path), sha],
            check=True,
            capture_output=True,
        )
    return path


def remove_worktree(path: Path) -> None:
    subprocess.run(
        ["git", "-C", str(REPO_ROOT), "worktree", "remove", "--force", str(path)],
        check=False,
        capture_output=True,
    )


def start_rows(
    args: argparse.Namespace, bundle: Path, repo: Path, texts: list[str]
) -> tuple[list[Row], list[str]]:
    """Every server row started and ready; the reasons of the rows skipped."""
    from contracts.bundle import MODEL_INT8, TOKENIZER, read_manifest

    manifest = read_manifest(bundle)
    rows: list[Row] = []
    skipped: list[str] = []

    def server(
        name: str,
        start: Callable[[int], subprocess.Popen[bytes]],
        note: str,
        bodies: Callable[[list[str]], list[bytes]] | None = None,
    ) -> None:
        port = ba.free_port()
        print(f"starting {name} ...", flush=True)
        proc = start(port)
        row = Row(name, proc=proc, port=port, note=note, peer=not name.startswith("ours"))
        if bodies is not None:
            row.bodies = bodies(texts)
        # Warm: a few requests so that first-call allocation is not in any figure.
        for _ in range(20):
            post(port, "warm up the server", row.bodies)
        row.rss = ba.rss_mb(proc.pid)
        if not row.peer:
            row.plan = execution_plan(port)
        rows.append(row)

    server("ours (this checkout)", lambda p: ba.start_server(repo, args.work, p), "")
    for spec in args.also:
        changed = {k: v for k, _, v in (kv.partition("=") for kv in spec.split(","))}
        server(
            f"ours, {spec.replace(',', ', ')}",
            lambda p, s=changed: ba.start_server(repo, args.work, p, settings=s),
            "this checkout with settings changed",
        )
    if args.old_ref:
        old = old_worktree(args.old_ref, args.work)
        server(
            f"ours @ {args.old_ref}",
            lambda p: ba.start_server(repo, args.work, p, root=old),
            "older commit, same flags",
        )
    if args.ours_only:
        skipped.append("the peer servers (--ours-only)")
        return rows, skipped
    peer_env = {
        "PEER_ONNX": str(bundle / MODEL_INT8),
        "PEER_TOKENIZER": str(bundle / TOKENIZER),
        "PEER_MAX_LENGTH": str(manifest.max_length),
    }
    server(
        "one-at-a-time FastAPI + onnxruntime",
        lambda p: ba.start_uvicorn(
            "benchmarks.peer_servers:one_at_a_time_app", p, peer_env, factory=True
        ),
        "int8, onnxruntime defaults",
    )
    if args.student is not None and args.student.is_dir():
        server(
            "transformers pipeline (fp32 torch)",
            lambda p: ba.start_uvicorn(
                "benchmarks.peer_servers:pipeline_app",
                p,
                {"PEER_STUDENT": str(args.student)},
                factory=True,
            ),
            "the student's PyTorch weights",
        )
    else:
        skipped.append(f"transformers pipeline: no student directory ({args.student})")
    venv = args.infinity_venv
    if venv is None or not (venv / "bin" / "infinity_emb").exists():
        skipped.append(
            f"infinity-emb: no virtual environment with it at {venv} (--infinity-venv; "
            "--setup-infinity creates one under --work: `python -m venv` + `pip install "
            "'infinity-emb[all]'`, kept apart because its extras pin their own torch, "
            "optimum and transformers)"
        )
    elif args.student is None or not args.student.is_dir():
        skipped.append(f"infinity-emb: no student directory for it to load ({args.student})")
    else:
        server(
            "infinity-emb (own venv, torch engine)",
            lambda p: start_infinity(venv, args.student, p),
            "its /classify route, the student's PyTorch weights",
            infinity_bodies,
        )
    return rows, skipped


INFINITY_MODEL = "student"  # the name infinity serves the student under


def start_infinity(venv: Path, student: Path, port: int) -> subprocess.Popen[bytes]:
    """``infinity_emb v2`` of ``venv`` on the student's save_pretrained directory, returned
    once its /health answers."""
    cmd = [
        str(venv / "bin" / "infinity_emb"),
        "v2",
        "--model-id",
        str(student),
        "--served-model-name",
        INFINITY_MODEL,
        "--engine",
        "torch",
        "--device",
        "cpu",
        "--port",
        str(port),
        "--host",
        "127.0.0.1",
        "--no-bettertransformer",
    ]
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    proc = subprocess.Popen(cmd, env={**env, "INFINITY_ANONYMOUS_USAGE_STATS": "0"})
    return ba.wait_ready(proc, f"http://127.0.0.1:{port}/health", "infinity_emb", 300, 0.5)


def infinity_bodies(texts: list[str]) -> list[bytes]:
    """infinity's POST /classify: {"model", "input": [...]}, one text per request."""
    out = []
    for text in texts:
        body = json.dumps({"model": INFINITY_MODEL, "input": [text]}).encode()
        out.append(
            b"POST /classify HTTP/1.1\r\nhost: 127.0.0.1\r\ncontent-type: application/json\r\n"
            + f"content-length: {len(body)}\r\n\r\n".encode()
            + body
        )
    return out


def setup_infinity(work: Path) -> Path:
    """A virtual environment of its own for infinity-emb under ``work`` (created once)."""
    venv = work / "infinity-venv"
    if not (venv / "bin" / "infinity_emb").exists():
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(venv / "bin" / "pip"), "install", "--quiet"]
        subprocess.run([*pip, "infinity-emb[all]"], check=True)
    return venv


def start_openvino(clf: Any, bundle: Path, texts: list[str], raws: dict[str, Row]) -> Any:
    """The raw rows' OpenVINO classifier: the runtime's own engine (LUGPI_ENGINE=openvino)
    on the bundle's fp32 graph, with ``clf``'s encoder, so that only the engine differs; or
    None with the reason in ``raws["ov_b1"].note`` when ``openvino`` is not importable."""
    raws["ov_b1"] = Row("raw OpenVINO fp32 b1")
    raws["ov_grouped"] = Row("raw OpenVINO fp32 grouped 32")
    if importlib.util.find_spec("openvino") is None:
        raws["ov_b1"].note = (
            "OpenVINO: the openvino package is not installed in this environment (`pip "
            "install 'lugpi[openvino]'`; it reads the bundle's fp32 model.onnx, not its int8 "
            "graph, whose com.microsoft.QAttention it cannot convert)"
        )
        return None
    from contracts.bundle import read_manifest
    from runtime.classifier import open_bundle
    from runtime.session import RuntimeOptions

    threads = clf.session.get_session_options().intra_op_num_threads
    # As the server opens it: warmed up and held to the probabilities export recorded.
    options = RuntimeOptions(engine="openvino", intra_op_threads=threads)
    ov = open_bundle(bundle, read_manifest(bundle), options)
    same, worst = 0, 0.0
    for text in texts[:200]:  # each alone in its batch, as the server's int8 runs it
        enc = ov.encode([text])
        a, b = ov.run_scores(enc).probs[0], clf.run_scores(enc).probs[0]
        same += int(a.argmax() == b.argmax())
        worst = max(worst, float(abs(a - b).max()))
    raws["ov_b1"].note = (
        f"OpenVINO fp32 against the served onnxruntime int8 graph on 200 texts: argmax "
        f"agreement {same / 200:.3f}, max |prob difference| {worst:.4f}"
    )
    return ov


def post(port: int, text: str, bodies: list[bytes] | None = None) -> None:
    """One request: ours' body, or the first of a row's own ``bodies`` (another schema)."""
    if bodies is not None:
        data = bodies[0].split(b"\r\n\r\n", 1)[1]
    else:
        data = json.dumps({"texts": [text]}).encode()
    req = urllib.request.Request(
        f"http://127.0.0.1:{port}/classify",
        data=data,
        headers={"content-type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=60) as r:
        r.read()


def execution_plan(port: int) -> list[str]:
    """The reasons GET /models/{name} gives for the served version's plan (engine,
    instances, threads, batch cap, lone session); empty where the server has none."""
    try:
        url = f"http://127.0.0.1:{port}/models/{ba.MODEL_NAME}"
        with urllib.request.urlopen(url, timeout=5) as r:
            version = json.load(r)["versions"][0]
    except (OSError, ValueError, KeyError, IndexError):
        return []
    why = (version.get("execution") or {}).get("why", [])
    return [str(w) for w in why] if isinstance(why, list) else []


def batch_stats(port: int) -> tuple[float, float] | None:
    """(sum, count) of our server's texts-per-onnxruntime-call histogram; None elsewhere."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            text = r.read().decode()
    except OSError:
        return None
    found: dict[str, float] = {}
    for line in text.splitlines():
        for key in ("sum", "count"):
            if line.startswith(f"lugpi_batch_size_texts_{key}{{"):
                found[key] = found.get(key, 0.0) + float(line.split()[-1])
    return (found["sum"], found["count"]) if len(found) == 2 else None


def drive(row: Row, bodies: list[bytes], seconds: float) -> None:
    """Each level on this server alone: bench_api.py's closed loop, 1 s of warm-up each."""
    assert row.proc is not None
    bodies = row.bodies or bodies
    runner: Callable[[Any], ba.Level] = asyncio.run
    if ba._importable("uvloop"):
        import uvloop

        runner = uvloop.run
    for c in LEVELS:
        before = batch_stats(row.port) if c == 64 else None
        level = runner(ba.run_level(row.port, bodies, c, seconds, row.proc.pid))
        row.levels.setdefault(c, []).append(level)
        after = batch_stats(row.port) if c == 64 else None
        if before and after and after[1] > before[1]:
            row.mean_batch.append((after[0] - before[0]) / (after[1] - before[1]))
        print(f"  {row.name:40s} {ba.format_row(level)}", flush=True)
    rss = ba.rss_mb(row.proc.pid)
    row.rss = (row.rss[0], max(row.rss[1], rss[1]))


async def lockstep(
    rows: list[Row], raws: list[tuple[Row, Any]], texts: list[str], seconds: float
) -> None:
    """c=1 for the given rows in turn, one request in flight in all: each round sends the
    same text to every server and raw classifier (the order rotating from round to round),
    so the machine's drifting load falls on all rows alike, which a pass per row cannot
    give. Only for rows whose threads do not spin (ours, raw without spinning): a spinning
    row would burn the cores while the others run. Each row gets about ``seconds`` of
    requests, after 1 s of warm-up."""
    bodies = ba.request_bytes(texts)
    conns = [await asyncio.open_connection("127.0.0.1", row.port) for row in rows]
    targets: list[int] = list(range(len(rows) + len(raws)))
    lat: list[list[float]] = [[] for _ in targets]
    errors = [0 for _ in targets]
    raw_cpu = [0.0 for _ in raws]
    started = time.perf_counter()
    measuring_from = started + 1.0
    end = measuring_from + seconds * len(targets)
    cpu0: list[float] | None = None
    i = rnd = 0
    while (now := time.perf_counter()) < end:
        if cpu0 is None and now >= measuring_from:
            cpu0 = [ba.cpu_seconds(row.proc.pid) for row in rows if row.proc is not None]
        k = rnd % len(targets)
        rnd += 1
        for t in targets[k:] + targets[:k]:
            t0 = time.perf_counter()
            if t < len(rows):
                ok = await ba.exchange(*conns[t], bodies[i % len(bodies)])
            else:
                c0 = time.process_time()
                raws[t - len(rows)][1].predict([texts[i % len(texts)]])
                if cpu0 is not None:
                    raw_cpu[t - len(rows)] += time.process_time() - c0
                ok = True
            if cpu0 is not None:
                lat[t].append(time.perf_counter() - t0)
                errors[t] += not ok
        i += 7
    cpu1 = [ba.cpu_seconds(row.proc.pid) for row in rows if row.proc is not None]
    for _, writer in conns:
        writer.close()
    assert cpu0 is not None
    for t, row in enumerate([*rows, *(r for r, _ in raws)]):
        used = cpu1[t] - cpu0[t] if t < len(rows) else raw_cpu[t - len(rows)]
        # seconds = time spent on this row's requests: n / seconds is its c=1 rate alone.
        level = ba.Level(1, len(lat[t]), errors[t], sum(lat[t]), lat[t], 0.0, used)
        row.levels.setdefault(LOCKSTEP, []).append(level)
        print(f"  {row.name:40s} {ba.format_row(level)}", flush=True)


def med(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def level_figures(levels: list[ba.Level]) -> dict[str, float]:
    """Medians over passes of one server's figures at one concurrency."""
    return {
        "p50": med([ba.percentile(lv.latencies, 0.5) * 1e3 for lv in levels if lv.latencies]),
        "per_s": med([lv.n / lv.seconds for lv in levels]),
        "max": med([max(lv.latencies) * 1e3 for lv in levels if lv.latencies]),
        "cpu": med([1e3 * lv.server_cpu / max(lv.n, 1) for lv in levels]),
        "errors": float(sum(lv.errors for lv in levels)),
    }


def fmt(x: float, digits: int = 1) -> str:
    return "" if x != x else f"{x:,.{digits}f}"  # NaN (not measured) -> empty cell


def ratio(a: float, b: float) -> str:
    return "" if a != a or b != b or b == 0 else f"{a / b:.2f}x"


def render(
    rows: list[Row],
    raws: dict[str, Row],
    skipped: list[str],
    args: argparse.Namespace,
    loads: tuple[str, str],
) -> str:
    b1 = ("b1_p50_ms", "b1_per_s", "b1_cpu_ms")
    batched = ("per_s", "cpu_ms")

    def medians(key: str, names: tuple[str, ...]) -> dict[str, float]:
        return {k: med([r[k] for r in raws[key].raw]) for k in names}

    spin = medians("spin", b1)
    one_thread = medians("one", b1)
    grouped = medians("grouped", batched)

    def b1_line(label: str, f: dict[str, float]) -> str:
        """A batch-1 raw row; its p50 over raw onnxruntime b1 spinning."""
        return (
            f"| {label} | {fmt(f['b1_p50_ms'], 2)} | {ratio(f['b1_p50_ms'], spin['b1_p50_ms'])} "
            f"| {fmt(f['b1_per_s'], 0)} | {fmt(f['b1_cpu_ms'], 2)} | | | | | | | | |"
        )

    def grouped_line(label: str, f: dict[str, float]) -> str:
        """A length-grouped raw row; its texts/s and CPU over onnxruntime int8's."""
        return (
            f"| {label} | | | | | | | {fmt(f['per_s'], 0)} "
            f"| {ratio(f['per_s'], grouped['per_s'])} | | {fmt(f['cpu_ms'], 2)} "
            f"| {ratio(f['cpu_ms'], grouped['cpu_ms'])} | |"
        )

    lines = [
        "# Our API and its peers, side by side",
        "",
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC; {os.cpu_count()} cores; `uptime` at the "
        f"start: {loads[0]}; at the end: {loads[1]}.",
        f"Command: `{args.command}`",
        "",
        f"{args.passes} passes; each row driven alone, closed loop, {args.seconds:g} s per "
        "level after 1 s of warm-up, the rows' order rotated from pass to pass; loopback, "
        "one CWI 2018 News test sentence per request; medians over passes. Model: "
        "all-MiniLM-L6-v2 with a random 2-label head, int8 graph (model.int8.onnx, the same "
        "file for every onnxruntime row). "
        "CPU ms/req: the server process's CPU time (every thread) over requests answered; for "
        "raw rows, this process's CPU time per text. Ratios: c=1 p50 over raw batch 1 with "
        "spinning on; c=64 req/s and CPU over raw length-grouped batches of 32 (what the "
        "API's batcher runs). c=8: the same closed loop with 8 clients.",
        "",
        "| | c=1 p50 ms | p50 / raw | c=1 req/s | c=1 CPU ms/req | c=8 req/s | c=8 p50 ms "
        "| c=64 req/s | req/s / raw | c=64 max ms | c=64 CPU ms/req | CPU / raw "
        "| RSS warm / peak MB |",
        "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|",
        b1_line("raw onnxruntime b1, spinning on", spin),
        b1_line("raw b1, spinning off", medians("nospin", b1)),
        b1_line("raw b1, one thread", one_thread),
        grouped_line("raw, length-grouped batches of 32", grouped),
    ]
    bests = {"onnxruntime b1 spinning": spin, "onnxruntime grouped 32": grouped}
    beside = {"onnxruntime b1 one thread": one_thread}
    if raws.get("fp32_spin") and raws["fp32_spin"].raw:
        f1, f1_one = medians("fp32_spin", b1), medians("fp32_one", b1)
        f32 = medians("fp32_grouped", batched)
        bests |= {"onnxruntime fp32 b1 spinning": f1, "onnxruntime fp32 grouped 32": f32}
        beside |= {"onnxruntime fp32 b1 one thread": f1_one}
        lines += [
            b1_line("raw onnxruntime fp32 b1, spinning on", f1),
            b1_line("raw onnxruntime fp32 b1, one thread", f1_one),
            grouped_line("raw onnxruntime fp32, length-grouped 32", f32),
        ]
    if raws["ov_b1"].raw:
        ov1, ov32 = medians("ov_b1", b1), medians("ov_grouped", batched)
        bests |= {"OpenVINO fp32 b1": ov1, "OpenVINO fp32 grouped 32": ov32}
        lines += [
            b1_line("raw OpenVINO fp32 b1", ov1),
            grouped_line("raw OpenVINO fp32, length-grouped 32", ov32),
        ]
    for row in rows:
        one = level_figures(row.levels.get(1, []))
        mid = level_figures(row.levels.get(8, []))
        many = level_figures(row.levels.get(64, []))
        errors = int(one["errors"] + mid["errors"] + many["errors"])
        name = f"**{row.name}**" if row is rows[0] else row.name
        if errors:
            name += f" ({errors} errors)"
        lines.append(
            f"| {name} | {fmt(one['p50'], 2)} | {ratio(one['p50'], spin['b1_p50_ms'])} "
            f"| {fmt(one['per_s'], 0)} | {fmt(one['cpu'], 2)} | {fmt(mid['per_s'], 0)} "
            f"| {fmt(mid['p50'], 2)} | {fmt(many['per_s'], 0)} "
            f"| {ratio(many['per_s'], grouped['per_s'])} | {fmt(many['max'], 0)} "
            f"| {fmt(many['cpu'], 2)} | {ratio(many['cpu'], grouped['cpu_ms'])} "
            f"| {fmt(row.rss[0], 0)} / {fmt(row.rss[1], 0)} |"
        )
    lines.append("")
    lines.append(
        "Paired ratios (per pass, then the median; c=1 from the lockstep run, where our rows "
        "saw the same load request by request):"
    )
    for other in rows[1:]:
        if other.name.startswith("ours"):
            lines += paired(rows[0], other)
    lines += lockstep_lines([*rows, raws["nospin"]])
    lines += done_when(rows, bests, beside)
    if raws["ov_b1"].note:
        lines.append(f"- {raws['ov_b1'].note}.")
    batches = [f"{r.name}: {med(r.mean_batch):.1f}" for r in rows if r.mean_batch]
    if batches:
        lines.append(
            "- Texts per onnxruntime call at c=64 (mean, median over passes): "
            + "; ".join(batches)
            + "."
        )
    for row in rows:
        if row.plan:
            lines.append(f"- Plan of {row.name} (GET /models): " + "; ".join(row.plan) + ".")
    for reason in skipped:
        lines.append(f"- Not run: {reason}.")
    return "\n".join(lines) + "\n"


def done_when(
    rows: list[Row],
    raw: dict[str, dict[str, float]],
    beside: dict[str, dict[str, float]] | None = None,
) -> list[str]:
    """Issue 28's bars, from this run's medians, for every row of this checkout (the
    default and each ``--also`` setting; not the old commit's row).

    ``beside``: raw modes outside the issue's definition of the best raw mode (b1 one
    thread, cheaper per text than both of the issue's): each row's c=64 CPU per request
    is put against each of them on a line of its own, so the bar stays the issue's and
    the cheaper mode is not hidden.

    ``raw``: the in-process rows' medians by name, batch-1 rows with ``b1_p50_ms`` and
    ``b1_cpu_ms``, grouped rows with ``cpu_ms``; a row not measured is absent. The best raw
    mode is the cheapest of every engine measured, so a row on the faster engine is not
    judged against the slower one."""
    cpu = {k: v["b1_cpu_ms"] if "b1_cpu_ms" in v else v["cpu_ms"] for k, v in raw.items()}
    p50 = {k: v["b1_p50_ms"] for k, v in raw.items() if "b1_p50_ms" in v}
    if not cpu or not p50:
        return []
    best_cpu = min(cpu, key=lambda k: cpu[k])
    best_p50 = min(p50, key=lambda k: p50[k])
    out = []
    for ours in (r for r in rows if r.name.startswith(("ours (this checkout)", "ours, "))):
        one = level_figures(ours.levels.get(1, []))
        cpu64 = level_figures(ours.levels.get(64, []))["cpu"]
        out.append(
            f"- Bars (issue 28), {ours.name}: c=64 CPU ms/req over the best raw CPU ms/text "
            f"(raw {best_cpu}, {cpu[best_cpu]:.2f}) **{ratio(cpu64, cpu[best_cpu])}** (bar "
            f"1.10x); c=1 p50 over the best raw b1 (raw {best_p50}, {p50[best_p50]:.2f} ms) "
            f"**{ratio(one['p50'], p50[best_p50])}** (bar 1.25x)."
        )
        for name, figures in (beside or {}).items():
            out.append(
                f"- {ours.name}: c=64 CPU ms/req over raw {name} ({figures['b1_cpu_ms']:.2f} "
                f"CPU ms/text; not one of the issue's modes) "
                f"**{ratio(cpu64, figures['b1_cpu_ms'])}**."
            )
        for c in (1, 8, 64):
            mine = level_figures(ours.levels.get(c, []))
            for peer in (r for r in rows if r.peer and r.levels.get(c)):
                theirs = level_figures(peer.levels[c])
                if c == 1:
                    out.append(
                        f"- c=1 p50, {ours.name} over {peer.name}: "
                        f"{ratio(mine['p50'], theirs['p50'])} (bar: below 1)."
                    )
                else:
                    out.append(
                        f"- c={c} req/s, {ours.name} over {peer.name}: "
                        f"{ratio(mine['per_s'], theirs['per_s'])} (bar 1.2x)."
                    )
    return out


def paired(new: Row, old: Row) -> list[str]:
    """This checkout over the old commit, pass by pass (adjacent in time), then the median:
    less exposed to the machine's drifting load than a ratio of medians."""

    def per_pass(c: int, key: Callable[[ba.Level], float]) -> float:
        pairs = zip(new.levels.get(c, []), old.levels.get(c, []), strict=False)
        return med([key(a) / key(b) for a, b in pairs if a.latencies and b.latencies])

    one = LOCKSTEP if new.levels.get(LOCKSTEP) and old.levels.get(LOCKSTEP) else 1
    p50 = per_pass(one, lambda lv: ba.percentile(lv.latencies, 0.5))
    tput = per_pass(64, lambda lv: lv.n / lv.seconds)
    tput8 = per_pass(8, lambda lv: lv.n / lv.seconds)
    cpu1 = per_pass(one, lambda lv: lv.server_cpu / max(lv.n, 1))
    cpu64 = per_pass(64, lambda lv: lv.server_cpu / max(lv.n, 1))
    how = "in lockstep" if one == LOCKSTEP else "alone"
    return [
        f"- This checkout over {old.name}, median of per-pass ratios: c=1 ({how}) p50 "
        f"**{p50:.2f}x**, CPU ms/req {cpu1:.2f}x; c=8 req/s **{tput8:.2f}x**; c=64 req/s "
        f"**{tput:.2f}x**, CPU ms/req {cpu64:.2f}x."
    ]


def lockstep_lines(rows: list[Row]) -> list[str]:
    """The lockstep c=1 figures (medians over passes) of the rows that have them."""
    out = []
    for row in rows:
        if row.levels.get(LOCKSTEP):
            f = level_figures(row.levels[LOCKSTEP])
            out.append(f"{row.name} p50 {f['p50']:.2f} ms, {f['cpu']:.2f} CPU ms/req")
    if not out:
        return []
    return ["- c=1 in lockstep (the same text to each in turn): " + "; ".join(out) + "."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bundle", type=Path, help="bundle dir (default: MiniLM + random head)")
    ap.add_argument(
        "--student",
        type=Path,
        help="save_pretrained dir for the pipeline row (default: the default bundle's student)",
    )
    ap.add_argument("--seconds", type=float, default=10.0, help="seconds per level and row")
    ap.add_argument("--passes", type=int, default=3)
    ap.add_argument(
        "--old-ref", default=DEFAULT_OLD_REF, help="git ref of the old row; '' for none"
    )
    ap.add_argument(
        "--also",
        action="append",
        default=[],
        metavar="LUGPI_X=VALUE[,LUGPI_Y=VALUE]",
        help="one more row: this checkout with those settings (repeatable)",
    )
    ap.add_argument("--ours-only", action="store_true", help="no peer servers, only ours + raw")
    ap.add_argument(
        "--infinity-venv",
        type=Path,
        help="a virtual environment with infinity-emb (default: WORK/infinity-venv if present)",
    )
    ap.add_argument(
        "--setup-infinity",
        action="store_true",
        help="create WORK/infinity-venv (python -m venv + pip install 'infinity-emb[all]') first",
    )
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lugpi-bench-api")
    ap.add_argument("--out", type=Path, default=RESULTS, help="markdown file to write")
    args = ap.parse_args()
    args.command = "python benchmarks/bench_peers.py " + shlex.join(sys.argv[1:])
    if args.passes < 1 or args.seconds <= 0:
        raise SystemExit("--passes >= 1 and --seconds > 0")
    texts = ba.cwi_sentences(ba.CWI_TEST)
    args.work.mkdir(parents=True, exist_ok=True)
    bundle = ba.ensure_bundle(args.bundle, args.work, texts)
    if args.student is None and args.bundle is None:
        args.student = args.work / "minilm-random-bundle-student"
    if args.setup_infinity:
        args.infinity_venv = setup_infinity(args.work)
    elif args.infinity_venv is None and (args.work / "infinity-venv").is_dir():
        args.infinity_venv = args.work / "infinity-venv"
    loads = [uptime()]

    from contracts.repository import publish

    repo = args.work / "peers-repo"
    shutil.rmtree(repo, ignore_errors=True)
    publish(bundle, repo, ba.MODEL_NAME)
    raws = {
        "spin": Row("raw b1 spinning"),
        "nospin": Row("raw onnxruntime b1, no spinning"),
        "grouped": Row("raw grouped 32"),
        "one": Row("raw onnxruntime b1, one thread"),
    }
    clf_spin = ba.load_classifier(bundle, spinning=True)
    clf = ba.load_classifier(bundle, spinning=False)
    clf_one = ba.load_classifier(bundle, spinning=False, threads=1)
    openvino = start_openvino(clf, bundle, texts, raws)
    # onnxruntime on the fp32 graph too: LUGPI_ENGINE=auto may serve it (int8 costs more
    # per text than fp32 on CPUs without VNNI), and the best raw mode is of every graph.
    fp32 = {
        "fp32_spin": ba.load_classifier(bundle, spinning=True, variant="fp32"),
        "fp32_one": ba.load_classifier(bundle, spinning=False, threads=1, variant="fp32"),
    }
    clf_fp32 = ba.load_classifier(bundle, spinning=False, variant="fp32")  # as ``clf``
    raws |= {
        "fp32_spin": Row("raw onnxruntime fp32 b1, spinning on"),
        "fp32_one": Row("raw onnxruntime fp32 b1, one thread"),
        "fp32_grouped": Row("raw onnxruntime fp32 grouped 32"),
    }
    rows: list[Row] = []
    try:
        rows, skipped = start_rows(args, bundle, repo, texts)
        bodies = ba.request_bytes(texts)
        runner: Callable[[Any], None] = asyncio.run
        if ba._importable("uvloop"):
            import uvloop

            runner = uvloop.run
        order: list[Row | str] = [*rows, "raw"]
        ours = [row for row in rows if row.name.startswith("ours")]
        for p in range(args.passes):
            if len(ours) > 1:
                print(f"pass {p + 1}/{args.passes}: c=1 in lockstep, our rows + raw", flush=True)
                runner(lockstep(ours, [(raws["nospin"], clf)], texts, args.seconds))
            print(f"pass {p + 1}/{args.passes}: each row alone", flush=True)
            k = p % len(order)
            for item in order[k:] + order[:k]:
                if item == "raw":
                    raws["spin"].raw.append(ba.raw_batch1(clf_spin, texts, args.seconds))
                    raws["nospin"].raw.append(ba.raw_batch1(clf, texts, args.seconds))
                    raws["one"].raw.append(ba.raw_batch1(clf_one, texts, args.seconds))
                    grouped = ba.raw_batched(clf, texts, args.seconds, 32, grouped=True)
                    raws["grouped"].raw.append(grouped)
                    for key, fp32_clf in fp32.items():
                        raws[key].raw.append(ba.raw_batch1(fp32_clf, texts, args.seconds))
                    raws["fp32_grouped"].raw.append(
                        ba.raw_batched(clf_fp32, texts, args.seconds, 32, grouped=True)
                    )
                    if openvino is not None:
                        raws["ov_b1"].raw.append(ba.raw_batch1(openvino, texts, args.seconds))
                        ov32 = ba.raw_batched(openvino, texts, args.seconds, 32, grouped=True)
                        raws["ov_grouped"].raw.append(ov32)
                        print(
                            f"  raw OpenVINO fp32: b1 {raws['ov_b1'].raw[-1]['b1_p50_ms']:.2f} "
                            f"ms; length-grouped 32: {ov32['per_s']:.0f} texts/s, "
                            f"{ov32['cpu_ms']:.2f} CPU ms/text",
                            flush=True,
                        )
                    print(
                        f"  raw: b1 spinning {raws['spin'].raw[-1]['b1_p50_ms']:.2f} ms, "
                        f"not spinning {raws['nospin'].raw[-1]['b1_p50_ms']:.2f} ms, "
                        f"one thread {raws['one'].raw[-1]['b1_p50_ms']:.2f} ms "
                        f"({raws['one'].raw[-1]['b1_cpu_ms']:.2f} CPU ms/text); "
                        f"length-grouped 32: {grouped['per_s']:.0f} texts/s, "
                        f"{grouped['cpu_ms']:.2f} CPU ms/text",
                        flush=True,
                    )
                else:
                    assert isinstance(item, Row)
                    drive(item, bodies, args.seconds)
    finally:
        for row in rows:
            if row.proc is not None:
                row.proc.terminate()
                row.proc.wait(timeout=30)
        if args.old_ref:
            for path in args.work.glob("old-*"):
                remove_worktree(path)
    loads.append(uptime())
    report = render(rows, raws, skipped, args, (loads[0], loads[1]))
    print(report)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(report)
    print(f"written to {args.out}")


def uptime() -> str:
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f}, {five:.2f}, {fifteen:.2f}"


if __name__ == "__main__":
    main()
