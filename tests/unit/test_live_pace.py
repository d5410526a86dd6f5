"""The live loop's engine slices: their budget follows what a unit of work costs (pipeline._Pace), and a
checkpoint taken while a budget has cut an instant carries the transitions that instant decides."""

from __future__ import annotations

from streamalert.decode import format_ms
from streamalert.engine import Engine
from streamalert.model import AlertState
from streamalert.pipeline import _LEAST_WORK, ADVANCE_WORK, SLICE_SECONDS, _checkpoint, paced
from streamalert.state.base import Changes
from streamalert.steps import finish
from streamalert.testing import rules_from_yaml

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z
RULES = "rules:\n- {name: per_host, match: {level: error}, window: 5s, condition: count >= 2, group_by: [host]}\n"


def test_slices_that_take_too_long_get_a_smaller_budget_in_proportion() -> None:
    assert paced(2048, SLICE_SECONDS * 4) == 512
    assert paced(512, SLICE_SECONDS * 10) == _LEAST_WORK  # never below the least
    assert paced(100, SLICE_SECONDS * 0.75) == 100  # within the band: kept


def test_quick_slices_grow_the_budget_back_to_the_most() -> None:
    assert paced(256, SLICE_SECONDS / 4) == 512
    assert paced(ADVANCE_WORK, SLICE_SECONDS / 100) == ADVANCE_WORK  # never above the most
    work = _LEAST_WORK
    for _ in range(10):
        work = paced(work, 0.0)
    assert work == ADVANCE_WORK


def _cut_engine(hosts: int) -> Engine:
    """An engine whose instant T0 (two errors per host: every host's series fires) a budget has cut."""
    engine = Engine(rules_from_yaml(RULES), lateness_ms=0)
    line = '{{"timestamp":"{}","level":"error","host":"h{}"}}'
    engine.accept_lines([line.format(format_ms(T0), k % hosts).encode() for k in range(2 * hosts)])
    engine.accept_lines([b'{"timestamp":"%s","level":"info"}' % format_ms(T0 + 1).encode()])
    assert not engine.advance(max_work=100)
    assert not engine.between_instants
    return engine


def _firing(changes: Changes) -> int:
    return sum(len(items) for items in changes.upserts.values())


def test_a_checkpoint_of_a_cut_instant_carries_the_transitions_it_decides() -> None:
    """Finishing the instant after the transitions were drained left them for the next checkpoint: the state
    stored as firing, the firing not in the log (lost by a crash in between)."""
    engine = _cut_engine(1_000)
    transitions, changes = _checkpoint(engine, None)
    assert engine.between_instants
    assert _firing(changes) == 1_000
    assert len(transitions) == len(changes.transitions) == 1_000
    assert {t.state for t in transitions} == {AlertState.FIRING}
    assert engine.drain() == []


def test_instant_steps_finish_a_cut_instant_in_parts_of_the_budget() -> None:
    engine = _cut_engine(1_000)
    steps, parts = engine.instant_steps(50), 0
    while True:
        try:
            next(steps)
        except StopIteration:
            break
        parts += 1
        assert not engine.between_instants
    assert parts >= 2_000 // 50 - 2  # 3,000 units left at most; at least 2,000 (the evaluations)
    assert engine.between_instants
    finish(engine.instant_steps(50))  # nothing left: no step
    assert len(engine.drain()) == 1_000
