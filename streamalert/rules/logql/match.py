"""A LogQL selector and pipeline as a streamalert `match` map, plus the engine features it still needs.

Label matchers follow Prometheus semantics (grafana/loki docs/sources/query/log_queries/_index.md, "Log
stream selector"): `=~`/`!~` regexes are anchored at both ends, and a missing label reads as the empty
string, so a matcher that accepts "" also accepts a record without the field. Each is translated exactly
with `exists`/`not`. Line filters (`|=`, `!=`, `|~`, `!~`) test the whole raw line, which for JSON input is
the JSON text; they become matchers on the reserved virtual field `_line`, which the engine does not offer
yet (listed as a need). `| json` is a no-op on JSON records except for its `label="path"` aliases;
`| regexp` and `| pattern` become the rule's `extract` list, which the compiled rule set applies to the raw
line (rules/extract.py) so their labels are record fields. Label filters are numeric for numbers, durations and
sizes ("Label filter expression" in the same document): durations and sizes compare label text such as
"1.5s" or "10MB", parsed by the matchers' `unit` (rules/matchers.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import re2

from streamalert.decode import LINE_FIELD  # the reserved virtual field: the raw line, as Loki sees it
from streamalert.rules.extract import compile_extractor
from streamalert.rules.logql.ast import LabelBinary, LabelExpr, LabelFilter, LineFilter, Matcher, Parser
from streamalert.rules.logql.ast import Stage as StageNode
from streamalert.rules.logql.errors import LogQLError

_NUMERIC_OPS = {">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}
_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]{0,14})")
_JSON_PATH_PART = re.compile(r'\.?([A-Za-z_][A-Za-z0-9_]*)|\["((?:[^"\\]|\\.)*)"\]')


@dataclass(frozen=True, slots=True)
class Need:
    """An engine feature the translation relies on and the engine does not offer yet."""

    feature: str  # a short stable id such as "_line", "bytes_over_time", "parser:logfmt"
    detail: str
    line: int
    column: int


@dataclass(slots=True)
class MatchBuilder:
    """Collects the conjuncts of one match map, the needs and the json label aliases."""

    terms: list[dict[str, Any]] = field(default_factory=list)
    needs: list[Need] = field(default_factory=list)
    aliases: dict[str, str] = field(default_factory=dict)  # label -> record field path (from `| json a="p"`)
    parsed: bool = False  # a parser stage is present: Loki's series then carry every extracted label
    extract: list[dict[str, str]] = field(default_factory=list)  # the rule's `extract` (regexp / pattern)
    extracted: set[str] = field(default_factory=set)  # labels those extract
    labels: list[str] = field(default_factory=list)  # labels the parsers add, in order (regexp, pattern, json a=)
    filtered: dict[str, tuple[int, int]] = field(default_factory=dict)  # label -> its first filter's position
    open_parser: Parser | None = None  # the first `| json` / `| logfmt` without a list of labels

    def need(self, feature: str, detail: str, line: int, column: int) -> None:
        if all(n.feature != feature for n in self.needs):
            self.needs.append(Need(feature, detail, line, column))

    def field_of(self, label: str) -> str:
        return self.aliases.get(label, label)

    def add_selector(self, selector: tuple[Matcher, ...], line: int, column: int) -> None:
        # Loki refuses a selector whose every matcher also matches "" (syntax/parser.go validateMatchers, via
        # util.SplitFiltersAndMatchers): such a query would read every stream.
        if not selector or all(_accepts_empty(m.op, m.value, m.line, m.column) for m in selector):
            raise LogQLError(
                "a stream selector needs at least one matcher that does not match the empty string", line, column
            )
        for m in selector:
            _check_label(m.name, m.line, m.column)
            self.terms.append({m.name: string_test(m.op, m.value, m.line, m.column)})

    def add_stage(self, stage: StageNode) -> None:
        if isinstance(stage, LineFilter):
            self.add_line_filter(stage)
        elif isinstance(stage, Parser):
            self.add_parser(stage)
        else:
            self.add_label_filter(stage)

    def add_line_filter(self, f: LineFilter) -> None:
        if f.value == "" and f.op in ("|=", "|~"):
            return  # Loki treats an empty filter as a no-op: every line contains ""
        if f.value == "" and f.op == "!=":
            raise LogQLError('`!= ""` never matches: every line contains the empty string', f.line, f.column)
        if f.op in ("|~", "!~"):
            _check_regex(f.value, f.line, f.column)
        test: Any = {"contains": f.value} if f.op in ("|=", "!=") else {"regex": f.value}
        self.terms.append({LINE_FIELD: test if f.op in ("|=", "|~") else {"not": test}})
        self.need(
            LINE_FIELD, "line filters test the raw line: the engine needs a `_line` virtual field", f.line, f.column
        )

    def add_parser(self, p: Parser) -> None:
        self.parsed = True
        if not p.extractions and p.kind in ("json", "logfmt") and self.open_parser is None:
            self.open_parser = p  # every field of the line becomes a label: the label set is open
        if p.kind == "json":
            for label, path in p.extractions:
                self.aliases[label] = _json_path(path, p.line, p.column)
                self.labels.append(label)
            return
        if p.kind in ("regexp", "pattern"):
            self.add_extractor(p)
            return
        self.labels.extend(label for label, _ in p.extractions)  # `| logfmt a, b`
        self.need(
            f"parser:{p.kind}",
            f"`| {p.kind}` extracts fields from the raw line: the engine has no line parser yet",
            p.line,
            p.column,
        )

    def add_extractor(self, p: Parser) -> None:
        """`| regexp` / `| pattern`: the rule's `extract` list makes the labels record fields (rules/extract.py)."""
        try:
            extractor = compile_extractor(p.kind, p.expression)
        except ValueError as exc:
            raise LogQLError(str(exc), p.line, p.column) from None
        for name in extractor.names:
            if name in self.extracted:
                raise LogQLError(f"the label {name!r} is extracted twice in this query", p.line, p.column)
            if name == LINE_FIELD:
                _check_label(name, p.line, p.column)
            earlier = self.filtered.get(name)
            if earlier is not None:
                # In Loki the filter runs before the label exists (it reads ""); here the record holds one
                # value for the whole query, so the order could not be kept: refused rather than changed.
                raise LogQLError(
                    f"the label filter on {name!r} comes before the parser that extracts it: move it after",
                    *earlier,
                )
            self.extracted.add(name)
            self.labels.append(name)
        self.extract.append({p.kind: p.expression})

    def add_label_filter(self, f: LabelFilter) -> None:
        term = self.label_term(f.expr)
        if term:
            self.terms.append(term)

    def label_term(self, expr: LabelExpr) -> dict[str, Any]:
        if isinstance(expr, LabelBinary):
            left, right = self.label_term(expr.left), self.label_term(expr.right)
            if not left or not right:  # an `__error__=""` side holds for every record here
                return {} if expr.op == "or" else (left or right)
            if expr.op == "and":
                return conjoin([left, right])
            return {"any": [left, right]}
        if expr.name == "__error__":
            if expr.op == "=" and expr.value == "":
                return {}  # no parse or unwrap errors exist here: malformed lines never reach the rules
            raise LogQLError('only `__error__=""` is supported on __error__', expr.line, expr.column)
        _check_label(expr.name, expr.line, expr.column)
        self.filtered.setdefault(expr.name, (expr.line, expr.column))
        name = self.field_of(expr.name)
        if expr.kind == "string":
            assert isinstance(expr.value, str)  # the parser keeps string values as text
            return {name: string_test(expr.op, expr.value, expr.line, expr.column)}
        assert isinstance(expr.value, float)  # numbers, durations and sizes are floats
        # Loki's Numeric/Duration/BytesLabelFilter (pkg/logql/log/label_filter.go) parse the label's text with
        # strconv.ParseFloat, time.ParseDuration or humanize.ParseBytes; a missing label drops the line for
        # every operator, `!=` included; a value that does not parse sets __error__ (dropped by the usual
        # `__error__=""`, and failing a metric query otherwise): here it never matches. `unit` makes the
        # matcher parse durations / sizes the same way (rules/matchers.py).
        unit = {} if expr.kind == "number" else {"unit": expr.kind}
        bound = _plain_number(expr.value)
        if expr.op in _NUMERIC_OPS:
            return {name: {_NUMERIC_OPS[expr.op]: bound, **unit}}
        if expr.op in ("=", "=="):
            return {name: {"gte": bound, "lte": bound, **unit}}  # numeric equality, numeric strings included
        return {"any": [{name: {"gt": bound, **unit}}, {name: {"lt": bound, **unit}}]}  # != : a parsed other value

    def match(self) -> dict[str, Any]:
        return conjoin(self.terms)


def string_test(op: str, value: str, line: int, column: int) -> Any:
    """A Prometheus label matcher as a value test: anchored regexes, a missing field reads as ""."""
    if op in ("=~", "!~"):
        _check_regex(value, line, column)
        inner: Any = {"regex": f"^(?:{value})$"}
    elif _INTEGER.fullmatch(value):
        # Loki's json parser keeps a number's text as the label ("500"); the engine compares a string only
        # with strings, so an integer-looking value also accepts the JSON number.
        inner = {"in": [value, int(value)]}
    else:
        inner = value
    empty = _accepts_empty("=~" if op in ("=~", "!~") else "=", value, line, column)
    if op in ("=", "=~"):
        return {"not": {"exists": True, "not": inner}} if empty else inner
    return {"exists": True, "not": inner} if empty else {"not": inner}


def conjoin(terms: list[dict[str, Any]]) -> dict[str, Any]:
    """One match map requiring every term; clashing keys nest in a one-element `any` (a plain AND)."""
    result: dict[str, Any] = {}
    rest: list[dict[str, Any]] = []
    for term in terms:
        for key, value in term.items():
            current = result.get(key)
            if key not in result:
                result[key] = value
            elif (
                key != "any"
                and isinstance(current, dict)
                and isinstance(value, dict)
                and not current.keys() & value.keys()
            ):
                result[key] = {**current, **value}  # several operators in one map must all hold
            else:
                rest.append({key: value})
    if rest:
        carried = [{"any": result.pop("any")}] if "any" in result else []
        result["any"] = [conjoin(carried + rest)]
    return result


def _check_label(name: str, line: int, column: int) -> None:
    if name == LINE_FIELD:
        raise LogQLError(f"`{LINE_FIELD}` is reserved for the raw line and cannot name a label", line, column)


def _accepts_empty(op: str, value: str, line: int, column: int) -> bool:
    """Whether the matcher holds for the empty string, i.e. for a record without the label."""
    if op in ("=~", "!~"):
        _check_regex(value, line, column)
        matches = re2.fullmatch(value, "") is not None
    else:
        matches = value == ""
    return matches if op in ("=", "=~") else not matches


def _check_regex(pattern: str, line: int, column: int) -> None:
    # Loki compiles with Go's regexp, which is RE2 syntax: the engine's RE2 accepts the same patterns.
    options = re2.Options()
    options.log_errors = False
    try:
        re2.compile(pattern, options)
    except re2.error as exc:
        raise LogQLError(f"invalid regular expression {pattern!r}", line, column) from exc


def _json_path(path: str, line: int, column: int) -> str:
    """A Loki json extraction path (`a.b`, `a["b c"]`) as a dotted field path; array indexes are refused."""
    parts: list[str] = []
    pos = 0
    while pos < len(path):
        m = _JSON_PATH_PART.match(path, pos)
        if m is None or (pos == 0 and path.startswith(".")):
            raise LogQLError(f'unsupported json path {path!r}: use a.b or a["b"] (no array indexes)', line, column)
        name = m.group(1) if m.group(1) is not None else m.group(2).replace('\\"', '"')
        if "." in name:
            raise LogQLError(f"json path key {name!r} contains a dot, which field paths cannot address", line, column)
        parts.append(name)
        pos = m.end()
    if not parts:
        raise LogQLError("empty json path", line, column)
    return ".".join(parts)


def _plain_number(value: float) -> int | float:
    return int(value) if value.is_integer() and abs(value) < 2**53 else value
