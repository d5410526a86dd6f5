"""Series of the SLO / anomaly kinds: `ratio`, quantiles (`p95(F)`, `quantile(q, F)`) and `distinct(F)`.

Same contract as rules/series.py: windows are half-open, (t - w, t]; events reach a series in time order;
`dump` / `load` give a compact JSON form that rebuilds the series exactly (a restart continues with the same
values). Every series is bounded in memory whatever the event rate:

- RatioSeries: two integer counts per distinct millisecond, so the share is an exact fraction.
- QuantileSeries: the window's samples as a value -> count map (plus per-millisecond maps for eviction).
  Exact while the window holds at most EXACT_QUANTILE_EVENTS samples; samples arriving beyond that are
  rounded to the centre of a logarithmic bucket (the DDSketch mapping) of relative width QUANTILE_ALPHA, so
  at most about 2,500 distinct values per sign over 1e-9..1e12 add to the exact ones. Each sample then is
  within QUANTILE_ALPHA of its own value, so every order statistic (every quantile) is too.
- DistinctSeries: the exact set of values with their last time while it holds at most EXACT_DISTINCT values;
  beyond, a sliding-window HyperLogLog (each register keeps the (time, rank) pairs no newer pair dominates,
  Chabchoub & Hebrail 2010), 2^12 registers: standard error 1.04 / 64 = 1.6 %, exact in event time.

Sketch libraries (ddsketch, datasketches) were not used: neither supports removing a sample, which a
sliding window needs at every eviction, and their serialised forms are opaque blobs. The structures here
are small, deletable, and checkpoint as plain JSON.
"""

from __future__ import annotations

import bisect
import functools
import hashlib
import heapq
import itertools
import math
import operator
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Any

import orjson

from streamalert.alerts.lifecycle import INACTIVE, Phase
from streamalert.rules.condition import OPS, Condition
from streamalert.rules.series import _phase_extra, _phase_from

EXACT_QUANTILE_EVENTS = 10_000
QUANTILE_ALPHA = 0.01
QUANTILE_CHUNKS = 64  # a quantile window is stored in chunks of 1/64 of it (QuantileSeries.dump)
_SPAN_MIN = 8  # QuantileSeries.run: the least slack worth a step of many instants (_span)
EXACT_DISTINCT = 10_000
HLL_BITS = 12
HLL_REGISTERS = 1 << HLL_BITS
HLL_ERROR = 1.04 / math.sqrt(HLL_REGISTERS)  # the standard error of the estimate, 1.6 %

QUANTILE_ACCURACY = f"within {QUANTILE_ALPHA:.0%} (more than {EXACT_QUANTILE_EVENTS} samples in the window)"
DISTINCT_ACCURACY = f"{HLL_ERROR:.1%} standard error (more than {EXACT_DISTINCT} values: HyperLogLog)"

_GAMMA = (1 + QUANTILE_ALPHA) / (1 - QUANTILE_ALPHA)
_LOG_GAMMA = math.log(_GAMMA)


class _KindSeries:
    """What every kind's series shares with the engine: its lifecycle phase, record and timer."""

    __slots__ = ("due", "phase", "record")

    def __init__(self) -> None:
        self.phase: Phase = INACTIVE
        self.record: str | None = None  # the last matching line, when an annotation reads record fields
        self.due: int | None = None  # the engine's next timer for this series


class _WindowSeries(_KindSeries):
    """A kind whose window is one entry per distinct millisecond, [time, ...], ascending: it is empty without
    entries, and its oldest entry leaves the window first."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        super().__init__()
        self.entries: deque[list[Any]] = deque()

    def empty(self) -> bool:
        return not self.entries

    def next_expiry(self, window_ms: int) -> int | None:
        return self.entries[0][0] + window_ms if self.entries else None


def _dump_triples(entries: deque[list[Any]]) -> list[Any]:
    """[time, a, b] entries flattened with each time as the gap after the previous one (the first after 0)."""
    out: list[Any] = []
    last = 0
    for time, a, b in entries:
        out += (time - last, a, b)
        last = time
    return out


def _load_triples(data: list[Any]) -> deque[list[Any]]:
    """The entries `_dump_triples` flattened."""
    entries: deque[list[Any]] = deque()
    last = 0
    for k in range(0, len(data), 3):
        last += data[k]
        entries.append([last, data[k + 1], data[k + 2]])
    return entries


class RatioSeries(_WindowSeries):
    """Per distinct millisecond: [time, base records, those also matching `ratio.where`]."""

    __slots__ = ("base", "hits")

    def __init__(self) -> None:
        super().__init__()
        self.base = 0
        self.hits = 0

    def observe(self, now: int, hit: bool) -> None:
        entries = self.entries
        if not entries or entries[-1][0] != now:
            entries.append([now, 0, 0])
        entries[-1][1] += 1
        entries[-1][2] += hit
        self.base += 1
        self.hits += hit

    def evict(self, now: int, window_ms: int) -> None:
        cutoff, entries = now - window_ms, self.entries
        while entries and entries[0][0] <= cutoff:
            _, base, hits = entries.popleft()
            self.base -= base
            self.hits -= hits

    def measure(self, condition: Condition) -> tuple[float, bool]:
        """The share and whether the condition holds, compared as exact fractions; an empty base never holds."""
        if not self.base:
            return 0.0, False
        share = Fraction(self.hits, self.base)
        test: Callable[[Any, Any], bool] = OPS[condition.op]
        return float(share), test(share, Fraction(str(condition.threshold)))

    def dump(self) -> list[Any]:
        """[gap, base, hits] per millisecond flattened (gaps after the first time), then the phase map."""
        return _with_phase(_dump_triples(self.entries), self)

    @classmethod
    def load(cls, data: list[Any]) -> RatioSeries:
        series = cls()
        series.entries = _load_triples(_load_phase(data, series))
        series.base = sum(entry[1] for entry in series.entries)
        series.hits = sum(entry[2] for entry in series.entries)
        return series


_TIME = operator.itemgetter(0)  # of an entry: its time


@functools.lru_cache(maxsize=1 << 14)
def quantize(value: float) -> float:
    """The centre of value's logarithmic bucket: within QUANTILE_ALPHA of value (relative), sign kept."""
    if value == 0:
        return 0.0
    size = abs(value)
    index = math.ceil(math.log(size) / _LOG_GAMMA)
    centre = 2 * _GAMMA**index / (_GAMMA + 1)
    return math.copysign(centre, value)


class QuantileSeries(_WindowSeries):
    """The window's samples as a sorted set of distinct values with counts; see the module docstring."""

    __slots__ = (
        "_newest",
        "_sizes",
        "_stored",
        "_stored_upto",
        "_whole_first",
        "approx",
        "below",
        "chunk_ms",
        "counts",
        "equal",
        "n",
        "stale",
        "threshold",
        "values",
        "written",
    )

    def __init__(self, threshold: float = 0.0, chunk_ms: int = 0) -> None:
        # entries: [time, {value: count}, rounded samples, samples, of them below T, at T] per distinct ms;
        # the last three let an instant's verdict be known before its eviction is applied (run()).
        super().__init__()
        # Parallel lists: the distinct values ascending and how many samples have each. Finding a rank is
        # then a C-speed running sum and a bisection (linear in the distinct values): done only for a value
        # that is shown (a transition, the report), not for every evaluation; see holds(). run() (the bulk
        # path, an inactive series whose value nobody reads) leaves them stale, to be rebuilt from the
        # entries when a value is next needed (_sort_values); the entries and counts are always current.
        self.values: list[float] = []
        self.counts: list[int] = []
        self.stale = False
        self.n = 0
        self.approx = 0  # samples in the window that were rounded (0: the quantile is exact)
        # The condition's threshold T and how many samples lie below it and at it: whether the quantile
        # compares with T is then a comparison of counts with the rank (holds()).
        self.threshold = threshold
        self.below = 0
        self.equal = 0
        # The stored form in time chunks of chunk_ms (0: one flat list; see dump()): the serialised chunks
        # already final (all but the newest), in chunk order, how many entries each text holds, and the last
        # chunk number among them.
        self.chunk_ms = chunk_ms
        self._stored: dict[int, bytes] = {}
        self._sizes: dict[int, int] = {}
        self._stored_upto = -(2**62)
        # The oldest part whose text is known to start with its first entry's time (not a gap): see dump().
        self._whole_first: int | None = None
        # The final chunks the engine has written to the store as parts of their own (dump(apart=True)).
        self.written: set[int] = set()
        # The newest chunk's flat form as far as it is final (all its entries but the last, which may still
        # take samples): (chunk, the time before its first entry, entries flattened, their flat form).
        self._newest: tuple[int, int, int, list[Any]] | None = None

    def observe(self, now: int, sample: float, exact_limit: int = EXACT_QUANTILE_EVENTS) -> None:
        rounded = self.n >= exact_limit
        if rounded:
            sample = quantize(sample)
        self._put(now, sample, rounded)

    def _put(self, now: int, sample: float, rounded: bool) -> None:
        """Add one sample (already rounded when `rounded`) at `now`, the newest time held or later."""
        entries = self.entries
        if not entries or entries[-1][0] != now:
            entries.append([now, {}, 0, 0, 0, 0])
        entry = entries[-1]
        samples = entry[1]
        samples[sample] = samples.get(sample, 0) + 1
        entry[2] += rounded
        entry[3] += 1
        self.approx += rounded
        self.n += 1
        threshold = self.threshold
        if sample <= threshold:
            if sample < threshold:
                entry[4] += 1
                self.below += 1
            else:
                entry[5] += 1
                self.equal += 1
        self._count_value(sample, 1)

    def _count_value(self, value: float, count: int) -> None:
        """`count` more samples of `value` in the sorted values and their counts."""
        if self.stale:
            return  # rebuilt from the entries when read
        values = self.values
        k = bisect.bisect_left(values, value)
        if k < len(values) and values[k] == value:
            self.counts[k] += count
        else:
            values.insert(k, value)
            self.counts.insert(k, count)

    def _add(self, value: float, count: int) -> None:
        self._count_value(value, count)
        self.n += count
        if value <= self.threshold:
            if value < self.threshold:
                self.below += count
            else:
                self.equal += count

    def evict(self, now: int, window_ms: int) -> None:
        cutoff, entries, counts, values = now - window_ms, self.entries, self.counts, self.values
        while entries and entries[0][0] <= cutoff:
            _, samples, rounded, n, below, equal = entries.popleft()
            self.approx -= rounded
            self.n -= n
            self.below -= below
            self.equal -= equal
            if self.stale:
                continue  # rebuilt from the entries when read
            for value, count in samples.items():
                k = bisect.bisect_left(values, value)
                counts[k] -= count
                if not counts[k]:
                    del counts[k], values[k]

    def run(  # noqa: PLR0915 (one flat step per instant: the bulk path, measured in bench/)
        self,
        times: Sequence[int],
        samples: Sequence[float],
        window_ms: int,
        condition: Condition,
        due: int | None,
        exact_limit: int = EXACT_QUANTILE_EVENTS,
    ) -> tuple[int, int | None, bool]:
        """The engine's instants for this series over a run of its events, as far as they decide nothing.

        `times` ascending, `samples` in the order the engine observes them (by line within a millisecond),
        `due` the series' timer. The series is inactive; each instant is what the engine does at it: the
        samples of that millisecond observed, then (also at a timer without events: `due`, then the
        expiry of the oldest entry each time) the window evicted, the condition decided and the timer
        re-armed. The run stops before the first instant after which the condition holds or the window
        is empty (the engine's evaluation there may change the phase or end the series), with the series
        as it was after the instant before. Returns (events taken, the series' timer then, whether the
        series changed). One step per instant with counts only: no quantile, no heap operation; and where
        the counts are far enough from the condition, many instants in one step (_span).
        """
        num, den = _fraction(condition.quantile if condition.quantile is not None else 0.5).as_integer_ratio()
        op, threshold, entries = condition.op, self.threshold, self.entries
        n, below, equal, approx = self.n, self.below, self.equal, self.approx
        count, k, changed, single_until = len(times), 0, False, 0
        while k < count:
            now = times[k]
            j = k + 1
            if k >= single_until and op != "==" and entries and due == entries[0][0] + window_ms:
                # How many samples may come or go before an instant could decide the condition: each moves
                # the counts below and at T by at most one and the rank ceil(q * n) by at most one.
                slack = _slack(op, -(-num * n // den) or 1, below, below + equal)
                if slack >= _SPAN_MIN:
                    step = self._span(times, samples, k, slack, window_ms, n, exact_limit)
                    if step is None:
                        single_until = k + _SPAN_MIN
                    else:
                        j, more, low, same, rounded = step
                        n, below, equal, approx, changed, k = (
                            n + more,
                            below + low,
                            equal + same,
                            approx + rounded,
                            True,
                            j,
                        )
                        due = entries[0][0] + window_ms
                        continue
            if due is not None and due < now:  # the series' timer alone at its instant: entries leave
                gone, after, low, same = _leaving(entries, due - window_ms, n, below, equal)
                if not after or _verdict(op, -(-num * after // den) or 1, low, low + same):
                    break
                for _ in range(gone):
                    approx -= entries.popleft()[2]
                n, below, equal, changed = after, low, same, True
                due = entries[0][0] + window_ms  # popped, then re-armed at the next expiry
                continue
            if j < count and times[j] == now:
                while j < count and times[j] == now:
                    j += 1
                taken = samples[k:j]
            elif not entries or entries[-1][0] != now:  # the common instant: one sample in a new millisecond
                sample = samples[k]
                rounded = n >= exact_limit
                if rounded:
                    sample = quantize(sample)
                under, at = (1, 0) if sample < threshold else (0, 1) if sample == threshold else (0, 0)
                gone, after, low, same = _leaving(entries, now - window_ms, n + 1, below + under, equal + at)
                if _verdict(op, -(-num * after // den) or 1, low, low + same):
                    break
                entries.append([now, {sample: 1}, 1 if rounded else 0, 1, under, at])
                approx += rounded
                for _ in range(gone):
                    approx -= entries.popleft()[2]
                n, below, equal, changed, k = after, low, same, True, j
                due = _rearmed(due, now, entries[0][0] + window_ms)
                continue
            else:
                taken = samples[k:j]
            # The counts after the instant: its samples in (rounded as observe() would), then the entries
            # at or before the cutoff out.
            after, low, same = n, below, equal
            rounds: list[tuple[float, bool]] = []
            for raw in taken:
                rounded = after >= exact_limit
                sample = quantize(raw) if rounded else raw
                rounds.append((sample, rounded))
                after += 1
                if sample <= threshold:
                    if sample < threshold:
                        low += 1
                    else:
                        same += 1
            gone, after, low, same = _leaving(entries, now - window_ms, after, low, same)
            if not after or _verdict(op, -(-num * after // den) or 1, low, low + same):
                break
            # Taken: the same changes as observe() of each sample, then evict(now).
            if not entries or entries[-1][0] != now:
                entries.append([now, {}, 0, 0, 0, 0])
            entry = entries[-1]
            for sample, rounded in rounds:
                entry[1][sample] = entry[1].get(sample, 0) + 1
                entry[2] += rounded
                entry[3] += 1
                approx += rounded
                if sample <= threshold:
                    entry[4 if sample < threshold else 5] += 1
            for _ in range(gone):
                approx -= entries.popleft()[2]
            n, below, equal, changed, k = after, low, same, True, j
            due = _rearmed(due, now, entries[0][0] + window_ms)
        self.n, self.below, self.equal, self.approx = n, below, equal, approx
        if changed:
            self.stale = True  # the sorted values: see __init__
        return k, due, changed

    def tally(self) -> tuple[list[float], list[int]]:
        """The window's distinct values ascending and how many samples have each."""
        self._sort_values()
        return self.values, self.counts

    def _span(
        self, times: Sequence[int], samples: Sequence[float], k: int, slack: int, window_ms: int, n: int, limit: int
    ) -> tuple[int, int, int, int, int] | None:
        """run()'s instants from event k on, taken in one step while no instant can decide anything: whole
        instants after the newest entry whose samples, with the samples of the entries leaving meanwhile,
        are at most `slack` (so no instant's counts reach the condition), and are all rounded or none (as
        observe() would round them). The slack of every operator is below the samples in the window, n, so
        some stay in it (it is never empty) and the step ends within the window of its first event (else
        all n would leave): none of its own entries leaves. The series' timer is its oldest entry's expiry
        before and after (each timer in between is an expiry). Returns (the next event, the changes of n,
        below, equal and approx), or None when no such step exists."""
        entries, count = self.entries, len(times)
        if times[k] <= entries[-1][0]:
            return None  # the rest of the newest entry's instant (a run cut inside a millisecond)
        j = min(count, k + slack // 3)
        while True:
            while k < j < count and times[j] == times[j - 1]:  # whole instants only
                j -= 1
            if j <= k:
                return None
            gone, left, _, _ = _leaving(entries, times[j - 1] - window_ms, 0, 0, 0)
            leaving = -left  # the samples of the entries leaving
            if j - k + leaving <= slack:
                break
            j = k + (j - k) // 2
        rounded = n - leaving >= limit
        if not rounded and n + j - k > limit:
            return None  # some of them rounded, not all
        threshold, taken = self.threshold, 1 if rounded else 0
        fresh: list[list[Any]] = []
        last, low, same = -1, 0, 0
        for time, raw in zip(itertools.islice(times, k, j), itertools.islice(samples, k, j), strict=True):
            sample = quantize(raw) if rounded else raw
            under, at = (1, 0) if sample < threshold else (0, 1) if sample == threshold else (0, 0)
            low, same = low + under, same + at
            if time != last:
                fresh.append([time, {sample: 1}, taken, 1, under, at])
                last = time
            else:
                entry = fresh[-1]
                entry[1][sample] = entry[1].get(sample, 0) + 1
                entry[2] += taken
                entry[3] += 1
                entry[4] += under
                entry[5] += at
        rounds = taken * (j - k)
        for _ in range(gone):
            entry = entries.popleft()
            low, same, rounds = low - entry[4], same - entry[5], rounds - entry[2]
        entries.extend(fresh)
        return j, j - k - leaving, low, same, rounds

    def _sort_values(self) -> None:
        """The sorted values and counts again from the entries, after run() left them stale."""
        if not self.stale:
            return
        tally: dict[float, int] = {}
        for entry in self.entries:
            for value, many in entry[1].items():
                tally[value] = tally.get(value, 0) + many
        self.values = sorted(tally)
        self.counts = list(map(tally.__getitem__, self.values))
        self.stale = False

    def quantile(self, q: float) -> float:
        """The nearest-rank quantile: the smallest sample with at least ceil(q * n) samples at or below it."""
        n = self.n
        if not n:
            return 0.0
        self._sort_values()
        rank = _rank(q, n)
        counts = self.counts
        if 2 * rank > n:
            # Near the top (p90, p99): count down from the largest value, over a growing slice, so the cost
            # follows the values above the rank, not all of them. `above[j]` is the sum of the last j + 1
            # counts; the answer is the value below the last `m` of them whose sum stays within `tail`.
            tail, size, width = n - rank, len(counts), 16
            while width < size:
                above = list(itertools.accumulate(counts[-1 : -width - 1 : -1]))
                if above[-1] > tail:
                    return self.values[size - 1 - bisect.bisect_right(above, tail)]
                width *= 4
        return self.values[bisect.bisect_left(list(itertools.accumulate(counts)), rank)]

    def measure(self, condition: Condition) -> tuple[float, bool]:
        if not self.n:
            return 0.0, False
        assert condition.quantile is not None
        value = self.quantile(condition.quantile)
        return value, condition.holds(value)

    def holds(self, condition: Condition) -> bool:
        """measure()'s verdict without the quantile (the engine's evaluation of every event). The nearest-rank
        quantile is the smallest sample with at least `rank` samples at or below it, so it is above T exactly
        when fewer than `rank` samples are at or below T, and so on for each operator. Requires
        condition.threshold == self.threshold (the series was made for this condition)."""
        n = self.n
        if not n:
            return False
        assert condition.quantile is not None
        return _verdict(condition.op, _rank(condition.quantile, n), self.below, self.below + self.equal)

    def exact(self) -> bool:
        return not self.approx

    def accuracy(self) -> str | None:
        """None while exact, else the stated error (the `accuracy` annotation of a transition)."""
        return None if not self.approx else QUANTILE_ACCURACY

    def dump(self, apart: bool = False) -> list[Any]:
        """[gap, [value, count, ...], rounded] per millisecond flattened (gaps after the previous time, the
        first after 0), then the phase map. A window across more than one chunk of `chunk_ms` (time //
        chunk_ms) is stored as one such list per chunk that holds entries: concatenated, they are the flat
        list. Entries arrive in the newest chunk and leave from the oldest, so every other chunk is final
        once a newer one holds entries: its text is made once and kept (`parts`), with how many entries it
        holds; the oldest chunk's is cut by the entries that left it since.

        `apart`: the final chunks are left out, to be stored apart, each once (see the engine's checkpoint):
        the form starts with {"p": [their chunk numbers], "c": entries gone from the first, "t": the time of
        its first entry left} in their place, then the newest chunk's list (with_parts() puts them back
        together). A checkpoint then serialises the newest chunk alone."""
        entries, span = self.entries, self.chunk_ms
        stored, sizes = self._stored, self._sizes
        if not entries or not span or entries[0][0] // span == entries[-1][0] // span:
            stored.clear()
            sizes.clear()
            self._stored_upto = -(2**62)
            self._whole_first = None
            return _with_phase(_flat(entries, 0)[0], self)
        first, last = entries[0][0] // span, entries[-1][0] // span
        while stored and (chunk := next(iter(stored))) < first:  # left the window
            del stored[chunk], sizes[chunk]
        left = bisect.bisect_left(entries, (first + 1) * span, key=_TIME)  # entries in the oldest chunk
        if first not in stored:  # (a form stored before the oldest chunk was a part of its own)
            self._stored = stored = {first: orjson.dumps(_flat(itertools.islice(entries, left), 0)[0]), **stored}
            self._sizes = sizes = {first: left, **sizes}
            self._stored_upto = max(self._stored_upto, first)
            self._whole_first = first
        elif self._whole_first != first:
            self._make_whole(first, left)
        upto = self._stored_upto
        newer: list[list[Any]] = []  # the entries of chunks after `upto`, newest first
        before = 0  # the time before newer[0]
        for entry in reversed(entries):
            if entry[0] // span <= upto:
                before = entry[0]
                break
            newer.append(entry)
        newer.reverse()
        start = 0
        for k in range(1, len(newer) + 1):
            if k == len(newer) or newer[k][0] // span != newer[start][0] // span:
                chunk = newer[start][0] // span
                if chunk == last:
                    break
                flat, before = _flat(newer[start:k], before)
                stored[chunk], sizes[chunk] = orjson.dumps(flat), k - start
                self._stored_upto = chunk
                start = k
        newest = self._newest_flat(last, before, newer[start:])
        gone = sizes[first] - left
        if apart:
            return _with_phase([{"p": list(stored), "c": gone, "t": entries[0][0]}, newest], self)
        oldest = orjson.loads(stored[first])[3 * gone :]
        oldest[0] = entries[0][0]  # the first gap: after 0
        return _with_phase([oldest, *map(orjson.Fragment, itertools.islice(stored.values(), 1, None)), newest], self)

    def _make_whole(self, first: int, left: int) -> None:
        """The oldest part's text made to start with its first entry's time. A part written while an older
        chunk still held entries starts with the gap after that chunk's last entry; one written as the oldest,
        with the time itself. Which one a part got depends on when checkpoints fell, and a restart must store
        what an uninterrupted run stores: so once a part is the oldest it is made to start with the time (and
        written again; a restore reads the oldest part's first time from the form's "t" either way). Done
        once per chunk that becomes the oldest: its text is parsed once, when it is at most 1/64 of the window."""
        flat = orjson.loads(self._stored[first])
        gone = self._sizes[first] - left  # entries that left it: the time of the first is found from the rest
        start = self.entries[0][0] - sum(flat[3 * j] for j in range(1, gone + 1))
        if flat[0] != start:
            flat[0] = start
            self._stored[first] = orjson.dumps(flat)
            self.written.discard(first)
        self._whole_first = first

    def _newest_flat(self, chunk: int, before: int, entries: list[list[Any]]) -> list[Any]:
        """The flat form of the newest chunk's `entries` (the first gap after `before`): the part flattened at
        an earlier dump, extended by the entries since, from the last one it left out (a checkpoint sees whole
        instants only, so that entry takes no more samples; a dump between two samples of one millisecond,
        which nothing does today, would still be right)."""
        cache = self._newest
        done, flat = 0, []
        if cache is not None and cache[0] == chunk and cache[1] == before and cache[2] < len(entries):
            done, flat = cache[2], cache[3]
        rest = _flat(entries[done:], entries[done - 1][0] if done else before)[0]
        final = len(entries) - 1
        if final > done:
            self._newest = (chunk, before, final, flat + rest[: 3 * (final - done)])
        return flat + rest

    @property
    def parts(self) -> dict[int, bytes]:
        """The final chunks a dump(apart=True) left out, by chunk number: their text (a JSON list), the
        oldest's as it was made (the form says how many of its entries are gone)."""
        return self._stored

    def keep_parts(self, parts: dict[int, bytes], sizes: dict[int, int]) -> None:
        """After load(with_parts(...)): the parts read back are the final chunks' text, already written, and
        `sizes` how many entries each holds (with_parts counted them)."""
        self._stored = dict(sorted(parts.items()))
        self._sizes = {n: sizes[n] for n in self._stored}
        self._stored_upto = max(parts, default=-(2**62))
        self.written = set(parts)

    @classmethod
    def load(cls, data: list[Any], threshold: float = 0.0, chunk_ms: int = 0) -> QuantileSeries:
        series = cls(threshold, chunk_ms)
        data = _load_phase(data, series)
        if data and type(data[0]) is list:  # one list per chunk (see dump)
            data = list(itertools.chain.from_iterable(data))
        last = 0
        for k in range(0, len(data), 3):
            last += data[k]
            flat = data[k + 1]
            samples = {flat[j]: flat[j + 1] for j in range(0, len(flat), 2)}
            entry = [last, samples, data[k + 2], 0, 0, 0]
            for value, count in samples.items():
                entry[3] += count
                if value <= threshold:
                    entry[4 if value < threshold else 5] += count
                series._add(value, count)
            series.entries.append(entry)
            series.approx += data[k + 2]
        return series


def with_parts(data: list[Any], part: Callable[[int], bytes]) -> tuple[list[Any], dict[int, bytes], dict[int, int]]:
    """A quantile series' form from dump(apart=True) made whole again, `part(n)` giving chunk n's stored text;
    and those texts, and how many entries each holds (for QuantileSeries.keep_parts). Any other form is
    returned as it is."""
    if not data or type(data[0]) is not dict or "p" not in data[0]:  # (a phase map alone: no "p", see _phase_extra)
        return data, {}, {}
    marker = data[0]
    parts = {n: part(n) for n in marker["p"]}
    lists = list(map(orjson.loads, parts.values()))
    sizes = {n: len(chunk) // 3 for n, chunk in zip(parts, lists, strict=True)}
    if "c" not in marker:  # 1d130ab's form: the oldest chunk's list in place, not a part
        return [data[1], *lists, *data[2:]], parts, sizes
    oldest = lists[0][3 * marker["c"] :]
    oldest[0] = marker["t"]  # the first gap: after 0
    return [oldest, *lists[1:], *data[1:]], parts, sizes


def _flat(entries: Iterable[list[Any]], before: int) -> tuple[list[Any], int]:
    """QuantileSeries entries as [gap, [value, count, ...], rounded, ...], the first gap after `before`;
    and the last time."""
    out: list[Any] = []
    for entry in entries:
        time = entry[0]
        out += (time - before, list(itertools.chain.from_iterable(entry[1].items())), entry[2])
        before = time
    return out, before


def _leaving(entries: Iterable[list[Any]], cutoff: int, n: int, below: int, equal: int) -> tuple[int, int, int, int]:
    """How many of the oldest entries are at or before `cutoff`, and the counts without their samples."""
    gone = 0
    for entry in entries:
        if entry[0] > cutoff:
            break
        n -= entry[3]
        below -= entry[4]
        equal -= entry[5]
        gone += 1
    return gone, n, below, equal


def _rearmed(due: int | None, now: int, expiry: int) -> int:
    """A quantile series' timer after an instant at `now` (run()): a timer due then was popped; the window's
    oldest entry leaving at `expiry` may come sooner than one still waiting."""
    return expiry if due is None or due == now else min(due, expiry)


def _slack(op: str, rank: int, below: int, at_or_below: int) -> int:
    """How far the counts are from making `_verdict` hold for `op` (>= 0 while it does not): a sample
    arriving or leaving moves each count, and the rank, by at most one (QuantileSeries.run, `_span`)."""
    if op == ">":
        return at_or_below - rank
    if op == ">=":
        return below - rank
    if op == "<":
        return rank - below - 1
    return rank - at_or_below - 1  # <= (== never takes a step: run() asks for another operator)


def _verdict(op: str, rank: int, below: int, at_or_below: int) -> bool:
    """Whether the nearest-rank quantile of rank `rank` compares with T as `op`, given how many samples
    are below T and at or below it (see QuantileSeries.holds)."""
    if op == ">":
        return at_or_below < rank
    if op == ">=":
        return below < rank
    if op == "<":
        return below >= rank
    if op == "<=":
        return at_or_below >= rank
    return below < rank <= at_or_below  # ==


def _rank(q: float, n: int) -> int:
    """The nearest rank of the q-quantile among n samples: max(1, ceil(q * n)), exactly."""
    num, den = _fraction(q).as_integer_ratio()
    return max(1, -(-num * n // den))


@functools.lru_cache(maxsize=64)
def _fraction(q: float) -> Fraction:
    """q as the exact decimal it was written as (0.99 is 99/100, not the nearest double)."""
    return Fraction(str(q))


def _hash64(value: str) -> int:
    """A hash that is the same in every process (Python's hash() of a str is salted per process)."""
    return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")


class DistinctSeries(_KindSeries):
    """Distinct values in the window: exact (value -> last time, oldest first) up to EXACT_DISTINCT values,
    a sliding HyperLogLog beyond; it goes back to exact counting once its window has emptied.

    The HyperLogLog keeps, per register, the (time, rank) pairs no newer pair of higher or equal rank
    follows, so the first pair is the register's maximum over the window. The estimate's sum of 2^-rank is
    kept as an integer scaled by 2^64, updated when a register's first pair changes: exact whatever the order
    of updates, so a series rebuilt from its stored registers gives the same estimate. A heap of the first
    pairs' times finds the next expiry without scanning the registers.
    """

    __slots__ = ("heap", "hll", "last", "seen", "total")

    def __init__(self) -> None:
        super().__init__()
        self.seen: OrderedDict[str, int] | None = OrderedDict()
        self.hll: dict[int, list[int]] | None = None  # register -> [time, rank, time, rank, ...]
        self.total = 0  # sum over registers of 2^(64 - rank), an empty register counting rank 0
        self.heap: list[tuple[int, int]] = []  # (time of a register's first pair, register); stale ones skipped
        self.last = 0  # the newest time observed

    def observe(self, now: int, value: str, exact_limit: int = EXACT_DISTINCT) -> None:
        self.last = now
        seen = self.seen
        if seen is not None:
            seen[value] = now
            seen.move_to_end(value)
            if len(seen) <= exact_limit:
                return
            self.seen, self.hll, self.total, self.heap = None, {}, HLL_REGISTERS << 64, []
            for old, at in seen.items():  # oldest first, so each register's pairs stay in time order
                self._hll_add(at, old)
            return
        self._hll_add(now, value)

    def _hll_add(self, now: int, value: str) -> None:
        assert self.hll is not None
        h = _hash64(value)
        register = h >> (64 - HLL_BITS)
        rest = h & ((1 << (64 - HLL_BITS)) - 1)
        rank = (64 - HLL_BITS) - rest.bit_length() + 1
        pairs = self.hll.get(register)
        if pairs is None:
            pairs = self.hll[register] = []
        first = pairs[1] if pairs else 0
        while pairs and pairs[-1] <= rank:  # an older pair of no higher rank is never the maximum again
            del pairs[-2:]
        pairs += (now, rank)
        if len(pairs) == 2:  # the new pair is the register's maximum now
            self.total += (1 << (64 - rank)) - (1 << (64 - first))
            heapq.heappush(self.heap, (now, register))
            if len(self.heap) > 2 * len(self.hll) + 64:
                self.heap = [(p[0], r) for r, p in self.hll.items()]
                heapq.heapify(self.heap)

    def evict(self, now: int, window_ms: int) -> None:
        cutoff = now - window_ms
        seen = self.seen
        if seen is not None:
            while seen:
                value, at = next(iter(seen.items()))
                if at > cutoff:
                    break
                del seen[value]
            return
        hll, heap = self.hll, self.heap
        assert hll is not None
        if self.last <= cutoff:
            self.seen, self.hll, self.total, self.heap = OrderedDict(), None, 0, []
            return
        while heap and heap[0][0] <= cutoff:
            at, register = heapq.heappop(heap)
            pairs = hll.get(register)
            if not pairs or pairs[0] != at:
                continue  # stale: the register's first pair changed since
            old = pairs[1]
            k = 0
            while k < len(pairs) and pairs[k] <= cutoff:
                k += 2
            del pairs[:k]
            self.total += (1 << (64 - pairs[1] if pairs else 64)) - (1 << (64 - old))
            if pairs:
                heapq.heappush(heap, (pairs[0], register))
            else:
                del hll[register]

    def count(self) -> float:
        if self.seen is not None:
            return len(self.seen)
        assert self.hll is not None
        m = HLL_REGISTERS
        estimate = 0.7213 / (1 + 1.079 / m) * m * m / (self.total / 2.0**64)
        zeros = m - len(self.hll)
        if estimate <= 2.5 * m and zeros:
            estimate = m * math.log(m / zeros)  # linear counting: exacter for small counts
        return float(round(estimate))

    def exact(self) -> bool:
        return self.seen is not None

    def accuracy(self) -> str | None:
        return None if self.seen is not None else DISTINCT_ACCURACY

    def measure(self, condition: Condition) -> tuple[float, bool]:
        value = self.count()
        return value, bool(value) and condition.holds(value)

    def empty(self) -> bool:
        return not self.seen if self.seen is not None else not self.hll

    def next_expiry(self, window_ms: int) -> int | None:
        if self.seen is not None:
            return next(iter(self.seen.values())) + window_ms if self.seen else None
        heap, hll = self.heap, self.hll
        assert hll is not None
        while heap and (heap[0][1] not in hll or hll[heap[0][1]][0] != heap[0][0]):
            heapq.heappop(heap)  # stale entries on top
        return heap[0][0] + window_ms if heap else None

    def dump(self) -> list[Any]:
        """Exact: [value, gap, value, gap, ...] oldest first (gaps after the first time); a sliding HLL:
        [{register: pairs}, last]. Then the phase map."""
        if self.seen is None:
            assert self.hll is not None
            return _with_phase([{str(k): v for k, v in self.hll.items()}, self.last], self)
        out: list[Any] = []
        last = 0
        for value, at in self.seen.items():
            out += (value, at - last)
            last = at
        return _with_phase(out, self)

    @classmethod
    def load(cls, data: list[Any]) -> DistinctSeries:
        series = cls()
        data = _load_phase(data, series)
        if data and type(data[0]) is dict:
            series.seen = None
            series.hll = {int(k): list(v) for k, v in data[0].items()}
            series.last = data[1]
            series.total = (HLL_REGISTERS - len(series.hll)) << 64
            series.total += sum(1 << (64 - pairs[1]) for pairs in series.hll.values())
            series.heap = sorted((pairs[0], register) for register, pairs in series.hll.items())
            return series
        assert series.seen is not None
        last = 0
        for k in range(0, len(data), 2):
            last += data[k + 1]
            series.seen[data[k]] = last
        series.last = last
        return series


def _with_phase(out: list[Any], series: _KindSeries) -> list[Any]:
    extra = _phase_extra(series.phase, series.record)  # the same map as rules/series.py's series
    if extra:
        out.append(extra)
    return out


def _load_phase(data: list[Any], series: _KindSeries) -> list[Any]:
    """The data without its trailing phase map, which is applied to the series."""
    if data and type(data[-1]) is dict:  # a sliding HLL's [registers, last] ends in an int
        series.phase, series.record = _phase_from(data[-1])
        data = data[:-1]
    return data
