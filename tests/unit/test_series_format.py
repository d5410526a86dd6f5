"""The compact stored form of series: round trips, its size, and checkpoints of the first format still load."""

from __future__ import annotations

import orjson

from streamalert.alerts.lifecycle import INACTIVE, Phase
from streamalert.rules.series import AbsenceSeries, AggregateSeries, CountSeries

T = 1_769_418_000_000


def _count(*times: int) -> CountSeries:
    series = CountSeries()
    for t in times:
        series.observe(t, 3, 64_000)
    return series


def test_an_idle_count_series_is_stored_as_its_one_time() -> None:
    """One time, inactive, no record: the stored value is that time and nothing else."""
    assert orjson.dumps(_count(T).dump()) == b"[1769418000000]"


def test_count_series_round_trip_with_buckets_phase_and_record() -> None:
    """Times, folded buckets, phase and record all come back from the compact form."""
    series = _count(T, T + 5, T + 1_000, T + 1_001, T + 1_001)
    series.phase, series.record = Phase(T + 1_000, True), '{"a":1}'
    back = CountSeries.load(orjson.loads(orjson.dumps(series.dump())))
    assert list(back.times) == list(series.times)
    assert back.older == series.older
    assert back.older
    assert back.phase == series.phase
    assert back.record == series.record


def test_aggregate_and_absence_round_trip() -> None:
    """Per-ms entries (int and float sums), min/max queues, phase and absence fields survive dump and load."""
    series = AggregateSeries()
    for t, v in ((T, 3), (T, 0.5), (T + 7, -2), (T + 9, 10)):
        series.observe(t, v)
    series.phase = Phase(T, False)
    back = AggregateSeries.load(orjson.loads(orjson.dumps(series.dump())))
    assert list(back.entries) == list(series.entries)
    assert [back.value(a) for a in ("sum", "avg", "min", "max")] == [
        series.value(a) for a in ("sum", "avg", "min", "max")
    ]
    assert back.phase == series.phase
    absent = AbsenceSeries(T)
    absent.observe(T + 500)
    absent.firing, absent.record = True, "{}"
    again = AbsenceSeries.load(orjson.loads(orjson.dumps(absent.dump())))
    assert (again.last_seen, again.silence_ms, again.firing, again.record) == (T + 500, 500, True, "{}")


def test_checkpoints_of_the_first_format_still_load() -> None:
    """Values written before the compact form ([times, buckets, phase, record] and friends) load unchanged."""
    count = CountSeries.load([[T, T + 1], [[T - 1000, 4]], [T, True], "r"])
    assert (list(count.times), count.older, count.phase, count.record) == (
        [T, T + 1],
        {T - 1000: 4},
        Phase(T, True),
        "r",
    )
    empty = CountSeries.load([[T], [], [None, False], None])
    assert (empty.older, empty.phase) == (None, INACTIVE)
    aggregate = AggregateSeries.load([[[T, 5, 2, 1, 4]], [None, False], None])
    assert (aggregate.value("sum"), aggregate.value("max"), aggregate.n) == (5, 4, 2)
    absence = AbsenceSeries.load([T, True, 3000, None])
    assert (absence.last_seen, absence.firing, absence.silence_ms) == (T, True, 3000)
