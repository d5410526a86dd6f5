"""The live pipeline acknowledges a batch and hands on its transitions only after its commit succeeded."""

from __future__ import annotations

import asyncio
import gc
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any

import pytest

from streamalert import pipeline
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


class SteppedStore(MemoryStore):
    """A memory store whose n-th commit waits for its own gate (opened by the test), logging its start and end."""

    def __init__(self, log: list[str], commits: int) -> None:
        super().__init__()
        self.gates = [asyncio.Event() for _ in range(commits)]
        self.log = log
        self.commits = 0

    async def commit(self, changes: Changes, ttl_ms: dict[str, int]) -> None:
        number = self.commits = self.commits + 1
        self.log.append(f"begin {number}")
        await self.gates[number - 1].wait()
        await super().commit(changes, ttl_ms)
        self.log.append(f"commit {number}")


class Batches:
    """A live source yielding one batch per line, logging when the pipeline asks for each and acks it."""

    name = "test"

    def __init__(self, log: list[str], lines: list[bytes]) -> None:
        self.log, self.lines = log, lines

    async def batches(self) -> AsyncIterator[Batch]:
        for number, line in enumerate(self.lines, 1):
            self.log.append(f"take {number}")
            yield Batch([line], number, token=number)

    async def ack(self, batch: Batch) -> None:
        self.log.append(f"ack {batch.token}")

    def lagging(self) -> Collection[str]:
        return ()

    def resume(self, meta: Mapping[str, int]) -> None:
        return None


SECOND = b'{"timestamp":"2026-01-26T09:00:00.500Z","level":"error"}'


async def _turns(count: int = 100) -> None:
    for _ in range(count):  # let the pipeline run as far as it can while a gate is shut
        await asyncio.sleep(0)


async def test_overlap_takes_the_next_batch_in_while_a_commit_is_out_and_keeps_commit_before_ack() -> None:
    """With overlap, batch 2 is taken in while batch 1's commit is held; nothing is acknowledged before its
    commit, commits go out one at a time in order, and the store ends as without overlap."""
    stored = []
    for overlap in (False, True):
        log: list[str] = []
        store = SteppedStore(log, commits=2)
        engine = Engine(rules_from_yaml(RULES), lateness_ms=0, max_delay_ms=0)
        clock = ManualClock(1_769_418_000_000 + 1)
        source = Batches(log, [LINE, SECOND])
        live = run_live(engine, source, store, Sink(log), clock, Metrics(), Health(), overlap=overlap)
        task = asyncio.create_task(live)
        await _turns()
        first = ["take 1", "begin 1", "take 2"] if overlap else ["take 1", "begin 1"]
        assert log == first  # batch 2 taken in (overlap) or not (without), nothing acknowledged
        store.gates[0].set()
        await _turns()
        second = ["commit 1", "write errors firing", "ack 1"] + ([] if overlap else ["take 2"]) + ["begin 2"]
        assert log == first + second  # commit 2 only after commit 1 is through and acknowledged
        store.gates[1].set()
        await asyncio.wait_for(task, timeout=5)
        assert log == [*first, *second, "commit 2", "ack 2"]
        stored.append(await store.load(engine.rule_ids))
    assert stored[0].series
    assert stored[0] == stored[1]


async def test_overlap_cancelled_with_a_commit_out_never_acknowledges_it() -> None:
    """Cancelling the live loop (lease lost, shutdown timed out) cancels the commit in flight: its batch is
    never acknowledged, even when the store would answer later."""
    log: list[str] = []
    store = SteppedStore(log, commits=2)
    engine = Engine(rules_from_yaml(RULES), lateness_ms=0, max_delay_ms=0)
    clock = ManualClock(1_769_418_000_000 + 1)
    source = Batches(log, [LINE, SECOND])
    task = asyncio.create_task(run_live(engine, source, store, Sink(log), clock, Metrics(), Health(), overlap=True))
    await _turns()
    assert log == ["take 1", "begin 1", "take 2"]
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled()
    store.gates[0].set()
    await _turns()
    assert log == ["take 1", "begin 1", "take 2"]
    assert (await store.load(engine.rule_ids)).series == {}


PER_USER = "rules:\n- {name: per_user, match: {level: error}, window: 1m, condition: count >= 2, group_by: [u]}\n"
FLOOD_START = 1_769_418_000_000  # 2026-01-26T09:00:00Z


def _flood_line(i: int) -> bytes:
    """A line of its own user, i ms after FLOOD_START: an instant of its own."""
    ms = FLOOD_START + i
    stamp = f"2026-01-26T09:{ms // 60_000 % 60:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}Z"
    return b'{"timestamp":"%s","level":"error","u":"u-%d"}' % (stamp.encode(), i)


class Flood:
    """A live source: one batch of `count` lines at as many instants, then one small batch; `waiting()` says
    whether the small batch is still to be taken (as the Vector source says of its queued requests). Records
    how far the engine had applied its input when the small batch was acknowledged."""

    name = "test"

    def __init__(self, engine: Engine, count: int) -> None:
        self.engine, self.count = engine, count
        self.taken = 0
        self.small_acked_at: int | None = None

    async def batches(self) -> AsyncIterator[Batch]:
        self.taken = 1
        yield Batch([_flood_line(i) for i in range(self.count)], 1, token=1)
        self.taken = 2
        yield Batch([_flood_line(self.count + 1)], 2, token=2)  # at the wall: late in neither run

    def waiting(self) -> bool:
        return self.taken < 2

    async def ack(self, batch: Batch) -> None:
        if batch.token == 2:
            self.small_acked_at = self.engine.horizon_ms

    def lagging(self) -> Collection[str]:
        return ()

    def resume(self, meta: Mapping[str, int]) -> None:
        return None


async def _run_flood(count: int, fair: bool) -> tuple[Flood, object]:
    engine = Engine(rules_from_yaml(PER_USER), lateness_ms=0, max_delay_ms=0)
    clock = ManualClock(FLOOD_START + count + 1)  # the wall past every line: all of them due at once
    source = Flood(engine, count)
    store = MemoryStore()
    waiting = source.waiting if fair else None
    await asyncio.wait_for(
        run_live(engine, source, store, Sink([]), clock, Metrics(), Health(), overlap=True, waiting=waiting), 60
    )
    return source, await store.load(engine.rule_ids)


async def test_waiting_input_is_taken_in_between_instants_of_a_long_advance() -> None:
    """A small request queued behind a flood of instants is taken in, committed and answered after a slice
    of the flood's advance, not after all of it; the state stored in the end is the same either way."""
    count = 20_000  # ~40,000 units of work: many ADVANCE_WORK slices
    fair, fair_state = await _run_flood(count, fair=True)
    assert fair.small_acked_at is not None
    assert fair.small_acked_at < FLOOD_START + count // 2  # most of the flood not yet applied when answered
    plain, plain_state = await _run_flood(count, fair=False)
    assert plain.small_acked_at is not None
    assert plain.small_acked_at >= FLOOD_START + count  # without `waiting`, the whole flood first
    assert fair_state == plain_state


async def test_taking_input_ahead_of_the_advance_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Beyond AHEAD_LINES lines taken in with the advance unfinished, the advance finishes before more input
    is taken: a flood cannot pile up in the reorder buffer."""
    monkeypatch.setattr(pipeline, "AHEAD_LINES", 10_000)
    source, _ = await _run_flood(20_000, fair=True)
    assert source.small_acked_at is not None
    assert source.small_acked_at >= FLOOD_START + 20_000


class SlowCommits(MemoryStore):
    """A memory store whose commits take a few turns of the loop, and which logs those that delete series."""

    def __init__(self, log: list[str]) -> None:
        super().__init__()
        self.log = log

    async def commit(self, changes: Changes, ttl_ms: dict[str, int]) -> None:
        for _ in range(20):
            await asyncio.sleep(0)
        await super().commit(changes, ttl_ms)
        deleted = sum(map(len, changes.deletes.values()))
        if deleted:
            self.log.append(f"commit deleting {deleted}")


class TwoBatches:
    """5,000 new series, then (the clock 10 s later) one line: the first batch's series all end with it."""

    name = "test"

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock

    async def batches(self) -> AsyncIterator[Batch]:
        yield Batch([b'{"timestamp":"2026-01-26T09:00:00.000Z","u":"u%d"}' % i for i in range(5_000)])
        self.clock.advance(10_000)
        yield Batch([b'{"timestamp":"2026-01-26T09:00:10.000Z","u":"last"}'])

    async def ack(self, batch: Batch) -> None:
        return None

    def lagging(self) -> Collection[str]:
        return ()

    def resume(self, meta: Mapping[str, int]) -> None:
        return None


async def test_memory_is_given_back_after_the_commit_that_deletes_the_ended_series(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """When most series end (the engine rebuilt its tables), the commit in flight that deletes them is finished
    before the memory is given back: what it frees would otherwise stay with the process."""
    log: list[str] = []
    monkeypatch.setattr(pipeline, "release_memory", lambda thaw: log.append("release"))
    monkeypatch.setattr(pipeline, "give_back", lambda: log.append("give back"))
    rules = rules_from_yaml(
        "rules:\n- {name: u, match: {u: {exists: true}}, window: 1s, condition: count >= 2, group_by: [u]}\n"
    )
    engine = Engine(rules, lateness_ms=0, max_delay_ms=0)
    clock = ManualClock(1_769_418_000_000 + 1)
    logged: list[dict[str, Any]] = []

    class Recorder:  # the pipeline's logger (capture_logs misses a logger cached by an earlier test's configure)
        def info(self, event: str, **fields: Any) -> None:
            logged.append({"event": event, **fields})

    monkeypatch.setattr(pipeline, "_log", Recorder())
    await asyncio.wait_for(
        run_live(engine, TwoBatches(clock), SlowCommits(log), Sink(log), clock, Metrics(), Health(), overlap=True), 10
    )
    assert engine.compactions == 1
    assert log == ["commit deleting 5000", "release", "give back"]
    (given,) = [entry for entry in logged if entry["event"] == "memory_given_back"]  # what operators see of it
    assert (given["series"], given["thawed"]) == (1, True)
    assert all(type(given[k]) is float and given[k] > 0 for k in ("rss_mb_before", "rss_mb_after"))
