"""LogQL lexer and parser: every supported construct gives the expected tree, everything else a positioned refusal."""

from __future__ import annotations

import pytest

from streamalert.rules.logql import LogQLError, parse
from streamalert.rules.logql.ast import (
    BinaryOp,
    Grouping,
    LabelBinary,
    LabelCompare,
    LabelFilter,
    LineFilter,
    LineOp,
    LogRange,
    Matcher,
    MatchOp,
    Number,
    Parser,
    RangeAggregation,
    Unwrap,
    VectorAggregation,
)
from streamalert.rules.logql.lexer import tokenize


def _range(expr: str) -> LogRange:
    """The log range of `count_over_time(<expr>)`-style input, for stage checks."""
    tree = parse(expr)
    while isinstance(tree, BinaryOp | VectorAggregation):
        tree = tree.left if isinstance(tree, BinaryOp) else tree.inner
    assert isinstance(tree, RangeAggregation)
    return tree.range


def test_revel_rule_parses_to_full_tree() -> None:
    """A multi-line Grafana query parses into the exact tree, positions 1-based per line."""
    expr = 'sum(sum_over_time(\n  {service="revel"}\n    |= "done" | json | unwrap tokens_used [1h]\n)) > 1000000'
    assert parse(expr) == BinaryOp(
        ">",
        VectorAggregation(
            "sum",
            RangeAggregation(
                "sum_over_time",
                LogRange(
                    (Matcher("service", "=", "revel", 2, 4),),
                    (LineFilter("|=", "done", 3, 5), Parser("json", (), "", (), 3, 17)),
                    Unwrap("tokens_used", "", 3, 22),
                    3600.0,
                    "1h",
                    2,
                    3,
                ),
                None,
                1,
                5,
            ),
            None,
            1,
            1,
        ),
        Number(1000000.0, "1000000", 4, 6),
        4,
        4,
    )


@pytest.mark.parametrize("op", ["=", "!=", "=~", "!~"])
def test_selector_matchers(op: MatchOp) -> None:
    """Each stream selector operator is kept with the unquoted value."""
    assert _range(f'count_over_time({{app{op}"a.*", env="prod"}}[5m])').selector == (
        Matcher("app", op, "a.*", 1, 18),
        Matcher("env", "=", "prod", 1, 28 + len(op)),
    )


@pytest.mark.parametrize("op", ["|=", "!=", "|~", "!~"])
def test_line_filters(op: LineOp) -> None:
    """Each line filter operator becomes a LineFilter stage, in order."""
    expr = f'rate({{a="b"}} {op} "x" |= `raw\\d` [1m])'
    stages = _range(expr).stages
    assert stages == (
        LineFilter(op, "x", 1, expr.index(op) + 1),
        LineFilter("|=", "raw\\d", 1, expr.index("|= `") + 1),
    )


def test_parsers() -> None:
    """json (with extractions), logfmt, pattern and regexp stages keep what they extract."""
    expr = (
        'count_over_time({a="b"} | json st="resp.status", ua | logfmt | pattern "<_> <level> <_>"'
        ' | regexp "(?P<code>\\\\d+) (?<path>\\\\S+)" [5m])'
    )
    assert _range(expr).stages == (
        Parser("json", (("st", "resp.status"), ("ua", "ua")), "", (), 1, expr.index("json") + 1),
        Parser("logfmt", (), "", (), 1, expr.index("logfmt") + 1),
        Parser("pattern", (), "<_> <level> <_>", ("level",), 1, expr.index("pattern") + 1),
        Parser("regexp", (), "(?P<code>\\d+) (?<path>\\S+)", ("code", "path"), 1, expr.index("regexp") + 1),
    )


def test_label_filters_with_units_and_precedence() -> None:
    """Numbers, durations (seconds) and sizes parse; `,`/juxtaposition/and bind tighter than or."""
    expr = 'count_over_time({a="b"} | x >= -2 y > 1.5s, z <= 10KiB or w == 3 [5m])'
    (stage,) = _range(expr).stages
    assert isinstance(stage, LabelFilter)

    def col(text: str) -> int:
        return expr.index(text) + 1

    x = LabelCompare("x", ">=", -2.0, "number", "-2", 1, col("x >="))
    y = LabelCompare("y", ">", 1.5, "duration", "1.5s", 1, col("y >"))
    z = LabelCompare("z", "<=", 10240.0, "bytes", "10KiB", 1, col("z <="))
    w = LabelCompare("w", "==", 3.0, "number", "3", 1, col("w =="))
    xy = LabelBinary("and", x, y, 1, col("y >"))  # juxtaposition: positioned at the second filter
    assert stage.expr == LabelBinary("or", LabelBinary("and", xy, z, 1, col(", z")), w, 1, col("or"))


def test_label_or_binds_looser_than_and_as_in_lokis_parser_test() -> None:
    """Loki's parser_test.go: `a < 500 or a > 200 and size >= 2.5KiB` is Or(a < 500, And(a > 200, size))."""
    expr = (
        'count_over_time({app="foo"} |= "bar" | json |  status_code < 500 or status_code > 200 and size >= 2.5KiB [1m])'
    )
    (_, _, stage) = _range(expr).stages
    assert isinstance(stage, LabelFilter)
    assert isinstance(stage.expr, LabelBinary)
    assert stage.expr.op == "or"
    assert isinstance(stage.expr.right, LabelBinary)
    assert stage.expr.right.op == "and"
    assert stage.expr.right.right == LabelCompare("size", ">=", 2560.0, "bytes", "2.5KiB", 1, expr.index("size") + 1)


def test_unwrap_conversions_and_range_before_pipeline() -> None:
    """`unwrap duration(F)` keeps its conversion; the range may come right after the selector."""
    rng = _range('max_over_time({a="b"}[5m] | json | unwrap duration(latency))')
    assert rng.unwrap == Unwrap("latency", "duration", 1, 34)
    assert rng.seconds == 300.0
    assert rng.stages == (Parser("json", (), "", (), 1, 29),)


def test_groupings_before_and_after() -> None:
    """`sum by (a) (...)` and `sum(...) without (b)` give the same node shape; keywords are case-insensitive."""
    before = parse('SUM BY (a, b) (Count_Over_Time({x="y"}[1m]))')
    after = parse('sum(count_over_time({x="y"}[1m])) without (b)')
    assert isinstance(before, VectorAggregation)
    assert isinstance(after, VectorAggregation)
    assert before.grouping == Grouping(False, ("a", "b"), 1, 5)
    assert after.grouping == Grouping(True, ("b",), 1, 35)


def test_set_operators_precedence() -> None:
    """`or` binds loosest, then and/unless, then comparisons (expr.y %left order)."""
    c = 'count_over_time({a="b"}[1m])'
    tree = parse(f"{c} > 1 or {c} > 2 and {c} < 9 unless {c} > 5")
    assert isinstance(tree, BinaryOp)
    assert tree.op == "or"
    assert isinstance(tree.right, BinaryOp)
    assert tree.right.op == "unless"
    assert isinstance(tree.right.left, BinaryOp)
    assert tree.right.left.op == "and"


def test_number_on_the_left_and_parentheses() -> None:
    """`5 < (metric)` parses with the number on the left side."""
    tree = parse('5 < (rate({a="b"}[1m]))')
    assert isinstance(tree, BinaryOp)
    assert tree.left == Number(5.0, "5", 1, 1)


def test_lexer_units_strings_and_comments() -> None:
    """Durations, sizes, Go escapes, raw strings and # comments lex as Loki's lexer does."""
    toks = tokenize('1h30m 2MB 5M 5m 2ki 1.5 "a\\tb\\u00e9\\x41" `\\d+` # comment\n[90s]')
    assert [(t.kind, t.value) for t in toks] == [
        ("DURATION", 5400.0),
        ("BYTES", 2_000_000.0),
        ("BYTES", 5_000_000.0),
        ("DURATION", 300.0),
        ("BYTES", 2048.0),
        ("NUMBER", "1.5"),
        ("STRING", "a\tbéA"),
        ("STRING", "\\d+"),
        ("RANGE", 90.0),
        ("EOF", ""),
    ]
    assert (toks[8].line, toks[8].column) == (2, 1)


REFUSALS = [
    ('topk(3, count_over_time({a="b"}[1m]))', 1, 1, "`topk` is not supported"),
    ('quantile_over_time({a="b"} | unwrap x [1m])', 1, 20, "takes the quantile first"),
    ('count_over_time({a="b"} | line_format "{{.x}}" [1m])', 1, 27, "`| line_format` is not supported"),
    ('count_over_time({a="b"} | label_format x=y [1m])', 1, 27, "`| label_format` is not supported"),
    ('count_over_time({a="b"} | unpack [1m])', 1, 27, "`| unpack` is not supported"),
    ('count_over_time({a="b"} | logfmt --strict [1m])', 1, 34, "the parser flag `--strict` is not supported"),
    ('count_over_time({a="b"} |> "<_> x" [1m])', 1, 25, "the pattern line filter `|>` is not supported"),
    ('count_over_time({a="b"} |= "x" or "y" [1m])', 1, 32, "`or` between line filter strings"),
    ('count_over_time({a="b"} |= ip("1.2.3.4") [1m])', 1, 28, "the `ip(...)` line filter"),
    ('count_over_time({a="b"}[1m] offset 5m)', 1, 29, "`offset` is not supported"),
    ('count_over_time({a="b"}[1m]) + 1', 1, 30, "arithmetic (`+`) is not supported"),
    ('count_over_time({a="b"}[1m]) > bool 1', 1, 32, "modifier `bool` is not supported"),
    ('{a="b"} |= "x"', 1, 1, "a log query is not an alert condition"),
    ('count_over_time({a="b"}[5x])', 1, 24, "invalid range duration '5x'"),
    ('count_over_time({a="b"}[0s])', 1, 24, "invalid range duration '0s'"),
    ('count_over_time({a="b"}\n  |= "x\n")', 2, 6, "unterminated string"),
    ('count_over_time({a="b"} |= "\\q" [1m])', 1, 29, "invalid escape sequence"),
    ('count_over_time({a="b"} | x > "1" [1m])', 1, 31, "compares numbers, durations or sizes, not a string"),
    ('count_over_time({a="b"} | pattern "<_> x" [1m])', 1, 35, "needs at least one named capture"),
    ('sum_over_time({a="b"} | unwrap x | y > 1 [1m])', 1, 34, "filters after `unwrap` are not supported"),
    ("vector(1)", 1, 1, "`vector` is not supported"),
    ('count_over_time({a="b"} $ [1m])', 1, 25, "unexpected character '$'"),
    ('count_over_time({a="b"}', 1, 24, "expected a range such as [5m], found the end of the expression"),
]


@pytest.mark.parametrize(("expr", "line", "column", "message"), REFUSALS)
def test_refusals_name_the_construct_and_position(expr: str, line: int, column: int, message: str) -> None:
    """Each refused construct raises LogQLError with its name and 1-based line and column."""
    with pytest.raises(LogQLError) as info:
        parse(expr)
    assert message in info.value.message
    assert (info.value.line, info.value.column) == (line, column)
    assert str(info.value).startswith(f"line {line}, column {column}: ")
