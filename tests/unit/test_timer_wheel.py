"""Timers due in a slot the engine has not reached wait in a wheel (engine._SLOT_BITS): a timer due exactly
at a slot's first millisecond runs in the same instant as that millisecond's events, in group order."""

from __future__ import annotations

from streamalert.decode import format_ms
from streamalert.engine import _SLOT_BITS, Engine
from streamalert.testing import rules_from_yaml

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z
SLOT = 1 << _SLOT_BITS
EDGE = T0 - T0 % SLOT + 10 * SLOT  # the first millisecond of a slot

RULES = """
rules:
  - name: per_user
    match: {level: error}
    window: 1s
    condition: count >= 1
    group_by: [user]
"""


def _line(at: int, user: str) -> bytes:
    return b'{"timestamp":"%s","level":"error","user":"%s"}' % (format_ms(at).encode(), user.encode())


def _run(lines: list[bytes], batch: int) -> list[tuple[int, str, str]]:
    engine = Engine(rules_from_yaml(RULES), lateness_ms=0)
    for k in range(0, len(lines), batch):
        engine.accept_lines(lines[k : k + batch])
        engine.advance()
    engine.finish()
    return [(t.at_ms, dict(t.labels)["user"], t.state.value) for t in engine.drain()]


def test_a_timer_due_at_a_slot_edge_runs_with_the_events_of_that_instant() -> None:
    """User a's window ends at the slot's first millisecond, when user b's event arrives: the instant
    resolves a and fires b in group order, as one instant; nothing runs out of time order after it."""
    lines = [_line(EDGE - 1000, "a"), _line(EDGE, "b"), _line(EDGE + 5, "c")]
    for batch in (1, 2, 3):
        assert _run(lines, batch) == [
            (EDGE - 1000, "a", "firing"),
            (EDGE, "a", "resolved"),
            (EDGE, "b", "firing"),
            (EDGE + 5, "c", "firing"),
        ], batch


def test_timers_across_many_slots_run_at_their_own_millisecond() -> None:
    """Series started in one slot end a window later in slots reached long after, each at its own time."""
    starts = [EDGE - 3 + 7 * k for k in range(400)]  # about three slots of starts, edges included
    lines = [_line(at, f"u{k:03d}") for k, at in enumerate(starts)] + [_line(starts[-1] + 5000, "z")]
    out = _run(lines, 64)
    resolved = [(at, user) for at, user, state in out if state == "resolved"]
    assert resolved == [(at + 1000, f"u{k:03d}") for k, at in enumerate(starts)]
