"""`advance` and `finish` bounded by `max_instants` stop after whole instants and, called again until done,
decide exactly what one unbounded call decides."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamalert.decode import format_ms
from streamalert.engine import Engine
from streamalert.model import Transition
from streamalert.testing import rules_from_yaml

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z
RULES = rules_from_yaml(
    """
rules:
  - name: errors
    match: {level: error}
    window: 5s
    condition: count >= 2
    group_by: [host]
    for: 1s
  - name: quiet
    match: {level: error}
    window: 4s
    condition: count < 3
  - name: n_sum
    match: {level: error}
    window: 3s
    condition: sum(n) > 4
  - name: beat
    match: {container: beat}
    absent_for: 6s
    group_by: [host]
    expect: [{host: a}, {host: z}]
"""
)


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    lines, offset = [], 0
    for _ in range(draw(st.integers(1, 60))):
        offset += draw(st.integers(0, 2_500))
        stamp = format_ms(T0 + max(0, offset - draw(st.integers(0, 1_500))))
        host = draw(st.sampled_from("abc"))
        kind = draw(st.sampled_from(['"level":"error"', '"container":"beat"', '"level":"info"']))
        lines.append(f'{{"timestamp":"{stamp}","host":"{host}","n":{draw(st.integers(0, 3))},{kind}}}'.encode())
    return lines


def _run(lines: list[bytes], batch: int, max_instants: int | None) -> tuple[list[Transition], int]:
    engine = Engine(RULES, lateness_ms=1_000)
    out: list[Transition] = []
    stops = 0
    for start in range(0, len(lines), batch):
        engine.accept_lines(lines[start : start + batch])
        while not engine.advance(max_instants=max_instants):
            stops += 1
            out += engine.drain()
    while not engine.finish(max_instants=max_instants):
        stops += 1
        out += engine.drain()
    return out + engine.drain(), stops


@settings(max_examples=150, deadline=None)
@given(streams(), st.integers(1, 20), st.integers(1, 4))
def test_bounded_runs_decide_what_one_run_decides(lines: list[bytes], batch: int, bound: int) -> None:
    """Any batching, any bound: the same transitions in the same order as unbounded calls."""
    expected, _ = _run(lines, batch, None)
    got, _ = _run(lines, batch, bound)
    assert got == expected


def test_a_bound_of_one_instant_stops_early() -> None:
    """Ten instants (no timer due before the end) with a bound of 1 stop between each two of them, the
    horizon moving forward one instant at a time."""
    lines = [f'{{"timestamp":"{format_ms(T0 + k * 10)}","level":"error","host":"a"}}'.encode() for k in range(10)]
    engine = Engine(RULES, lateness_ms=0)
    engine.accept_lines(lines)
    horizons = [engine.horizon_ms]
    stops = 0
    while not engine.finish(max_instants=1):
        stops += 1
        horizons.append(engine.horizon_ms)
    assert stops == 9
    assert horizons[1:] == [T0 + k * 10 for k in range(1, 10)]
    assert engine.horizon_ms == T0 + 91
