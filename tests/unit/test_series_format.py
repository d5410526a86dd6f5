"""The compact stored form of series: round trips, its size, and checkpoints of the first format still load."""

from __future__ import annotations

import tracemalloc

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


def test_an_idle_count_series_costs_an_object_and_an_int() -> None:
    """One time held as an int, not an array: 10,000 idle series take under 112 bytes each (with an array: 168)."""
    times = [T + k for k in range(10_000)]  # the ints exist before: a series only refers to its time
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    kept = [CountSeries() for _ in times]
    for series, t in zip(kept, times, strict=True):
        series.observe(t, 3, 64_000)
    used = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert used / len(kept) < 112, used / len(kept)  # the object (72) and its list slot (8), no array (88)
    assert [s.size() for s in kept[:2]] == [1, 1]


def test_a_count_series_back_to_one_time_counts_and_stores_as_before() -> None:
    """Growing to several times and evicting back to one or none keeps count, expiry and the stored form."""
    series = _count(T, T + 10, T + 20, T + 30, T + 40)  # capacity 3: the two oldest fold into buckets
    assert (series.size(), series.count(T + 40, 64_000), series.last()) == (3, 5, T + 40)
    series.evict(T + 64_035, 3, 64_000)  # only T + 40 is left in the window
    assert (series.size(), series.count(T + 64_035, 64_000), series.next_expiry(64_000)) == (1, 1, T + 64_040)
    assert list(series.times) == [T + 40]
    assert series.dump() == [T + 40]
    assert list(CountSeries.load(series.dump()).times) == [T + 40]
    series.observe(T + 64_036, 3, 64_000)
    assert list(series.times) == [T + 40, T + 64_036]
    series.evict(T + 64_036 + 64_000, 3, 64_000)
    assert (series.empty(), series.last(), series.next_expiry(64_000), series.dump()) == (True, None, None, [])
    series.observe(T + 200_000, 3, 64_000)
    assert (series.size(), series.dump()) == (1, [T + 200_000])
