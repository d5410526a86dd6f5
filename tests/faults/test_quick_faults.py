"""The quick rows of the fault suite (bench/faults/, `python bench/faults/run.py --quick`) as tests: `streamalert run`
as a process under one fault each must lose nothing, count nothing twice, never exit on its own, and never stall
its event loop for more than a second."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.faults.catalogue import ROWS, Row
from bench.faults.harness import tally
from bench.faults.result import Result

pytestmark = [pytest.mark.faults, pytest.mark.redis]

QUICK = [row for row in ROWS if row.quick]


@pytest.mark.timeout(600)
@pytest.mark.parametrize("row", QUICK, ids=[row.name for row in QUICK])
def test_quick_fault_row(row: Row, tmp_path: Path) -> None:
    """The row's fault loses no tracked line, doubles none, loses or repeats no notification, causes no exit,
    and no /healthz answer takes more than 1 s."""
    result = row.run(tmp_path)
    summary = "; ".join(result.notes)
    assert result.tracked > 0, f"nothing was tracked: {summary}"
    assert result.failures() == [], summary


def _transition(rule: str, fid: str, state: str = "firing", at: str = "2026-01-01T00:00:00.000Z") -> bytes:
    return b'{"at":"%s","rule":"%s","state":"%s","labels":{"fid":"%s"},"value":1,"annotations":{}}' % (
        at.encode(),
        rule.encode(),
        state.encode(),
        fid.encode(),
    )


def test_tally_counts_lost_and_doubled_lines_exactly() -> None:
    """The suite's arithmetic: a fid missing from the live log is lost, a fid fired twice or by fault_twice is
    double counted, and every differing transition is counted."""
    expected = [_transition("fault_seen", f"x-{i}") for i in range(5)]
    live = [
        expected[0],
        expected[1],
        expected[1],  # fired twice
        expected[3],
        _transition("fault_twice", "x-3"),  # applied twice within its window
        expected[4],
    ]
    counted = tally(live, expected)
    assert (counted.tracked, counted.applied, counted.lost, counted.double) == (5, 4, 1, 2)
    assert counted.differ == 3  # x-2 missing, x-1 once more, x-3's fault_twice
    assert counted.lost_examples == ["x-2"]


def test_a_row_with_a_loss_or_a_stall_fails() -> None:
    """Result.failures names every broken promise; a clean row has none."""
    clean = Result("r", "f", tracked=10, lost=0, double=0, stall_s=0.2, stop_codes=[0])
    assert clean.failures() == []
    broken = Result("r", "f", tracked=10, lost=1, double=0, exits=1, stall_s=1.5, stop_codes=[1], notes_double=2)
    assert broken.failures() == [
        "lost 1",
        "notifications duplicated 2",
        "1 unasked exit(s)",
        "SIGTERM exit codes [1]",
        "stall 1.50s > 1.0s",
    ]
    assert Result("r", "f").failures()[:2] == ["lost None", "double None"]  # nothing measured is no pass
