"""Series of LogQL's `first_over_time` / `last_over_time` (`first(F)`, `last(F)`), of `bytes_over_time`
(`bytes`) and of unwrapped aggregates with a conversion (`sum(duration(F))`, `max(bytes(F))`, ...).

Same contract as rules/series.py: windows are half-open, (t - w, t]; events reach a series in time order
(ties in arrival order); `dump` / `load` rebuild the series exactly. Memory is bounded by the distinct
milliseconds in the window, as for AggregateSeries:

- EdgeSeries keeps, per distinct millisecond, the smallest and the largest sample of that millisecond: the
  window's first sample is the oldest millisecond's smallest, its last the newest millisecond's largest
  (grafana/loki pkg/logql/range_vector.go, first_over_time / last_over_time: the first / last sample of the
  range). Loki orders samples of one timestamp as ingested; the engine applies one millisecond's lines in
  byte order (arrival order within the lateness never matters, tests/contract/test_kinds_backends.py), which
  would make the tie depend on how a line is spelled: here it depends on the values only.
- ConvertedSeries is AggregateSeries (exact running sums) taking converted samples from the kind hook: the
  line's size in bytes for `bytes`, Go-duration seconds or go-humanize bytes for `duration(F)` / `bytes(F)`.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from streamalert.rules.condition import Condition
from streamalert.rules.kinds import _KindSeries, _load_phase, _with_phase
from streamalert.rules.series import AggregateSeries


class EdgeSeries(_KindSeries):
    """[time, smallest sample, largest sample] per distinct millisecond, ascending."""

    __slots__ = ("entries",)

    def __init__(self) -> None:
        super().__init__()
        self.entries: deque[list[Any]] = deque()

    def observe(self, now: int, sample: float) -> None:
        entries = self.entries
        if entries and entries[-1][0] == now:
            last = entries[-1]
            last[1] = min(last[1], sample)
            last[2] = max(last[2], sample)
        else:
            entries.append([now, sample, sample])

    def evict(self, now: int, window_ms: int) -> None:
        cutoff, entries = now - window_ms, self.entries
        while entries and entries[0][0] <= cutoff:
            entries.popleft()

    def measure(self, condition: Condition) -> tuple[float, bool]:
        """The window's first or last sample and whether the condition holds; an empty window never holds."""
        if not self.entries:
            return 0.0, False
        value = self.entries[0][1] if condition.aggregate == "first" else self.entries[-1][2]
        return value, condition.holds(value)

    def empty(self) -> bool:
        return not self.entries

    def next_expiry(self, window_ms: int) -> int | None:
        return self.entries[0][0] + window_ms if self.entries else None

    def dump(self) -> list[Any]:
        """[gap, first, last] per millisecond flattened (gaps after the first time), then the phase map."""
        out: list[Any] = []
        last = 0
        for time, first, final in self.entries:
            out += (time - last, first, final)
            last = time
        return _with_phase(out, self)

    @classmethod
    def load(cls, data: list[Any]) -> EdgeSeries:
        series = cls()
        data = _load_phase(data, series)
        last = 0
        for k in range(0, len(data), 3):
            last += data[k]
            series.entries.append([last, data[k + 1], data[k + 2]])
        return series


class ConvertedSeries(AggregateSeries):
    """AggregateSeries for `bytes` (a sum of line sizes) and for aggregates of converted fields."""

    __slots__ = ()

    def measure(self, condition: Condition) -> tuple[float, bool]:
        value = self.value("sum" if condition.aggregate == "bytes" else condition.aggregate)
        return value, not self.empty() and condition.holds(value)

    @classmethod
    def load(cls, data: list[Any]) -> ConvertedSeries:
        series = super().load(data)  # AggregateSeries.load builds `cls()`
        assert isinstance(series, ConvertedSeries)
        return series
