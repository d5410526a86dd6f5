"""The one place the stages are chained: source -> decode -> engine -> store checkpoint -> output -> ack."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from streamalert.config.rules import Rule
from streamalert.engine import Engine, EngineStats, decode_and_accept
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
    """Drive the engine over a source to its end, checkpointing into the store after every batch."""
    ttl = rule_ttls(engine.rules, engine.lateness_ms)
    engine.restore(await store.load(engine.rule_ids))
    lines = malformed = 0
    async for batch in source.batches():
        lines += len(batch.lines)
        malformed += decode_and_accept(engine, batch.lines)
        engine.advance()
        await _commit(engine, store, sink, ttl)
        await source.ack(batch)
        if on_batch is not None:
            on_batch(batch)
    engine.finish()
    await _commit(engine, store, sink, ttl)
    return RunSummary(lines, malformed, engine.stats)


async def _commit(engine: Engine, store: Store, sink: TransitionSink, ttl: dict[str, int]) -> None:
    # State first, then hand transitions on: a crash in between loses a message, never double-counts.
    transitions = engine.drain()
    await store.commit(engine.checkpoint(), ttl)
    if transitions:
        sink.write(transitions)
