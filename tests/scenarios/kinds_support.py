"""Run one timeline three ways (production replay, live mode on the wall clock, a restart from a checkpoint
after every line) on one store and insist they agree; the kinds' scenario tests use it for replay = live =
restart, and the `store` fixture makes it memory = Redis = Redis Cluster. The lateness is 1 s, so a
checkpoint lands after the instants up to 1 s before the line just read have been evaluated: a restart then
continues mid-window from stored series state, not only from buffered lines."""

from __future__ import annotations

from streamalert.decode import decode_line, event_time_ms
from streamalert.engine import Engine
from streamalert.model import Transition
from streamalert.pipeline import rule_ttls, run
from streamalert.state.base import Store
from streamalert.testing import CapturingSink, ListSource, replay_lines, rules_from_yaml

Row = tuple[str, str, str, float, dict[str, str]]
LATENESS_MS = 1_000
DELAY_MS = 10_000


def _rows(transitions: list[Transition]) -> list[Row]:
    return [(t.at_iso, t.rule, t.state.value, float(t.value), dict(t.labels)) for t in transitions]


def _live(rules_yaml: str, lines: list[bytes]) -> list[Row]:
    """Each line arrives at the wall time of its own stamp; the clock then runs to the last stamp."""
    engine = Engine(rules_from_yaml(rules_yaml), lateness_ms=LATENESS_MS, max_delay_ms=DELAY_MS)
    out: list[Transition] = []
    wall = 0
    for raw in lines:
        fields = decode_line(raw) or {}
        wall = max(wall, event_time_ms(fields) or wall)
        engine.accept_lines([raw], wall_ms=wall)
        engine.advance(wall_ms=wall)
        out += engine.drain()
    engine.advance(wall_ms=wall + DELAY_MS + LATENESS_MS + 1)  # every instant up to the last stamp
    return _rows(out + engine.drain())


async def _restarted(rules_yaml: str, lines: list[bytes], store: Store, cut: int) -> list[Row]:
    """Lines before `cut` through one engine (checkpointed after each line), the rest through a new engine
    restored from the store by the production pipeline."""
    rules = rules_from_yaml(rules_yaml)
    first = Engine(rules, lateness_ms=LATENESS_MS)
    first.restore(await store.load(first.rule_ids))
    out: list[Transition] = []
    for raw in lines[:cut]:
        first.accept_lines([raw])
        first.advance()
        out += first.drain()
        await store.commit(first.checkpoint(), rule_ttls(rules, LATENESS_MS))
    sink = CapturingSink()
    await run(Engine(rules, lateness_ms=LATENESS_MS), ListSource(lines[cut:], 2), store, sink)
    return _rows(out + sink.transitions)


async def three_ways(rules_yaml: str, lines: list[bytes], store: Store) -> list[Row]:
    """The replay's transitions, after checking that live mode and a restart after any line give exactly
    the same."""
    await store.reset()
    sink, _ = await replay_lines(rules_from_yaml(rules_yaml), lines, store, lateness_ms=LATENESS_MS, batch_lines=3)
    replayed = _rows(sink.transitions)
    assert _live(rules_yaml, lines) == replayed, "live mode differs from replay"
    for cut in range(1, len(lines)):
        await store.reset()
        restarted = await _restarted(rules_yaml, lines, store, cut)
        assert restarted == replayed, f"a restart after line {cut} differs from the uninterrupted replay"
    return replayed
