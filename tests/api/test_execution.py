"""Execution chosen from a measured cost curve (api.execution): the chooser on synthetic
curves, then the measurement and the instances on a real bundle and onnxruntime."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

import pytest
from fastapi.testclient import TestClient

from api.batching import DEFAULT_CALL_TOKENS, DynamicBatcher
from api.execution import FLAT_CAP, REPEATS, CostCurve, Overrides, _fastest, choose, fit_call_cost
from api.registry import ModelRegistry
from api.settings import usable_cores
from contracts.truncation import Cut
from tests.api.conftest import MakeClient


def curve(
    per_text: dict[int, float],
    one: float = 2.0,
    all_cores: float = 1.8,
    spinning: float = 1.7,
    cores: int = 2,
) -> CostCurve:
    """A curve at one length; ``per_text``: batch size -> ms per text."""
    return CostCurve(cores, (20,), {20: per_text}, one, all_cores, spinning)


FLAT = {1: 2.0, 4: 1.98, 16: 1.95}
FALLING = {1: 2.0, 4: 1.2, 16: 1.1}  # levelling off by 16
STILL_FALLING = {1: 2.0, 4: 1.2, 16: 0.6}
NONE = Overrides()


def test_flat_cost_curve_takes_a_few_texts_at_once() -> None:
    """Batching buys nothing per text: an instance takes FLAT_CAP texts at once (they run
    in the calls the padding rule cuts), never more than the bound."""
    plan = choose(curve(FLAT), cores=2, max_batch=32, forced=NONE)
    assert plan.batch_cap == FLAT_CAP
    assert any(f"never falls to 0.9: {FLAT_CAP} texts taken at once" in w for w in plan.why)
    assert choose(curve(FLAT), cores=2, max_batch=2, forced=NONE).batch_cap == 2


def test_falling_cost_curve_batches_at_its_cheapest_size() -> None:
    assert choose(curve(FALLING), 2, 32, NONE).batch_cap == 16
    # Still falling steeply at 16: up to the bound.
    assert choose(curve(STILL_FALLING), 2, 32, NONE).batch_cap == 32
    # A bound below 16: falling up to 4, the largest size measured under it: the bound.
    assert choose(curve(FALLING), 2, 8, NONE).batch_cap == 8
    # Rising past 4 but 4 is 15 % cheaper than 1: 4, as the cheapest size.
    rising = choose(curve({1: 2.0, 4: 1.7, 16: 2.5}), 2, 32, NONE)
    assert rising.batch_cap == 4 and any("the cheapest size" in w for w in rising.why)
    # 8 % cheaper is within noise: the flat case.
    noise = choose(curve({1: 2.0, 4: 1.84, 16: 1.9}), 2, 32, NONE)
    assert noise.batch_cap == FLAT_CAP and not any("the cheapest size" in w for w in noise.why)


def test_the_batch_cap_follows_the_mean_over_lengths() -> None:
    both = CostCurve(2, (20, 40), {20: FLAT, 40: {1: 4.0, 4: 2.0, 16: 1.6}}, 2, 2, 2)
    # b4: (0.99 + 0.5) / 2 = 0.745; b16: (0.975 + 0.4) / 2 = 0.69, not 10 % below b4
    assert choose(both, 2, 32, NONE).batch_cap == 16


def test_threads_split_into_instances_unless_a_call_scales() -> None:
    # Two threads make a call 2.0 / 1.8 = 1.1x faster: one thread per instance, 2 instances.
    plan = choose(curve(FLAT, one=2.0, all_cores=1.8, spinning=1.9), 2, 32, NONE)
    assert (plan.instances, plan.threads, plan.spinning) == (2, 1, False)
    # 2.0 / 1.02 = 1.96x >= 0.95 x 2 (near-linear): every core on one instance.
    plan = choose(curve(FLAT, one=2.0, all_cores=1.02, spinning=1.2), 2, 32, NONE)
    assert (plan.instances, plan.threads) == (1, 2)
    # 2.0 / 1.2 = 1.67x: faster alone, but 20 % more CPU per text under concurrency.
    plan = choose(curve(FLAT, one=2.0, all_cores=1.2, spinning=1.3), 2, 32, NONE)
    assert (plan.instances, plan.threads) == (2, 1)
    # On 8 cores the same rule: 8 instances of one thread, or one of 8.
    plan = choose(curve(FLAT, one=8.0, all_cores=4.0, spinning=4.0, cores=8), 8, 32, NONE)
    assert (plan.instances, plan.threads) == (8, 1)


def test_spinning_only_where_measured_faster_and_with_threads() -> None:
    fast_spin = choose(curve(FLAT, one=2.0, all_cores=1.15, spinning=1.0), 2, 32, NONE)
    assert fast_spin.threads == 2 and fast_spin.spinning
    slow_spin = choose(curve(FLAT, one=2.0, all_cores=1.04, spinning=1.0), 2, 32, NONE)
    assert slow_spin.threads == 2 and not slow_spin.spinning  # 0.96x: not worth the cores
    one_thread = choose(curve(FLAT, one=2.0, all_cores=1.9, spinning=1.0), 2, 32, NONE)
    assert one_thread.threads == 2  # spinning made the call 2x faster: threads pay off
    assert one_thread.spinning


def test_lone_session_only_where_it_beats_the_instance() -> None:
    # Instances of one thread (2.0 ms); a spinning 2-thread call 1.5 ms: lone session.
    plan = choose(curve(FLAT, one=2.0, all_cores=1.9, spinning=1.5), 2, 32, NONE, True)
    assert plan.threads == 1 and plan.lone_session
    plan = choose(curve(FLAT, one=2.0, all_cores=1.9, spinning=1.9), 2, 32, NONE, True)
    assert not plan.lone_session
    assert not choose(curve(FLAT, one=2.0, all_cores=1.9, spinning=1.5), 2, 32, NONE).lone_session


def test_settings_override_each_choice() -> None:
    forced = Overrides(instances=3, threads=1, spinning=True, batch_cap=8, call_tokens=12.0)
    measured = CostCurve(2, (20,), {20: FALLING}, 2.0, 1.0, 0.9, call_ms=0.5, token_ms=0.1)
    assert choose(measured, 2, 32, NONE).call_tokens == pytest.approx(5.0)
    plan = choose(measured, 2, 32, forced)
    assert (plan.instances, plan.threads, plan.batch_cap, plan.call_tokens) == (3, 1, 8, 12.0)
    assert not plan.spinning  # nothing to spin with one thread
    assert sum("LUGPI_" in why for why in plan.why) == 5
    assert choose(curve(FLAT), 2, 4, Overrides(batch_cap=64)).batch_cap == 4  # max_batch bounds


def test_without_a_curve_the_old_behaviour() -> None:
    plan = choose(None, cores=2, max_batch=32, forced=NONE, lone_allowed=True)
    assert (plan.instances, plan.threads, plan.spinning, plan.batch_cap) == (1, 2, False, 32)
    assert plan.lone_session


def test_the_call_cost_is_fitted_as_fixed_plus_per_token() -> None:
    # 0.5 ms a call + 0.05 ms a padded token, at 20 and 40 tokens x batches of 1, 4, 16.
    calls = [(b * n, 0.5 + 0.05 * b * n) for n in (20, 40) for b in (1, 4, 16)]
    call_ms, token_ms = fit_call_cost(calls)
    assert call_ms == pytest.approx(0.5) and token_ms == pytest.approx(0.05)
    fitted = CostCurve(2, (20,), {20: FLAT}, 2, 2, 2, call_ms, token_ms)
    plan = choose(fitted, 2, 32, NONE)
    assert plan.call_tokens == pytest.approx(10.0)
    assert any("padding it adds is under 10.0 tokens" in why for why in plan.why)
    # A cost that did not grow with the tokens is noise: the batcher's default, said so.
    flat = CostCurve(2, (20,), {20: FLAT}, 2, 2, 2, *fit_call_cost([(20, 2.0), (80, 1.9)]))
    assert flat.call_tokens is None and choose(flat, 2, 32, NONE).call_tokens is None
    assert any("the call costs were noise" in why for why in choose(flat, 2, 32, NONE).why)
    assert fit_call_cost([(20, 2.0), (20, 2.1)]) == (0.0, 0.0)  # one token count: no line
    assert choose(None, 2, 32, NONE).call_tokens is None


def test_random_mixed_lengths_run_apart_where_a_call_is_cheap(make_client: MakeClient) -> None:
    """A real batcher on a real bundle: a short and a long text in one request share one
    onnxruntime call where a call is worth more than the padding (the default, 256 tokens),
    and run as two calls where it is worth 3 tokens (what a CPU measures)."""
    client = make_client()
    loaded = client.app.state.registry.resolve("sentiment", None)  # type: ignore[attr-defined]
    long = " ".join(["word"] * 60)
    calls: list[int] = []
    for per_call, expected in ((None, [2]), (3.0, [1, 1])):
        calls.clear()
        batcher = DynamicBatcher(
            loaded.classifier,
            max_batch_size=4,
            max_wait_s=0.0,
            name="mixed",
            on_batch=lambda n, _s: calls.append(n),
            call_tokens=per_call,
        )
        batcher.start()
        try:
            out = asyncio.run(batcher.classify(["short", long], None))
        finally:
            batcher.close(timeout=10)
        assert out.probs.shape[0] == 2 and calls == expected
    assert DEFAULT_CALL_TOKENS > 60


def test_random_measured_plan_is_shown_and_its_instances_answer(make_client: MakeClient) -> None:
    """The real measurement on a real bundle: the plan's invariants (whatever this loaded
    machine measured), GET /models shows it, and concurrent requests are all answered by
    its instances."""
    client: TestClient = make_client(intra_op_threads=0)
    registry: ModelRegistry = client.app.state.registry  # type: ignore[attr-defined]
    loaded = registry.resolve("sentiment", None)
    plan = loaded.plan
    cores = usable_cores()
    assert plan.curve is not None and plan.instances * plan.threads <= max(cores, plan.threads)
    assert len(loaded.batcher.instances) == plan.instances
    assert loaded.batcher.max_batch_size == plan.batch_cap
    if plan.threads == 1:  # one session serves every instance
        assert len({id(i.session) for i in loaded.batcher.instances}) == 1
    info = client.get("/models/sentiment").json()["versions"][0]["execution"]
    assert info["instances"] == plan.instances and info["batch_cap"] == plan.batch_cap
    assert len(info["why"]) >= 4 and "batch 1" in info["cost_curve_ms"]
    # The fitted call cost reaches the batcher and the page.
    assert loaded.batcher.call_tokens == plan.call_tokens
    assert plan.call_tokens == (plan.curve.call_tokens if plan.curve else None)
    fitted = info["cost_curve_ms"]["one-thread call"]
    assert fitted["per padded token"] == round(plan.curve.token_ms, 5)
    # The pair model's graph is another: measured on its own.
    assert registry.resolve("cwi", None).plan.curve is not plan.curve

    async def burst() -> list[object]:
        return list(
            await asyncio.gather(
                *[loaded.batcher.classify([f"text {i}"] * (1 + i % 3), None) for i in range(24)]
            )
        )

    outs = asyncio.run(burst())
    assert [o.probs.shape[0] for o in outs] == [1 + i % 3 for i in range(24)]  # type: ignore[attr-defined]


def test_random_overrides_reach_the_batcher(make_client: MakeClient) -> None:
    client = make_client(intra_op_threads=1, instances=3, batch_cap=4)
    loaded = client.app.state.registry.resolve("sentiment", None)  # type: ignore[attr-defined]
    assert (loaded.plan.instances, loaded.plan.threads, loaded.plan.batch_cap) == (3, 1, 4)
    assert len(loaded.batcher.instances) == 3 and loaded.batcher.max_batch_size == 4
    r = client.post("/classify", json={"texts": ["a"] * 9, "model": "sentiment"})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 9


def test_measured_calls_follow_no_larger_call_and_spread_over_rounds() -> None:
    """The timing of the cost curve's trials: every timed call follows a call no larger
    than itself (a call right after a larger one is slower), and a trial's timed calls are
    spread over the whole measurement, so that a spell of other work on the machine (here
    the first round's calls, each 20 ms slower) spoils one of them, not all."""
    log: list[str] = []

    def call(key: str) -> object:
        def run(encodings: Sequence[Cut]) -> None:
            log.append(key)
            if len(log) <= 6:  # the busy spell: the first round
                time.sleep(0.02)

        return run

    def texts(n: int, tokens: int) -> list[Cut]:
        return [Cut(list(range(tokens)), [0] * tokens, False)] * n

    trials = {"b16": (call("b16"), texts(16, 20)), "b1": (call("b1"), texts(1, 20))}
    trials["b4"] = (call("b4"), texts(4, 20))
    ms = _fastest(trials)  # type: ignore[arg-type]
    first = ["b1", "b1", "b4", "b4", "b16", "b16"]  # each shape once untimed, then timed
    later = ["b1", "b1", "b4", "b16"]  # after the largest, the smallest once untimed
    assert log == first + later * (REPEATS - 1)
    assert all(v < 10 for v in ms.values()), ms
