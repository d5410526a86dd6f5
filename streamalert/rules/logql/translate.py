"""A parsed LogQL alert expression as a streamalert rule dict, or a refusal that says why it is not exact.

Semantics (grafana/loki docs/sources/query/metric_queries.md):
- `count_over_time(L[W])` counts lines in W -> `count`; `rate(L[W])` is that count / W seconds -> `rate`,
  which the engine turns into an exact count threshold; `sum_over_time`/`avg`/`max`/`min` of `| unwrap F`
  -> `sum(F)`/`avg(F)`/`max(F)`/`min(F)`; `bytes_over_time` sums the lines' sizes in bytes -> `bytes`;
  `first_over_time`/`last_over_time` -> `first(F)`/`last(F)`; `unwrap duration(F)`/`duration_seconds(F)`/
  `bytes(F)` -> `sum(duration(F))`, ...: the field's text parsed by Go's ParseDuration (seconds) or
  go-humanize's ParseBytes (rules/kind.py; series in rules/kinds_edge.py).
- An outer `sum by (a, b)` of counts, rates, byte counts or sums adds per-stream values up within each
  group, which is exactly the same aggregate over all lines of the group -> `group_by: [a, b]`; `max` of
  `max_over_time` and `min` of `min_over_time` likewise. Any other pairing (avg of counts, count of
  anything, max of counts) depends on how Loki's streams split the lines, which a log record does not
  carry, so it is refused.
- Without an outer aggregation Loki keeps one series per stream, i.e. per full label set. Which record
  fields are stream labels is unknown here, so the rule groups by the selector's labels whose value can
  vary (`!=`, `=~`, `!~`); `=` labels are one value for every line, so grouping by them changes nothing.
  This is exact when the selector names all stream labels, and a note says so otherwise. After a parser
  every extracted label joins the series, which cannot be bounded: refused (write `sum by (...)`).
- `absent_over_time(L[W])` -> `absent_for: W`, grouped by and expecting the selector's `=` labels: Loki
  gives the absent series exactly those labels (metric_queries.md, "absent_over_time").
- A bare count or rate alerts while any sample exists, i.e. `count > 0`. `A or B`, `A and B` and
  `A unless B` are accepted only when both sides are the same query and the result is one threshold.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from streamalert.durations import format_duration, parse_duration
from streamalert.rules.logql.ast import (
    BinaryOp,
    Expr,
    Grouping,
    LogRange,
    Number,
    RangeAggregation,
    VectorAggregation,
)
from streamalert.rules.logql.errors import LogQLError
from streamalert.rules.logql.match import MatchBuilder, Need
from streamalert.rules.logql.parser import parse

_AGGREGATES = {
    "count_over_time": "count", "rate": "rate", "bytes_over_time": "bytes", "sum_over_time": "sum",
    "avg_over_time": "avg", "max_over_time": "max", "min_over_time": "min", "first_over_time": "first",
    "last_over_time": "last", "quantile_over_time": "quantile",
}  # fmt: skip
_UNWRAPPED = frozenset(op for op in _AGGREGATES if op.endswith("_over_time")) - {"count_over_time", "bytes_over_time"}
# Loki's RangeAggregationExpr.validate (pkg/logql/syntax/ast.go) and metric_queries.md: "Except for
# sum_over_time, absent_over_time, rate and rate_counter, unwrapped range aggregations support grouping".
_GROUPABLE = frozenset(
    ("avg_over_time", "max_over_time", "min_over_time", "first_over_time", "last_over_time", "quantile_over_time")
)
# outer vector op -> the range ops whose per-stream values it combines into the same aggregate of all lines
_EXACT_OUTER = {
    "sum": frozenset(("count_over_time", "rate", "bytes_over_time", "sum_over_time")),
    "max": frozenset(("max_over_time",)),
    "min": frozenset(("min_over_time",)),
}
_FLIP = {">": "<", ">=": "<=", "<": ">", "<=": ">=", "==": "=="}
_COMPLEMENT = {">": "<=", ">=": "<", "<": ">=", "<=": ">"}


@dataclass(frozen=True, slots=True)
class Translation:
    """The rule dict (match/window/condition/group_by or match/absent_for/expect), its needs and notes.

    `needs` lists engine features the dict relies on and the engine lacks; the rule is loadable as it stands
    only when it is empty. `notes` say where the result is exact only under an assumption.
    """

    rule: dict[str, Any]
    needs: tuple[Need, ...]
    notes: tuple[str, ...]

    @property
    def loadable(self) -> bool:
        return not self.needs


@dataclass(frozen=True, slots=True)
class _Condition:
    base: dict[str, Any]  # the rule without its condition
    aggregate: str  # "count", "rate", "sum(F)", ...
    op: str
    threshold: Number
    needs: tuple[Need, ...]
    notes: tuple[str, ...]


def translate(expr: str) -> Translation:
    """Translate one LogQL alert expression; raise LogQLError (with line and column) if it is refused."""
    tree = parse(expr)
    absent = _absent(tree)
    if absent is not None:
        return absent
    cond = _condition(tree)
    if cond.aggregate == "ratio":  # _ratio put `ratio: {where: ...}` into the base
        rule = {**cond.base, "condition": f"ratio {cond.op} {cond.threshold.text}"}
        return Translation(rule, cond.needs, cond.notes)
    rule = {**cond.base, "condition": f"{cond.aggregate} {cond.op} {cond.threshold.text}"}
    return Translation(rule, cond.needs, cond.notes)


def _condition(node: Expr) -> _Condition:
    if isinstance(node, BinaryOp) and node.op in ("or", "and", "unless"):
        return _combine(node, _condition(node.left), _condition(node.right))
    if isinstance(node, BinaryOp):
        if node.op == "!=":
            raise LogQLError("the comparison `!=` is not supported (use >, >=, <, <= or ==)", node.line, node.column)
        if isinstance(node.right, Number) and not isinstance(node.left, Number):
            return _ratio_or_metric(node.left, node.op, node.right)
        if isinstance(node.left, Number) and not isinstance(node.right, Number):
            return _ratio_or_metric(node.right, _FLIP[node.op], node.left)
        raise LogQLError("a comparison needs one metric side and one number", node.line, node.column)
    if isinstance(node, Number):
        raise LogQLError("a number alone is not an alert condition", node.line, node.column)
    inner = node.inner if isinstance(node, VectorAggregation) else node
    if isinstance(inner, RangeAggregation) and inner.op in ("count_over_time", "rate") and not inner.range.unwrap:
        return _metric(node, ">", Number(0.0, "0", node.line, node.column))  # any sample fires: count > 0
    raise LogQLError(
        f"`{getattr(node, 'op', '?')}` without a comparison: add one such as `> 0`", node.line, node.column
    )


def _ratio_or_metric(node: Expr, op: str, threshold: Number) -> _Condition:
    if isinstance(node, BinaryOp) and node.op == "/":
        return _ratio(node, op, threshold)
    return _metric(node, op, threshold)


def _ratio(node: BinaryOp, op: str, threshold: Number) -> _Condition:
    """`sum(count_over_time(A[W])) / sum(count_over_time(B[W])) OP x` (same W, same grouping) as the ratio
    kind: exact when A is B with more filters (then the share of B's lines that A keeps), refused otherwise."""
    zero = Number(0.0, "0", node.line, node.column)
    top, bottom = _metric(node.left, ">", zero), _metric(node.right, ">", zero)
    if top.aggregate != "count" or bottom.aggregate != "count":
        raise LogQLError(
            "a ratio is supported between two count_over_time queries (summed alike)", node.line, node.column
        )
    top_match, bottom_match = top.base["match"], bottom.base["match"]
    same = {k: v for k, v in top.base.items() if k != "match"} == {k: v for k, v in bottom.base.items() if k != "match"}
    if not same or any(top_match.get(k) != v for k, v in bottom_match.items()):
        raise LogQLError(
            "a ratio is exact only when the numerator is the denominator's query with more filters, over the "
            "same range and grouping",
            node.line,
            node.column,
        )
    where = {k: v for k, v in top_match.items() if k not in bottom_match}
    if not where:
        raise LogQLError("the numerator and the denominator are the same query", node.line, node.column)
    base = {**bottom.base, "ratio": {"where": where}}
    needs = tuple(dict.fromkeys((*bottom.needs, *top.needs)))
    notes = (*dict.fromkeys((*bottom.notes, *top.notes)), "an empty denominator never fires (Loki: no sample)")
    return _Condition(base, "ratio", op, threshold, needs, notes)


def _metric(node: Expr, op: str, threshold: Number) -> _Condition:
    outer: VectorAggregation | None = None
    if isinstance(node, VectorAggregation):
        outer, node = node, node.inner
    if not isinstance(node, RangeAggregation):
        what = "a nested aggregation" if isinstance(node, VectorAggregation) else "this expression"
        raise LogQLError(f"{what} is not supported here", node.line, node.column)
    if node.op == "absent_over_time":
        raise LogQLError(
            "absent_over_time is only supported alone (optionally `> 0` or `== 1`)", node.line, node.column
        )
    rng = node.range
    if node.op in _UNWRAPPED and rng.unwrap is None:
        raise LogQLError(f"`{node.op}` needs `| unwrap FIELD` before the range", node.line, node.column)
    if node.op not in _UNWRAPPED | {"rate"} and rng.unwrap is not None:
        raise LogQLError(f"`{node.op}` does not take `| unwrap`", rng.unwrap.line, rng.unwrap.column)
    if node.grouping is not None and node.op not in _GROUPABLE:
        g = node.grouping
        raise LogQLError(f"`{node.op}` takes no grouping (Loki allows it only on unwrapped ranges)", g.line, g.column)
    if outer is not None and node.grouping is not None:
        raise LogQLError("a grouping both inside and outside the aggregation", node.grouping.line, node.grouping.column)
    builder = MatchBuilder()
    builder.add_selector(rng.selector, rng.line, rng.column)
    for stage in rng.stages:
        builder.add_stage(stage)
    notes: list[str] = []
    base = _base(builder, "window", rng.range_text, rng.seconds)
    if outer is not None:
        if node.op not in _EXACT_OUTER.get(outer.op, ()):
            raise LogQLError(
                f"`{outer.op}` of `{node.op}` combines per-stream values, and log records carry no streams: "
                "only sum of counts, rates, bytes or sums, max of max_over_time and min of min_over_time "
                "are exact",
                outer.line,
                outer.column,
            )
        _group(base, builder, outer.grouping, rng, notes)
    elif node.grouping is not None:
        _group(base, builder, node.grouping, rng, notes)
    else:
        if builder.parsed:
            raise LogQLError(
                f"`{node.op}` without an outer aggregation after a parser gives one series per set of extracted "
                "labels: wrap it in sum by (...) (...) to say which",
                node.line,
                node.column,
            )
        varying = list(dict.fromkeys(m.name for m in rng.selector if m.op != "="))
        if varying:
            base["group_by"] = varying  # stream labels; a json label of the same name is `NAME_extracted` in Loki
        notes.append(
            "no outer aggregation: Loki alerts per stream; grouped by the selector's varying labels "
            f"({', '.join(varying) or 'none, so one series'}), exact only if those are all the stream labels"
        )
    aggregate = _AGGREGATES[node.op]
    if rng.unwrap is not None:
        field = builder.field_of(rng.unwrap.name)
        if rng.unwrap.conversion:  # the kind hook parses the text as Loki's unwrap does (rules/kind.py)
            field = f"{rng.unwrap.conversion}({field})"
        if node.op == "rate":  # metric_queries.md: "per second rate of the sum of all values"
            aggregate = "sum"
            threshold = _times_window(threshold, rng.seconds)
            notes.append(f"rate of an unwrapped range is its sum per second: threshold multiplied by {rng.range_text}")
        aggregate = f"{aggregate}({field})" if node.param is None else _quantile(node.param, field, notes)
    return _Condition(base, aggregate, op, threshold, tuple(builder.needs), tuple(notes))


def _quantile(q: Number, field: str, notes: list[str]) -> str:
    """`quantile_over_time(q, ... | unwrap F [W])` as `quantile(q, F)`, with the difference in a note."""
    if not 0 < q.value <= 1:
        raise LogQLError(f"the quantile {q.text} must be in (0, 1]", q.line, q.column)
    notes.append(
        "quantile_over_time: Loki interpolates between the two nearest samples (as Prometheus); "
        "streamalert's quantile is the nearest-rank sample, so a value can differ between neighbours"
    )
    return f"quantile({q.text}, {field})"


def _group(
    base: dict[str, Any], builder: MatchBuilder, grouping: Grouping | None, rng: LogRange, notes: list[str]
) -> None:
    if grouping is None or (not grouping.labels and not grouping.without):
        return
    if not grouping.without:
        base["group_by"] = [builder.field_of(label) for label in grouping.labels]
        return
    # `without (a)` keeps every label of the series but a. A series' labels are its stream labels plus what
    # the parsers extracted, minus an unwrapped label (Loki's LabelExtractorWithStages adds it to `without`).
    # A record has no stream labels, so the selector's labels stand for them (the assumption a bare range
    # aggregation makes too, with the same note); a json / logfmt parser without a label list makes every
    # field of the line a label, a set no rule can name: refused.
    if builder.open_parser is not None:
        p = builder.open_parser
        raise LogQLError(
            f"`without (...)` after `| {p.kind}` would group by every field of each line (an open set a log "
            f"record cannot bound): use `by (...)`, or `| {p.kind} a, b` to name the labels",
            grouping.line,
            grouping.column,
        )
    dropped = {*grouping.labels, *([rng.unwrap.name] if rng.unwrap is not None else [])}
    kept = [name for name in dict.fromkeys([*(m.name for m in rng.selector), *builder.labels]) if name not in dropped]
    if kept:
        base["group_by"] = [builder.field_of(label) for label in kept]
    notes.append(
        f"without ({', '.join(grouping.labels)}): grouped by the selector's and the parsers' labels but those "
        f"({', '.join(kept) or 'none, so one series'}), exact only if the selector names all the stream labels"
    )


def _times_window(threshold: Number, seconds: float) -> Number:
    """The threshold of a per-second rate as one for the sum over the window, exactly (decimal arithmetic)."""
    scaled = Decimal(threshold.text) * Decimal(round(seconds * 1000)) / Decimal(1000)
    text = format(scaled.normalize(), "f")
    return Number(float(scaled), text, threshold.line, threshold.column)


def _base(builder: MatchBuilder, key: str, range_text: str, seconds: float) -> dict[str, Any]:
    """The rule's match, its window (or absent_for) and the `extract` list of its regexp / pattern parsers."""
    base: dict[str, Any] = {"match": builder.match(), key: _window(range_text, seconds)}
    if builder.extract:
        base["extract"] = builder.extract
    return base


def _window(text: str, seconds: float) -> str:
    try:
        parse_duration(text)
    except ValueError:
        return format_duration(round(seconds * 1000))  # e.g. `1y`, which rule files do not spell
    return text


def _absent(tree: Expr) -> Translation | None:
    node, op_ok = tree, True
    if isinstance(tree, BinaryOp) and isinstance(tree.left, RangeAggregation) and isinstance(tree.right, Number):
        node = tree.left
        op_ok = (tree.op in (">", "!=") and tree.right.value == 0) or (
            tree.op in ("==", ">=") and tree.right.value == 1
        )
    if not isinstance(node, RangeAggregation) or node.op != "absent_over_time":
        return None
    if not op_ok:
        raise LogQLError(
            "absent_over_time is 1 when absent: compare it only with `> 0` or `== 1`", tree.line, tree.column
        )
    rng = node.range
    if node.grouping is not None:
        g = node.grouping
        raise LogQLError("grouping not allowed for absent_over_time (as in Loki)", g.line, g.column)
    if rng.unwrap is not None:
        raise LogQLError("absent_over_time with `| unwrap` is not supported", rng.unwrap.line, rng.unwrap.column)
    builder = MatchBuilder()
    builder.add_selector(rng.selector, rng.line, rng.column)
    for stage in rng.stages:
        builder.add_stage(stage)
    rule = _base(builder, "absent_for", rng.range_text, rng.seconds)
    # Loki's absentLabels (pkg/logql/evaluator.go): the `=` labels, minus any name another matcher also uses.
    names = [m.name for m in rng.selector]
    labels = {m.name: m.value for m in rng.selector if m.op == "=" and m.value and names.count(m.name) == 1}
    notes: list[str] = []
    if labels:
        rule["group_by"] = list(labels)
        rule["expect"] = [labels]
    else:
        notes.append("no `=` label in the selector: nothing is expected, so a stream never seen does not alert")
    return Translation(rule, tuple(builder.needs), tuple(notes))


def _combine(node: BinaryOp, left: _Condition, right: _Condition) -> _Condition:
    """`or`/`and`/`unless` of two conditions on the same query, when the result is one threshold."""
    if left.base != right.base or left.aggregate != right.aggregate:
        raise LogQLError(
            f"`{node.op}` between different queries cannot be one rule (write two rules)", node.line, node.column
        )
    op, r_op = node.op, right.op
    if op == "unless":
        if r_op == "==":
            raise LogQLError("`unless ... ==` leaves a gap, not one threshold", node.line, node.column)
        op, r_op = "and", _COMPLEMENT[r_op]
    up_l, up_r = left.op in (">", ">="), r_op in (">", ">=")
    if "==" in (left.op, r_op) or up_l != up_r:
        raise LogQLError(f"`{node.op}` of these comparisons is a range, not one threshold", node.line, node.column)

    # Order the two bounds from looser to stricter along their direction (for `>`: higher, then strict).
    def strictness(pair: tuple[str, Number]) -> tuple[float, int]:
        o, n = pair
        return (n.value if up_l else -n.value, 1 if o in (">", "<") else 0)

    looser, stricter = sorted([(left.op, left.threshold), (r_op, right.threshold)], key=strictness)
    chosen = stricter if op == "and" else looser
    return _Condition(left.base, left.aggregate, chosen[0], chosen[1], left.needs, left.notes)
