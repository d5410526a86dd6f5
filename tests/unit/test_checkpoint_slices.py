"""A live checkpoint is dumped in slices (the loop serves others in between) and stored whole."""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from typing import TypeVar

import pytest

from streamalert.engine import Engine
from streamalert.state import memory
from streamalert.state.memory import MemoryStore
from streamalert.testing import rules_from_yaml

T = TypeVar("T")
RULES = "rules:\n- {name: per_user, match: {level: error}, window: 1m, condition: count >= 2, group_by: [u]}\n"


def _engine(users: int) -> Engine:
    engine = Engine(rules_from_yaml(RULES), lateness_ms=0)
    lines = [
        b'{"timestamp":"2026-01-26T09:00:00.%03dZ","level":"error","u":"u-%d"}' % (i % 1000, i) for i in range(users)
    ]
    engine.accept_lines(lines)
    engine.advance()
    engine.accept_lines([b'{"timestamp":"2026-01-26T09:00:05.000Z","level":"info"}'])
    engine.advance()
    return engine


def _drive(steps: Generator[None, None, T]) -> tuple[int, T]:
    """Run a generator of steps to its end: how many steps it yielded, and what it returned."""
    yields = 0
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return yields, done.value
        yields += 1


def test_checkpoint_in_steps_is_the_checkpoint_in_one_go() -> None:
    whole = _engine(1000).checkpoint()
    yields, sliced = _drive(_engine(1000).checkpoint_steps(64))
    assert yields == 1000 // 64  # 16 slices of 64 and one of 40: a turn between each two
    assert [len(series) for series in whole.upserts.values()] == [1000]
    assert sliced == whole


async def test_a_memory_commit_cancelled_at_a_turn_is_stored_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """MemoryStore.commit yields every _WRITE_PART series; cancelled there, it still ends whole (as a Redis EVAL
    that was sent), never half a checkpoint."""
    monkeypatch.setattr(memory, "_WRITE_PART", 10)
    engine = _engine(100)
    changes = engine.checkpoint()
    store = MemoryStore()
    task = asyncio.create_task(store.commit(changes, {}))
    await asyncio.sleep(0)  # the commit begins and stops at its first turn
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    assert task.cancelled()
    for _ in range(50):
        await asyncio.sleep(0)  # the shielded commit carries on to its end
    snapshot = await store.load(engine.rule_ids)
    assert sum(len(t) for t in snapshot.series.values()) == 100
    assert snapshot.meta == changes.meta


def test_a_log_rewritten_in_steps_reads_as_before() -> None:
    """A rule's log is rewritten (tidied) in steps of `part` records; its live series read the same after."""
    log = memory._Log()
    for i in range(10_000):
        log.put(b"k%d" % i, b"v%d" % i)
    for i in range(0, 10_000, 2):
        log.delete(b"k%d" % i)
    for i in range(1, 10_000, 10):
        log.put(b"k%d" % i, b"w%d" % i)
    before, size = log.table(), len(log.data)
    records = log.appended + len(log.young)  # what the rewrite reads once the young series join the log
    yields, left = _drive(log.tidy_steps(1000))
    assert left is True
    assert yields == records // 1000 + 5_000 // 1000  # a step per thousand read, and per thousand written
    assert log.table() == before
    assert len(before) == 5_000
    assert len(log.data) < size / 2
