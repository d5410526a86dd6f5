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

from typing import Any

from streamalert.rules.condition import Condition
from streamalert.rules.kinds import _dump_triples, _load_phase, _load_triples, _WindowSeries, _with_phase
from streamalert.rules.series import AggregateSeries


class EdgeSeries(_WindowSeries):
    """[time, smallest sample, largest sample] per distinct millisecond, ascending."""

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

    def dump(self) -> list[Any]:
        """[gap, first, last] per millisecond flattened (gaps after the first time), then the phase map."""
        return _with_phase(_dump_triples(self.entries), self)

    @classmethod
    def load(cls, data: list[Any]) -> EdgeSeries:
        series = cls()
        series.entries = _load_triples(_load_phase(data, series))
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
