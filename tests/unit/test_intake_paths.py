"""The bulk intake path and the line-by-line path are the same function of the input."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamalert.decode import format_ms
from streamalert.engine import Engine
from streamalert.testing import rules_from_yaml

T0 = 1_769_471_940_000  # 2026-01-26T23:59:00Z: some streams cross midnight
RULES = rules_from_yaml(
    """
rules:
  - name: errors
    match: {level: error}
    window: 10s
    condition: count >= 2
  - name: beat
    match: {container: beat}
    absent_for: 20s
"""
)


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    lines = []
    offset = 0
    for _ in range(draw(st.integers(0, 80))):
        offset += draw(st.integers(0, 3_000))
        jitter = draw(st.just(0) | st.integers(-40_000, 0) | st.integers(-5_000, 0))  # dips, some beyond lateness
        stamp = format_ms(T0 + max(0, offset + jitter))
        kind = draw(st.sampled_from(["error", "info", "beat"]))
        body = {"error": '"level":"error"', "info": '"level":"info"', "beat": '"container":"beat"'}[kind]
        lines.append(f'{{"timestamp":"{stamp}",{body}}}'.encode())
    return lines


@settings(max_examples=300, deadline=None)
@given(stream=streams(), batch=st.integers(1, 40), lateness=st.sampled_from([0, 1_000, 30_000]))
def test_bulk_path_equals_line_by_line(stream: list[bytes], batch: int, lateness: int) -> None:
    """Same counters, clock, earliest time and buffered events after every batch, on canonical stamps
    (the bulk path's input) with dips inside and beyond the lateness bound."""
    bulk, each = Engine(RULES, lateness_ms=lateness), Engine(RULES, lateness_ms=lateness)
    for start in range(0, len(stream), batch):
        lines = stream[start : start + batch]
        assert bulk.accept_lines(lines) == each._accept_each(lines) == 0
        assert bulk.stats == each.stats
        assert (bulk.newest_ms, bulk._min_accepted) == (each.newest_ms, each._min_accepted)
        assert sorted(bulk._buffer) == sorted(each._buffer)
        bulk.advance()
        each.advance()
    bulk.finish()
    each.finish()
    assert bulk.drain() == each.drain()
