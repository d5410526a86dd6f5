"""The contract suite's three properties for the SLO / anomaly kinds (LogQL's first/last/bytes and converted
fields included) and the damping keys: random streams give
the same transitions and state on MemoryStore and RedisStore, across restarts, and across arrival orders
within the lateness (the streams and stores of test_engine_backends.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamalert.engine import Engine
from streamalert.model import Transition
from streamalert.pipeline import rule_ttls, run
from streamalert.state.base import Snapshot, Store
from streamalert.state.memory import MemoryStore
from streamalert.testing import CapturingSink, ListSource, replay_lines, rules_from_yaml

from .test_engine_backends import LATENESS_MS, Stream, _memory_opener, _redis_opener, rendered, streams

pytestmark = pytest.mark.redis

RULES = rules_from_yaml(
    """
rules:
  - name: error_share
    match: {svc: a}
    ratio: {where: {level: error}}
    window: 10s
    condition: ratio > 0.4
    group_by: [host]
    keep_firing_for: 3s
  - name: n_p90
    match: {any: [{svc: a}, {svc: b}]}
    window: 10s
    condition: p90(n) >= 7
    flapping: {changes: 2, within: 20s}
  - name: hosts
    match: {level: error}
    window: 15s
    condition: distinct(host) >= 2
  - name: new_svc
    match: {level: error}
    window: 5s
    lookback: 20s
    condition: new(svc) >= 1
    group_by: [host]
  - name: spike
    match: {svc: b}
    window: 10s
    condition: count > 1.5 * count offset 10s
    min_base: 1
  - name: n_first                               # LogQL first_over_time / last_over_time (rules/kinds_edge.py)
    match: {svc: a}
    window: 10s
    condition: first(n) >= 5
    group_by: [host]
  - name: n_last
    match: {svc: b}
    window: 10s
    condition: last(n) < 1
  - name: error_bytes                           # LogQL bytes_over_time: the lines' sizes
    match: {level: error}
    window: 10s
    condition: bytes > 150
  - name: n_as_bytes                            # LogQL unwrap bytes(n)
    match: {level: info}
    window: 10s
    condition: sum(bytes(n)) > 12
"""
)
RULE_IDS = Engine(RULES).rule_ids


async def replay(lines: list[bytes], store: Store, batch_lines: int) -> tuple[list[bytes], Snapshot]:
    sink, _ = await replay_lines(RULES, lines, store, lateness_ms=LATENESS_MS, batch_lines=batch_lines)
    return rendered(sink.transitions), await store.load(RULE_IDS)


async def replay_with_restarts(
    lines: list[bytes], cuts: list[int], batch_lines: int, open_store: Callable[[], Awaitable[Store]]
) -> tuple[list[bytes], Snapshot]:
    """A fresh engine restored from the store at every cut; only the last segment reaches end of input."""
    ttl = rule_ttls(RULES, LATENESS_MS)
    bounds = [0, *sorted(cuts), len(lines)]
    out: list[Transition] = []
    for segment, (start, end) in enumerate(pairwise(bounds)):
        store = await open_store()
        engine = Engine(RULES, lateness_ms=LATENESS_MS)
        try:
            if segment == len(bounds) - 2:
                sink = CapturingSink()
                await run(engine, ListSource(lines[start:end], batch_lines), store, sink, commit_lines=1)
                return rendered(out + sink.transitions), await store.load(RULE_IDS)
            engine.restore(await store.load(engine.rule_ids))
            for first in range(start, end, batch_lines):
                engine.accept_lines(lines[first : min(first + batch_lines, end)])
                engine.advance()
                out.extend(engine.drain())
                await store.commit(engine.checkpoint(), ttl)
        finally:
            await store.close()
    raise AssertionError("unreachable: the last segment returns")


@settings(max_examples=15, deadline=None)
@given(stream=streams(wild=True), batch_lines=st.integers(1, 25))
def test_kinds_give_identical_transitions_and_state_on_memory_and_redis(
    redis_url: str, stream: Stream, batch_lines: int
) -> None:
    """Property A for the kinds: MemoryStore and RedisStore give the same transitions and stored state."""

    async def body() -> None:
        open_redis, cleanup = _redis_opener(redis_url)
        red = await open_redis()
        try:
            assert await replay(stream.arrival, MemoryStore(), batch_lines) == await replay(
                stream.arrival, red, batch_lines
            )
        finally:
            await red.close()
            await cleanup()

    asyncio.run(body())


@settings(max_examples=15, deadline=None)
@given(stream=streams(wild=True), data=st.data())
def test_kinds_restarts_do_not_change_transitions(redis_url: str, stream: Stream, data: st.DataObject) -> None:
    """Property B for the kinds: restoring new engines from the store mid-stream changes nothing."""
    cuts = data.draw(st.lists(st.integers(0, len(stream.arrival)), min_size=1, max_size=3))
    batch_lines = data.draw(st.integers(1, 25))

    async def body() -> None:
        expected = await replay(stream.arrival, MemoryStore(), batch_lines=1000)
        open_redis, cleanup = _redis_opener(redis_url)
        try:
            for open_store in (_memory_opener(), open_redis):
                assert await replay_with_restarts(stream.arrival, cuts, batch_lines, open_store) == expected
        finally:
            await cleanup()

    asyncio.run(body())


@settings(max_examples=25, deadline=None)
@given(stream=streams(wild=False), batches=st.tuples(st.integers(1, 25), st.integers(1, 25)))
def test_kinds_arrival_order_within_lateness_does_not_change_output(stream: Stream, batches: tuple[int, int]) -> None:
    """Property C for the kinds: time order and an arrival order shuffled within the lateness agree."""

    async def body() -> None:
        assert await replay(stream.in_time_order, MemoryStore(), batches[0]) == await replay(
            stream.arrival, MemoryStore(), batches[1]
        )

    asyncio.run(body())


def test_stored_parts_do_not_depend_on_when_checkpoints_fell() -> None:
    """An example the properties found: the quantile part that becomes the oldest was written starting with a
    gap (checkpoints after every line: an older chunk still held an entry) or with a time (one checkpoint),
    and the stores differed; the oldest part now always starts with its time."""
    lines = [
        b'{"timestamp":%d,"level":"error","svc":"a","n":0}' % (1769418000000 + ms)
        for ms in (0, 8095, 8411, 14799, 15001)
    ]

    async def body() -> None:
        assert await replay(lines, MemoryStore(), batch_lines=1) == await replay(lines, MemoryStore(), 1000)

    asyncio.run(body())
