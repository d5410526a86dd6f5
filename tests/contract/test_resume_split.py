"""`replay A --state redis://...` then `replay B --resume` gives one run's transitions over A+B, wherever the
input is split: between two lines of one millisecond, inside the lateness bound, before a held far-ahead line.

Both parts run through `pipeline.run` as `streamalert replay` drives it on a store that outlives the process
(a `provisional` sink: the end-of-input flush is printed, not stored), each on a new engine and a new Redis
client. The documented contract (README, replay): the first run's output without its provisional lines,
followed by the continuation's whole output, equals one run over the whole input; the provisional lines are
exactly what the first part alone would end with.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamalert.engine import Engine
from streamalert.output import transition_json
from streamalert.pipeline import run
from streamalert.state.memory import MemoryStore
from streamalert.state.redis import RedisStore
from streamalert.testing import CapturingSink, ListSource, rules_from_yaml

pytestmark = pytest.mark.redis

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z
LATENESS_MS = 5_000

RULES = rules_from_yaml(
    """
rules:
  - name: errors_for
    match: {level: error}
    window: 10s
    condition: count >= 3
    group_by: [host]
    for: 2s
    annotations: {summary: "{{ value }} errors on {{ labels.host }}"}
  - name: errors_now
    match: {level: error}
    window: 3s
    condition: count > 1
  - name: n_max
    match: {svc: b}
    window: 5s
    condition: max(n) >= 7
    for: 1s
  - name: heartbeat
    match: {svc: a}
    absent_for: 8s
    group_by: [host]
    expect: [{host: h1}]
    annotations: {summary: "silent {{ value }}s"}
"""
)

_fields = st.fixed_dictionaries(
    {"level": st.sampled_from(["error", "error", "info"]), "svc": st.sampled_from(["a", "b"]), "n": st.integers(0, 9)},
    optional={"host": st.sampled_from(["h1", "h2"])},
)


@st.composite
def split_plans(draw: st.DrawFn) -> tuple[list[bytes], int, int]:
    """Up to 50 lines over about two minutes, many sharing a millisecond, in an arrival order shuffled within
    the lateness bound, with an occasional line stamped far ahead (replay holds it until the next line); a
    split point (often inside a run of one millisecond) and a batch size."""
    offset, timed = 0, []
    for _ in range(draw(st.integers(0, 50))):
        offset += draw(st.sampled_from([0, 0, 1]) | st.integers(0, 2_000) | st.integers(0, 12_000))
        delay = draw(st.just(0) | st.integers(0, LATENESS_MS))
        record: dict[str, Any] = {"timestamp": T0 + offset, **draw(_fields)}
        if draw(st.integers(0, 30)) == 0:
            record["timestamp"] = T0 + offset + 120_000  # far ahead of the stream (more than future_skew)
        timed.append((T0 + offset + delay, -offset, orjson.dumps(record)))
    lines = [line for _, _, line in sorted(timed)]
    return lines, draw(st.integers(0, len(lines))), draw(st.integers(1, 20))


def rendered(transitions: Any) -> list[bytes]:
    return [transition_json(t) for t in transitions]


async def _part(lines: list[bytes], url: str, batch_lines: int, *, first: bool) -> tuple[list[bytes], list[bytes]]:
    """One `replay` process on a store that outlives it: (final transitions, provisional transitions)."""
    store = RedisStore.from_url(url)
    try:
        if first:
            await store.reset()
        final, provisional = CapturingSink(), CapturingSink()
        engine = Engine(RULES, lateness_ms=LATENESS_MS)
        await run(engine, ListSource(lines, batch_lines), store, final, provisional=provisional, commit_lines=1)
        return rendered(final.transitions), rendered(provisional.transitions)
    finally:
        await store.close()


async def _one_run(lines: list[bytes]) -> list[bytes]:
    """One run over `lines` on memory state (nothing to continue: every transition final)."""
    sink = CapturingSink()
    await run(Engine(RULES, lateness_ms=LATENESS_MS), ListSource(lines, 1000), MemoryStore(), sink)
    return rendered(sink.transitions)


@settings(max_examples=30, deadline=None)
@given(plan=split_plans())
def test_resume_after_any_split_gives_one_runs_transitions(redis_url: str, plan: tuple[list[bytes], int, int]) -> None:
    """A, then --resume B, gives exactly one run's transitions over A+B; A's provisional lines are A-alone's tail."""
    lines, cut, batch_lines = plan

    async def body() -> None:
        url = f"{redis_url}?namespace=split-{uuid.uuid4().hex}"
        whole, alone = await _one_run(lines), await _one_run(lines[:cut])
        a_final, a_provisional = await _part(lines[:cut], url, batch_lines, first=True)
        b_final, b_provisional = await _part(lines[cut:], url, batch_lines, first=False)
        assert a_final + b_final + b_provisional == whole
        assert a_final + a_provisional == alone
        cleanup = RedisStore.from_url(url)
        await cleanup.reset()
        await cleanup.close()

    asyncio.run(body())
