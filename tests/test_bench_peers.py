"""benchmarks/bench_peers.py's bars of issue 28 on hand-made figures (no servers): every row
of this checkout is judged, against the cheapest raw mode of every engine measured."""

from __future__ import annotations

from benchmarks import bench_api as ba
from benchmarks.bench_peers import Row, done_when


def _level(c: int, n: int, p50_ms: float, cpu_s: float) -> ba.Level:
    return ba.Level(c, n, 0, 1.0, [p50_ms / 1e3] * 3, 0.0, cpu_s)


def _row(name: str, p50_ms: float, per_s8: int, per_s64: int, cpu64_ms: float) -> Row:
    row = Row(name, peer=not name.startswith("ours"))
    row.levels = {
        1: [_level(1, 100, p50_ms, 0.5)],
        8: [_level(8, per_s8, 10 * p50_ms, 1.0)],
        64: [_level(64, per_s64, 100 * p50_ms, per_s64 * cpu64_ms / 1e3)],
    }
    return row


ORT = {
    "onnxruntime b1 spinning": {"b1_p50_ms": 8.0, "b1_cpu_ms": 16.0},
    "onnxruntime grouped 32": {"cpu_ms": 20.0},
}
OPENVINO = {
    "OpenVINO fp32 b1": {"b1_p50_ms": 9.0, "b1_cpu_ms": 18.0},
    "OpenVINO fp32 grouped 32": {"cpu_ms": 12.0},
}


def test_a_row_on_the_faster_engine_is_judged_against_that_engine_not_the_slower_one() -> None:
    rows = [_row("ours (this checkout)", 9.6, 120, 123, 15.0)]
    # Against onnxruntime alone the cheapest raw mode is b1 spinning, 16 CPU ms a text.
    (bars,) = done_when(rows, ORT)
    assert "(raw onnxruntime b1 spinning, 16.00) **0.94x**" in bars
    assert "(raw onnxruntime b1 spinning, 8.00 ms) **1.20x**" in bars
    # With OpenVINO measured, its grouped batches (12 CPU ms) are the bar: 15/12 misses it.
    (bars,) = done_when(rows, ORT | OPENVINO)
    assert "(raw OpenVINO fp32 grouped 32, 12.00) **1.25x** (bar 1.10x)" in bars
    assert "(raw onnxruntime b1 spinning, 8.00 ms) **1.20x** (bar 1.25x)" in bars


def test_every_row_of_this_checkout_is_judged_and_the_old_commit_is_not() -> None:
    rows = [
        _row("ours (this checkout)", 9.6, 120, 123, 15.0),
        _row("ours, LUGPI_ENGINE=auto", 8.4, 150, 160, 12.6),
        _row("ours @ b6380b0", 12.0, 73, 96, 19.2),
        _row("one-at-a-time FastAPI + onnxruntime", 8.5, 112, 101, 19.3),
    ]
    lines = done_when(rows, ORT | OPENVINO)
    assert [line.split(":")[0] for line in lines if "Bars" in line] == [
        "- Bars (issue 28), ours (this checkout)",
        "- Bars (issue 28), ours, LUGPI_ENGINE=auto",
    ]
    peer = "one-at-a-time FastAPI + onnxruntime"
    assert f"- c=8 req/s, ours (this checkout) over {peer}: 1.07x (bar 1.2x)." in lines
    assert f"- c=8 req/s, ours, LUGPI_ENGINE=auto over {peer}: 1.34x (bar 1.2x)." in lines
    assert f"- c=1 p50, ours, LUGPI_ENGINE=auto over {peer}: 0.99x (bar: below 1)." in lines
    assert not any("b6380b0" in line for line in lines)


def test_no_bars_without_raw_figures() -> None:
    assert done_when([_row("ours (this checkout)", 9.6, 120, 123, 15.0)], {}) == []


def test_a_cheaper_raw_mode_outside_the_bar_is_reported_beside_it() -> None:
    """The one-thread b1 mode is cheaper per text than the issue's two: each row of this
    checkout gets a line against it, and the bar itself stays the issue's."""
    rows = [_row("ours (this checkout)", 9.6, 120, 123, 15.0)]
    lines = done_when(rows, ORT, {"onnxruntime b1 one thread": {"b1_cpu_ms": 12.0}})
    assert "(raw onnxruntime b1 spinning, 16.00) **0.94x**" in lines[0]
    assert lines[1] == (
        "- ours (this checkout): c=64 CPU ms/req over raw onnxruntime b1 one thread (12.00 "
        "CPU ms/text; not one of the issue's modes) **1.25x**."
    )
