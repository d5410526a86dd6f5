"""A recursive-descent parser for the supported LogQL subset; anything else is refused by name and position.

Hand-written rather than generated (e.g. with `lark`): every refusal can name the construct the user wrote
("`topk` is not supported") at the token where it starts, instead of a generic "unexpected token" from a
grammar that would have to spell out the whole of LogQL to recognise what it refuses; and it adds no
dependency. The grammar follows grafana/loki pkg/logql/syntax/expr.y:
- precedence, lowest first: `or`; `and`, `unless`; comparisons; arithmetic (refused); as `%left` in expr.y;
- the range `[W]` may follow the selector or the pipeline (the `logRangeExpr` alternatives), with the
  unwrap stage last; `by (...)`/`without (...)` may precede or follow an aggregation's parentheses;
- a label filter expression joins filters with `and`, `,` or mere juxtaposition, and with `or`, which
  binds looser: `a or b and c` is `a or (b and c)`. That is what Loki's parser does (parser_test.go case
  `status_code < 500 or status_code > 200 and latency >= 250ms` -> Or(a, And(b, c))), although
  docs/sources/query/log_queries/_index.md describes left-to-right evaluation; the parser decides;
- function names are keywords only before `(` (or `by`/`without`), as lex.go's isFunction decides.
Semantic checks (which aggregations can be expressed exactly) are in translate.py, not here.
"""

from __future__ import annotations

import re
from typing import cast

from streamalert.rules.logql.ast import (
    BinaryOp,
    Conversion,
    Expr,
    Grouping,
    LabelBinary,
    LabelCompare,
    LabelExpr,
    LabelFilter,
    LineFilter,
    LineOp,
    LogRange,
    Matcher,
    MatchOp,
    Number,
    Parser,
    ParserKind,
    RangeAggregation,
    Stage,
    Unwrap,
    ValueKind,
    VectorAggregation,
)
from streamalert.rules.logql.errors import LogQLError
from streamalert.rules.logql.lexer import Token, tokenize

RANGE_OPS = frozenset(
    {"count_over_time", "rate", "bytes_over_time", "absent_over_time", "sum_over_time", "avg_over_time"}
    | {"max_over_time", "min_over_time", "first_over_time", "last_over_time", "quantile_over_time"}
)
VECTOR_OPS = frozenset(("sum", "count", "max", "min", "avg"))
# Known LogQL functions outside the subset, refused by name (lex.go functionTokens).
_REFUSED_FUNCTIONS = {
    "bytes_rate": "bytes_rate", "rate_counter": "rate_counter", "stddev_over_time": "stddev_over_time",
    "stdvar_over_time": "stdvar_over_time", "topk": "topk",
    "bottomk": "bottomk", "approx_topk": "approx_topk", "stddev": "stddev", "stdvar": "stdvar",
    "sort": "sort", "sort_desc": "sort_desc", "label_replace": "label_replace", "vector": "vector",
}  # fmt: skip
_REFUSED_STAGES = ("line_format", "label_format", "unpack", "drop", "keep", "decolorize")
_COMPARISONS = ("==", "!=", ">", ">=", "<", "<=")
_ARITHMETIC = ("+", "-", "*", "/", "%", "^")
_PATTERN_CAPTURE = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")
_REGEXP_GROUP = re.compile(r"\(\?P?<([A-Za-z_][A-Za-z0-9_]*)>")


def parse(source: str) -> Expr:
    """Parse a LogQL metric expression of the supported subset; raise LogQLError naming what is refused."""
    return _Parser(tokenize(source)).parse_root()


class _Parser:
    def __init__(self, tokens: list[Token]) -> None:
        self.tokens = tokens
        self.index = 0

    # -- token helpers -------------------------------------------------------------------------------
    @property
    def tok(self) -> Token:
        return self.tokens[self.index]

    def peek(self, ahead: int = 1) -> Token:
        return self.tokens[min(self.index + ahead, len(self.tokens) - 1)]

    def advance(self) -> Token:
        token = self.tok
        if token.kind != "EOF":
            self.index += 1
        return token

    def fail(self, message: str, token: Token | None = None) -> LogQLError:
        at = token or self.tok
        return LogQLError(message, at.line, at.column)

    def expect_op(self, op: str, what: str) -> Token:
        if not self.tok.is_op(op):
            raise self.fail(f"expected {op!r} {what}, found {_describe(self.tok)}")
        return self.advance()

    def expect_string(self, what: str) -> Token:
        if self.tok.kind != "STRING":
            raise self.fail(f"expected a quoted string {what}, found {_describe(self.tok)}")
        return self.advance()

    def expect_ident(self, what: str) -> Token:
        if self.tok.kind != "IDENT":
            raise self.fail(f"expected {what}, found {_describe(self.tok)}")
        return self.advance()

    # -- metric expressions --------------------------------------------------------------------------
    def parse_root(self) -> Expr:
        expr = self.parse_or()
        if self.tok.kind != "EOF":
            raise self.fail(f"unexpected {_describe(self.tok)} after a complete expression")
        return expr

    def parse_or(self) -> Expr:
        left = self.parse_and()
        while self.tok.is_word("or"):
            op = self.advance()
            self.refuse_binop_modifiers()
            left = BinaryOp("or", left, self.parse_and(), op.line, op.column)
        return left

    def parse_and(self) -> Expr:
        left = self.parse_comparison()
        while self.tok.is_word("and", "unless"):
            op = self.advance()
            self.refuse_binop_modifiers()
            left = BinaryOp(op.text.lower(), left, self.parse_comparison(), op.line, op.column)
        return left

    def parse_comparison(self) -> Expr:
        left = self.parse_operand()
        while self.tok.is_op(*_COMPARISONS):
            op = self.advance()
            self.refuse_binop_modifiers()
            left = BinaryOp(op.text, left, self.parse_operand(), op.line, op.column)
        return left

    def refuse_binop_modifiers(self) -> None:
        if self.tok.is_word("bool", "on", "ignoring", "group_left", "group_right"):
            raise self.fail(f"the binary operator modifier `{self.tok.text}` is not supported")

    def parse_operand(self) -> Expr:
        expr = self.parse_primary()
        if self.tok.is_op("/") and not isinstance(expr, Number) and self.peek().kind != "NUMBER":
            op = self.advance()  # a ratio of two metrics: the translation decides whether it is exact
            self.refuse_binop_modifiers()
            expr = BinaryOp("/", expr, self.parse_primary(), op.line, op.column)
        if self.tok.is_op(*_ARITHMETIC):
            raise self.fail(f"arithmetic (`{self.tok.text}`) is not supported: compare with a number instead")
        return expr

    def parse_primary(self) -> Expr:
        tok = self.tok
        if tok.is_op("("):
            self.advance()
            inner = self.parse_or()
            self.expect_op(")", "to close '('")
            return inner
        if tok.kind == "NUMBER" or (tok.is_op("-", "+") and self.peek().kind == "NUMBER"):
            return self.parse_number()
        if tok.is_op("{"):
            raise self.fail("a log query is not an alert condition: wrap it in count_over_time(...[W]) or rate(...[W])")
        if tok.kind == "IDENT":
            name = tok.text.lower()
            is_call = self.peek().is_op("(") or self.peek().is_word("by", "without")
            if is_call and name in _REFUSED_FUNCTIONS:
                raise self.fail(f"`{_REFUSED_FUNCTIONS[name]}` is not supported")
            if is_call and name in RANGE_OPS:
                return self.parse_range_aggregation()
            if is_call and name in VECTOR_OPS:
                return self.parse_vector_aggregation()
        raise self.fail(f"expected a metric expression, found {_describe(tok)}")

    def parse_number(self) -> Number:
        start = self.tok
        sign = self.advance().text if self.tok.is_op("-", "+") else ""
        number = self.advance()
        if number.text.lower().startswith("0x"):
            raise self.fail("hexadecimal numbers are not supported", number)
        text = ("-" if sign == "-" else "") + number.text
        return Number(float(text), text, start.line, start.column)

    def parse_grouping(self) -> Grouping | None:
        if not self.tok.is_word("by", "without"):
            return None
        word = self.advance()
        self.expect_op("(", f"after `{word.text}`")
        labels: list[str] = []
        while not self.tok.is_op(")"):
            labels.append(self.expect_ident("a label name").text)
            if not self.tok.is_op(","):
                break
            self.advance()
        self.expect_op(")", "to close the label list")
        return Grouping(word.text.lower() == "without", tuple(labels), word.line, word.column)

    def parse_vector_aggregation(self) -> VectorAggregation:
        name = self.advance()
        grouping = self.parse_grouping()
        self.expect_op("(", f"after `{name.text}`")
        if self.tok.kind == "NUMBER" and self.peek().is_op(","):
            raise self.fail(f"`{name.text}` takes no parameter")
        inner = self.parse_or()
        self.expect_op(")", f"to close `{name.text}(`")
        after = self.parse_grouping()
        if grouping is not None and after is not None:
            raise self.fail("a grouping both before and after the parentheses", self.tokens[self.index - 1])
        return VectorAggregation(name.text.lower(), inner, grouping or after, name.line, name.column)

    def parse_range_aggregation(self) -> RangeAggregation:
        name = self.advance()
        if self.tok.is_word("by", "without"):
            raise self.fail(f"a grouping goes after `{name.text}(...)`, not before")
        self.expect_op("(", f"after `{name.text}`")
        param: Number | None = None
        if name.text.lower() == "quantile_over_time":
            tok = self.tok
            if tok.kind != "NUMBER":
                raise self.fail("`quantile_over_time` takes the quantile first, e.g. quantile_over_time(0.99, ...)")
            self.advance()
            param = Number(float(tok.text), tok.text, tok.line, tok.column)
            self.expect_op(",", "after the quantile")
        elif self.tok.kind == "NUMBER":
            raise self.fail(f"`{name.text}` takes no parameter")
        log_range = self.parse_log_range()
        self.expect_op(")", f"to close `{name.text}(`")
        grouping = self.parse_grouping()
        return RangeAggregation(name.text.lower(), log_range, grouping, name.line, name.column, param)

    # -- log ranges ----------------------------------------------------------------------------------
    def parse_log_range(self) -> LogRange:
        start = self.tok
        wrapped = start.is_op("(")
        if wrapped:
            self.advance()
        selector = self.parse_selector()
        stages: list[Stage] = []
        unwrap: Unwrap | None = None
        range_tok: Token | None = None
        while True:
            tok = self.tok
            if tok.kind == "RANGE":
                if range_tok is not None:
                    raise self.fail("a second range")
                range_tok = self.advance()  # also inside parentheses: `(selector [5m])` (expr.y logRangeExpr)
            elif tok.is_word("offset"):
                raise self.fail("`offset` is not supported")
            elif tok.is_op("|") and self.peek().is_word("unwrap"):
                if unwrap is not None:
                    raise self.fail("a second `unwrap`")
                unwrap = self.parse_unwrap()
            elif tok.is_op("|=", "!=", "|~", "!~", "|>", "!>", "|"):
                if unwrap is not None:
                    raise self.fail("filters after `unwrap` are not supported (put them before it)")
                stages.append(self.parse_stage())
            elif wrapped and tok.is_op(")"):
                self.advance()
                wrapped = False
            else:
                break
        if wrapped:
            raise self.fail(f"expected ')' to close the log range, found {_describe(self.tok)}")
        if range_tok is None:
            raise self.fail(f"expected a range such as [5m], found {_describe(self.tok)}")
        seconds = range_tok.value
        assert isinstance(seconds, float)  # the lexer stores a RANGE's seconds
        return LogRange(
            tuple(selector), tuple(stages), unwrap, seconds, range_tok.text[1:-1].strip(), start.line, start.column
        )

    def parse_selector(self) -> list[Matcher]:
        self.expect_op("{", "to open a stream selector")
        matchers: list[Matcher] = []
        while not self.tok.is_op("}"):
            matchers.append(self.parse_matcher())
            if not self.tok.is_op(","):
                break
            self.advance()
        self.expect_op("}", "to close the stream selector")
        return matchers

    def parse_matcher(self) -> Matcher:
        name = self.expect_ident("a label name")
        if not self.tok.is_op("=", "!=", "=~", "!~"):
            raise self.fail(f"expected =, !=, =~ or !~ after label {name.text!r}, found {_describe(self.tok)}")
        op = self.advance().text
        value = self.expect_string(f"after {name.text}{op}")
        return Matcher(name.text, cast(MatchOp, op), str(value.value), name.line, name.column)

    def parse_unwrap(self) -> Unwrap:
        pipe = self.advance()
        self.advance()  # `unwrap`
        name = self.expect_ident("a label name after `unwrap`")
        if self.tok.is_op("("):
            conversion = name.text.lower()
            if conversion not in ("duration", "duration_seconds", "bytes"):
                raise self.fail(f"unknown unwrap conversion `{name.text}`", name)
            self.advance()
            name = self.expect_ident(f"a label name in {conversion}(...)")
            self.expect_op(")", f"to close {conversion}(")
            return Unwrap(name.text, cast(Conversion, conversion), pipe.line, pipe.column)
        return Unwrap(name.text, "", pipe.line, pipe.column)

    def parse_stage(self) -> Stage:
        tok = self.tok
        if tok.is_op("|>", "!>"):
            raise self.fail(f"the pattern line filter `{tok.text}` is not supported")
        if not tok.is_op("|"):
            self.advance()
            if self.tok.is_word("ip") and self.peek().is_op("("):
                raise self.fail("the `ip(...)` line filter is not supported")
            value = self.expect_string(f"after `{tok.text}`")
            if self.tok.is_word("or") and self.peek().kind == "STRING":
                raise self.fail("`or` between line filter strings is not supported")
            return LineFilter(cast(LineOp, tok.text), str(value.value), tok.line, tok.column)
        self.advance()
        word = self.tok
        lowered = word.text.lower() if word.kind == "IDENT" else ""
        follows = self.peek()
        is_keyword = word.kind == "IDENT" and not follows.is_op("=", "!=", "=~", "!~", "==", ">", ">=", "<", "<=")
        if is_keyword and lowered in _REFUSED_STAGES:
            raise self.fail(f"`| {lowered}` is not supported")
        if is_keyword and lowered in ("json", "logfmt"):
            self.advance()
            if self.tok.kind == "FLAG":
                raise self.fail(f"the parser flag `{self.tok.text}` is not supported")
            extractions = self.parse_extractions() if self.tok.kind == "IDENT" else ()
            return Parser(cast(ParserKind, lowered), extractions, "", (), word.line, word.column)
        if is_keyword and lowered in ("pattern", "regexp"):
            self.advance()
            text = self.expect_string(f"after `{lowered}`")
            found = (_PATTERN_CAPTURE if lowered == "pattern" else _REGEXP_GROUP).findall(str(text.value))
            labels = tuple(name for name in found if name != "_")
            if not labels:
                raise self.fail(f"`{lowered}` needs at least one named capture", text)
            return Parser(cast(ParserKind, lowered), (), str(text.value), labels, word.line, word.column)
        return LabelFilter(self.parse_label_or(), word.line, word.column)

    def parse_extractions(self) -> tuple[tuple[str, str], ...]:
        pairs: list[tuple[str, str]] = []
        while True:
            label = self.expect_ident("a label name to extract")
            path = label.text
            if self.tok.is_op("="):
                self.advance()
                path = str(self.expect_string(f"(the path) after {label.text}=").value)
            pairs.append((label.text, path))
            if not self.tok.is_op(","):
                return tuple(pairs)
            self.advance()

    # -- label filters -------------------------------------------------------------------------------
    def parse_label_or(self) -> LabelExpr:
        left = self.parse_label_and()
        while self.tok.is_word("or"):
            op = self.advance()
            left = LabelBinary("or", left, self.parse_label_and(), op.line, op.column)
        return left

    def parse_label_and(self) -> LabelExpr:
        left = self.parse_label_atom()
        while True:
            tok = self.tok
            if tok.is_word("and") or tok.is_op(","):
                self.advance()
            elif not (tok.is_op("(") or (tok.kind == "IDENT" and not tok.is_word("or", "offset"))):
                return left
            left = LabelBinary("and", left, self.parse_label_atom(), tok.line, tok.column)

    def parse_label_atom(self) -> LabelExpr:
        if self.tok.is_op("("):
            self.advance()
            inner = self.parse_label_or()
            self.expect_op(")", "to close '(' in a label filter")
            return inner
        name = self.expect_ident("a label filter (e.g. status >= 500)")
        if not self.tok.is_op("=", "!=", "=~", "!~", "==", ">", ">=", "<", "<="):
            raise self.fail(f"expected a comparison after label {name.text!r}, found {_describe(self.tok)}")
        op = self.advance()
        value = self.tok
        if value.is_word("ip") and self.peek().is_op("("):
            raise self.fail("the `ip(...)` label filter is not supported")
        if value.kind == "STRING":
            if op.text not in ("=", "!=", "=~", "!~"):
                raise self.fail(f"`{op.text}` compares numbers, durations or sizes, not a string", value)
            self.advance()
            return LabelCompare(name.text, op.text, str(value.value), "string", value.text, name.line, name.column)
        if op.text in ("=~", "!~"):
            raise self.fail(f"`{op.text}` needs a quoted regular expression", value)
        if value.kind in ("DURATION", "BYTES"):
            self.advance()
            kind: ValueKind = "duration" if value.kind == "DURATION" else "bytes"
            amount = value.value
            assert isinstance(amount, float)  # the lexer stores seconds or bytes
            return LabelCompare(name.text, op.text, amount, kind, value.text, name.line, name.column)
        if value.kind == "NUMBER" or (value.is_op("-", "+") and self.peek().kind == "NUMBER"):
            number = self.parse_number()
            return LabelCompare(name.text, op.text, number.value, "number", number.text, name.line, name.column)
        raise self.fail(f"expected a string, number, duration or size after {name.text}{op.text}", value)


def _describe(token: Token) -> str:
    if token.kind == "EOF":
        return "the end of the expression"
    return f"{token.text!r}"
