"""Per-series state of a rule: sliding count and aggregate windows and absence, with bounded memory.

Windows are half-open: at time t a window of length w covers events with time in (t - w, t], so an event
at e leaves the window at exactly e + w. Events reach a series in time order (the engine sorts them).
"""

from __future__ import annotations

import bisect
import itertools
import operator
from array import array
from collections import deque
from collections.abc import Iterable
from fractions import Fraction
from typing import Any

from streamalert.alerts.lifecycle import INACTIVE, Phase

# The times of every series that holds none: observe replaces it, never appends to it.
_NO_TIMES: array[int] = array("q")
# Count windows fold events beyond their exact capacity into this many sub-buckets per window.
BUCKETS_PER_WINDOW = 64


class CountSeries:
    """The newest `capacity` event times exactly, older ones folded into sub-window buckets.

    Deciding `count OP n` needs only the n+1 newest times, so memory is bounded by the threshold, not the
    event rate; `value` is exact while the window holds at most `capacity` events and estimated from buckets
    (error below one bucket, 1/64 of the window) beyond that. An idle series (one event in its window) holds
    its one time as a plain int (32 bytes); from the second event on the times are a packed int64 array
    (8 bytes a time plus the array's 88), and the buckets a dict only while some exist.
    """

    __slots__ = ("_t", "due", "older", "phase", "record")

    def __init__(self) -> None:
        self._t: int | array[int] = _NO_TIMES  # one time as an int, else an array (shared while empty)
        self.older: dict[int, int] | None = None
        self.phase: Phase = INACTIVE
        self.record: str | None = None  # the last matching line, when an annotation reads record fields
        self.due: int | None = None  # the engine's next timer for this series

    @property
    def times(self) -> array[int]:
        """A copy of the exact times, oldest first."""
        t = self._t
        return array("q", (t,)) if isinstance(t, int) else array("q", t)

    def size(self) -> int:
        """How many exact times are held."""
        t = self._t
        return 1 if isinstance(t, int) else len(t)

    def last(self) -> int | None:
        t = self._t
        if isinstance(t, int):
            return t
        return t[-1] if t else None

    def observe(self, now: int, capacity: int, window_ms: int) -> None:
        t = self._t
        if isinstance(t, int):
            times = self._t = array("q", (t, now))
        elif not t:
            self._t = now  # an idle series holds its one time as an int
            return
        else:
            times = t
            times.append(now)
        if len(times) > capacity:
            oldest = times.pop(0)
            width = max(1, window_ms // BUCKETS_PER_WINDOW)
            start = oldest - oldest % width
            if self.older is None:
                self.older = {}
            self.older[start] = self.older.get(start, 0) + 1

    def extend_below(self, times: list[int], limit: int) -> bool:
        """`extend` when the series then holds at most `limit` times and the last of `times` is not after its
        timer (`due`); False, having changed nothing, otherwise. The engine's common bulk run in one call."""
        due, t = self.due, self._t
        if due is None or times[-1] > due:
            return False
        if isinstance(t, int):
            if len(times) >= limit:
                return False
            self._t = array("q", (t, *times))
        elif len(t) + len(times) > limit:
            return False
        elif t:
            t.extend(times)
        else:
            self._t = times[0] if len(times) == 1 else array("q", times)
        return True

    def extend(self, times: list[int]) -> None:
        """`observe` of each of `times` (ascending, none before the last time held) when they keep the series
        within its capacity, so that nothing is folded: one call for a run of events (the engine's bulk path)."""
        t = self._t
        if not times:
            return
        if isinstance(t, int):
            self._t = array("q", (t, *times))
        elif t:
            t.extend(times)
        else:
            self._t = times[0] if len(times) == 1 else array("q", times)

    def evict(self, now: int, capacity: int, window_ms: int) -> None:
        cutoff = now - window_ms  # events at or before the cutoff are out
        t = self._t
        if isinstance(t, int):
            if t <= cutoff:
                self._t = _NO_TIMES
        elif t and t[0] <= cutoff:
            del t[: bisect.bisect_right(t, cutoff)]
            if len(t) <= 1:
                self._t = t[0] if t else _NO_TIMES  # back to idle: the array is given back
        older = self.older
        if older is None:
            return
        if self.size() < capacity:
            self.older = None  # every folded event is older than the evicted exact ones
            return
        width = max(1, window_ms // BUCKETS_PER_WINDOW)
        for start in [s for s in older if s + width - 1 <= cutoff]:
            del older[start]
        if not older:
            self.older = None

    def count(self, now: int, window_ms: int) -> int:
        """Events in (now - window, now]: exact unless events were folded into buckets; a bucket that
        straddles the window's start counts in proportion to its overlap."""
        exact = self.size()
        if not self.older:
            return exact
        width = max(1, window_ms // BUCKETS_PER_WINDOW)
        cutoff = now - window_ms
        folded = 0.0
        for start, count in self.older.items():
            if start > cutoff:
                folded += count
            else:
                folded += count * (start + width - 1 - cutoff) / width
        return exact + round(folded)

    def empty(self) -> bool:
        t = self._t
        return not isinstance(t, int) and not t

    def next_expiry(self, window_ms: int) -> int | None:
        t = self._t
        if isinstance(t, int):
            return t + window_ms
        return t[0] + window_ms if t else None

    def dump(self) -> list[Any]:
        """Compact: the first time, then the gaps between times, then (only when not all default) a map of
        the rest: "o" folded buckets, "a" active since, "f" firing, "r" the record; the engine adds "d", a
        pending timer earlier than the one the times give (so a restart evaluates the series when the
        uninterrupted run would have)."""
        t = self._t
        if isinstance(t, int):
            out: list[Any] = [t]
        elif t:
            times = t.tolist()
            out = [times[0], *map(operator.sub, times[1:], times)]
        else:
            out = []
        if self.phase is INACTIVE and self.record is None and self.older is None:
            return out  # the common stored form: times only
        extra = _phase_extra(self.phase, self.record)
        if self.older:
            extra["o"] = sorted(self.older.items())
        if extra:
            out.append(extra)
        return out

    def _set_times(self, times: Iterable[int]) -> None:
        packed = array("q", times)
        self._t = packed[0] if len(packed) == 1 else packed if packed else _NO_TIMES

    @classmethod
    def load(cls, data: list[Any]) -> CountSeries:
        series = cls()
        if data and type(data[0]) is list:  # the first format: [times, buckets, [since, firing], record]
            series._set_times(data[0])
            series.older = {int(k): int(v) for k, v in data[1]} or None
            series.phase = _phase_load(data[2])
            series.record = data[3]
            return series
        extra: dict[str, Any] = data.pop() if data and type(data[-1]) is dict else {}
        series._set_times(itertools.accumulate(data))
        series.older = {int(k): int(v) for k, v in extra.get("o", ())} or None
        series.phase, series.record = _phase_from(extra)
        series.due = extra.get("d")  # a timer earlier than the one its times give (the engine re-arms it)
        return series


class AggregateSeries:
    """Numeric samples of one field, merged per millisecond: memory is bounded by the window's length in ms
    and in practice by the number of distinct event times in it, whatever the event rate.

    The running total is exact: integers stay ints, and float per-millisecond sums enter it as Fractions.
    It is therefore always exactly the sum of the entries in the window, whatever was added and removed
    before, so a series rebuilt from stored entries after a restart gives the same value to the last bit.
    """

    __slots__ = ("due", "entries", "maxq", "minq", "n", "phase", "record", "total")

    def __init__(self) -> None:
        self.entries: deque[list[Any]] = deque()  # [time, sum, count, min, max] per distinct ms, ascending
        self.total: int | Fraction = 0
        self.n = 0
        self.minq: deque[tuple[int, float]] = deque()  # monotonic queues for sliding min / max
        self.maxq: deque[tuple[int, float]] = deque()
        self.phase: Phase = INACTIVE
        self.record: str | None = None  # the last matching line, when an annotation reads record fields
        self.due: int | None = None  # the engine's next timer for this series

    def observe(self, now: int, sample: float) -> None:
        entries = self.entries
        if entries and entries[-1][0] == now:
            last = entries[-1]
            self.total -= _exact(last[1])
            last[1] += sample
            last[2] += 1
            last[3] = min(last[3], sample)
            last[4] = max(last[4], sample)
            self.total += _exact(last[1])
        else:
            entries.append([now, sample, 1, sample, sample])
            self.total += _exact(sample)
        self.n += 1
        self._push_min(now, sample)
        self._push_max(now, sample)

    # Monotonic queues hold at most one entry per millisecond: a later sample of the same millisecond either
    # replaces that entry or is dominated by it, so the queues never outgrow `entries`.

    def _push_min(self, now: int, sample: float) -> None:
        minq = self.minq
        if minq and minq[-1][0] == now and minq[-1][1] <= sample:
            return
        while minq and minq[-1][1] >= sample:
            minq.pop()
        minq.append((now, sample))

    def _push_max(self, now: int, sample: float) -> None:
        maxq = self.maxq
        if maxq and maxq[-1][0] == now and maxq[-1][1] >= sample:
            return
        while maxq and maxq[-1][1] <= sample:
            maxq.pop()
        maxq.append((now, sample))

    def evict(self, now: int, window_ms: int) -> None:
        cutoff = now - window_ms
        entries = self.entries
        while entries and entries[0][0] <= cutoff:
            _, total, count, _, _ = entries.popleft()
            self.total -= _exact(total)
            self.n -= count
        while self.minq and self.minq[0][0] <= cutoff:
            self.minq.popleft()
        while self.maxq and self.maxq[0][0] <= cutoff:
            self.maxq.popleft()

    def value(self, aggregate: str) -> float:
        total = self.total
        if aggregate == "sum":
            return total if type(total) is int else float(total)
        if aggregate == "avg":
            return float(Fraction(total) / self.n) if self.n else 0.0
        if aggregate == "min":
            return self.minq[0][1] if self.minq else 0.0
        return self.maxq[0][1] if self.maxq else 0.0

    def empty(self) -> bool:
        return not self.entries

    def next_expiry(self, window_ms: int) -> int | None:
        return self.entries[0][0] + window_ms if self.entries else None

    def dump(self) -> list[Any]:
        """Compact: [time, sum, count, min, max] per millisecond flattened, times as gaps after the first,
        then (only when not all default) a map: "a" active since, "f" firing, "r" the record."""
        out: list[Any] = []
        last = 0
        for time, total, count, low, high in self.entries:
            out += (time - last, total, count, low, high)
            last = time
        extra = _phase_extra(self.phase, self.record)
        if extra:
            out.append(extra)
        return out

    @classmethod
    def load(cls, data: list[Any]) -> AggregateSeries:
        series = cls()
        if data and type(data[0]) is list:  # the first format: [entries, [since, firing], record]
            entries, phase, record = data[0], _phase_load(data[1]), data[2]
        else:
            extra: dict[str, Any] = data.pop() if data and type(data[-1]) is dict else {}
            entries, last = [], 0
            for k in range(0, len(data), 5):
                last += data[k]
                entries.append([last, *data[k + 1 : k + 5]])
            phase, record = _phase_from(extra)
        for entry in entries:
            series.entries.append(list(entry))
            series.total += _exact(entry[1])
            series.n += entry[2]
        # Rebuilding the monotonic queues from per-ms extrema gives the same window min / max.
        for entry in series.entries:
            series._push_min(entry[0], entry[3])
            series._push_max(entry[0], entry[4])
        series.phase, series.record = phase, record
        return series


class AbsenceSeries:
    """When a group was last seen, whether its absence alert fires, and how long the last silence lasted."""

    __slots__ = ("due", "firing", "last_seen", "record", "silence_ms")

    def __init__(self, last_seen: int) -> None:
        self.last_seen = last_seen
        self.firing = False
        self.silence_ms = 0
        self.record: str | None = None  # the last matching line, when an annotation reads record fields
        self.due: int | None = None  # the engine's next timer for this series

    def observe(self, now: int) -> None:
        if now != self.last_seen:  # a second event of the same ms keeps the gap the first one ended
            self.silence_ms = now - self.last_seen
        self.last_seen = now

    def dump(self) -> list[Any]:
        """Compact: [last seen, silence], then (only when not all default) a map: "f" firing, "r" record."""
        out: list[Any] = [self.last_seen, self.silence_ms]
        extra = _phase_extra(Phase(None, self.firing), self.record)
        if extra:
            out.append(extra)
        return out

    @classmethod
    def load(cls, data: list[Any]) -> AbsenceSeries:
        series = cls(int(data[0]))
        if len(data) == 4 and type(data[1]) is bool:  # the first format: [last seen, firing, silence, record]
            series.firing, series.silence_ms, series.record = data[1], int(data[2]), data[3]
            return series
        series.silence_ms = int(data[1])
        extra: dict[str, Any] = data[2] if len(data) > 2 else {}
        series.firing, series.record = bool(extra.get("f")), extra.get("r")
        return series


Series = CountSeries | AggregateSeries | AbsenceSeries


def _exact(value: float) -> int | Fraction:
    return value if type(value) is int else Fraction(value)


def _phase_extra(phase: Phase, record: str | None) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if phase.active_since is not None:
        extra["a"] = phase.active_since
    if phase.firing:
        extra["f"] = 1
    if phase.quiet_since is not None:
        extra["q"] = phase.quiet_since  # keep_firing_for: quiet since then
    if record is not None:
        extra["r"] = record
    return extra


def _phase_from(extra: dict[str, Any]) -> tuple[Phase, str | None]:
    since, firing = extra.get("a"), bool(extra.get("f"))
    return (INACTIVE if since is None and not firing else Phase(since, firing, extra.get("q"))), extra.get("r")


def _phase_load(data: list[Any]) -> Phase:
    return Phase(data[0], bool(data[1]))
