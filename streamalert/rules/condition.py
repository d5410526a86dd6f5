"""Parse and evaluate a window condition such as `count >= 10`, `rate > 0.1` or `sum(tokens_used) > 1e6`.

The SLO / anomaly kinds (`ratio`, `p95(F)`, `quantile(0.9, F)`, `distinct(F)`) parse here too; their
series live in rules/kinds.py.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

from streamalert.durations import parse_duration

Aggregate = Literal[
    "count", "rate", "sum", "max", "min", "avg", "ratio", "quantile", "distinct", "new", "change", "bytes", "first",
    "last",
]  # fmt: skip
# The kinds whose series live in rules/kinds.py, kinds_past.py and kinds_edge.py (not CountSeries /
# AggregateSeries). An aggregate of a converted field (`sum(duration(F))`) is one too.
KINDS = ("ratio", "quantile", "distinct", "new", "change", "bytes", "first", "last")
# LogQL's `unwrap duration(F)` / `duration_seconds(F)` / `bytes(F)`: the field's text parsed as a Go duration
# (seconds) or a go-humanize size (bytes), as the `unit` of the matchers does.
UNITS = ("duration", "duration_seconds", "bytes")
_UNIT_AGGREGATES = ("sum", "max", "min", "avg", "first", "last", "quantile")
_PERCENTILES = {"p50": 0.5, "p75": 0.75, "p90": 0.9, "p95": 0.95, "p99": 0.99, "p999": 0.999}
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}
_CONDITION = re.compile(
    r"\s*(count|rate|bytes|sum|max|min|avg|first|last|ratio|distinct|new|quantile|p50|p75|p90|p95|p99|p999)\s*"
    r"(?:\(\s*(?:(0?\.\d+|1(?:\.0*)?|0)\s*,\s*)?"
    r"(?:(duration|duration_seconds|bytes)\(\s*([A-Za-z_@][\w.@-]*)\s*\)|([A-Za-z_@][\w.@-]*))\s*\))?"
    r"\s*(>=|<=|==|>|<)\s*"
    r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
)
# `count > 3 * count offset 1h`: the window's count against the same window `offset` earlier.
_CHANGE = re.compile(
    r"\s*count\s*(>=|<=|==|>|<)\s*(?:([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*\*\s*)?count\s+offset\s+(\S+)\s*"
)
# Count windows keep at least this many newest event times, so that `value` is exact in ordinary use.
MIN_EXACT_EVENTS = 1024


@dataclass(frozen=True, slots=True)
class Condition:
    """A comparison of one window aggregate with a threshold."""

    aggregate: Aggregate
    field: str | None
    op: str
    threshold: float
    text: str
    quantile: float | None = None  # the q of `quantile(q, F)` / `pNN(F)`
    offset_ms: int = 0  # change: `count OP K * count offset D`, threshold K
    unit: str = ""  # `sum(duration(F))`: one of UNITS, the field's text is converted

    @property
    def kind(self) -> bool:
        """A kind whose series lives in rules/kinds.py, kinds_past.py or kinds_edge.py."""
        return self.aggregate in KINDS or bool(self.unit)

    @property
    def counts(self) -> bool:
        return self.aggregate in ("count", "rate")

    def count_threshold(self, window_ms: int) -> Fraction:
        """The threshold expressed as an event count in the window (rate x window seconds, exactly)."""
        bound = Fraction(str(self.threshold))
        if self.aggregate == "rate":
            return bound * Fraction(window_ms, 1000)
        return bound

    def holds(self, value: float) -> bool:
        return OPS[self.op](value, self.threshold)

    def exact_events(self, window_ms: int) -> int:
        """How many newest event times a count window keeps: enough to decide the condition exactly."""
        needed = int(self.count_threshold(window_ms)) + 2
        return max(needed, MIN_EXACT_EVENTS)


def parse_condition(text: str) -> Condition:
    """Parse a condition; raise ValueError with a hint on the accepted grammar."""
    change = _CHANGE.fullmatch(text)
    if change is not None:
        op, factor, offset = change.groups()
        try:
            offset_ms = parse_duration(offset)
        except ValueError as exc:
            raise ValueError(f"invalid condition {text!r}: {exc}") from None
        if offset_ms <= 0:
            raise ValueError(f"invalid condition {text!r}: the offset must be greater than zero")
        return Condition("change", None, op, float(factor or 1), text.strip(), offset_ms=offset_ms)
    found = _CONDITION.fullmatch(text)
    if found is None:
        raise ValueError(
            f"invalid condition {text!r}: expected `count|rate|ratio|bytes OP N`, "
            "`sum|max|min|avg|first|last|distinct|new|p50|p90|p95|p99(FIELD) OP N`, `quantile(Q, FIELD) OP N` "
            "(FIELD or duration(FIELD) / bytes(FIELD)) "
            "or `count OP K * count offset DURATION` "
            "with OP one of > >= < <= =="
        )
    aggregate, q, unit, converted, field, op, number = found.groups()
    if unit is not None:
        if aggregate not in (*_UNIT_AGGREGATES, *_PERCENTILES):
            raise ValueError(f"invalid condition {text!r}: {aggregate} takes no {unit}(FIELD)")
        field = converted
    if not math.isfinite(float(number)):
        raise ValueError(f"invalid condition {text!r}: the threshold {number} is not a finite number")
    quantile: float | None = None
    if aggregate in _PERCENTILES:
        quantile, aggregate = _PERCENTILES[aggregate], "quantile"
    if q is not None:
        if aggregate != "quantile":
            raise ValueError(f"invalid condition {text!r}: only quantile(Q, FIELD) takes a Q")
        quantile = float(q)
        if not 0 < quantile <= 1:
            raise ValueError(f"invalid condition {text!r}: the quantile {q} must be in (0, 1]")
    elif aggregate == "quantile" and quantile is None:
        raise ValueError(f"invalid condition {text!r}: quantile needs a Q and a field, e.g. quantile(0.9, latency)")
    if aggregate in ("count", "rate", "ratio", "bytes") and field is not None:
        raise ValueError(f"invalid condition {text!r}: {aggregate} takes no field")
    if aggregate not in ("count", "rate", "ratio", "bytes") and field is None:
        raise ValueError(f"invalid condition {text!r}: {aggregate} needs a field, e.g. {aggregate}(duration_ms)")
    return Condition(aggregate, field, op, float(number), text.strip(), quantile, unit=unit or "")  # type: ignore[arg-type]
