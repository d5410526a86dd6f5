"""The live pipeline acknowledges a batch and hands on its transitions only after its commit succeeded."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Collection, Mapping

from streamalert.clock import ManualClock
from streamalert.engine import Engine
from streamalert.model import Transition
from streamalert.pipeline import Health, run_live
from streamalert.sources import Batch
from streamalert.state.base import Changes
from streamalert.state.memory import MemoryStore
from streamalert.telemetry.metrics import Metrics
from streamalert.testing import rules_from_yaml

RULES = "rules:\n- {name: errors, match: {level: error}, window: 1m, condition: count >= 1}\n"
LINE = b'{"timestamp":"2026-01-26T09:00:00.000Z","level":"error"}'


class GatedStore(MemoryStore):
    """A memory store whose commits wait until the test opens the gate."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.log = log

    async def commit(self, changes: Changes, ttl_ms: dict[str, int]) -> None:
        await self.gate.wait()
        await super().commit(changes, ttl_ms)
        self.log.append("commit")


class OneBatch:
    """A live source with a single batch."""

    name = "test"

    def __init__(self, log: list[str]) -> None:
        self.log = log

    async def batches(self) -> AsyncIterator[Batch]:
        yield Batch([LINE])

    async def ack(self, batch: Batch) -> None:
        self.log.append("ack")

    def lagging(self) -> Collection[str]:
        return ()

    def resume(self, meta: Mapping[str, int]) -> None:
        return None


class Sink:
    def __init__(self, log: list[str]) -> None:
        self.log = log

    def write(self, transitions: list[Transition]) -> None:
        self.log.extend(f"write {t.rule} {t.state.value}" for t in transitions)


async def test_ack_and_transitions_wait_for_the_commit() -> None:
    """While the commit is held nothing is acknowledged or written; after it, the transition then the ack."""
    log: list[str] = []
    store = GatedStore(log)
    engine = Engine(rules_from_yaml(RULES), lateness_ms=0, max_delay_ms=0)
    clock = ManualClock(1_769_418_000_000 + 1)  # just after the record: the horizon passes it at once
    task = asyncio.create_task(run_live(engine, OneBatch(log), store, Sink(log), clock, Metrics(), Health()))
    for _ in range(100):  # let the pipeline run as far as it can while the gate is shut
        await asyncio.sleep(0)
    assert log == []
    store.gate.set()
    await asyncio.wait_for(task, timeout=5)
    assert log == ["commit", "write errors firing", "ack"]


class ManyBatches(OneBatch):
    """A live source with `count` one-line batches."""

    def __init__(self, count: int) -> None:
        super().__init__([])
        self.count = count

    async def batches(self) -> AsyncIterator[Batch]:
        for _ in range(self.count):
            yield Batch([LINE])


async def test_committing_batches_leaves_no_garbage_for_the_cyclic_collector() -> None:
    """A commit that succeeds at once goes without tenacity's retrying object, whose closures form reference
    cycles (about 30 objects per commit before: garbage only the cyclic collector frees)."""
    engine = Engine(rules_from_yaml(RULES), lateness_ms=0, max_delay_ms=0)
    clock = ManualClock(1_769_418_000_000 + 1)
    gc.collect()
    gc.disable()  # what reference counting alone leaves
    try:
        await run_live(engine, ManyBatches(50), MemoryStore(), Sink([]), clock, Metrics(), Health())
        cyclic = gc.collect()
    finally:
        gc.enable()
    assert cyclic < 50, cyclic
