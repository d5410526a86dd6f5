"""The engine rebuilds its series tables when most series have ended (so the live loop can give the memory
back): after a rebuild of many series, the next few rebuilds follow the rest down, however small."""

from __future__ import annotations

from streamalert.engine import Engine
from streamalert.testing import rules_from_yaml

RULES = rules_from_yaml(
    "rules:\n- {name: u, match: {u: {exists: true}}, window: 1s, condition: count >= 2, group_by: [u]}\n"
)
T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z


def _lines(at_s: int, prefix: str, count: int) -> list[bytes]:
    return [b'{"timestamp":%d,"u":"%s%d"}' % (T0 + at_s * 1000, prefix.encode(), i) for i in range(count)]


def test_the_series_left_after_a_large_rebuild_get_rebuilds_of_their_own() -> None:
    engine = Engine(RULES, lateness_ms=0, max_delay_ms=0)
    engine.accept_lines(_lines(0, "a", 5_000))  # 5,000 series
    engine.accept_lines(_lines(2, "b", 1_200))  # the 5,000 end (1 s windows) with 1,200 left: a rebuild
    engine.advance(T0 + 2_500)
    assert (engine.series_count(), engine.compactions) == (1_200, 1)
    engine.accept_lines(_lines(4, "c", 200))  # the 1,200 end, 200 left: fewer than 4,096, rebuilt all the same
    engine.advance(T0 + 4_500)
    assert (engine.series_count(), engine.compactions) == (200, 2)
    engine.accept_lines(_lines(6, "d", 10))
    engine.advance(T0 + 6_500)
    assert (engine.series_count(), engine.compactions) == (10, 3)
    engine.accept_lines(_lines(8, "e", 1))
    engine.advance(T0 + 8_500)
    assert (engine.series_count(), engine.compactions) == (1, 4)  # the third and last of the tail
    engine.accept_lines(_lines(10, "f", 1_000))
    engine.advance(T0 + 10_500)
    engine.accept_lines(_lines(12, "g", 1))
    engine.advance(T0 + 12_500)  # 1,000 down to 1, but the tail is spent and they never were 4,096
    assert (engine.series_count(), engine.compactions) == (1, 4)
