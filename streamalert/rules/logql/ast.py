"""The syntax tree of the supported LogQL subset: frozen dataclasses, each with its 1-based line and column.

Names follow Loki's own (pkg/logql/syntax/ast.go): a stream selector of label matchers, a pipeline of
stages (line filters, parsers, label filters), a log range with an optional unwrap, range aggregations,
vector aggregations with a grouping, comparisons with a number and the set operators or/and/unless.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

MatchOp = Literal["=", "!=", "=~", "!~"]
LineOp = Literal["|=", "!=", "|~", "!~"]
CompareOp = Literal["==", "!=", ">", ">=", "<", "<="]
ValueKind = Literal["string", "number", "duration", "bytes"]
ParserKind = Literal["json", "logfmt", "pattern", "regexp"]
Conversion = Literal["", "duration", "duration_seconds", "bytes"]


@dataclass(frozen=True, slots=True)
class Matcher:
    """`name OP "value"` in a stream selector or as a string label filter."""

    name: str
    op: MatchOp
    value: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class LineFilter:
    """`|= "s"`, `!= "s"`, `|~ "re"`, `!~ "re"` on the whole log line."""

    op: LineOp
    value: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Parser:
    """`| json [a="path", ...]`, `| logfmt [a, ...]`, `| pattern "..."` or `| regexp "..."`.

    `extractions` are (label, path) pairs of json/logfmt; `labels` the names a pattern or regexp extracts.
    """

    kind: ParserKind
    extractions: tuple[tuple[str, str], ...]
    expression: str
    labels: tuple[str, ...]
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class LabelCompare:
    """One label filter `name OP value`; `value` is a string, or a number (seconds for durations)."""

    name: str
    op: str
    value: str | float
    kind: ValueKind
    text: str  # the value as written
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class LabelBinary:
    """`left and right` (also `,` and juxtaposition) or `left or right` between label filters."""

    op: Literal["and", "or"]
    left: LabelExpr
    right: LabelExpr
    line: int
    column: int


LabelExpr = LabelCompare | LabelBinary


@dataclass(frozen=True, slots=True)
class LabelFilter:
    """A pipeline stage `| <label filter expression>`."""

    expr: LabelExpr
    line: int
    column: int


Stage = LineFilter | Parser | LabelFilter


@dataclass(frozen=True, slots=True)
class Unwrap:
    """`| unwrap name` or `| unwrap duration(name)` / `bytes(name)` / `duration_seconds(name)`."""

    name: str
    conversion: Conversion
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class LogRange:
    """A selector, its pipeline, an optional unwrap and the range `[W]`."""

    selector: tuple[Matcher, ...]
    stages: tuple[Stage, ...]
    unwrap: Unwrap | None
    seconds: float
    range_text: str  # as written without brackets, e.g. "5m"
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Grouping:
    """`by (a, b)` or `without (a, b)`."""

    without: bool
    labels: tuple[str, ...]
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class RangeAggregation:
    """`count_over_time(L[W])`, `rate(...)`, `sum_over_time(... | unwrap F [W]) [by (...)]`, ..."""

    op: str
    range: LogRange
    grouping: Grouping | None
    line: int
    column: int
    param: Number | None = None  # the q of quantile_over_time(q, ...)


@dataclass(frozen=True, slots=True)
class VectorAggregation:
    """`sum|count|max|min|avg [by|without (...)] (inner)`."""

    op: str
    inner: Expr
    grouping: Grouping | None
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class Number:
    """A number literal (with its sign)."""

    value: float
    text: str
    line: int
    column: int


@dataclass(frozen=True, slots=True)
class BinaryOp:
    """A comparison (`>`, `>=`, `<`, `<=`, `==`, `!=`) or a set operator (`or`, `and`, `unless`)."""

    op: str
    left: Expr
    right: Expr
    line: int
    column: int


Expr = RangeAggregation | VectorAggregation | Number | BinaryOp
