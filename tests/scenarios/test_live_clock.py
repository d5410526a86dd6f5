"""Live mode: event-time windows, timers that run on the wall clock, and skewed hosts clamped."""

from __future__ import annotations

from streamalert.decode import format_ms
from streamalert.engine import Engine
from streamalert.testing import rules_from_yaml

from .timeline import T0, at, iso, line

BEAT = """
rules:
  - name: beat_down
    match: {container: celery_beat}
    absent_for: 5m
    group_by: [container]
    expect: [{container: celery_beat}]
  - name: errors
    match: {level: error}
    window: 1m
    condition: count >= 1
"""
LATENESS, DELAY = 30_000, 10_000


def _engine() -> Engine:
    return Engine(rules_from_yaml(BEAT), lateness_ms=LATENESS, max_delay_ms=DELAY)


def _states(engine: Engine) -> list[tuple[str, str, str]]:
    return [(t.at_iso, t.rule, t.state.value) for t in engine.drain()]


def test_absence_fires_on_the_wall_clock_with_no_input_at_all() -> None:
    """celery_beat seen once, then silence and no other logs: the alert fires once the wall clock has run
    past last_seen + 5m + max_delay + lateness, dated last_seen + 5m."""
    engine = _engine()
    engine.accept_lines([line("0s", container="celery_beat")], wall_ms=at("0s"))
    engine.advance(wall_ms=at("0s"))
    engine.advance(wall_ms=at("5m") + DELAY + LATENESS)  # the horizon reaches 5m exactly: not yet
    assert _states(engine) == []
    engine.advance(wall_ms=at("5m") + DELAY + LATENESS + 1)
    assert _states(engine) == [(iso("5m"), "beat_down", "firing")]


def test_expected_group_never_seen_fires_after_start() -> None:
    """An engine that never sees a record starts its clock at wall - max_delay: the expected group fires
    absent_for after that."""
    engine = _engine()
    engine.advance(wall_ms=T0)
    engine.advance(wall_ms=T0 + 300_000 + LATENESS + 1)
    assert _states(engine) == [(format_ms(T0 - DELAY + 300_000), "beat_down", "firing")]


def test_windows_resolve_on_the_wall_clock() -> None:
    """A count window resolves at event + window even when nothing else arrives."""
    engine = _engine()
    engine.accept_lines([line("0s", level="error"), line("0s", container="celery_beat")], wall_ms=at("0s"))
    engine.advance(wall_ms=at("0s"))
    engine.advance(wall_ms=at("1m") + DELAY + LATENESS + 1)
    assert _states(engine) == [(iso("0s"), "errors", "firing"), (iso("1m"), "errors", "resolved")]


def test_a_lagging_source_keeps_event_time() -> None:
    """Without the wall clock (a source catching up on a backlog) nothing fires on wall time, and old events
    are not late."""
    engine = _engine()
    engine.accept_lines([line("0s", container="celery_beat")])
    engine.advance()
    engine.accept_lines([line("1s", level="error")])
    engine.advance()
    assert engine.stats.late == 0
    assert _states(engine) == []


def test_a_record_stamped_far_ahead_is_clamped_to_the_wall_clock() -> None:
    """A host whose clock runs 2 minutes fast cannot drag the clock forward: its record is placed at the
    wall clock and counted; one 30 s ahead is within the 1 m bound and kept at its own time."""
    engine = _engine()
    engine.accept_lines(
        [line("0s", level="info"), line("2m", level="error"), line("30s", level="info")], wall_ms=at("0s")
    )
    assert engine.stats.clamped == 1
    assert engine.newest_ms == at("30s")
    engine.advance(wall_ms=at("0s"))
    engine.finish()
    assert _states(engine) == [(iso("0s"), "errors", "firing")]
