"""The kinds' series against exact computation on random data: quantiles within their stated relative error
(exact below the limit), distinct counts exact below the limit and within the HyperLogLog's error above it,
and every series rebuilt from its stored form continuing exactly as the original."""

from __future__ import annotations

import math

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamalert.rules.condition import Condition
from streamalert.rules.kinds import HLL_ERROR, QUANTILE_ALPHA, DistinctSeries, QuantileSeries, RatioSeries
from streamalert.rules.kinds_past import ChangeSeries, NewValueSeries

WINDOW = 1_000
_samples = st.one_of(
    st.integers(-(10**6), 10**6),
    st.floats(min_value=1e-6, max_value=1e9),
    st.floats(min_value=-1e9, max_value=-1e-6),
    st.just(0),
)
# (time offset step, sample): times ascend, several samples may share a millisecond.
_timed = st.lists(st.tuples(st.integers(0, 40), _samples), min_size=1, max_size=300)


def nearest_rank(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[max(1, math.ceil(q * len(ordered))) - 1]


@settings(max_examples=150, deadline=None, derandomize=True)
@given(timed=_timed, q=st.sampled_from([0.01, 0.5, 0.9, 0.95, 0.99, 1.0]), limit=st.integers(0, 120))
def test_quantile_within_alpha_of_the_exact_one_and_exact_below_the_limit(
    timed: list[tuple[int, float]], q: float, limit: int
) -> None:
    """Beyond `limit` samples in the window new samples are rounded: every quantile stays within alpha
    (relative) of the exact nearest-rank one over the window, and equals it while nothing was rounded."""
    series = QuantileSeries()
    now, seen = 0, []
    for step, sample in timed:
        now += step
        series.observe(now, sample, exact_limit=limit)
        seen.append((now, sample))
        series.evict(now, WINDOW)
        window = [x for t, x in seen if t > now - WINDOW]
        exact, got = nearest_rank(window, q), series.quantile(q)
        if series.exact():
            assert got == exact
        else:
            assert abs(got - exact) <= QUANTILE_ALPHA * abs(exact) * (1 + 1e-9)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(timed=_timed, cut=st.integers(0, 300), limit=st.integers(0, 120))
def test_quantile_series_rebuilt_from_its_dump_continues_identically(
    timed: list[tuple[int, float]], cut: int, limit: int
) -> None:
    """dump -> JSON -> load at any point, then the same samples: the same quantiles and the same dump."""
    one, now = QuantileSeries(), 0
    for k, (step, sample) in enumerate(timed):
        if k == cut:
            one = QuantileSeries.load(orjson.loads(orjson.dumps(one.dump())))
        now += step
        one.observe(now, sample, exact_limit=limit)
        one.evict(now, WINDOW)
    two, now = QuantileSeries(), 0
    for step, sample in timed:
        now += step
        two.observe(now, sample, exact_limit=limit)
        two.evict(now, WINDOW)
    assert one.dump() == two.dump()
    assert [one.quantile(q) for q in (0.5, 0.99)] == [two.quantile(q) for q in (0.5, 0.99)]


@settings(max_examples=40, deadline=None, derandomize=True)
@given(n=st.integers(1, 6_000), seed=st.integers(0, 10**9))
def test_distinct_beyond_the_limit_is_within_four_standard_errors(n: int, seed: int) -> None:
    """n distinct values with a limit of 100: exact up to 100, then within 4 x 1.6 % of n."""
    series = DistinctSeries()
    for k in range(n):
        series.observe(k, f"{seed}:{k}", exact_limit=100)
    got = series.count()
    if n <= 100:
        assert series.exact()
        assert got == n
    else:
        assert not series.exact()
        assert abs(got - n) <= 4 * HLL_ERROR * n


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    timed=st.lists(st.tuples(st.integers(0, 30), st.integers(0, 400)), min_size=1, max_size=400),
    limit=st.integers(0, 50),
)
def test_sliding_distinct_equals_a_fresh_count_of_the_window(timed: list[tuple[int, int]], limit: int) -> None:
    """After every eviction the sliding series gives what a new series fed only the values whose last sighting
    is in the window gives: exactly their number below the limit, the same HyperLogLog estimate above it."""
    series, now, last = DistinctSeries(), 0, {}
    for step, value in timed:
        now += step
        series.observe(now, str(value), exact_limit=limit)
        last[str(value)] = now
        series.evict(now, WINDOW)
        window = [v for v, t in sorted(last.items(), key=lambda kv: kv[1]) if t > now - WINDOW]
        if series.exact():
            assert series.count() == len(window)
            continue
        fresh = DistinctSeries()
        fresh.observe(0, "", exact_limit=-1)  # straight to the HyperLogLog...
        fresh.hll = {}  # ...emptied, then fed the window's values
        for kept in window:
            fresh.observe(1, kept)
        assert series.count() == fresh.count()


@settings(max_examples=60, deadline=None, derandomize=True)
@given(timed=st.lists(st.tuples(st.integers(0, 300), st.booleans()), min_size=1, max_size=200))
def test_ratio_is_the_exact_share_of_the_window(timed: list[tuple[int, bool]]) -> None:
    """hits / base over (now - w, now], whatever the spacing; the stored form rebuilds it."""
    series, now, seen = RatioSeries(), 0, []
    for step, hit in timed:
        now += step
        series.observe(now, hit)
        seen.append((now, hit))
        series.evict(now, WINDOW)
        window = [h for t, h in seen if t > now - WINDOW]
        assert (series.base, series.hits) == (len(window), sum(window))
        again = RatioSeries.load(orjson.loads(orjson.dumps(series.dump())))
        assert (again.base, again.hits, list(again.entries)) == (series.base, series.hits, list(series.entries))


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    gaps=st.lists(st.integers(0, 700), min_size=1, max_size=150),
    offset=st.integers(1, 3_000),
    cut=st.integers(0, 150),
)
def test_change_counts_both_windows_exactly_and_survive_a_dump(gaps: list[int], offset: int, cut: int) -> None:
    """At every event time the window's count and the count `offset` earlier equal a brute-force count, also
    after the series was rebuilt from its stored form part way."""
    series, now, seen = ChangeSeries(offset, 1), 0, []
    for k, gap in enumerate(gaps):
        if k == cut:
            series = ChangeSeries.load(orjson.loads(orjson.dumps(series.dump())), offset, 1)
        now += gap
        series.observe(now)
        seen.append(now)
        series.evict(now, WINDOW)
        current = sum(now - WINDOW < t <= now for t in seen)
        past = sum(now - offset - WINDOW < t <= now - offset for t in seen)
        assert (series.current, series.base) == (current, past)


@settings(max_examples=80, deadline=None, derandomize=True)
@given(
    timed=st.lists(st.tuples(st.integers(0, 400), st.integers(0, 12)), min_size=1, max_size=150),
    lookback=st.integers(1, 3_000),
    cut=st.integers(0, 150),
)
def test_new_values_are_those_unseen_for_the_lookback(timed: list[tuple[int, int]], lookback: int, cut: int) -> None:
    """The first sightings in the window are exactly the sightings with no earlier one in the lookback before
    them (brute force), also after the series was rebuilt from its stored form part way."""
    series, now = NewValueSeries(lookback), 0
    seen: list[tuple[int, int, bool]] = []
    for k, (gap, value) in enumerate(timed):
        if k == cut:
            series = NewValueSeries.load(orjson.loads(orjson.dumps(series.dump())), lookback)
        now += gap
        series.observe(now, str(value))
        new = not any(v == value and now - lookback < t for t, v, _ in seen)
        seen.append((now, value, new))
        series.evict(now, WINDOW)
        expected = [(t, str(v)) for t, v, fresh in seen if fresh and t > now - WINDOW]
        assert list(series.fresh) == expected


@settings(max_examples=200, deadline=None, derandomize=True)
@given(
    timed=_timed,
    q=st.sampled_from([0.01, 0.5, 0.9, 0.95, 0.99, 0.999, 1.0]),
    op=st.sampled_from([">", ">=", "<", "<=", "=="]),
    pick=st.integers(0, 10**6),
    limit=st.integers(0, 120),
    reload_at=st.integers(0, 300),
)
def test_quantile_verdict_without_the_quantile_equals_the_quantile_compared(
    timed: list[tuple[int, float]], q: float, op: str, pick: int, limit: int, reload_at: int
) -> None:
    """holds() (counts below and at the threshold against the rank, what the engine evaluates per event)
    agrees with comparing the quantile itself after every sample and eviction, rounded samples and a series
    rebuilt from its stored form included; the threshold is often one of the samples."""
    threshold = float(timed[pick % len(timed)][1]) if pick % 3 else pick / 7 - 1000
    condition = Condition("quantile", "x", op, threshold, f"quantile({q}, x) {op} {threshold}", quantile=q)
    series, now = QuantileSeries(threshold), 0
    for k, (step, sample) in enumerate(timed):
        now += step
        series.evict(now, WINDOW)
        series.observe(now, sample, limit)
        if k == reload_at:
            series = QuantileSeries.load(orjson.loads(orjson.dumps(series.dump())), threshold)
        value, holds = series.measure(condition)
        assert series.holds(condition) == holds, (value, series.below, series.equal, series.n)


def _instants(
    series: QuantileSeries, times: list[int], samples: list[float], condition: Condition, due: int | None, limit: int
) -> tuple[QuantileSeries, int, int | None]:
    """What the engine's per-instant path does to an inactive series, up to the first instant after which the
    condition holds or the window is empty: observe the instant's samples, evict, decide, re-arm the timer."""
    k = 0
    while k < len(times):
        now, j = times[k], k + 1
        if due is not None and due < now:
            now, j = due, k
        else:
            while j < len(times) and times[j] == now:
                j += 1
        trial = QuantileSeries.load(orjson.loads(orjson.dumps(series.dump())), series.threshold)
        for sample in samples[k:j]:
            trial.observe(now, sample, limit)
        trial.evict(now, WINDOW)
        if trial.empty() or trial.holds(condition):
            break
        series, k = trial, j
        due = None if due == now else due
        expiry = series.next_expiry(WINDOW)
        assert expiry is not None
        due = expiry if due is None or expiry < due else due
    return series, k, due


@settings(max_examples=150, deadline=None, derandomize=True)
@given(
    timed=st.lists(
        st.tuples(st.sampled_from([0, 0, 1, 3, 40, 200, 999, 1000, 1001]), st.sampled_from([0, 1, 2, 2.5, 3])),
        min_size=1,
        max_size=150,
    ),
    q=st.sampled_from([0.25, 0.5, 0.9, 1.0]),
    op=st.sampled_from([">", ">=", "<", "<=", "=="]),
    threshold=st.sampled_from([0, 1, 2, 2.5, 3]),
    limit=st.integers(0, 30),
    parts=st.lists(st.integers(0, 150), max_size=10),
    due=st.sampled_from([None, 0, 500, 5000]),
)
def test_quantile_run_takes_what_its_instants_one_by_one_would(
    timed: list[tuple[int, float]], q: float, op: str, threshold: float, limit: int, parts: list[int], due: int | None
) -> None:
    """QuantileSeries.run (the engine's bulk step for an inactive quantile series) stops at the same instant,
    arms the same timer and leaves the same window as observe / evict / holds instant by instant, over runs
    cut anywhere (rounded samples included); its stored form, in chunks, is the instant-by-instant one cut
    into pieces, and a series loaded from it stores the same bytes."""
    _compare_runs(timed, q, op, threshold, limit, parts, due)


def _compare_runs(
    timed: list[tuple[int, float]], q: float, op: str, threshold: float, limit: int, parts: list[int], due: int | None
) -> None:
    """run() over `timed` (steps, samples) cut at `parts`, against _instants, as the tests above describe."""
    condition = Condition("quantile", "x", op, threshold, f"quantile({q}, x) {op} {threshold}", quantile=q)
    times, now = [], 0
    for step, _ in timed:
        now += step
        times.append(now)
    samples = [sample for _, sample in timed]
    fast, slow = QuantileSeries(threshold, chunk_ms=50), QuantileSeries(threshold)
    fast_due, slow_due, start = due, due, 0
    for cut in [*sorted(parts), len(times)]:
        if cut <= start:
            continue
        taken, fast_due, _ = fast.run(times[start:cut], samples[start:cut], WINDOW, condition, fast_due, limit)
        slow, expected, slow_due = _instants(slow, times[start:cut], samples[start:cut], condition, slow_due, limit)
        assert (taken, fast_due) == (expected, slow_due)
        assert (fast.n, fast.below, fast.equal, fast.approx) == (slow.n, slow.below, slow.equal, slow.approx)
        assert fast.tally() == slow.tally()
        stored = orjson.dumps(fast.dump())
        flat = orjson.loads(stored)
        if flat and type(flat[0]) is list:
            flat = [item for chunk in flat for item in chunk]
        assert flat == orjson.loads(orjson.dumps(slow.dump()))
        assert orjson.dumps(QuantileSeries.load(orjson.loads(stored), threshold, 50).dump()) == stored
        assert orjson.dumps(QuantileSeries.load(slow.dump(), threshold, 50).dump()) == stored  # whatever came before
        if taken < cut - start:
            break
        start = cut


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    timed=st.lists(
        st.tuples(st.sampled_from([0, 1, 2, 3, 5, 8, 13]), st.sampled_from([0, 1, 1, 1, 2, 2, 2.5, 3, 3, 7])),
        min_size=300,
        max_size=700,
    ),
    q=st.sampled_from([0.25, 0.5, 0.9, 0.95, 1.0]),
    op=st.sampled_from([">", ">=", "<", "<=", "=="]),
    threshold=st.sampled_from([0, 2, 2.5, 3, 7]),
    limit=st.integers(0, 400),
    parts=st.lists(st.integers(0, 700), max_size=4),
    due=st.sampled_from([None, 0, 500]),
)
def test_quantile_run_in_spans_takes_what_its_instants_one_by_one_would(
    timed: list[tuple[int, float]], q: float, op: str, threshold: float, limit: int, parts: list[int], due: int | None
) -> None:
    """The same over dense windows (about 200 milliseconds of entries at once, with ties), where run()
    takes many instants in one step while the counts are far from the condition (_span): the step ends at
    the same state, timer and stored form, through rounding limits and conditions of every operator."""
    _compare_runs(timed, q, op, threshold, limit, parts, due)


def test_a_quantile_span_takes_the_instants_far_from_the_condition() -> None:
    """run() over a steady stream far below its threshold takes its events in steps of many instants
    (_span), and stops at the same instant as one instant at a time once a burst of slow samples comes."""
    times = list(range(0, 6000, 5))
    samples: list[float] = [10.0 if k % 7 else 20.0 for k in range(len(times))]
    samples[1100:] = [900.0] * (len(times) - 1100)  # p90 > 100 once a tenth of the window is this slow
    series = QuantileSeries(100, chunk_ms=50)
    series.run(times[:300], samples[:300], WINDOW, _P90, None)
    slack = series.below + series.equal - math.ceil(0.9 * series.n)  # samples at or below 100, less the rank
    assert slack >= 8
    step = series._span(times, samples, 300, slack, WINDOW, series.n, 10_000)
    assert step is not None
    assert step[0] == 300 + slack // 3  # a third of the slack in new samples: as many leave meanwhile
    _compare_runs([(5 if k else 0, sample) for k, sample in enumerate(samples)], 0.9, ">", 100, 10_000, [300], None)


_P90 = Condition("quantile", "x", ">", 100, "quantile(0.9, x) > 100", quantile=0.9)


def _steady(count: int, step: int, sample: float) -> list[tuple[int, float]]:
    return [(step, sample)] * count


_LATE_FEW = [(89, 10.0), (50, 10.0), (49, 10.0), *_steady(20, 40, 10.0)]


def _tied(count: int, step: int, sample: float, ties: int = 3) -> list[tuple[int, float]]:
    return [(step if k % ties == 0 else 0, sample) for k in range(count)]


@pytest.mark.parametrize(
    ("name", "timed", "limit", "parts"),
    [
        # Entries leaving faster than new ones come: 200 fast samples leave while three arrive, and the p90
        # rises above 100 in between (the leaving samples count against the slack too).
        (
            "leaving",
            [(0, 10.0), *_steady(199, 1, 10.0), (700, 900.0), *_steady(11, 1, 900.0), *_LATE_FEW],
            10_000,
            [],
        ),
        *[
            # Around the rounding limit: a step whose samples would be rounded in part is not taken; in a
            # steady window and in one draining (samples leave faster than new ones come).
            (
                f"limit {limit}",
                [(0, 10.0), *_steady(399, 5, 10.0), *_steady(60, 5, 13.0), *_steady(60, 5, 900.0)],
                limit,
                [],
            )
            for limit in range(195, 215, 2)
        ],
        *[
            (f"draining, limit {limit}", [(0, 10.0), *_steady(499, 2, 10.0), *_steady(60, 20, 10.0)], limit, [])
            for limit in (*range(110, 420, 30), 418, 440, 470, 500)
        ],
        # A run cut inside a millisecond of three events: the rest of it is one instant with the first part.
        ("cut inside a millisecond", [(0, 10.0), *_tied(599, 3, 10.0), *_tied(90, 3, 900.0)], 10_000, [301, 452]),
        *[
            # Three events a millisecond, a burst of slow samples starting anywhere in one: steps end at whole
            # instants only.
            (f"ties, burst at {at}", [(0, 10.0), *_tied(at - 1, 3, 10.0), *_tied(600 - at, 3, 900.0)], 10_000, [])
            for at in range(400, 430)
        ],
    ],
)
def test_quantile_run_in_spans_at_their_edges(
    name: str, timed: list[tuple[int, float]], limit: int, parts: list[int]
) -> None:
    """_span's bounds, each where the instants one by one would differ: entries leaving during the step,
    samples rounded in part, a run that starts inside a millisecond, instants of many events."""
    _compare_runs(timed, 0.9, ">", 100, limit, parts, None)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from([0, 7, 30, 60, 400]), st.integers(0, 5), st.booleans()), min_size=40, max_size=200
    )
)
def test_quantile_stored_in_chunks_depends_on_the_window_only(steps: list[tuple[int, int, bool]]) -> None:
    """A series stored now and then (its chunks' text kept between checkpoints) stores the same bytes as one
    loaded from the window's flat form; the chunks, concatenated, are that flat form."""
    series, flat, now = QuantileSeries(2, chunk_ms=50), QuantileSeries(2), 0
    for step, sample, store in steps:
        now += step
        for one in (series, flat):
            one.observe(now, sample)
            one.evict(now, WINDOW)
        if store:
            stored = orjson.dumps(series.dump())
            assert stored == orjson.dumps(QuantileSeries.load(flat.dump(), 2, 50).dump())
            chunks = orjson.loads(stored)
            if chunks and type(chunks[0]) is list:
                assert len(chunks) > 1
                chunks = [item for chunk in chunks for item in chunk]
            assert chunks == flat.dump()
