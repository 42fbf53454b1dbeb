"""Dynamic batching: concurrent requests to one model version share onnxruntime calls.

One daemon thread per engine instance of a loaded version (api/execution.py: N instances
take work from the version's one queue) runs the loop, so inference never blocks the
event loop (a server that infers on the loop shows multi-second maxima at
concurrency >= 32, docs/environment.md). The loop takes the first queued request, then
everything else already queued (and, if ``max_wait_s`` > 0, what arrives within it)
up to ``max_batch_size`` texts; tokenizes all of them at once; sorts them by token
length and cuts them into the groups that cost least (``length_groups``: texts share a
call only where the call's measured fixed cost is worth more than the padding sharing
it adds); runs each group; and hands every request its rows.

With ``max_wait_s`` = 0 a lone request runs at once, and requests that arrive while
a batch runs queue up and form the next batch: batches grow with load by themselves. An
instance takes at most its share of what is queued (``fair_share``: the texts over the
idle instances), so that a few concurrent requests are split between instances rather
than all run by one while another idles.

A lone request of one text, arriving while nothing is queued, running or arriving with
it, is run inline (``run_inline``) on the event loop instead (only with ``max_wait_s`` =
0): handing it to the batch thread and its answer back costs two thread wake-ups, a
large part of a lone request's latency on a busy 2-core machine
(benchmarks/results/peers.md). It runs inline only if its text, once tokenized, has at most
``inline_max_tokens`` tokens: the most whose batch-1 call took at most ``inline_max_ms`` when
the version was loaded (``calibrate_inline``), capped by the setting. Characters say little
(punctuation and CJK are a token each: 1,000 '!' are a 512-token call of ~240 ms on a
MiniLM), so a longer text is handed to the batch thread and the loop is never held for
more than a few ms; under load the queue is never empty and every request goes through
the batch thread as before.

Memory: onnxruntime's attention takes texts x heads x length^2 floats per layer (64 x 512
tokens: about 0.8 GB), and each version's arena used to keep its peak. A group is also cut
where it would pass ``max_batch_tokens`` padded tokens (texts past 512 tokens counted at
their attention's cost, ``call_cost``); a call above ``LargeCallGate.large_tokens`` takes
the process-wide gate, so one large call runs at a time across every loaded version, and
asks onnxruntime to give its arena back once done. Peak inference memory is then one
budget-sized call, however many versions are loaded.

Overload: at most ``max_queued_texts`` texts wait; a request beyond that is refused at
once (``Overloaded``, 429) instead of growing the queue. A request still queued
``timeout_s`` after it reached the server (``api.request_id.arrived``), or whose caller
cancelled it (the client went away), is dropped when the loop reaches it, without being
tokenized or run.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from api.request_id import arrived
from contracts.errors import DeadlineExceeded, InferenceError, Overloaded
from contracts.truncation import Cut
from runtime.classifier import OnnxClassifier, Scores

log = logging.getLogger("lugpi.api")

# Called after each onnxruntime call with (texts in it, seconds it took).
BatchObserver = Callable[[int, float], None]
# Called for each request not run, with the reason ("queue_full", "deadline", "cancelled").
DropObserver = Callable[[str], None]


TruncationSide = Literal["right", "left"]


@dataclass(frozen=True)
class BatchTimings:
    """Where one request's time went, in seconds (TEI reports these as headers).

    ``tokenize_s`` is the whole batch's (its texts were tokenized together with the
    others); ``inference_s`` runs from then to the end of the request's last call.
    """

    queue_s: float = 0.0  # enqueued -> its batch started
    tokenize_s: float = 0.0
    inference_s: float = 0.0


@dataclass(frozen=True)
class BatchOutput:
    probs: np.ndarray  # (n_texts, n_labels), rows in request order
    truncated: list[int]  # indices (into the request's texts) cut to max_length
    # Raw scores, when the bundle's graph has them (see OnnxClassifier.has_logits).
    logits: np.ndarray | None = None
    n_tokens: int = 0  # tokens of this request's texts after truncation
    timings: BatchTimings = BatchTimings()


@dataclass
class _Pending:
    texts: Sequence[str]
    pairs: Sequence[str] | None
    truncation: TruncationSide = "right"
    queued_at: float = field(default_factory=time.perf_counter)
    deadline: float = float("inf")  # time.monotonic() after which it is dropped unrun
    future: Future[BatchOutput] = field(default_factory=Future)


_STOP = object()
# Longest text (in characters, a pair's two texts together) even tokenized on the event loop
# to see whether it may run inline: it bounds the cost of that look (well under a ms); the
# token count then decides (``DynamicBatcher.inline_max_tokens``).
INLINE_MAX_CHARS = 1000
# Lengths tried by ``calibrate_inline``, shortest first.
CALIBRATION_LENGTHS = (8, 16, 32, 64, 128, 256, 512)


# Past this length a text's cost is counted by its attention (quadratic), not its tokens.
ATTENTION_FREE_LENGTH = 512


def call_cost(n_texts: int, width: int) -> float:
    """What a call of ``n_texts`` padded to ``width`` tokens costs in memory, in tokens:
    n x width, and n x width^2 / 512 past 512 (attention grows with the square)."""
    return n_texts * width * max(1.0, width / ATTENTION_FREE_LENGTH)


class LargeCallGate:
    """One onnxruntime call above ``large_tokens`` (``call_cost``) at a time in the whole
    process: each loaded version has its own batch thread, and two large calls at once
    doubled the peak (two versions under a flood of long texts passed 2 GB)."""

    def __init__(self, large_tokens: float) -> None:
        self.large_tokens = large_tokens
        self.lock = threading.Lock()


# What one onnxruntime call's fixed work is worth in padded tokens where the version's cost
# was not measured (on CUDA, or LUGPI_MEASURE_EXECUTION=false): the threshold of the rule
# that came before the measured one (padding of more than 256 tokens split a group).
DEFAULT_CALL_TOKENS = 256.0


def length_groups(
    lengths: Sequence[int],
    max_size: int,
    max_tokens: float | None = None,
    call_tokens: float | None = None,
) -> list[list[int]]:
    """Indices sorted by length, cut into the groups that cost least in all: a call costs
    ``call_tokens`` (the engine's fixed work per call, in padded tokens: measured when the
    version loads, ``api.execution.CostCurve.call_tokens``; ``DEFAULT_CALL_TOKENS`` if None)
    plus its padded tokens (``call_cost``). Groups hold at most ``max_size`` texts and, unless
    a single text, at most ``max_tokens`` (``call_cost``).

    So texts share a call only where the call it saves is worth more than the padding it
    adds. On a CPU a call's fixed work is worth a few tokens (docs/environment.md: 2
    Intel cores, MiniLM-L6 int8, one thread, CWI sentences in batches of 4 padded to the
    longest cost 1.4x the same texts one by one), so mixed lengths run apart and equal
    lengths together.

    The cheapest cut of the sorted lengths into consecutive groups (dynamic programming,
    n steps of max_size each, vectorised); on a tie the larger group.
    """
    per_call = DEFAULT_CALL_TOKENS if call_tokens is None else call_tokens
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    widths = [lengths[i] for i in order]
    n = len(widths)
    if n <= 1:  # the common lone text: nothing to weigh
        return [order] if n else []
    best = np.zeros(n + 1)  # best[j]: the cheapest cut of the j shortest texts
    start = [0] * (n + 1)  # where the last group of that cut starts
    for j in range(1, n + 1):
        # Groups ending at j start at lo..j-1: vectorised, so a batch of 1,000 texts under a
        # cap of 1,000 costs ms, not the 120 ms a Python loop held the GIL for.
        width = widths[j - 1]  # sorted: the longest of any group ending at j
        lo = max(0, j - max_size)
        sizes = np.arange(j - lo, 0, -1, dtype=np.float64)  # the group's size for each start
        costs = sizes * call_cost(1, width)
        if max_tokens is not None:
            costs[(sizes > 1) & (costs > max_tokens)] = np.inf
        totals = best[lo:j] + costs
        k = int(np.argmin(totals))  # the first minimum: the largest group on a tie
        best[j] = totals[k] + per_call
        start[j] = lo + k
    groups: list[list[int]] = []
    j = n
    while j > 0:
        groups.append(order[start[j] : j])
        j = start[j]
    return groups[::-1]


def fair_share(available: int, idle: int, cap: int) -> int:
    """Most texts an instance takes when ``available`` texts are queued (its first request's
    included) and ``idle`` instances are free to take them: an even split, rounded up, at
    most ``cap``. Taking everything up to the cap would leave an idle instance with nothing
    while the other runs a batch of all of it."""
    return max(1, min(cap, -(-available // max(1, idle))))


class DynamicBatcher:
    """``instances``: the version's engine instances (api.execution), each run by a thread
    of its own taking batches from the one queue; default: ``classifier`` alone."""

    def __init__(
        self,
        classifier: OnnxClassifier,
        max_batch_size: int,
        max_wait_s: float,
        name: str,
        on_batch: BatchObserver | None = None,
        max_queued_texts: int | None = None,
        timeout_s: float | None = None,
        on_drop: DropObserver | None = None,
        inline_lone: bool = False,
        inline_max_tokens: int = 128,
        inline_max_ms: float = 20.0,
        max_batch_tokens: float | None = None,
        gate: LargeCallGate | None = None,
        instances: Sequence[OnnxClassifier] | None = None,
        call_tokens: float | None = None,
    ) -> None:
        self.classifier = classifier
        self.instances = list(instances or [classifier])
        self.max_batch_size = max_batch_size
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self.max_queued_texts = max_queued_texts
        self.timeout_s = timeout_s
        self.on_drop = on_drop
        self._queue: queue.SimpleQueue[_Pending | object] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._queued_texts = 0  # texts put in the queue and not yet taken by the loop
        self.inline_lone = inline_lone
        # One per instance, held around every use of it (a classifier is not thread-safe):
        # its batch thread blocks on it, an inline run only tries it.
        self._engines = [threading.Lock() for _ in self.instances]
        self.inline_runs = 0  # requests answered by run_inline (tests and curiosity)
        self.lone_queued_runs = 0  # lone requests the batch threads ran on the lone session
        # Most tokens of a text run inline; ``calibrate_inline`` lowers it to what is cheap.
        self.inline_max_tokens = inline_max_tokens
        self.inline_max_ms = inline_max_ms
        self.max_batch_tokens = max_batch_tokens
        self.call_tokens = call_tokens  # length_groups: what a call's fixed work is worth
        self.gate = gate
        self._candidate = False  # a request is about to run inline (set on the event loop)
        self._closed = False
        self.name = name
        self._threads = [
            threading.Thread(target=self._loop, args=(i,), name=f"batcher-{name}-{i}", daemon=True)
            for i in range(len(self.instances))
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    @property
    def running(self) -> bool:
        """Whether any of its threads still runs (after ``close``: until the queue drains)."""
        return any(t.is_alive() for t in self._threads)

    def calibrate_inline(self) -> int:
        """Lower ``inline_max_tokens`` to the longest input whose batch-1 call (the lone
        session's, as inline runs use it; fastest of 3) took at most ``inline_max_ms``; 0
        when even the shortest did not. Blocking (a few calls): run it before ``start``, off
        the event loop. On a loaded machine it measures slower and inlines less: the safe
        side."""
        if not self.inline_lone or self.inline_max_tokens <= 0:
            return self.inline_max_tokens
        clf = self.classifier
        bound = min(self.inline_max_tokens, clf.encoder.max_length)
        words = " ".join(["warm"] * bound)
        (full,) = clf.encode(clf.pair_up([words], None))
        best = 0
        with self._engines[0]:
            for n in [n for n in CALIBRATION_LENGTHS if n < bound] + [bound]:
                if not self._cheap(full, n):
                    break
                best = n
        self.inline_max_tokens = best
        log.info("%s: lone texts of up to %d tokens run inline", self.name, best)
        return best

    def _cheap(self, full: Cut, n: int) -> bool:
        cut = Cut(full.ids[:n], full.type_ids[:n], False)
        times = []
        for _ in range(3):
            started = time.perf_counter()
            self.classifier.run_scores([cut], lone=True)
            times.append(time.perf_counter() - started)
        return min(times) * 1000 <= self.inline_max_ms

    @property
    def queued_texts(self) -> int:
        return self._queued_texts

    @property
    def saturated(self) -> bool:
        """Whether the queue is 90 % full (what /readyz reports as overloaded)."""
        bound = self.max_queued_texts
        return bound is not None and self._queued_texts >= 0.9 * bound

    async def run_inline(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None,
        truncation: TruncationSide = "right",
    ) -> BatchOutput | None:
        """The request's output computed on this thread, or None when it must queue: inline
        runs are off, batches wait for company (``max_wait_s`` > 0), it has more than one
        text or a text over ``INLINE_MAX_CHARS`` or, once tokenized, over
        ``inline_max_tokens`` tokens, the batcher is closed, or other requests are queued,
        running, or arrived together with it.

        "Together": the first candidate yields to the event loop once before running, and
        requests that reach the batcher meanwhile queue (they see the candidate); if any
        did, the candidate queues too and they are batched. Without this, a burst of
        requests would each find the queue empty and run one by one at batch size 1.

        Same checks and errors as the queued path: a request past its deadline raises
        ``DeadlineExceeded``, a failing one ``InferenceError``; nothing is queued, so no
        load shedding applies.
        """
        if (
            not self.inline_lone
            or self.max_wait_s > 0
            or len(texts) != 1
            or self.inline_max_tokens <= 0
            or len(texts[0]) + (len(pairs[0]) if pairs else 0) > INLINE_MAX_CHARS
            or self._candidate
            or self._queued_texts
            or self._closed
        ):
            return None
        self._candidate = True
        try:
            await asyncio.sleep(0)  # let requests parsed in this loop turn reach the batcher
        finally:
            self._candidate = False
        if self._queued_texts or self._closed:
            return None
        held = self._hold_idle()
        if held is None:  # an instance is running a batch: not an idle server
            return None
        clf = self.instances[0]
        if clf.lone_session is clf.session:  # nothing spins on the other cores: free them
            for engine in held[1:]:
                engine.release()
            del held[1:]
        try:
            if self._queued_texts:  # queued by another thread meanwhile: keep the order
                return None
            since = arrived.get() or time.monotonic()
            deadline = since + self.timeout_s if self.timeout_s else float("inf")
            pending = _Pending(texts, pairs, truncation, deadline=deadline)
            encodings: list[Cut] | None
            try:
                encodings = self._encode([pending])  # cheap: at most INLINE_MAX_CHARS
            except Exception:  # the run below tokenizes again and reports it as usual
                encodings = None
            if encodings is not None and (
                len(encodings[0].ids) > self.inline_max_tokens
                or self._large(1, len(encodings[0].ids))  # would wait for the gate
            ):
                return None  # a call too long to hold the loop for: the batch thread runs it
            if self._live([pending]):
                self._run_unlocked([pending], clf, lone=True, encodings=encodings)
                self.inline_runs += 1
        finally:
            for engine in held:
                engine.release()
        return pending.future.result()

    async def classify(
        self,
        texts: Sequence[str],
        pairs: Sequence[str] | None,
        truncation: TruncationSide = "right",
    ) -> BatchOutput:
        """The request's probabilities (and raw scores, if the graph has them).

        ``truncation``: which end of a text longer than max_length is cut off. Cancelling
        the awaiting task (client gone) drops the request unrun if the loop has not
        reached it yet.
        """
        since = arrived.get() or time.monotonic()  # the request's first moment on the server
        deadline = since + self.timeout_s if self.timeout_s else float("inf")
        pending = _Pending(texts, pairs, truncation, deadline=deadline)
        n = len(texts)
        bound = self.max_queued_texts
        full = 0
        with self._lock:  # never held across an await
            queued = not self._closed
            if (
                queued
                and bound is not None
                and self._queued_texts > 0
                and (self._queued_texts + n > bound)
            ):
                full = self._queued_texts
            elif queued:
                self._queue.put(pending)
                self._queued_texts += n
        if full:
            self._dropped("queue_full")
            raise Overloaded(
                f"model {self.name} is overloaded: {full} texts are queued (at most {bound}, "
                "LUGPI_MAX_QUEUED_TEXTS); retry after the Retry-After seconds"
            )
        if queued:
            return await asyncio.wrap_future(pending.future)
        # This version was unloaded after the request chose it: finish it on this version
        # anyway (a request never switches versions midway), outside the batch loop.
        return await asyncio.to_thread(self._run_alone, pending)

    def close(self, timeout: float | None = None) -> None:
        """Stop taking requests; the thread finishes every queued one, then exits."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            for _ in self._threads:  # after every queued request: each thread drains, then stops
                self._queue.put(_STOP)
        if timeout is not None:
            for thread in self._threads:
                if thread.is_alive():
                    thread.join(timeout)

    def _run_alone(self, pending: _Pending) -> BatchOutput:
        self._run([pending], 0)
        return pending.future.result()

    def _dropped(self, reason: str) -> None:
        if self.on_drop is not None:
            self.on_drop(reason)

    def _live(self, batch: list[_Pending]) -> list[_Pending]:
        """The requests still worth running: not cancelled, not past their deadline."""
        now = time.monotonic()
        live = []
        for p in batch:
            if not p.future.set_running_or_notify_cancel():  # its caller gave up
                self._dropped("cancelled")
            elif now > p.deadline:
                self._dropped("deadline")
                p.future.set_exception(
                    DeadlineExceeded(
                        f"the request waited more than {self.timeout_s:g} s in the queue of "
                        f"model {self.name} (LUGPI_REQUEST_TIMEOUT_S) and was dropped unrun; "
                        "the server is overloaded: retry later"
                    )
                )
            else:
                live.append(p)
        return live

    def _loop(self, instance: int) -> None:
        while True:
            batch, stop = self._collect()
            live = self._live(batch)
            if live:
                self._run(live, instance)
            if stop:
                return

    def _take(self, item: _Pending) -> None:
        with self._lock:
            self._queued_texts -= len(item.texts)

    def _collect(self) -> tuple[list[_Pending], bool]:
        first = self._queue.get()
        if first is _STOP:
            return [], True
        assert isinstance(first, _Pending)
        self._take(first)
        batch = [first]
        n_texts = len(first.texts)
        limit = self.max_batch_size
        if self.max_wait_s == 0:  # a batch that waits for company takes what arrives
            idle = sum(not engine.locked() for engine in self._engines)
            limit = fair_share(n_texts + self._queued_texts, idle, self.max_batch_size)
        deadline = time.monotonic() + self.max_wait_s
        while n_texts < limit:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                try:
                    item = self._queue.get(timeout=remaining)
                except queue.Empty:
                    break
            if item is _STOP:
                return batch, True
            assert isinstance(item, _Pending)
            self._take(item)
            batch.append(item)
            n_texts += len(item.texts)
        return batch, False

    def _run(self, batch: list[_Pending], instance: int) -> None:
        with self._engines[instance]:
            if self._run_lone(batch, instance):
                return
            self._run_unlocked(batch, self.instances[instance])

    def _hold_idle(self, but: int | None = None) -> list[threading.Lock] | None:
        """Every instance's lock (but ``but``'s, which its caller holds), taken without
        waiting, where every one is idle; else None, and none is held. A lone call holds
        them: the lone session's threads take every core, and no batch may start beside it.
        """
        held: list[threading.Lock] = []
        for i, engine in enumerate(self._engines):
            if i == but:
                continue
            if not engine.acquire(blocking=False):
                for h in held:
                    h.release()
                return None
            held.append(engine)
        return held

    def _run_lone(self, batch: list[_Pending], instance: int) -> bool:
        """Run a lone one-text request on the lone session (every core, spinning) when it is
        the only work: nothing queued and every other instance idle, whose locks are held
        for the call so that no batch starts beside it on cores it spins on. A lone request
        too long to run inline comes this way; with one-thread instances it would otherwise
        run on one core (the bench_peers run of issue 28: c=1 p50 1.48x that of a plan of
        every core on one instance)."""
        clf = self.instances[instance]
        if len(batch) != 1 or len(batch[0].texts) != 1 or clf.lone_session is clf.session:
            return False
        held = self._hold_idle(but=instance)
        if held is None:
            return False
        try:
            if self._queued_texts:
                return False
            self._run_unlocked(batch, clf, lone=True)
            self.lone_queued_runs += 1
            return True
        finally:
            for e in held:
                e.release()

    def _run_unlocked(
        self,
        batch: list[_Pending],
        clf: OnnxClassifier,
        *,
        lone: bool = False,
        encodings: list[Cut] | None = None,
    ) -> None:
        """On instance ``clf`` (its lock held). ``lone``: an inline run on an idle server
        (``OnnxClassifier.run_scores``); ``encodings``: the batch's texts, tokenized."""
        try:
            self._infer(batch, clf, lone=lone, encodings=encodings)
        except Exception as e:  # keep the thread alive; each caller gets the error
            left = [p for p in batch if not p.future.done()]
            if len(batch) > 1:
                # One bad request must not fail the others it was batched with.
                for p in left:
                    self._run_unlocked([p], clf)
                return
            log.exception("inference failed on a request of %d texts", len(batch[0].texts))
            for p in left:
                p.future.set_exception(InferenceError(f"inference failed: {type(e).__name__}"))

    def _infer(
        self,
        batch: list[_Pending],
        clf: OnnxClassifier,
        *,
        lone: bool = False,
        encodings: list[Cut] | None = None,
    ) -> None:
        """Run the batch's groups, and hand each request its rows as soon as its last group
        is done, not when the whole batch is: its texts mostly run as calls of their own
        (``length_groups``), and a request answered only with the batch's last call held
        its client back while the engine ran the others (a scratch closed loop at c=8 on
        2 cores: 566 req/s with batches of 4 against 645 with batches of 1, and 674 with
        batches of 4 answered call by call)."""
        started = time.perf_counter()
        if encodings is None:
            encodings = self._encode(batch)
        tokenized = time.perf_counter()
        if len(batch) == 1 and len(encodings) == 1:  # a lone text (every inline run): no rows
            # to sort, gather or split (20 us of a lone request's 0.22 ms in the app, in-process)
            out = self._call(clf, encodings, lone)
            self._answer(batch[0], encodings, out.probs, out.logits, clf, started, tokenized)
            return
        probs = np.empty((len(encodings), len(clf.labels)), dtype=np.float32)
        logits = np.empty_like(probs) if clf.has_logits else None
        lengths = [len(e.ids) for e in encodings]
        owner = [k for k, p in enumerate(batch) for _ in p.texts]  # row -> its request
        first_row = [0, *itertools.accumulate(len(p.texts) for p in batch)]
        rows_left = [len(p.texts) for p in batch]
        groups = length_groups(
            lengths, self.max_batch_size, self.max_batch_tokens, self.call_tokens
        )
        for group in groups:
            out = self._call(clf, [encodings[i] for i in group], lone)
            probs[group] = out.probs
            if logits is not None and out.logits is not None:
                logits[group] = out.logits
            for i in group:
                k = owner[i]
                rows_left[k] -= 1
                if rows_left[k] == 0:
                    start, end = first_row[k], first_row[k + 1]
                    self._answer(
                        batch[k],
                        encodings[start:end],
                        probs[start:end],
                        None if logits is None else logits[start:end],
                        clf,
                        started,
                        tokenized,
                    )

    def _call(self, clf: OnnxClassifier, encodings: list[Cut], lone: bool) -> Scores:
        """One onnxruntime call of ``encodings`` (padded to the longest): through the
        process-wide gate when large, reported to ``on_batch``."""
        called = time.perf_counter()
        if self.gate is not None and self._large(
            len(encodings), max(len(e.ids) for e in encodings)
        ):
            with self.gate.lock:
                out = clf.run_scores(encodings, shrink=True)
        else:
            out = clf.run_scores(encodings, lone=lone)
        if self.on_batch is not None:
            self.on_batch(len(encodings), time.perf_counter() - called)
        return out

    @staticmethod
    def _answer(
        p: _Pending,
        mine: Sequence[Cut],
        probs: np.ndarray,
        logits: np.ndarray | None,
        clf: OnnxClassifier,
        started: float,
        tokenized: float,
    ) -> None:
        """Hand request ``p`` its rows (``mine``, ``probs``, ``logits``: its texts' own)."""
        done = time.perf_counter()
        timings = BatchTimings(
            queue_s=max(0.0, started - p.queued_at),
            tokenize_s=tokenized - started,
            inference_s=done - tokenized,
        )
        p.future.set_result(
            BatchOutput(
                probs,
                [j for j, e in enumerate(mine) if clf.was_truncated(e)],
                logits,
                sum(len(e.ids) for e in mine),
                timings,
            )
        )

    def _large(self, n_texts: int, width: int) -> bool:
        return self.gate is not None and call_cost(n_texts, width) > self.gate.large_tokens

    def _encode(self, batch: list[_Pending]) -> list[Cut]:
        """One tokenizer call per truncation side present (nearly always just one)."""
        clf = self.classifier
        encodings: list[Cut | None] = [None] * sum(len(p.texts) for p in batch)
        for side in ("right", "left"):
            rows: list[int] = []
            inputs: list[str | tuple[str, str]] = []
            start = 0
            for p in batch:
                if p.truncation == side:
                    rows.extend(range(start, start + len(p.texts)))
                    inputs.extend(clf.pair_up(p.texts, p.pairs))
                start += len(p.texts)
            if inputs:
                for row, enc in zip(rows, clf.encode(inputs, truncation=side), strict=True):
                    encodings[row] = enc
        assert all(e is not None for e in encodings)
        return [e for e in encodings if e is not None]
