"""Replay (`pipeline.run`) checkpoints once every `commit_lines` lines of whole batches and at the end; where the
checkpoints fall changes nothing the engine decides."""

from __future__ import annotations

from streamalert.engine import Engine
from streamalert.pipeline import run
from streamalert.state.base import Changes
from streamalert.state.memory import MemoryStore
from streamalert.testing import CapturingSink, ListSource, rules_from_yaml

RULES = """
rules:
  - {name: errors, match: {level: error}, window: 10s, condition: count >= 3, group_by: [host]}
"""


def _lines(count: int) -> list[bytes]:
    out = []
    for i in range(count):
        second = i // 4
        stamp = f"2026-01-26T09:{second // 60 % 60:02d}:{second % 60:02d}.{i % 4 * 250:03d}Z"
        level = "error" if i % 7 < 3 else "info"
        out.append(b'{"timestamp":"%s","level":"%s","host":"h%d"}' % (stamp.encode(), level.encode(), i % 3))
    return out


class CountingStore(MemoryStore):
    def __init__(self) -> None:
        super().__init__()
        self.commits = 0

    async def commit(self, changes: Changes, ttl_ms: dict[str, int]) -> None:
        self.commits += 1
        await super().commit(changes, ttl_ms)


async def _replay(lines: list[bytes], commit_lines: int) -> tuple[CountingStore, CapturingSink, list[int], list[str]]:
    store, sink, acked = CountingStore(), CapturingSink(), []
    engine = Engine(rules_from_yaml(RULES), lateness_ms=2000)
    source = ListSource(lines, 100)
    await run(engine, source, store, sink, lambda batch: acked.append(batch.position), commit_lines=commit_lines)
    return store, sink, acked, engine.rule_ids


async def test_checkpoints_group_batches_and_decide_nothing() -> None:
    lines = _lines(2_000)  # 20 batches of 100 lines
    every, every_sink, every_acked, rule_ids = await _replay(lines, 1)
    grouped, grouped_sink, grouped_acked, _ = await _replay(lines, 500)
    assert every.commits == 21  # one per batch, and the end
    assert grouped.commits == 5  # after batches 5, 10, 15, 20, and the end
    assert grouped_acked == every_acked  # every batch acknowledged, in order, after a commit
    assert len(grouped_acked) == 20
    assert grouped_sink.transitions
    assert grouped_sink.transitions == every_sink.transitions
    assert await grouped.load(rule_ids) == await every.load(rule_ids)  # series, clock, pending: all alike
