"""A checkpoint stores as pending only the events still in the reorder buffer: those taken in and applied since
the last checkpoint are not added (and removed) again, and a restart from it decides what the uninterrupted
engine does."""

from __future__ import annotations

import asyncio

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
    window: 10s
    condition: count >= 3
    group_by: [host]
"""
)


def _line(at: int, host: str = "a") -> bytes:
    return b'{"timestamp":"%s","level":"error","host":"%s"}' % (format_ms(T0 + at).encode(), host.encode())


def test_a_checkpoint_adds_only_the_events_still_waiting() -> None:
    engine = Engine(RULES, lateness_ms=1_000)
    engine.accept_lines([_line(0), _line(400, "b"), _line(1_500), _line(1_900, "b"), _line(2_200, "b"), _line(2_900)])
    engine.advance()  # the clock is at 2,900: instants before 1,900 are applied, the one at 1,900 is not
    changes = engine.checkpoint()
    assert changes.pending_before == T0 + 1_900
    assert [at - T0 for at, _ in changes.pending_add] == [1_900, 2_200, 2_900]

    store = MemoryStore()
    asyncio.run(store.commit(changes, {}))
    restored = Engine(RULES, lateness_ms=1_000)
    restored.restore(asyncio.run(store.load(restored.rule_ids)))
    for e in (engine, restored):
        e.accept_lines([_line(3_000), _line(3_100, "b"), _line(3_300)])
        e.finish()
    assert restored.drain() == engine.drain() != []
    assert restored.checkpoint().upserts == engine.checkpoint().upserts
