"""Series of the kinds that compare with the past: `new(F)` (a value not seen in `lookback`) and
`count OP K * count offset D` (the window against the same window D earlier).

Same contract as rules/kinds.py: half-open windows, events in time order, exact in event time, a JSON
`dump` / `load` that rebuilds the series exactly, bounded memory.
"""

from __future__ import annotations

import bisect
import itertools
from collections import OrderedDict, deque
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from streamalert.rules.condition import OPS, Condition
from streamalert.rules.kinds import _KindSeries, _load_phase, _with_phase

# A `new` series remembers at most this many values (the least recently seen are forgotten first, and are
# new again if they come back within the lookback).
MAX_KNOWN_VALUES = 10_000


class NewValueSeries(_KindSeries):
    """Values seen in the last `lookback` (value -> last sighting, least recent first) and the first
    sightings in the window; the value of the series is how many first sightings the window holds."""

    __slots__ = ("fresh", "known", "lookback_ms")

    def __init__(self, lookback_ms: int) -> None:
        super().__init__()
        self.lookback_ms = lookback_ms
        self.known: OrderedDict[str, int] = OrderedDict()
        self.fresh: deque[tuple[int, str]] = deque()  # (time, value) of first sightings, ascending

    def observe(self, now: int, value: str, max_known: int = MAX_KNOWN_VALUES) -> None:
        self._forget(now)
        known = self.known
        if value not in known:
            self.fresh.append((now, value))
            if len(known) >= max_known:
                known.popitem(last=False)
        known[value] = now
        known.move_to_end(value)

    def _forget(self, now: int) -> None:
        """Values last seen `lookback` or more before now are no longer known (at now they are new again)."""
        known, cutoff = self.known, now - self.lookback_ms
        while known:
            value, at = next(iter(known.items()))
            if at > cutoff:
                break
            del known[value]

    def evict(self, now: int, window_ms: int) -> None:
        fresh, cutoff = self.fresh, now - window_ms
        while fresh and fresh[0][0] <= cutoff:
            fresh.popleft()
        self._forget(now)

    def measure(self, condition: Condition) -> tuple[float, bool]:
        value = len(self.fresh)
        return value, bool(value) and condition.holds(value)

    def empty(self) -> bool:
        return not self.known and not self.fresh

    def next_expiry(self, window_ms: int) -> int | None:
        times = [self.fresh[0][0] + window_ms] if self.fresh else []
        if self.known:
            times.append(next(iter(self.known.values())) + self.lookback_ms)
        return min(times, default=None)

    def dump(self) -> list[Any]:
        """[[value, gap, ...] known, least recent first], [[gap, value, ...] first sightings], phase map."""
        known: list[Any] = []
        last = 0
        for value, at in self.known.items():
            known += (value, at - last)
            last = at
        fresh: list[Any] = []
        last = 0
        for at, value in self.fresh:
            fresh += (at - last, value)
            last = at
        return _with_phase([known, fresh], self)

    @classmethod
    def load(cls, data: list[Any], lookback_ms: int) -> NewValueSeries:
        series = cls(lookback_ms)
        known, fresh = _load_phase(data, series)
        last = 0
        for k in range(0, len(known), 2):
            last += known[k + 1]
            series.known[known[k]] = last
        last = 0
        for k in range(0, len(fresh), 2):
            last += fresh[k]
            series.fresh.append((last, fresh[k + 1]))
        return series


class ChangeSeries(_KindSeries):
    """Event counts per distinct millisecond over the last `offset + window`, as cumulative counts, so the
    count of any interval is one subtraction. Memory: one entry per distinct millisecond in that span."""

    __slots__ = ("base", "cums", "current", "evaluated", "floor", "min_base", "offset_ms", "times")

    def __init__(self, offset_ms: int, min_base: int) -> None:
        super().__init__()
        self.offset_ms = offset_ms
        self.min_base = min_base
        self.times: list[int] = []  # distinct event times, ascending
        self.cums: list[int] = []  # events up to and including times[k]
        self.floor = 0  # events before times[0] (evicted)
        self.evaluated = 0  # the last instant measured: the next expiry is after it
        self.current = self.base = 0  # the counts in the window and in the window `offset` earlier, then

    def observe(self, now: int, _: object = None) -> None:
        if self.times and self.times[-1] == now:
            self.cums[-1] += 1
        else:
            self.times.append(now)
            self.cums.append((self.cums[-1] if self.cums else self.floor) + 1)

    def _upto(self, t: int) -> int:
        k = bisect.bisect_right(self.times, t)
        return self.cums[k - 1] if k else self.floor

    def evict(self, now: int, window_ms: int) -> None:
        """Forget what is older than both windows, and count both at `now`."""
        self.evaluated = now
        k = bisect.bisect_right(self.times, now - window_ms - self.offset_ms)
        if k:
            self.floor = self.cums[k - 1]
            del self.times[:k], self.cums[:k]
        self.current, self.base = self.counts(now, window_ms)

    def counts(self, now: int, window_ms: int) -> tuple[int, int]:
        """(events in the window, events in the window `offset` earlier)."""
        past = now - self.offset_ms
        return self._upto(now) - self._upto(now - window_ms), self._upto(past) - self._upto(past - window_ms)

    def measure(self, condition: Condition) -> tuple[float, bool]:
        """The window's count, and whether it compares with K x the past one (exactly; the past one at least
        `min_base`, so a quiet past never makes a spike)."""
        current, base = self.current, self.base
        if base < self.min_base:
            return current, False
        test: Callable[[Any, Any], bool] = OPS[condition.op]
        return current, test(current, Fraction(str(condition.threshold)) * base)

    def empty(self) -> bool:
        return not self.times

    def next_expiry(self, window_ms: int) -> int | None:
        """The next instant after the last measured one where an event enters or leaves either window."""
        best: int | None = None
        for shift in (window_ms, self.offset_ms, self.offset_ms + window_ms):
            k = bisect.bisect_right(self.times, self.evaluated - shift)
            if k < len(self.times) and (best is None or self.times[k] + shift < best):
                best = self.times[k] + shift
        return best

    def dump(self) -> list[Any]:
        """[last measured instant, gap, count, gap, count, ...] (gaps after the first time), phase map."""
        out: list[Any] = [self.evaluated]
        last, before = 0, self.floor
        for at, cum in zip(self.times, self.cums, strict=True):
            out += (at - last, cum - before)
            last, before = at, cum
        return _with_phase(out, self)

    @classmethod
    def load(cls, data: list[Any], offset_ms: int, min_base: int) -> ChangeSeries:
        series = cls(offset_ms, min_base)
        data = _load_phase(data, series)
        series.evaluated = data[0]
        series.times = list(itertools.accumulate(data[1::2]))
        series.cums = list(itertools.accumulate(data[2::2]))
        return series
