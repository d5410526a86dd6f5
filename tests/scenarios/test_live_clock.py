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


# ---- lanes: one watermark per Kafka partition ---------------------------------------------------------------


def test_a_lane_read_after_a_newer_one_drops_nothing() -> None:
    """A consumer catching up reads partition 0 up to 10m, then partition 1 from 0s: with one watermark the
    second partition's records would be 10 minutes late; per lane none is, and every one is matched."""
    engine = _engine()
    engine.accept_lines([line(f"{m}m", level="error") for m in range(11)], lane="logs/0")
    engine.advance(lagging=["logs/0", "logs/1"])  # logs/1 has given nothing yet: the clock holds
    engine.accept_lines([line(f"{m}m30s", level="error") for m in range(11)], lane="logs/1")
    engine.advance(lagging=["logs/1"])
    engine.finish()
    assert engine.stats.late == 0
    assert engine.stats.matched == 22
    assert [(t.at_iso, t.state.value) for t in engine.drain() if t.rule == "errors"] == [(iso("0s"), "firing")]


def test_one_lane_keeps_the_single_watermark() -> None:
    """Without lanes (replay, Vector) the same input is late past `lateness`, as before."""
    engine = _engine()
    engine.accept_lines([line(f"{m}m", level="error") for m in range(11)])
    engine.advance()
    engine.accept_lines([line(f"{m}m30s", level="error") for m in range(11)])
    assert engine.stats.late == 9  # 0m30s .. 8m30s are more than 30s behind 10m (9m30s is exactly 30s)


def test_the_clock_holds_for_a_lagging_lane_with_no_event_yet() -> None:
    """A lane that lags and has given nothing holds the clock, even with the wall clock far ahead."""
    engine = _engine()
    engine.accept_lines([line("0s", container="celery_beat")], wall_ms=at("0s"), lane="logs/0")
    engine.advance(wall_ms=None, lagging=["logs/1"])
    engine.accept_lines([line("10m", level="info")], wall_ms=at("10m"), lane="logs/0")
    engine.advance(wall_ms=None, lagging=["logs/1"])
    assert engine.drain() == []
    engine.accept_lines([line("1s", level="info")], lane="logs/1")
    engine.advance(wall_ms=at("10m"))  # every lane caught up: the wall clock drives again
    assert [(t.at_iso, t.rule, t.state.value) for t in engine.drain()] == [(iso("5m"), "beat_down", "firing")]


def test_lanes_survive_a_checkpoint() -> None:
    """Each lane's newest time is part of the checkpoint, so a restarted engine measures lateness the same."""
    engine = _engine()
    engine.accept_lines([line("10m", level="error")], lane="logs/0")
    engine.accept_lines([line("1m", level="error")], lane="logs/1")
    meta = engine.checkpoint().meta
    assert meta["lane:logs/0"] == at("10m")
    assert meta["lane:logs/1"] == at("1m")
