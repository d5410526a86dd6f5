"""`advance` and `finish` bounded by `max_work` (possibly inside an instant) or `max_changes` (between
instants), called again until done, decide exactly what one unbounded call decides, also when input or a
checkpoint comes between two bounded calls."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamalert.config.rules import load_rules
from streamalert.decode import format_ms
from streamalert.engine import _REACH_PART, _SLOT_BITS, Engine
from streamalert.model import Transition
from streamalert.testing import rules_from_yaml

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z
RULES = rules_from_yaml(
    """
rules:
  - name: errors
    match: {level: error}
    window: 5s
    condition: count >= 2
    group_by: [host]
    for: 1s
  - name: quiet
    match: {level: error}
    window: 4s
    condition: count < 3
  - name: n_sum
    match: {level: error}
    window: 3s
    condition: sum(n) > 4
  - name: beat
    match: {container: beat}
    absent_for: 6s
    group_by: [host]
    expect: [{host: a}, {host: z}]
"""
)


@st.composite
def streams(draw: st.DrawFn) -> list[bytes]:
    lines, offset = [], 0
    for _ in range(draw(st.integers(1, 60))):
        offset += draw(st.integers(0, 2_500))
        stamp = format_ms(T0 + max(0, offset - draw(st.integers(0, 1_500))))
        host = draw(st.sampled_from("abc"))
        kind = draw(st.sampled_from(['"level":"error"', '"container":"beat"', '"level":"info"']))
        lines.append(f'{{"timestamp":"{stamp}","host":"{host}","n":{draw(st.integers(0, 3))},{kind}}}'.encode())
    return lines


def _run(
    lines: list[bytes], batch: int, max_work: int | None, max_changes: int | None = None, interrupt: str = ""
) -> tuple[list[Transition], int]:
    """`interrupt`: after a stop, the next batch is taken in ("input"), or a checkpoint taken first
    ("checkpoint"), before advancing again."""
    engine = Engine(RULES, lateness_ms=1_000)
    out: list[Transition] = []
    stops = 0
    for start in range(0, len(lines), batch):
        engine.accept_lines(lines[start : start + batch])
        while not engine.advance(max_work=max_work, max_changes=max_changes):
            stops += 1
            out += engine.drain()
            if interrupt == "checkpoint":
                engine.checkpoint()
            if interrupt:
                break
    while not engine.finish(max_work=max_work, max_changes=max_changes):
        stops += 1
        out += engine.drain()
    return out + engine.drain(), stops


@settings(max_examples=150, deadline=None)
@given(
    streams(),
    st.integers(1, 20),
    st.integers(1, 6),
    st.sampled_from([None, 1, 3]),
    st.sampled_from(["", "input", "checkpoint"]),
)
def test_bounded_runs_decide_what_one_run_decides(
    lines: list[bytes], batch: int, bound: int, changes: int | None, interrupt: str
) -> None:
    """Any batching, any work bound (cutting instants), any change bound, with checkpoints and input
    between bounded calls: the same transitions in the same order as unbounded calls."""
    expected, _ = _run(lines, batch, None)
    got, _ = _run(lines, batch, bound, changes, interrupt)
    assert got == expected


def test_a_bound_of_one_unit_stops_early() -> None:
    """Ten instants (no timer due before the end) with a bound of one unit of work stop inside and between
    them, the horizon never moving back and ending after the last."""
    lines = [f'{{"timestamp":"{format_ms(T0 + k * 10)}","level":"error","host":"a"}}'.encode() for k in range(10)]
    engine = Engine(RULES, lateness_ms=0)
    engine.accept_lines(lines)
    horizons = [engine.horizon_ms]
    stops = 0
    while not engine.finish(max_work=1):
        stops += 1
        horizons.append(engine.horizon_ms)
    assert stops >= 2 * 10  # three rules take each line: every instant is cut inside, at least twice
    assert horizons == sorted(horizons)
    assert set(horizons[1:]) == {T0 + k * 10 for k in range(10)}
    assert engine.horizon_ms == T0 + 91


def test_a_wave_of_series_at_one_instant_is_cut_and_finished() -> None:
    """5,000 series ending at one millisecond: a work bound of 100 cuts that instant dozens of times (the
    horizon stays on it meanwhile), and the series all end as in one unbounded call."""
    lines = [f'{{"timestamp":"{format_ms(T0)}","level":"error","host":"h{k}"}}'.encode() for k in range(5_000)]

    def run(bound: int | None) -> tuple[list[int], int]:
        engine = Engine(RULES, lateness_ms=0)
        engine.accept_lines(lines)
        engine.finish()
        engine.checkpoint()
        engine.until_ms = T0 + 10_000
        horizons = []
        while not engine.finish(max_work=bound):
            horizons.append(engine.horizon_ms)
        return horizons, engine.series_count()

    horizons, live = run(100)
    # the expiry instant of the `errors` series (5s window), cut dozens of times (5,000 evaluations); before
    # it, the start of the timer wheel's slot holding it, while the slot's 5,000 timers move into the heap
    assert horizons.count(T0 + 5_000) >= 5_000 // 100
    assert horizons[0] == (T0 + 5_000) >> _SLOT_BITS << _SLOT_BITS
    assert horizons == sorted(horizons)
    assert live == run(None)[1] == 2  # what stays: the absence rule's two expected groups


def test_input_after_a_cut_instant_is_judged_after_that_instant() -> None:
    """Live mode: the wall clock moved the horizon past T0 and a budget cut the instant T0. A line stamped
    T0 arriving before the next advance is late exactly as when T0 was processed whole (the cut instant is
    finished before input is taken in), though it is within `lateness` of the newest event."""
    first = [f'{{"timestamp":"{format_ms(T0)}","level":"error","host":"h{k}"}}'.encode() for k in range(50)]
    again = [f'{{"timestamp":"{format_ms(T0)}","level":"error","host":"h0"}}'.encode()]

    def run(bound: int | None) -> tuple[int, list[Transition]]:
        engine = Engine(RULES, lateness_ms=1_000, max_delay_ms=5_000)
        wall = T0 + 5_000 + 1_000 + 500  # clock at wall - max_delay: the horizon at T0 + 500
        engine.accept_lines(first, wall_ms=wall)
        cut = not engine.advance(wall_ms=wall, max_work=bound)
        assert cut == (bound is not None)
        assert bound is None or engine.horizon_ms == T0  # stopped inside the instant T0
        engine.accept_lines(again, wall_ms=wall)
        engine.finish()
        return engine.stats.late, engine.drain()

    assert run(10) == run(None)
    assert run(10)[0] == 1


def test_a_slot_of_many_timers_moves_into_the_heap_in_parts() -> None:
    """5,000 series due at one later millisecond wait in one slot of the timer wheel; reaching the slot moves
    them into the heap within the budget: bounded calls stop at the slot's start (nothing in it done) before
    the due instant runs, and the series end as in one unbounded call."""
    lines = [f'{{"timestamp":"{format_ms(T0)}","level":"error","host":"h{k}"}}'.encode() for k in range(5_000)]
    due = T0 + 5_000
    slot_start = due >> _SLOT_BITS << _SLOT_BITS
    assert T0 < slot_start < due

    def run(bound: int | None) -> tuple[list[tuple[int, int]], int]:
        engine = Engine(RULES, lateness_ms=0)
        engine.accept_lines(lines)
        engine.finish()
        engine.until_ms = T0 + 10_000
        stops = []
        while not engine.finish(max_work=bound):
            stops.append((engine.horizon_ms, engine.series_count()))
        return stops, engine.series_count()

    stops, live = run(100)
    at_slot = [count for horizon, count in stops if horizon == slot_start]
    # the slot moved in parts: a budget of 100 takes two parts (the second overdraws it), 512 timers
    assert len(at_slot) >= 5_000 // (2 * _REACH_PART) - 1
    assert set(at_slot) == {5_002}  # before any series ended
    assert live == run(None)[1] == 2


def test_a_bounded_advance_takes_no_bulk_step_over_a_slot_of_many_timers() -> None:
    """Events after a wheel slot of 5,000 timers: the bulk path would process the slot in one unbounded step
    (moving every timer, ending every series), so a bounded advance leaves it to the per-instant way, which
    moves the slot in parts and cuts the instant they are due at: the first call ends fewer series than its
    budget."""
    lines = [f'{{"timestamp":"{format_ms(T0)}","level":"error","host":"h{k}"}}'.encode() for k in range(5_000)]
    due = T0 + 5_000
    slot_start = due >> _SLOT_BITS << _SLOT_BITS
    engine = Engine(RULES, lateness_ms=0)
    engine.accept_lines([*lines, f'{{"timestamp":"{format_ms(T0 + 1)}","level":"info"}}'.encode()])
    engine.advance()
    live = engine.series_count()
    later = [f'{{"timestamp":"{format_ms(T0 + 6_000 + k)}","level":"error","host":"x"}}' for k in range(300)]
    engine.accept_lines([line.encode() for line in later] + [f'{{"timestamp":"{format_ms(T0 + 7_000)}"}}'.encode()])
    assert not engine.advance(max_work=2048)
    assert slot_start <= engine.horizon_ms <= due  # the slot moved (in parts), its instant cut by the budget
    assert live - engine.series_count() < 2048  # series ended within the budget, not the whole slot's 5,000
    while not engine.advance(max_work=2048):
        pass
    assert engine.series_count() < live


@pytest.mark.parametrize("bound", [1, 7, 64, 2048])
def test_the_incident_under_any_bound_decides_what_one_run_decides(bound: int) -> None:
    """The bundled incident with every shipped rule, taken in 37 lines at a time as a live consumer lagging
    until the last batch: bounded calls (a slot's timers, an instant's events and evaluations all cut) end
    with the transitions of unbounded calls. A fractional budget left by a cut once stalled a slice forever."""
    rules = load_rules(ROOT / "config" / "rules")
    lines = (ROOT / "examples" / "incident.jsonl").read_bytes().splitlines()
    wall = T0 + 365 * 86_400_000

    def run(max_work: int | None) -> list[Transition]:
        engine = Engine(rules, lateness_ms=0)
        out: list[Transition] = []
        for start in range(0, len(lines), 37):
            engine.accept_lines(lines[start : start + 37], wall_ms=wall, lane="p0")
            lagging = ["p0"] if start + 37 < len(lines) else []
            while not engine.advance(wall, lagging, max_work=max_work, max_changes=None if max_work is None else 50):
                if engine.changes_pending() >= 50:
                    engine.checkpoint()
            out += engine.drain()
        return out

    expected = run(None)
    assert len(expected) > 30
    assert run(bound) == expected
