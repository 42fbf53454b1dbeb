"""The lone-request path: a one-text request runs inline (on the event loop) when the
batcher is idle, with the same outputs, request ids and checks as the batched path, and a
burst is still batched; with spinning on, onnxruntime's threads stop spinning when a call
returns."""

from __future__ import annotations

import asyncio
import time

import httpx
import pytest
from fastapi.testclient import TestClient

from api.batching import DynamicBatcher
from api.registry import ModelRegistry
from api.request_id import arrived
from api.schemas import ClassifyResponse
from contracts.errors import DeadlineExceeded, InferenceError
from tests.api.conftest import SINGLE_LABELS, MakeClient

TEXTS = ["a gripping film", "dull", "the plot " * 40, "an instant classic"]  # 360 chars at most


def _batcher(client: TestClient, model: str = "sentiment") -> DynamicBatcher:
    registry: ModelRegistry = client.app.state.registry  # type: ignore[attr-defined]
    return registry.resolve(model, None).batcher


def test_random_lone_requests_run_inline_with_the_batched_paths_outputs(
    make_client: MakeClient,
) -> None:
    # fp32: int8 quantizes activations per call, fp32 gives the same numbers on both paths.
    inline = make_client(model_variant="fp32")
    queued = make_client(model_variant="fp32", inline_lone_requests=False)
    bodies = {}
    for name, client in (("inline", inline), ("queued", queued)):
        out = []
        for i, text in enumerate(TEXTS):
            r = client.post(
                "/classify",
                json={"texts": [text], "model": "sentiment"},
                headers={"X-Request-ID": f"req-{name}-{i}"},
            )
            assert r.status_code == 200, r.text
            assert r.headers["x-request-id"] == f"req-{name}-{i}"
            assert r.headers["content-type"] == "application/json"
            out.append(ClassifyResponse.model_validate_json(r.content))
        bodies[name] = out
    assert _batcher(inline).inline_runs == len(TEXTS)
    assert _batcher(queued).inline_runs == 0
    for a, b in zip(bodies["inline"], bodies["queued"], strict=True):
        assert (a.model, a.version, a.truncated) == (b.model, b.version, b.truncated)
        for pa, pb in zip(a.predictions, b.predictions, strict=True):
            assert pa.label == pb.label
            for label in SINGLE_LABELS:
                assert pa.scores[label] == pytest.approx(pb.scores[label], abs=1e-6)
    assert bodies["inline"][2].truncated == [0]  # the long text was cut on the inline path


def test_random_body_is_what_the_response_model_serialises(client: TestClient) -> None:
    r = client.post("/classify", json={"texts": ["fine", "not fine"], "model": "sentiment"})
    assert r.status_code == 200
    # Byte for byte what FastAPI wrote when the route returned a ClassifyResponse.
    assert r.content == ClassifyResponse.model_validate_json(r.content).model_dump_json().encode()


def test_random_a_burst_is_batched_not_run_one_by_one(client: TestClient) -> None:
    texts = [f"text number {i} " + "longer " * (i % 7) for i in range(24)]

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=client.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as ac:
            return await asyncio.gather(
                *(ac.post("/classify", json={"texts": [t], "model": "sentiment"}) for t in texts)
            )

    before = _batcher(client).inline_runs
    responses = asyncio.run(burst())
    assert all(r.status_code == 200 for r in responses)
    assert _batcher(client).inline_runs - before < len(texts)
    metrics = client.get("/metrics").text
    ones = count = 0.0
    for line in metrics.splitlines():
        if line.startswith('lugpi_batch_size_texts_bucket{le="1.0",model="sentiment"}'):
            ones = float(line.split()[-1])
        if line.startswith('lugpi_batch_size_texts_count{model="sentiment"}'):
            count = float(line.split()[-1])
    assert ones < count  # some onnxruntime call saw more than one text


def test_random_inline_keeps_the_deadline_and_error_checks(client: TestClient) -> None:
    batcher = _batcher(client)

    async def late() -> object:
        arrived.set(time.monotonic() - 3600)  # reached the server an hour ago
        return await batcher.run_inline(["late"], None)

    with pytest.raises(DeadlineExceeded):
        asyncio.run(late())
    with pytest.raises(InferenceError):  # a surrogate cannot be tokenized
        asyncio.run(batcher.run_inline(["bad \ud800"], None))
    out = asyncio.run(batcher.run_inline(["good"], None))
    assert out is not None and out.probs.shape == (1, len(SINGLE_LABELS))


def test_random_inline_only_for_one_text_without_a_batch_wait(make_client: MakeClient) -> None:
    waiting = make_client(max_batch_wait_ms=5)
    assert asyncio.run(_batcher(waiting).run_inline(["x"], None)) is None
    client = make_client()
    assert asyncio.run(_batcher(client).run_inline(["x", "y"], None)) is None
    r = client.post("/classify", json={"texts": ["x", "y"], "model": "sentiment"})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2
    # A long text would hold the event loop longer than a batch-1 call of a short one.
    r = client.post("/classify", json={"texts": ["long " * 300], "model": "sentiment"})
    assert r.status_code == 200 and r.json()["truncated"] == [0]
    assert _batcher(client).inline_runs == 0
    # The API's checks still run first: an oversized text is refused, never run.
    r = client.post("/classify", json={"texts": ["x" * 20_000], "model": "sentiment"})
    assert r.status_code == 422
    assert _batcher(client).inline_runs == 0


@pytest.mark.parametrize("spinning", [False, True])
def test_random_spinning_stops_when_a_call_returns(make_client: MakeClient, spinning: bool) -> None:
    client = make_client(ort_spinning=spinning, intra_op_threads=2)  # one thread never spins
    registry: ModelRegistry = client.app.state.registry  # type: ignore[attr-defined]
    options = registry.resolve("sentiment", None).classifier.session.get_session_options()
    entry = options.get_session_config_entry
    assert entry("session.intra_op.allow_spinning") == ("1" if spinning else "0")
    if spinning:  # threads spin inside a call only: idle between lone requests
        assert entry("session.force_spinning_stop") == "1"
    r = client.post("/classify", json={"texts": ["spun"], "model": "sentiment"})
    assert r.status_code == 200


def _config(session: object, key: str) -> str:
    return session.get_session_options().get_session_config_entry(key)  # type: ignore[attr-defined]


class _Counting:
    """The real session, with its calls counted (it still runs every call)."""

    def __init__(self, session: object) -> None:
        self.session, self.calls = session, 0

    def run(self, *args: object, **kwargs: object) -> object:
        self.calls += 1
        return self.session.run(*args, **kwargs)  # type: ignore[attr-defined]


def test_random_lone_requests_run_on_a_spinning_session_batches_on_the_quiet_one(
    make_client: MakeClient,
) -> None:
    # Not measured: where the measurement finds the spinning session no faster (busy
    # cores), there is none (tests/api/test_execution.py).
    client = make_client(intra_op_threads=2, model_variant="fp32", measure_execution=False)
    clf = _batcher(client).classifier
    assert clf.lone_session is not clf.session
    assert _config(clf.lone_session, "session.intra_op.allow_spinning") == "1"
    assert _config(clf.lone_session, "session.force_spinning_stop") == "1"
    assert _config(clf.session, "session.intra_op.allow_spinning") == "0"
    # Both sessions run the same graph: the same numbers for the same encodings.
    enc = clf.encode(clf.pair_up(TEXTS, None))
    main, lone = clf.run_scores(enc), clf.run_scores(enc, lone=True)
    assert main.probs == pytest.approx(lone.probs, abs=1e-6)

    spy = _Counting(clf.lone_session)
    clf.lone_session = spy  # type: ignore[assignment]
    r = client.post("/classify", json={"texts": ["alone"], "model": "sentiment"})
    assert r.status_code == 200
    assert spy.calls == 1 and _batcher(client).inline_runs == 1
    r = client.post("/classify", json={"texts": ["not", "alone"], "model": "sentiment"})
    assert r.status_code == 200
    assert spy.calls == 1  # a queued batch ran on the main session


@pytest.mark.parametrize(
    "overrides",
    [
        {"intra_op_threads": 1},  # nothing to wake or spin
        {"intra_op_threads": 2, "ort_lone_spinning": False},
        {"intra_op_threads": 2, "ort_spinning": True},  # the main session spins already
        {"intra_op_threads": 2, "inline_lone_requests": False},  # no lone runs to give it
    ],
)
def test_random_no_second_session_where_it_would_not_differ(
    make_client: MakeClient, overrides: dict[str, object]
) -> None:
    clf = _batcher(make_client(**overrides)).classifier
    assert clf.lone_session is clf.session


def test_random_a_lone_queued_request_runs_on_the_lone_session(make_client: MakeClient) -> None:
    """One-thread instances and a lone session (what the plan chooses where a call does not
    scale): a lone request that does not run inline (inline off here; too long in general)
    is run by its batch thread on the lone session, with the instances' outputs; a burst
    is batched on the instances instead."""
    from runtime.session import RuntimeOptions

    client = make_client(model_variant="fp32", inline_lone_requests=False)
    base = _batcher(client).instances[0]
    one = RuntimeOptions(variant="fp32", device="cpu", intra_op_threads=1, spinning=False)
    lone = base.sibling(
        RuntimeOptions(variant="fp32", device="cpu", intra_op_threads=2, spinning=True)
    )
    clf = base.sibling(one, lone.session)
    batcher = DynamicBatcher(clf, 32, 0.0, "lone-test", instances=[clf, clf])
    plain = DynamicBatcher(base.sibling(one), 32, 0.0, "plain-test")
    batcher.start()
    plain.start()
    try:
        got = asyncio.run(batcher.classify([TEXTS[0]], None))
        want = asyncio.run(plain.classify([TEXTS[0]], None))
        assert batcher.lone_queued_runs == 1 and plain.lone_queued_runs == 0
        assert got.probs == pytest.approx(want.probs, abs=1e-5)

        async def burst() -> list[object]:
            return list(
                await asyncio.gather(*(batcher.classify([f"text {i}"], None) for i in range(24)))
            )

        outs = asyncio.run(burst())
        assert len(outs) == 24
        assert batcher.lone_queued_runs < 1 + 24  # queued company: batched on the instances
    finally:
        batcher.close(timeout=10)
        plain.close(timeout=10)


def test_random_a_lone_request_beside_a_running_batch_queues(make_client: MakeClient) -> None:
    """Inline runs are for an idle server, on the lone session whose threads take every
    core. A request arriving while another instance runs a batch (the queue empty because
    that batch took it) is not run inline, on the lone session beside the batch and
    holding the event loop: it queues (None), for a free instance to run; with every
    instance idle it runs inline on the lone session."""
    from runtime.session import RuntimeOptions

    client = make_client(model_variant="fp32")
    base = _batcher(client).instances[0]
    one = RuntimeOptions(variant="fp32", device="cpu", intra_op_threads=1, spinning=False)
    spinning = RuntimeOptions(variant="fp32", device="cpu", intra_op_threads=2, spinning=True)
    lone = _Counting(base.sibling(spinning).session)
    first, second = base.sibling(one, lone), base.sibling(one, lone)  # type: ignore[arg-type]
    batcher = DynamicBatcher(first, 32, 0.0, "beside", inline_lone=True, instances=[first, second])
    batcher.start()
    try:
        for busy in (0, 1):
            with batcher._engines[busy]:  # instance ``busy`` is running a batch
                assert asyncio.run(batcher.run_inline([TEXTS[0]], None)) is None
            assert batcher.inline_runs == 0 and lone.calls == 0
            assert not any(engine.locked() for engine in batcher._engines)  # none kept
        out = asyncio.run(batcher.run_inline([TEXTS[0]], None))  # every instance idle
        assert out is not None and batcher.inline_runs == 1 and lone.calls == 1
        assert not any(engine.locked() for engine in batcher._engines)
        queued = asyncio.run(batcher.classify([TEXTS[0]], None))
        assert queued.probs == pytest.approx(out.probs, abs=1e-5)
    finally:
        batcher.close(timeout=10)
