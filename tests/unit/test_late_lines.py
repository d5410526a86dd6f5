"""stamps.late_lines finds exactly the lines that a walk with the running maximum finds, across its chunks."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from streamalert.decode import format_ms
from streamalert.stamps import late_lines

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z


def reference(times: list[int], floor: int, lateness: int) -> set[int]:
    late, newest = set(), -1
    for k, t in enumerate(times):
        if t < floor or (newest >= 0 and t < newest - lateness):
            late.add(k)
        newest = max(newest, t)
    return late


@st.composite
def batches(draw: st.DrawFn) -> list[int]:
    """Up to 1,000 times (several chunks of 256): mostly rising, with dips short and long, some beyond
    lateness, some that run across a chunk's end."""
    times, offset = [], 0
    for _ in range(draw(st.integers(1, 1_000))):
        offset += draw(st.sampled_from([0, 1, 7, 40, 300]))
        dip = draw(st.sampled_from([0] * 12 + [-500, -1_001, -3_000, -30_001]))
        times.append(T0 + max(0, offset + dip))
    return times


@settings(max_examples=80, deadline=None)
@given(times=batches(), lateness=st.sampled_from([0, 1_000, 2_999, 30_000]), back=st.integers(-100, 2_000))
def test_late_lines_match_a_walk_with_the_running_maximum(times: list[int], lateness: int, back: int) -> None:
    floor = min(times) + back
    stamps = [format_ms(t) for t in times]
    assert late_lines(stamps, floor, lateness, min(times)) == reference(times, floor, lateness)
