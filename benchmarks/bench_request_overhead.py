"""What a lone POST /classify costs besides the graph call, in-process, fast route on and off.

    python benchmarks/bench_request_overhead.py [--bundle DIR] [--work DIR] [--rounds 5]

The API app (``api.main.create_app``, its middlewares and lifespan) is called as ASGI from
this process, one request at a time, one CWI 2018 News test sentence each: no socket, no
HTTP parsing, no load generator. Two apps on the same bundle, LUGPI_CLASSIFY_FAST_PATH on
and off, taken in turn round by round (so drifting load falls on both alike); each is
timed with its real graph call and with the call replaced by a constant (the same output
arrays), so the second figure is the app's own cost: routing, validation, the batcher's
bookkeeping, tokenizing, the response. Without --bundle: all-MiniLM-L6-v2 with a RANDOM
2-label head, exported once under --work (as benchmarks/bench_peers.py does).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO_ROOT))

from benchmarks import bench_api as ba  # noqa: E402


class _Constant:
    """A session whose every call returns the same outputs (the graph's, computed once)."""

    def __init__(self, session: Any, outputs: Sequence[Any]) -> None:
        self.session, self.outputs = session, outputs

    def run(self, names: Sequence[str], feed: Mapping[str, Any], options: Any = None) -> Any:
        return self.outputs

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


async def _post(app: Any, body: bytes) -> None:
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/classify",
        "raw_path": b"/classify",
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"bench"),
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }
    given = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal given
        if not given:
            given = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.sleep(3600)  # no disconnect while the request runs
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app(scope, receive, send)
    if status != 200:
        raise SystemExit(f"/classify answered {status}")


def _stub(app: Any) -> None:
    """Replace every session of the served version by a constant."""
    loaded = app.state.registry.resolve(None, None)
    for clf in {id(c): c for c in loaded.batcher.instances}.values():
        feed = clf.encoder.feed(clf.encode(clf.pair_up(["warm"], None)))
        outputs = clf.session.run(clf._outputs, feed)
        clf.session = _Constant(clf.session, outputs)
        clf.lone_session = _Constant(clf.lone_session, outputs)


async def _time(app: Any, bodies: list[bytes]) -> list[float]:
    took = []
    for body in bodies:
        started = time.perf_counter()
        await _post(app, body)
        took.append(time.perf_counter() - started)
    return took


async def run(repo: Path, work: Path, rounds: int, texts: list[str]) -> dict[str, list[float]]:
    from api.main import create_app
    from api.settings import ApiSettings

    bodies = [json.dumps({"texts": [t]}).encode() for t in texts]
    apps = {}
    for on in (True, False):
        settings = ApiSettings(
            model_repository=repo,
            artifacts_dir=work / "artifacts",
            default_model=ba.MODEL_NAME,
            poll_interval_s=0,
            classify_fast_path=on,
            log_level="warning",
        )
        apps["fast route on" if on else "fast route off"] = create_app(settings)
    figures: dict[str, list[float]] = {}
    async with (
        apps["fast route on"].router.lifespan_context(apps["fast route on"]),
        apps["fast route off"].router.lifespan_context(apps["fast route off"]),
    ):
        for stubbed in (False, True):
            if stubbed:
                for app in apps.values():
                    _stub(app)
            for app in apps.values():
                await _time(app, bodies[:100])  # warm
            for _ in range(rounds):
                for name, app in apps.items():
                    key = f"{name}, {'graph constant' if stubbed else 'real graph'}"
                    figures.setdefault(key, []).extend(await _time(app, bodies))
    return figures


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--bundle", type=Path, help="bundle dir (default: MiniLM + random head)")
    ap.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "lugpi-bench-api")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    from contracts.repository import publish

    texts = ba.cwi_sentences(ba.CWI_TEST)
    args.work.mkdir(parents=True, exist_ok=True)
    bundle = ba.ensure_bundle(args.bundle, args.work, texts)
    repo = args.work / "overhead-repo"
    if not (repo / ba.MODEL_NAME).is_dir():
        publish(bundle, repo, ba.MODEL_NAME)
    runner: Any = asyncio.run
    if ba._importable("uvloop"):
        import uvloop

        runner = uvloop.run
    figures = runner(run(repo, args.work, args.rounds, texts))
    print(f"{len(texts)} sentences x {args.rounds} rounds per row; p50 and mean per request")
    for key, values in figures.items():
        print(
            f"  {key:36s} p50 {statistics.median(values) * 1e3:.3f} ms, "
            f"mean {statistics.fmean(values) * 1e3:.3f} ms"
        )


if __name__ == "__main__":
    main()
