"""A count series whose pending timer is earlier than the one its times give stores that timer ("d"), and a
restart from that checkpoint decides and stores what the uninterrupted engine does."""

from __future__ import annotations

import asyncio

import orjson

from streamalert.decode import format_ms
from streamalert.engine import Engine
from streamalert.state.memory import MemoryStore
from streamalert.testing import rules_from_yaml

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z
RULES = rules_from_yaml(
    """
rules:
  - name: errors
    match: {level: error}
    window: 100ms
    condition: count >= 3
    group_by: [host]
"""
)


def _line(at: int) -> bytes:
    return b'{"timestamp":"%s","level":"error","host":"a"}' % format_ms(T0 + at).encode()


def test_an_earlier_timer_is_stored_and_restored() -> None:
    engine = Engine(RULES, lateness_ms=0)
    engine.accept_lines([_line(0), _line(50), _line(60)])
    engine.advance()  # instants 0 and 50: the timer armed at 0 + 100 is kept when the event at 50 arrives
    changes = engine.checkpoint()
    [stored] = changes.upserts[engine.rule_ids[0]].values()
    assert orjson.loads(stored) == [T0, 50, {"d": T0 + 100}]

    store = MemoryStore()
    asyncio.run(store.commit(changes, {}))
    restored = Engine(RULES, lateness_ms=0)
    restored.restore(asyncio.run(store.load(restored.rule_ids)))
    for e in (engine, restored):
        e.accept_lines([_line(120), _line(149), _line(400)])
        e.finish()
    assert restored.drain() == engine.drain()
    assert restored.checkpoint().upserts == engine.checkpoint().upserts
