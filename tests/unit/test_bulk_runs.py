"""Runs of events applied per series in bulk (Engine._apply_runs) decide, store and count exactly what the
per-instant path decides for the same input: random rule sets (count, rate, sum, ratio; for, keep_firing_for,
group_by, a record read by an annotation, caps on live series), random streams (bursts in one millisecond,
out of order within lateness, batches) and a checkpoint after every advance, compared field by field."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamalert.config.rules import Rule
from streamalert.decode import format_ms
from streamalert.engine import Engine
from streamalert.model import Transition
from streamalert.state.base import Changes
from streamalert.state.memory import MemoryStore
from streamalert.steps import finish
from streamalert.testing import rules_from_yaml

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z

_MATCHES = ["{level: error}", "{svc: a}", "{any: [{level: error}, {svc: a}]}"]


# Windows and gaps meet: events land on a window's edge, a millisecond before or after it, and in bursts
# of one millisecond, where an off-by-one in the bulk path would show.
_WINDOWS = [100, 250]
_GAPS = [0, 0, 0, 1, 1, 2, 50, 99, 100, 101, 149, 150, 249, 250, 251, 1_000]


@st.composite
def rule_sets(draw: st.DrawFn) -> str:
    out = ["rules:"]
    for j in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["count", "count", "count", "rate", "sum", "ratio", "quantile", "quantile"]))
        window = draw(st.sampled_from(_WINDOWS))
        rule = [f"  - name: r{j}", f"    match: {draw(st.sampled_from(_MATCHES))}", f"    window: {window}ms"]
        op = draw(st.sampled_from([">=", ">", ">=", "<", "=="]))
        if kind == "count":
            rule.append(f"    condition: count {op} {draw(st.integers(1, 6))}")
        elif kind == "rate":
            rule.append(f"    condition: rate {op} {draw(st.sampled_from(['10', '20', '30']))}")
        elif kind == "sum":
            rule.append(f"    condition: sum(n) {op} {draw(st.integers(0, 8))}")
        elif kind == "quantile":  # n is 0..3 or missing: the threshold is often a sample
            q = draw(st.sampled_from(["p50", "p90", "quantile(0.25, ", "quantile(1, "]))
            field = "(n)" if q.startswith("p") else "n)"
            rule.append(f"    condition: {q}{field} {op} {draw(st.sampled_from(['0', '1', '1.5', '2', '3']))}")
        else:
            rule += ["    ratio: {where: {level: error}}", f"    condition: ratio {op} 0.5"]
        if draw(st.booleans()):
            rule.append("    group_by: [host]")
        wait = draw(st.sampled_from([None, None, "for: 100ms", "for: 1s", "keep_firing_for: 150ms"]))
        if wait is not None:
            rule.append(f"    {wait}")
        if draw(st.booleans()):
            rule.append('    annotations: {summary: "{{ value }} last n {{ n }}"}')  # keeps the record
        out += rule
    return "\n".join(out) + "\n"


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    lines, offset = [], 0
    for _ in range(draw(st.integers(1, 120))):
        offset += draw(st.sampled_from(_GAPS))
        at = max(0, offset - draw(st.sampled_from([0, 0, 0, 1, 100])))
        host = draw(st.sampled_from("ab"))
        level = draw(st.sampled_from(["error", "error", "info"]))
        svc = draw(st.sampled_from(["a", "b"]))
        n = draw(st.sampled_from(["0", "1", "2", "3", "1.5", "null"]))  # null: no sample for sum or quantile
        lines.append(
            f'{{"timestamp":"{format_ms(T0 + at)}","host":"{host}","level":"{level}","svc":"{svc}","n":{n}}}'.encode()
        )
    return lines


def _stored(changes: Changes) -> tuple[Any, ...]:
    deletes = {rule: sorted(keys) for rule, keys in changes.deletes.items()}
    return (changes.meta, changes.upserts, deletes, changes.pending_add, changes.pending_before)


def _run(rules: list[Rule], lines: list[bytes], batch: int, lateness: int, cap: int, bulk: bool) -> list[Any]:
    engine = Engine(rules, lateness_ms=lateness, max_series_per_rule=cap)
    assert engine._bulk_runs is True  # the internal switch (on by default) is still there
    engine._bulk_runs = bulk  # False sends every event the per-instant way
    seen: list[Any] = []
    for start in range(0, len(lines), batch):
        engine.accept_lines(lines[start : start + batch])
        engine.advance()
        seen += [engine.drain(), _stored(engine.checkpoint()), engine.series_count()]
    engine.finish()
    seen += [engine.drain(), _stored(engine.checkpoint()), engine.stats, [(r.name, key) for r, key in engine.firing()]]
    return seen


@settings(max_examples=250, deadline=None)
@given(
    rule_sets(),
    streams(),
    st.integers(1, 40),
    st.sampled_from([0, 100, 1_000]),
    st.sampled_from([2, 3, 100_000]),
)
def test_bulk_runs_decide_and_store_what_instants_do(
    rules: str, lines: list[bytes], batch: int, lateness: int, cap: int
) -> None:
    parsed = rules_from_yaml(rules)
    assert _run(parsed, lines, batch, lateness, cap, True) == _run(parsed, lines, batch, lateness, cap, False)


# Edges a random stream reaches rarely: events at a series' timer, one millisecond after it, bursts filling
# the room below the threshold exactly (or not: an instant then goes partly the per-instant way), a series
# ended by its timer between two runs. The rule keeps the record (`n` is not monotonic: the record is the
# greatest line of its instant); a checkpoint after every advance shows the stored timer ("d") each time.
_EDGES = rules_from_yaml(
    """
rules:
  - name: edge
    match: {level: error}
    window: 100ms
    condition: count >= 4
    group_by: [host]
    annotations: {summary: "{{ value }} last n {{ n }}"}
"""
)


@pytest.mark.parametrize(
    "offsets",
    [
        [0, 50, 100, 101, 120, 400],
        [0, 50, 101, 102, 120, 400],
        [0, 100, 100, 150, 400],
        [0, 101, 102, 103, 104, 130, 400],
        [0, 0, 0, 1, 1, 50, 400],
        [0, 0, 0, 0, 400],
        [0, 0, 0, 0, 0, 0, 0, 0, 400],
        [0, 200, 200, 200, 250, 301, 320, 400],
    ],
)
@pytest.mark.parametrize(("batch", "lateness"), [(2, 0), (3, 0), (5, 0), (100, 0), (100, 30)])
def test_bulk_runs_at_the_edges(offsets: list[int], batch: int, lateness: int) -> None:
    lines = [
        f'{{"timestamp":"{format_ms(T0 + at)}","host":"a","level":"error","n":{k * 7 % 10}}}'.encode()
        for k, at in enumerate(offsets)
    ]
    assert _run(_EDGES, lines, batch, lateness, 100_000, True) == _run(_EDGES, lines, batch, lateness, 100_000, False)


def _bounded(
    rules: list[Rule], lines: list[bytes], batch: int, lateness: int, bound: int, changes: int, restart: int
) -> list[Transition]:
    """Live mode's way: advance bounded by work and changes, each stop checkpointed and committed; at stop
    number `restart` the engine is replaced by one restored from the store, which carries on."""
    store, stops = MemoryStore(), 0

    def engine_from_store() -> Engine:
        engine = Engine(rules, lateness_ms=lateness)
        engine._bulk_least = 2  # bounded runs take the bulk path for a few events too
        engine.restore(asyncio.run(store.load(engine.rule_ids)))
        return engine

    engine = engine_from_store()
    out: list[Transition] = []
    for start in range(0, len(lines), batch):
        engine.accept_lines(lines[start : start + batch])
        while not engine.advance(max_work=bound, max_changes=changes):
            stops += 1
            finish(engine.instant_steps(None))  # as the live loop's checkpoint: a cut instant is finished first
            out += engine.drain()
            asyncio.run(store.commit(engine.checkpoint(), {}))
            if stops == restart:
                engine = engine_from_store()
    engine.finish()
    return out + engine.drain()


@settings(max_examples=150, deadline=None)
@given(
    rule_sets(),
    streams(),
    st.integers(1, 40),
    st.sampled_from([0, 100, 1_000]),
    st.sampled_from([3, 8, 40, 400, 400]),
    st.sampled_from([1, 4, 1_000]),
    st.integers(0, 6),
)
def test_bounded_bulk_runs_decide_what_instants_do_through_restarts(
    rules: str, lines: list[bytes], batch: int, lateness: int, bound: int, changes: int, restart: int
) -> None:
    """A bounded advance (live mode) takes the events before a cut through the bulk path, whole, then goes
    on within its budget: the same transitions as one unbounded per-instant run, also when the engine is
    restarted from the checkpoint of any stop (an event applied in bulk and stored as waiting would count
    twice)."""
    parsed = rules_from_yaml(rules)
    one = Engine(parsed, lateness_ms=lateness)
    one._bulk_runs = False
    for start in range(0, len(lines), batch):
        one.accept_lines(lines[start : start + batch])
        one.advance()
    one.finish()
    expected = one.drain()
    assert _bounded(parsed, lines, batch, lateness, bound, changes, restart) == expected
