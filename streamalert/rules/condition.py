"""Parse and evaluate a window condition such as `count >= 10`, `rate > 0.1` or `sum(tokens_used) > 1e6`."""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal

Aggregate = Literal["count", "rate", "sum", "max", "min", "avg"]
OPS: dict[str, Callable[[float, float], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
}
_CONDITION = re.compile(
    r"\s*(count|rate|sum|max|min|avg)\s*(?:\(\s*([A-Za-z_@][\w.@-]*)\s*\))?\s*(>=|<=|==|>|<)\s*"
    r"([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*"
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
    found = _CONDITION.fullmatch(text)
    if found is None:
        raise ValueError(
            f"invalid condition {text!r}: expected `count|rate OP N` or `sum|max|min|avg(FIELD) OP N` "
            "with OP one of > >= < <= =="
        )
    aggregate, field, op, number = found.groups()
    if not math.isfinite(float(number)):
        raise ValueError(f"invalid condition {text!r}: the threshold {number} is not a finite number")
    if aggregate in ("count", "rate") and field is not None:
        raise ValueError(f"invalid condition {text!r}: {aggregate} takes no field")
    if aggregate not in ("count", "rate") and field is None:
        raise ValueError(f"invalid condition {text!r}: {aggregate} needs a field, e.g. {aggregate}(duration_ms)")
    return Condition(aggregate, field, op, float(number), text.strip())  # type: ignore[arg-type]
