"""Matched events waiting in the reorder buffer add nothing for the garbage collector to walk."""

from __future__ import annotations

import gc

import pytest

from streamalert.decode import format_ms
from streamalert.engine import Engine
from streamalert.testing import rules_from_yaml

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z
RULES = rules_from_yaml(
    """
rules:
  - name: per_user
    match: {level: error}
    window: 10s
    condition: count >= 50
    group_by: [user]
"""
)


@pytest.mark.parametrize("path", ["bulk", "line by line"])
def test_buffered_matched_events_are_not_tracked_by_the_collector(path: str) -> None:
    """5,000 matched lines held for lateness leave under 250 new tracked objects (a tuple and a list each before).

    Not zero: an event tuple made after the last automatic collection can be looked at before the group key
    tuple it holds (which that collection moved to an older generation), so it waits for the next pass;
    about one young generation's worth of events (100 here), not a number that grows with the buffer."""
    lines = [
        b'{"timestamp":"%s","level":"error","user":"u%03d","n":%d}' % (format_ms(T0 + k).encode(), k % 100, k)
        for k in range(5_000)
    ]
    if path == "line by line":
        lines.append(b"not json")  # a malformed line sends the batch down the line-by-line path
    engine = Engine(RULES, lateness_ms=60_000)  # every event stays in the buffer: nothing is applied yet
    gc.collect()
    before = len(gc.get_objects())
    malformed = engine.accept_lines(lines)
    gc.collect()  # one pass untracks what holds no containers
    grown = len(gc.get_objects()) - before
    assert malformed == (1 if path == "line by line" else 0)
    assert engine.stats.matched == 5_000
    assert grown < 250, grown
    engine.finish()  # and the buffered events still apply: 50 per user in the window, so every user fires
    assert len(engine.drain()) == 100
