"""Random event streams give the same transitions on every backend, across restarts and across arrival orders.

Each property replays hypothesis-generated JSON lines through the production pipeline (or drives the engine the
way the pipeline does, to stop without finishing) and compares the transitions byte for byte.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from itertools import pairwise
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamalert.engine import Engine
from streamalert.model import Transition
from streamalert.output import transition_json
from streamalert.pipeline import rule_ttls, run
from streamalert.state.base import Snapshot, Store
from streamalert.state.memory import MemoryStore
from streamalert.state.redis import RedisStore
from streamalert.testing import CapturingSink, ListSource, replay_lines, rules_from_yaml

pytestmark = pytest.mark.redis

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z in epoch milliseconds
LATENESS_MS = 5_000
MAX_OFFSET_MS = 120_000
MALFORMED = (b"{", b"[1]", b"")

RULES = rules_from_yaml(
    """
rules:
  - name: errors_per_host
    match: {level: error}
    window: 10s
    condition: count >= 3
    group_by: [host]
    for: 2s
    labels: {severity: page}
    annotations: {summary: "{{ value }} errors on {{ labels.host }}"}
  - name: svc_a_rate
    match: {svc: a}
    window: 10s
    condition: rate > 0.2
    annotations: {summary: "{{ value }}/s"}
  - name: n_sum
    match: {any: [{svc: a}, {level: error}]}
    window: 10s
    condition: sum(n) > 10
    group_by: [svc]
    annotations: {summary: "{{ value }}, last from {{ host }}"}
  - name: n_max
    match: {svc: b}
    window: 5s
    condition: max(n) >= 7
    for: 1s
    annotations: {summary: "{{ value }}"}
  - name: heartbeat
    match: {any: [{svc: a}, {svc: b}]}
    absent_for: 15s
    group_by: [host]
    expect: [{host: h1}]
    annotations: {summary: "silent {{ value }}s"}
"""
)
RULE_IDS = Engine(RULES).rule_ids


# ---- event streams ---------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Stream:
    """The same events in time order and in an arrival order shuffled within the lateness bound."""

    in_time_order: list[bytes]
    arrival: list[bytes]


def _timestamp(ms: int, style: int) -> int | float | str:
    """One event time in one of the spellings the decoder accepts."""
    if style == 0:
        return ms  # epoch milliseconds
    if style == 1:
        return ms / 1000  # epoch seconds with a fraction
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=ms)
    if style == 2:
        return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
    return moment.astimezone(timezone(timedelta(hours=2))).isoformat(timespec="milliseconds")


_fields = st.fixed_dictionaries(
    {
        "level": st.sampled_from(["error", "info"]),
        "svc": st.sampled_from(["a", "b"]),
        "n": st.integers(0, 9) | st.sampled_from([0.1, 0.2, 0.3, 2.5, 1e-3]),  # floats: exact sums across restarts
    },
    optional={"host": st.sampled_from(["h1", "h2"])},
)


def _line(fields: dict[str, Any], ms: int | None, style: int) -> bytes:
    record = dict(fields) if ms is None else {"timestamp": _timestamp(ms, style), **fields}
    return orjson.dumps(record)


@st.composite
def streams(draw: st.DrawFn, wild: bool) -> Stream:
    """Up to 60 timed events over two minutes, mostly in order, plus malformed lines.

    Arrival order sorts events by time + a delay of at most the lateness bound, so no event arrives more than
    the bound behind an earlier one (some exactly at it) and none is dropped as late. `wild` streams add lines
    whose effect depends on arrival order (no time: they take the newest time; far too late: dropped), in
    `arrival` only.
    """
    offset = 0
    timed: list[tuple[int, int, bytes]] = []  # (time, arrival key, line)
    for _ in range(draw(st.integers(0, 60))):
        offset = min(MAX_OFFSET_MS, offset + draw(st.integers(0, 2_500) | st.integers(0, 25_000)))
        ms = T0 + offset
        delay = draw(st.just(0) | st.integers(0, LATENESS_MS) | st.just(LATENESS_MS))
        timed.append((ms, ms + delay, _line(draw(_fields), ms, draw(st.integers(0, 3)))))
    in_time_order = [line for _, _, line in sorted(timed, key=lambda e: e[0])]
    arrival = [line for _, _, line in sorted(timed, key=lambda e: (e[1], -e[0]))]  # ties: later time first
    extras = list(draw(st.lists(st.sampled_from(MALFORMED), max_size=4)))
    if wild:
        for _ in range(draw(st.integers(0, 4))):
            late_ms = T0 + draw(st.integers(0, MAX_OFFSET_MS)) - 3 * LATENESS_MS
            extras.append(_line(draw(_fields), draw(st.none() | st.just(late_ms)), 0))
    for extra in extras:
        arrival.insert(draw(st.integers(0, len(arrival))), extra)
    return Stream(in_time_order + [m for m in extras if m in MALFORMED], arrival)


# ---- running the engine ----------------------------------------------------------------------------------------


def rendered(transitions: list[Transition]) -> list[bytes]:
    """Transitions as the JSON lines the CLI prints."""
    return [transition_json(t) for t in transitions]


async def replay(lines: list[bytes], store: Store, batch_lines: int) -> tuple[list[bytes], Snapshot]:
    """One uninterrupted production replay; its output and what it left in the store."""
    sink, _ = await replay_lines(RULES, lines, store, lateness_ms=LATENESS_MS, batch_lines=batch_lines)
    return rendered(sink.transitions), await store.load(RULE_IDS)


async def replay_with_restarts(
    lines: list[bytes], cuts: list[int], batch_lines: int, open_store: Callable[[], Awaitable[Store]]
) -> tuple[list[bytes], Snapshot]:
    """Replay with a fresh engine (and store client) at every cut; only the last one reaches end of input.

    Segments before the last are driven the way `pipeline.run` drives them, minus `finish()`; the last runs
    through `pipeline.run` itself.
    """
    ttl = rule_ttls(RULES, LATENESS_MS)
    bounds = [0, *sorted(cuts), len(lines)]
    out: list[Transition] = []
    for segment, (start, end) in enumerate(pairwise(bounds)):
        store = await open_store()
        engine = Engine(RULES, lateness_ms=LATENESS_MS)
        try:
            if segment == len(bounds) - 2:
                sink = CapturingSink()
                await run(engine, ListSource(lines[start:end], batch_lines), store, sink)
                out.extend(sink.transitions)
                return rendered(out), await store.load(RULE_IDS)
            engine.restore(await store.load(engine.rule_ids))
            for first in range(start, end, batch_lines):
                engine.accept_lines(lines[first : min(first + batch_lines, end)])
                engine.advance()
                out.extend(engine.drain())
                await store.commit(engine.checkpoint(), ttl)
        finally:
            await store.close()
    raise AssertionError("unreachable: the last segment returns")


def _redis_opener(redis_url: str) -> tuple[Callable[[], Awaitable[Store]], Callable[[], Awaitable[None]]]:
    """A new client on one fresh namespace per call (a restarted process), and a cleanup for the namespace."""
    url = f"{redis_url}?namespace=prop-{uuid.uuid4().hex}"

    async def open_store() -> Store:
        return RedisStore.from_url(url)

    async def cleanup() -> None:
        store = RedisStore.from_url(url)
        await store.reset()
        await store.close()

    return open_store, cleanup


def _memory_opener() -> Callable[[], Awaitable[Store]]:
    """The same MemoryStore on every call: it stands for state that outlives the engine."""
    shared = MemoryStore()

    async def open_store() -> Store:
        return shared

    return open_store


# ---- properties ------------------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(stream=streams(wild=True), batch_lines=st.integers(1, 25))
def test_memory_and_redis_give_identical_transitions(redis_url: str, stream: Stream, batch_lines: int) -> None:
    """Property A: a replay on MemoryStore and on RedisStore gives the same transitions and the same state."""

    async def body() -> None:
        memory = MemoryStore()
        open_redis, cleanup = _redis_opener(redis_url)
        red = await open_redis()
        try:
            memory_sink, _ = await replay_lines(
                RULES, stream.arrival, memory, lateness_ms=LATENESS_MS, batch_lines=batch_lines
            )
            redis_sink, _ = await replay_lines(
                RULES, stream.arrival, red, lateness_ms=LATENESS_MS, batch_lines=batch_lines
            )
            assert memory_sink.as_json() == redis_sink.as_json()
            assert await memory.load(RULE_IDS) == await red.load(RULE_IDS)
        finally:
            await red.close()
            await cleanup()

    asyncio.run(body())


@st.composite
def restart_plans(draw: st.DrawFn) -> tuple[Stream, list[int], int]:
    """A wild stream, 1 to 3 restart points in it (repeats allowed), and a batch size."""
    stream = draw(streams(wild=True))
    cuts = draw(st.lists(st.integers(0, len(stream.arrival)), min_size=1, max_size=3))
    return stream, cuts, draw(st.integers(1, 25))


@settings(max_examples=60, deadline=None)
@given(plan=restart_plans())
def test_restarts_do_not_change_transitions(redis_url: str, plan: tuple[Stream, list[int], int]) -> None:
    """Property B: stopping and restoring a new engine from the store mid-stream changes no transition."""
    stream, cuts, batch_lines = plan

    async def body() -> None:
        expected, expected_state = await replay(stream.arrival, MemoryStore(), batch_lines=1000)
        open_redis, cleanup = _redis_opener(redis_url)
        try:
            for open_store in (_memory_opener(), open_redis):
                got, state = await replay_with_restarts(stream.arrival, cuts, batch_lines, open_store)
                assert got == expected
                assert state == expected_state
        finally:
            await cleanup()

    asyncio.run(body())


@settings(max_examples=100, deadline=None)
@given(stream=streams(wild=False), batches=st.tuples(st.integers(1, 25), st.integers(1, 25)))
def test_arrival_order_within_lateness_does_not_change_output(stream: Stream, batches: tuple[int, int]) -> None:
    """Property C: events in time order and shuffled within the lateness bound give byte-identical output."""

    async def body() -> None:
        in_order, in_order_state = await replay(stream.in_time_order, MemoryStore(), batches[0])
        shuffled, shuffled_state = await replay(stream.arrival, MemoryStore(), batches[1])
        assert shuffled == in_order
        assert shuffled_state == in_order_state

    asyncio.run(body())
