"""Replay holds a line stamped far ahead of the stream until the next line shows whether the stream jumped:
a lone far-future line (9999-12-31) is placed at the newest time and counted as clamped, like live mode
places it at the wall clock; a real gap in the logs keeps every time as stamped."""

from __future__ import annotations

from streamalert.state.base import Store
from streamalert.testing import replay_lines, rules_from_yaml

from .timeline import iso, line

ERRORS = """
rules:
  - name: errors
    match: {level: error}
    window: 1m
    condition: count >= 2
    group_by: [user]
    annotations: {summary: "{{ value }} errors"}
"""
FAR_FUTURE = b'{"timestamp":"9999-12-31T23:59:59.000Z","level":"error","user":"u1"}'


def _fired(sink_json: list[dict[str, object]]) -> list[tuple[object, ...]]:
    return [(t["at"], t["rule"], t["state"], t["value"], t["labels"]) for t in sink_json]


async def test_a_far_future_line_does_not_make_the_rest_of_the_stream_late(store: Store) -> None:
    """One 9999-12-31 line in the middle: later lines are not late, the alert after it fires, and the line is
    counted as clamped; whatever the batching (line path and bulk path)."""
    lines = [line("0s", level="info"), line("1s", level="error", user="u1"), FAR_FUTURE]
    lines += [line(f"{s}s", level="error", user="u2") for s in (2, 3)] + [line("120s", level="info")]
    for batch_lines in (1, 2, 3, 100):
        await store.reset()
        sink, summary = await replay_lines(
            rules_from_yaml(ERRORS), lines, store, lateness_ms=5_000, batch_lines=batch_lines
        )
        assert summary.stats.late == 0, batch_lines
        assert summary.stats.clamped == 1, batch_lines
        assert _fired(sink.as_json()) == [
            # u1's second event is the far-future line, placed at the newest time (1s)
            (iso("1s"), "errors", "firing", 2, {"user": "u1"}),
            (iso("3s"), "errors", "firing", 2, {"user": "u2"}),
            (iso("61s"), "errors", "resolved", 0, {"user": "u1"}),
            (iso("62s"), "errors", "resolved", 1, {"user": "u2"}),
        ], batch_lines


async def test_a_real_gap_keeps_every_time(store: Store) -> None:
    """Two lines 10 minutes after the previous one confirm the jump: both keep their own times."""
    lines = [line("0s", level="error", user="u1"), line("10m", level="error", user="u1")]
    lines += [line("10m1s", level="error", user="u1"), line("12m", level="info")]
    sink, summary = await replay_lines(rules_from_yaml(ERRORS), lines, store, lateness_ms=5_000)
    assert summary.stats.clamped == 0
    assert [(t[0], t[2]) for t in _fired(sink.as_json())] == [(iso("10m1s"), "firing"), (iso("11m"), "resolved")]


async def test_the_last_line_far_ahead_keeps_its_time(store: Store) -> None:
    """Nothing follows the last line to contradict it: at the end of input it is placed at its own time."""
    lines = [line("0s", level="error", user="u1"), line("5m", level="error", user="u1")]
    sink, summary = await replay_lines(rules_from_yaml(ERRORS), lines, store, lateness_ms=5_000)
    assert summary.stats.clamped == 0
    assert _fired(sink.as_json()) == []  # 5 minutes apart: never two in one window
    assert summary.stats.late == 0
