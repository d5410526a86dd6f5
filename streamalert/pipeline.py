"""The one place the stages are chained: source -> decode -> engine -> store checkpoint -> output -> ack."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from streamalert.config.rules import Rule
from streamalert.engine import Engine, EngineStats
from streamalert.model import Transition
from streamalert.sources import Batch, Source
from streamalert.state import keys
from streamalert.state.base import Store


class TransitionSink(Protocol):
    def write(self, transitions: list[Transition]) -> None: ...


@dataclass(slots=True)
class RunSummary:
    lines: int
    malformed: int
    stats: EngineStats


def rule_ttls(rules: list[Rule], lateness_ms: int) -> dict[str, int]:
    """How long each rule's stored series may sit idle in the store before it forgets them."""
    ttl: dict[str, int] = {}
    for rule in rules:
        rule_id = f"{rule.name}:{rule.digest}"
        if rule.kind == "absence":
            ttl[rule_id] = keys.LONG_TTL_MS
        else:
            ttl[rule_id] = rule.window_ms + rule.for_ms + lateness_ms + keys.WINDOW_TTL_MARGIN_MS
    return ttl


async def run(
    engine: Engine,
    source: Source,
    store: Store,
    sink: TransitionSink,
    on_batch: Callable[[Batch], None] | None = None,
) -> RunSummary:
    """Drive the engine over a source to its end, checkpointing into the store after every batch.

    A batch's checkpoint is committed while the next batch is decoded (one commit in flight, in order).
    Its transitions are handed on, and the batch acknowledged, only once the commit has succeeded: state
    first, so a crash in between can lose a message but never counts an event twice.
    """
    ttl = rule_ttls(engine.rules, engine.lateness_ms)
    engine.restore(await store.load(engine.rule_ids))
    lines = malformed = 0
    in_flight: _Commit | None = None
    async for batch in source.batches():
        lines += len(batch.lines)
        malformed += engine.accept_lines(batch.lines)
        engine.advance()
        if in_flight is not None:
            await in_flight.done(source, sink, on_batch)
        in_flight = await _Commit.start(engine, store, ttl, batch)
    engine.finish()
    if in_flight is not None:
        await in_flight.done(source, sink, on_batch)
    await (await _Commit.start(engine, store, ttl, None)).done(source, sink, on_batch)
    return RunSummary(lines, malformed, engine.stats)


class _Commit:
    """One checkpoint on its way to the store, with what must wait for it: transitions and the batch ack."""

    def __init__(self, task: asyncio.Task[None], transitions: list[Transition], batch: Batch | None) -> None:
        self.task, self.transitions, self.batch = task, transitions, batch

    @classmethod
    async def start(cls, engine: Engine, store: Store, ttl: dict[str, int], batch: Batch | None) -> _Commit:
        transitions = engine.drain()
        task = asyncio.ensure_future(store.commit(engine.checkpoint(), ttl))
        await asyncio.sleep(0)  # let the commit go out before the next batch keeps this thread busy
        return cls(task, transitions, batch)

    async def done(self, source: Source, sink: TransitionSink, on_batch: Callable[[Batch], None] | None) -> None:
        await self.task
        if self.transitions:
            sink.write(self.transitions)
        if self.batch is not None:
            await source.ack(self.batch)
            if on_batch is not None:
                on_batch(self.batch)
