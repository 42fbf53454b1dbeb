"""How a model version runs: N engine instances x k intra-op threads, spinning or not, and
a batch cap, chosen from a cost curve measured when the version loads.

Triton's instance groups: N onnxruntime sessions (N x k <= the usable cores), each run by
a thread of the version's batcher taking work from the one queue. With k = 1 the N
threads share one session (onnxruntime runs a call on its caller's thread, and a session
takes concurrent calls), so the instances cost no memory.

The measurement (``measure``) takes a few hundred milliseconds of calls on the bundle's
own texts (the dev samples export checked, else a stock sentence): per-text cost at
batch sizes 1, 4 and 16 with one thread, at the texts' own length and at twice it, and the
batch-1 latency with every core, spinning and not. ``choose`` is a pure function of
those figures:

- threads: every core on one instance (k = cores, N = 1) only when it makes a call at
  least ``PARALLEL_EFFICIENCY`` x cores faster than one thread; else one thread per
  instance and one instance per core. The bar is near-linear scaling because it is a
  throughput choice: under concurrency N one-thread instances answer cores / t1 texts per
  ms and one all-core instance 1 / t_all, so a call 1.6x faster on 2 cores still costs
  25 % more CPU per text (the wake-ups and joins of splitting a small call). A lone
  request's latency is the lone session's job (below), not the instances'.
- spinning: only with k > 1, and only when the spinning call measured at least
  ``SPIN_GAIN`` faster (on busy cores it is slower, and the measurement shows it).
  onnxruntime's threads then spin between the operators of a call and stop when it
  returns (runtime.session), so they spin only while there is work.
- batch cap: the batch size of the lowest per-text cost, if that is at least ``BATCH_GAIN``
  below batch 1's (mean over the measured lengths); still falling at the largest size
  measured (16): up to LUGPI_MAX_BATCH_SIZE. Else ``FLAT_CAP``: texts taken together
  that still mostly run as calls of their own (the next point).
- which texts share a call: the one-thread calls' costs, fitted as a fixed cost per call
  plus a cost per padded token (``fit_call_cost``), give what a call is worth in padded
  tokens (``CostCurve.call_tokens``); the batcher cuts each batch where sharing a call
  would pad more than that (``api.batching.length_groups``). On a CPU a call's fixed
  cost is worth a few tokens, so the texts of a mixed batch mostly run apart.

Each choice can be forced by a setting (``Overrides``: LUGPI_INSTANCES,
LUGPI_INTRA_OP_THREADS, LUGPI_ORT_SPINNING, LUGPI_BATCH_CAP, LUGPI_CALL_TOKENS);
LUGPI_MAX_BATCH_SIZE bounds the cap. ``Plan.why`` says in words what was chosen and from
which figures (GET /models/{name}).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace

from api.batching import DEFAULT_CALL_TOKENS
from contracts.truncation import Cut
from runtime.classifier import OnnxClassifier
from runtime.session import CUDA, RuntimeOptions, shares_calls

BATCH_SIZES = (1, 4, 16)
PARALLEL_EFFICIENCY = 0.95  # of linear scaling: see the module docstring
SPIN_GAIN = 0.9  # spinning must take at most this fraction of the non-spinning latency
BATCH_GAIN = 0.9  # a batch's per-text cost must be at most this fraction of batch 1's
# Where batching buys nothing per text, an instance still takes up to this many texts at
# once: they run in the calls the padding rule cuts (mostly one each), each request is
# answered when its own call ends, and one batch thread round per 4 texts instead of per
# text costs less (benchmarks/results/peers.md: the LUGPI_BATCH_CAP=1 row).
FLAT_CAP = 4
REPEATS = 3  # fastest of: the least disturbed by other work on the machine
# LUGPI_ENGINE=auto: another engine or graph only where its per-text cost is at most this
# fraction of the configured one's (mean over the batch sizes measured), so noise never
# flips it.
ENGINE_GAIN = 0.9
ENGINE_BATCHES = (1, 16)


@dataclass(frozen=True)
class CostCurve:
    """What one version's calls cost on this machine, measured at load (milliseconds)."""

    cores: int
    lengths: tuple[int, ...]  # tokens per text of each measured length
    # length -> batch size -> ms per text, one intra-op thread, no spinning
    per_text_ms: dict[int, dict[int, float]]
    b1_one_thread_ms: float  # batch 1 at the first length, one thread
    b1_all_cores_ms: float  # the same with ``cores`` threads, not spinning
    b1_all_cores_spinning_ms: float  # ... spinning
    # A one-thread call as call_ms + token_ms x its padded tokens, fitted to the calls above
    # (``fit_call_cost``): what the batcher weighs a call against padding with.
    call_ms: float = 0.0
    token_ms: float = 0.0

    @property
    def call_tokens(self) -> float | None:
        """A call's fixed cost in padded tokens (api.batching.length_groups); None where the
        fit is unusable: a cost that did not grow with the tokens is noise, not a model."""
        if self.token_ms <= 0:
            return None
        return max(0.0, self.call_ms) / self.token_ms

    def relative_cost(self, batch: int) -> float:
        """Per-text cost at ``batch`` over batch 1's, mean over the lengths measured."""
        ratios = [c[batch] / c[1] for c in self.per_text_ms.values() if batch in c and c[1] > 0]
        return sum(ratios) / len(ratios) if ratios else 1.0


@dataclass(frozen=True)
class Overrides:
    """Settings that force one choice (None: measured)."""

    instances: int | None = None
    threads: int | None = None
    spinning: bool | None = None
    batch_cap: int | None = None
    call_tokens: float | None = None  # the padding rule's threshold, in padded tokens


@dataclass(frozen=True)
class Plan:
    instances: int
    threads: int  # intra-op threads per instance
    spinning: bool
    batch_cap: int
    # A session of every core for lone requests (its threads spin during a call on
    # onnxruntime; OpenVINO's have no such switch, and still gain the cores).
    lone_session: bool = False
    why: list[str] = field(default_factory=list)
    curve: CostCurve | None = None
    # Padded tokens a call's fixed cost is worth (api.batching.length_groups); None: the
    # batcher's default, where nothing was measured.
    call_tokens: float | None = None


def choose(
    curve: CostCurve | None,
    cores: int,
    max_batch: int,
    forced: Overrides,
    lone_allowed: bool = False,
) -> Plan:
    """The plan for one version: ``forced`` where set, else from ``curve`` (None: no
    measurement, then one instance on every core, no spinning, batches up to
    ``max_batch``, the behaviour before plans existed). ``lone_allowed``: a lone request
    may run on a session of every core of its own (LUGPI_ORT_LONE_SPINNING; spinning on
    onnxruntime) where it measured faster than the instance it would otherwise run on."""
    why: list[str] = []
    if forced.threads is not None:
        threads = max(1, min(forced.threads, cores))
        why.append(f"{threads} intra-op threads: LUGPI_INTRA_OP_THREADS")
    elif curve is None or cores == 1:
        threads = cores
        why.append(f"{threads} intra-op threads: every usable core (not measured)")
    else:
        fastest = min(curve.b1_all_cores_ms, curve.b1_all_cores_spinning_ms)
        speedup = curve.b1_one_thread_ms / fastest if fastest > 0 else 1.0
        efficient = speedup >= PARALLEL_EFFICIENCY * cores
        threads = cores if efficient else 1
        why.append(
            f"{threads} intra-op thread{'s' if threads > 1 else ''}: {cores} threads made a "
            f"batch-1 call {speedup:.2f}x faster than one ({curve.b1_one_thread_ms:.2f} vs "
            f"{fastest:.2f} ms), {'at least' if efficient else 'less than'} "
            f"{PARALLEL_EFFICIENCY:g} x {cores}"
        )
    if forced.instances is not None:
        instances = max(1, forced.instances)
        why.append(f"{instances} instances: LUGPI_INSTANCES")
    else:
        instances = max(1, cores // threads)
        why.append(f"{instances} instance{'s' if instances > 1 else ''}: {cores} cores / {threads}")
    if forced.spinning is not None:
        spinning = forced.spinning and threads > 1
        why.append(f"spinning {'on' if spinning else 'off'}: LUGPI_ORT_SPINNING")
    elif threads == 1 or curve is None:
        spinning = False
        why.append("spinning off: " + ("one thread" if threads == 1 else "not measured"))
    else:
        gain = curve.b1_all_cores_spinning_ms / max(curve.b1_all_cores_ms, 1e-9)
        spinning = gain <= SPIN_GAIN
        why.append(
            f"spinning {'on' if spinning else 'off'}: a spinning call took {gain:.2f}x the "
            f"time of a sleeping one (on if at most {SPIN_GAIN:g})"
        )
    if forced.batch_cap is not None:
        cap = max(1, min(forced.batch_cap, max_batch))
        why.append(f"batches of at most {cap}: LUGPI_BATCH_CAP")
    elif curve is None:
        cap = max_batch
        why.append(f"batches of at most {cap}: LUGPI_MAX_BATCH_SIZE (not measured)")
    else:
        sizes = sorted({b for c in curve.per_text_ms.values() for b in c if b <= max_batch})
        best = min(sizes, key=curve.relative_cost) if sizes else 1
        rel = curve.relative_cost(best)
        falls = rel <= BATCH_GAIN
        cap = best if falls else min(FLAT_CAP, max_batch)
        below = [b for b in sizes if b < best]
        # Still falling at the largest size measured: batches up to the bound.
        if (
            falls
            and cap > 1
            and best == sizes[-1]
            and below
            and rel <= BATCH_GAIN * curve.relative_cost(below[-1])
        ):
            cap = max_batch
        costs = ", ".join(f"b{b} {curve.relative_cost(b):.2f}" for b in sizes)
        if falls:
            why.append(
                f"batches of at most {cap}: per-text cost relative to batch 1 ({costs}); "
                f"the cheapest size where it falls to {BATCH_GAIN:g} or below, up to "
                "LUGPI_MAX_BATCH_SIZE where it still falls at the largest size measured"
            )
        else:
            why.append(
                f"batches of at most {cap}: per-text cost relative to batch 1 ({costs}) "
                f"never falls to {BATCH_GAIN:g}: {cap} texts taken at once, in the calls "
                "the padding rule cuts"
            )
    call_tokens = curve.call_tokens if curve is not None else None
    if forced.call_tokens is not None:
        call_tokens = forced.call_tokens
        why.append(
            f"texts share a call where the padding it adds is under {call_tokens:g} tokens: "
            "LUGPI_CALL_TOKENS"
        )
    elif call_tokens is None:
        why.append(
            f"texts share a call where the padding it adds is under {DEFAULT_CALL_TOKENS:g} "
            "tokens: " + ("not measured" if curve is None else "the call costs were noise")
        )
    else:
        assert curve is not None
        why.append(
            f"texts share a call where the padding it adds is under {call_tokens:.1f} tokens: "
            f"a one-thread call cost {curve.call_ms:.3f} ms + {curve.token_ms * 1e3:.1f} us "
            "per padded token (fitted to the calls measured)"
        )
    lone = False
    if not lone_allowed or cores == 1 or (threads == cores and spinning):
        pass
    elif curve is None:
        lone = threads > 1 and not spinning
    else:
        plain = curve.b1_one_thread_ms if threads == 1 else curve.b1_all_cores_ms
        lone = curve.b1_all_cores_spinning_ms <= SPIN_GAIN * plain
        why.append(
            f"lone requests {'on a session of every core' if lone else 'on an instance'}"
            f": {curve.b1_all_cores_spinning_ms:.2f} vs {plain:.2f} ms "
            f"(its own session if at most {SPIN_GAIN:g}x)"
        )
    return Plan(instances, threads, spinning, cap, lone, why, curve, call_tokens)


# --- measurement ----------------------------------------------------------------------------
Call = Callable[[Sequence[Cut]], object]


def _fastest(trials: dict[str, tuple[Call, Sequence[Cut]]]) -> dict[str, float]:
    """Milliseconds of the fastest of ``REPEATS`` timed calls of each trial, taken in
    ``REPEATS`` rounds over every trial, smallest call (padded tokens) first.

    A call is slower for a few milliseconds after a larger one, on any session (a batch-1
    call of 31 tokens: 2.1 ms after another, 3.3 ms right after a call of 16 x 43 tokens,
    2.6 ms one call later; whatever the arena and memory-pattern options). So every timed
    call follows a call no larger than itself: a round runs the trials smallest first, and
    its first trial is called once untimed after the last round's largest. The first round
    also calls each trial untimed before timing it: a shape's first call allocates.

    The rounds spread a trial's timed calls over the whole measurement, so that a moment
    of other work on the machine spoils one of them, not all. With its three timed calls
    back to back, the spinning trial (the one busy cores hurt most) measured 7.0 to 11.1 ms
    in 12 measurements on a quiet 2-core AVX2 machine, and 12.4 ms once at a server's
    start, which left that server without a lone session; in rounds, 7.0 to 7.8 ms in 12
    (``measure`` then took 3.4 s there instead of 3.2)."""
    order = sorted(trials, key=lambda key: _padded(trials[key][1]))
    best = {key: float("inf") for key in order}
    for round_ in range(REPEATS):
        for i, key in enumerate(order):
            call, encodings = trials[key]
            if round_ == 0 or i == 0:
                call(encodings)
            started = time.perf_counter()
            call(encodings)
            best[key] = min(best[key], (time.perf_counter() - started) * 1e3)
    return best


def _padded(encodings: Sequence[Cut]) -> int:
    """Tokens of a call of ``encodings``, padding included."""
    return len(encodings) * max((len(c.ids) for c in encodings), default=0)


def measure(
    samples: Sequence[Cut],
    one_thread: Call,
    all_cores: Call,
    all_cores_spinning: Call,
    cores: int,
    max_length: int,
) -> CostCurve:
    """The cost curve of a graph: ``samples`` are the bundle's texts tokenized; the calls
    run a batch on a session of one thread, of ``cores`` threads, and of ``cores``
    spinning threads. Each text is measured at its own length and repeated to twice it
    (capped at ``max_length``)."""
    base = list(samples) or [Cut([101, 102], [0, 0], False)]
    longer = [_doubled(c, max_length) for c in base]
    trials: dict[str, tuple[Call, Sequence[Cut]]] = {}
    lengths: list[int] = []
    for texts in (base, longer):
        length = round(sum(len(c.ids) for c in texts) / len(texts))
        if length in lengths:
            continue
        lengths.append(length)
        for b in BATCH_SIZES:
            batch = [texts[i % len(texts)] for i in range(b)]
            trials[f"{length}/{b}"] = (one_thread, batch)
    first = base[:1]
    trials["all"] = (all_cores, first)
    trials["spin"] = (all_cores_spinning, first)
    ms = _fastest(trials)
    per_text = {n: {b: ms[f"{n}/{b}"] / b for b in BATCH_SIZES} for n in lengths}
    one = [k for k in trials if trials[k][0] is one_thread]
    call_ms, token_ms = fit_call_cost([(_padded(trials[k][1]), ms[k]) for k in one])
    return CostCurve(
        cores=cores,
        lengths=tuple(lengths),
        per_text_ms=per_text,
        b1_one_thread_ms=per_text[lengths[0]][1],
        b1_all_cores_ms=ms["all"],
        b1_all_cores_spinning_ms=ms["spin"],
        call_ms=call_ms,
        token_ms=token_ms,
    )


def fit_call_cost(calls: Sequence[tuple[int, float]]) -> tuple[float, float]:
    """(ms per call, ms per padded token) of the line through ``calls`` ((padded tokens,
    ms) each), least squares on relative errors so that the short calls, whose fixed cost
    is the question, weigh as much as the long ones; (0, 0) with fewer than two distinct
    token counts."""
    points = [(float(x), y) for x, y in calls if y > 0]
    if len({x for x, _ in points}) < 2:
        return 0.0, 0.0
    # Minimise sum(((a + t x - y) / y)^2): weights 1 / y^2 in the normal equations.
    w = [1.0 / (y * y) for _, y in points]
    sw = sum(w)
    sx = sum(wi * x for wi, (x, _) in zip(w, points, strict=True))
    sy = sum(wi * y for wi, (_, y) in zip(w, points, strict=True))
    sxx = sum(wi * x * x for wi, (x, _) in zip(w, points, strict=True))
    sxy = sum(wi * x * y for wi, (x, y) in zip(w, points, strict=True))
    det = sw * sxx - sx * sx
    if det <= 0:
        return 0.0, 0.0
    token_ms = (sw * sxy - sx * sy) / det
    return (sy - token_ms * sx) / sw, token_ms


def measure_engines(samples: Sequence[Cut], calls: dict[str, Call]) -> dict[str, dict[int, float]]:
    """Per-text milliseconds of each candidate's one-thread session at ``ENGINE_BATCHES`` on
    the bundle's own texts, the trials timed in rounds (``_fastest``)."""
    base = list(samples) or [Cut([101, 102], [0, 0], False)]
    trials: dict[str, tuple[Call, Sequence[Cut]]] = {}
    for name, call in calls.items():
        for b in ENGINE_BATCHES:
            trials[f"{name}/{b}"] = (call, [base[i % len(base)] for i in range(b)])
    ms = _fastest(trials)
    return {n: {b: ms[f"{n}/{b}"] / b for b in ENGINE_BATCHES} for n in calls}


def choose_engine(costs: dict[str, dict[int, float]], default: str) -> tuple[str, str]:
    """Of the candidates in ``costs`` (engine and graph, "onnxruntime int8" say), the one of
    the lowest cost per text relative to ``default``'s (mean ratio over the batch sizes),
    where that is at most ``ENGINE_GAIN``; else ``default``. Returns the candidate and the
    sentence GET /models/{name} shows."""
    base = costs.get(default, {})
    ratios: dict[str, float] = {}
    figures: list[str] = []
    for name, ms in costs.items():
        sizes = [b for b in base if b in ms and base[b] > 0]
        if name == default or not sizes:
            continue
        ratios[name] = sum(ms[b] / base[b] for b in sizes) / len(sizes)
        detail = ", ".join(f"b{b} {ms[b]:.2f} vs {base[b]:.2f}" for b in sizes)
        figures.append(f"{name} {ratios[name]:.2f}x ({detail} ms)")
    if not ratios:
        return default, f"engine {default}: no other engine measured"
    best = min(ratios, key=ratios.__getitem__)
    chosen = best if ratios[best] <= ENGINE_GAIN else default
    return chosen, (
        f"engine {chosen}: cost per text against {default}, one thread: "
        + "; ".join(figures)
        + f"; another only if at most {ENGINE_GAIN:g}x (LUGPI_ENGINE=auto)"
    )


def _doubled(cut: Cut, max_length: int) -> Cut:
    """The text's tokens twice over (special tokens kept at the ends), at most max_length."""
    inner_ids, inner_types = cut.ids[1:-1], cut.type_ids[1:-1]
    n = min(max_length - 2, 2 * len(inner_ids))
    ids = (inner_ids * 2)[:n]
    types = (inner_types * 2)[:n]
    return Cut([cut.ids[0], *ids, cut.ids[-1]], [cut.type_ids[0], *types, cut.type_ids[-1]], False)


# --- engine instances -----------------------------------------------------------------------
def engines(
    base: OnnxClassifier,
    options: RuntimeOptions,
    samples: Sequence[Cut],
    cores: int,
    max_batch: int,
    forced: Overrides,
    *,
    measure_on: bool,
    lone_allowed: bool,
    known: CostCurve | None = None,
) -> tuple[list[OnnxClassifier], Plan]:
    """The instances of one version and the plan they follow. ``base``: the version opened
    with one intra-op thread, not spinning, warmed up; ``known``: the curve of the same
    graph measured before (not measured again). Sessions measured and not chosen are
    dropped; the ones chosen are warmed up on ``samples``."""
    made: dict[tuple[int, bool], OnnxClassifier] = {(1, False): base}

    def session(threads: int, spinning: bool) -> OnnxClassifier:
        if (threads, spinning) not in made:
            made[(threads, spinning)] = base.sibling(
                replace(options, intra_op_threads=threads, spinning=spinning, lone_spinning=False)
            )
        return made[(threads, spinning)]

    measurable = measure_on and base.provider != CUDA and cores > 1
    curve = known if measurable else None
    if measurable and curve is None:
        curve = measure(
            samples,
            base.run_scores,
            session(cores, False).run_scores,
            session(cores, True).run_scores,
            cores,
            base.encoder.max_length,
        )
    on_cuda = base.provider == CUDA
    # On CUDA one session runs every call on the device: threads and instances are moot.
    plan = choose(curve, 1 if on_cuda else cores, max_batch, forced, lone_allowed and not on_cuda)
    main = session(plan.threads, plan.spinning)
    lone = session(cores, True).session if plan.lone_session else main.session
    main.lone_session = lone
    if plan.threads == 1 and shares_calls(main.session):
        # Calls run on their caller's thread: one session serves them all.
        instances = [main] * plan.instances
    else:
        # Without a lone session of its own, each instance runs lone calls itself (an
        # OpenVINO session runs one call at a time: sharing instance 0's would queue them).
        shared_lone = lone if plan.lone_session else None
        instances = [main] + [
            main.sibling(
                replace(options, intra_op_threads=plan.threads, spinning=plan.spinning),
                shared_lone,
            )
            for _ in range(plan.instances - 1)
        ]
    warm = list(samples[:1]) or [Cut([101, 102], [0, 0], False)]
    for instance in {id(i): i for i in instances}.values():
        instance.run_scores(warm)
        instance.run_scores(warm, lone=True)
    return instances, plan
