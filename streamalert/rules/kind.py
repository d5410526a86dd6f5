"""How a rule of one of the SLO / anomaly kinds takes its sample from a matched record and makes its series
(the series themselves are in rules/kinds.py and rules/kinds_past.py). The engine's only entry point."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from streamalert.decode import LINE_FIELD, MISSING, get_path
from streamalert.durations import parse_duration
from streamalert.model import Fields
from streamalert.rules.condition import Condition
from streamalert.rules.kinds import QUANTILE_CHUNKS, DistinctSeries, QuantileSeries, RatioSeries
from streamalert.rules.kinds_edge import ConvertedSeries, EdgeSeries
from streamalert.rules.kinds_past import ChangeSeries, NewValueSeries
from streamalert.rules.logql.lexer import go_duration_seconds, label_bytes
from streamalert.rules.matchers import as_number, compile_match

if TYPE_CHECKING:
    from streamalert.config.rules import Rule

KindSeries = (
    RatioSeries | QuantileSeries | DistinctSeries | NewValueSeries | ChangeSeries | EdgeSeries | ConvertedSeries
)
KIND_TYPES = (RatioSeries, QuantileSeries, DistinctSeries, NewValueSeries, ChangeSeries, EdgeSeries, ConvertedSeries)


class Kind:
    """One rule's kind: what it samples and how its series are made and loaded."""

    __slots__ = (
        "aggregate",
        "chunk_ms",
        "convert",
        "field",
        "lookback_ms",
        "min_base",
        "offset_ms",
        "threshold",
        "where",
    )

    def __init__(
        self,
        condition: Condition,
        where: Callable[[Fields], bool] | None,
        lookback_ms: int = 0,
        min_base: int = 1,
        window_ms: int = 0,
    ) -> None:
        self.aggregate = condition.aggregate
        self.field = condition.field
        self.where = where
        self.lookback_ms = lookback_ms
        self.offset_ms = condition.offset_ms
        self.threshold = condition.threshold
        self.min_base = min_base
        self.convert = _CONVERSIONS.get(condition.unit)
        # A quantile series stores its window in chunks of 1/64 of it (QuantileSeries.dump); 0: not chunked.
        self.chunk_ms = window_ms // QUANTILE_CHUNKS

    def sample(self, fields: Fields, line: bytes = b"") -> Any:
        """What the series observes from a matched record (and its raw line); None when it carries nothing."""
        aggregate = self.aggregate
        if aggregate == "change":
            return True
        if aggregate == "bytes":  # LogQL bytes_over_time: the log line's size; a converted line's original text
            original = fields.get(LINE_FIELD)
            return len(original.encode()) if type(original) is str else len(line)
        if aggregate == "ratio":
            assert self.where is not None
            return bool(self.where(fields))
        assert self.field is not None
        return self.of_value(get_path(fields, self.field))

    def of_value(self, raw: Any) -> Any:
        """The sample of a rule that reads one field (every aggregate but change, bytes and ratio), from the
        field's value (MISSING when absent)."""
        aggregate = self.aggregate
        if raw is MISSING or raw is None:
            return None
        if aggregate in ("distinct", "new"):
            return raw if type(raw) is str else _spelling(raw)
        if self.convert is not None:
            number = self.convert(raw)
            return None if number is None else _exact_int(number)
        number = as_number(raw)
        if number is None and type(raw) is str and aggregate == "quantile":
            try:
                return parse_duration(raw) / 1000  # a duration string ("1m30s") in seconds
            except ValueError:
                return None
        if number is not None and number.is_integer() and abs(number) < 2**53:
            return int(number)  # integer samples stay ints: "300" and 300 are one value
        return number

    def value_sampler(self) -> Callable[[Any], Any] | None:
        """of_value(), or a function giving the same in fewer steps for a quantile without a unit, whose JSON
        numbers are taken as they are; None for the aggregates that read more than one field's value."""
        if self.aggregate in ("change", "bytes", "ratio"):
            return None
        general = self.of_value
        if self.aggregate != "quantile" or self.convert is not None:
            return general

        def number_value(raw: Any) -> Any:
            kind = type(raw)
            if kind is float:
                if raw.is_integer() or not math.isfinite(raw):
                    return general(raw)
                return raw
            if kind is int and -(2**53) < raw < 2**53:
                return raw
            return general(raw)

        return number_value

    def sampler(self) -> Callable[[Fields, bytes], Any]:
        """sample(), or a function giving the same in fewer steps for a rule reading a top-level field."""
        name, of_value = self.field, self.value_sampler()
        if of_value is None or name is None or "." in name:  # get_path reads a dotted literal key first
            return self.sample
        read = of_value

        def top_level(fields: Fields, line: bytes = b"") -> Any:
            return read(fields.get(name, MISSING))

        return top_level

    def new(self) -> KindSeries:
        return self.load(None)

    def load(self, data: list[Any] | None) -> KindSeries:
        """A new series (data None) or one rebuilt from its stored form."""
        aggregate = self.aggregate
        if aggregate == "ratio":
            return RatioSeries() if data is None else RatioSeries.load(data)
        if aggregate == "quantile":
            t = self.threshold
            span = self.chunk_ms
            return QuantileSeries(t, span) if data is None else QuantileSeries.load(data, t, span)
        if aggregate == "distinct":
            return DistinctSeries() if data is None else DistinctSeries.load(data)
        if aggregate in ("first", "last"):
            return EdgeSeries() if data is None else EdgeSeries.load(data)
        if aggregate in ("bytes", "sum", "max", "min", "avg"):  # bytes, or an aggregate of a converted field
            return ConvertedSeries() if data is None else ConvertedSeries.load(data)
        if aggregate == "new":
            lookback = self.lookback_ms
            return NewValueSeries(lookback) if data is None else NewValueSeries.load(data, lookback)
        if data is None:
            return ChangeSeries(self.offset_ms, self.min_base)
        return ChangeSeries.load(data, self.offset_ms, self.min_base)


def kind_of(rule: Rule) -> Kind:
    """The Kind of a rule whose condition is one of the kinds."""
    assert rule.condition is not None
    where = compile_match(rule.ratio_where) if rule.ratio_where is not None else None
    return Kind(rule.condition, where, rule.lookback_ms, rule.min_base, rule.window_ms)


def _duration(raw: Any) -> float | None:
    """Loki's unwrap duration(F) / duration_seconds(F): time.ParseDuration of the text, in seconds."""
    return go_duration_seconds(raw) if type(raw) is str else None


def _bytes(raw: Any) -> float | None:
    """Loki's unwrap bytes(F): humanize.ParseBytes of the text; a JSON number is its digits, i.e. bytes."""
    if type(raw) is str:
        return label_bytes(raw)
    return as_number(raw)


_CONVERSIONS: dict[str, Callable[[Any], float | None]] = {
    "duration": _duration,
    "duration_seconds": _duration,
    "bytes": _bytes,
}


def _exact_int(number: float) -> float | int:
    return int(number) if number.is_integer() and abs(number) < 2**53 else number


def _spelling(value: Any) -> str:
    from streamalert.config.rules import label_value  # noqa: PLC0415 (config imports the rules package)

    return label_value(value)
