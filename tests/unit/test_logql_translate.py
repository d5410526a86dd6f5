"""LogQL -> streamalert rule dicts: exact translations, the engine needs they list, and semantic refusals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streamalert.config.rules import load_rules
from streamalert.rules.codegen import compile_rules
from streamalert.rules.logql import LogQLError, translate
from streamalert.rules.matchers import compile_match

SVC = '{service="revel"}'

# expr -> (rule dict, features of the needs)
TRANSLATIONS: list[tuple[str, dict[str, Any], list[str]]] = [
    (
        f'sum by (host, env) (count_over_time({SVC} | level=~"warn|error" | status >= 500 [5m])) > 30',
        {
            "match": {"service": "revel", "level": {"regex": "^(?:warn|error)$"}, "status": {"gte": 500}},
            "window": "5m",
            "condition": "count > 30",
            "group_by": ["host", "env"],
        },
        [],
    ),
    (
        f"sum(rate({SVC} | json [10m])) > 0.5",
        {"match": {"service": "revel"}, "window": "10m", "condition": "rate > 0.5"},
        [],
    ),
    (
        f'avg_over_time({SVC} | json ms="timing.total" | unwrap ms [1m]) by (route) >= 250',
        {"match": {"service": "revel"}, "window": "1m", "condition": "avg(timing.total) >= 250", "group_by": ["route"]},
        [],
    ),
    (
        f"max(max_over_time({SVC} | unwrap queue_depth [30s])) > 1e3",
        {"match": {"service": "revel"}, "window": "30s", "condition": "max(queue_depth) > 1e3"},
        [],
    ),
    (
        f"min by (db) (min_over_time({SVC} | unwrap free_mb [1h30m])) < 512",
        {"match": {"service": "revel"}, "window": "1h30m", "condition": "min(free_mb) < 512", "group_by": ["db"]},
        [],
    ),
    (
        f"10 < sum(count_over_time({SVC} | code != 200 [1m]))",
        {
            "match": {"service": "revel", "any": [{"code": {"gt": 200}}, {"code": {"lt": 200}}]},
            "window": "1m",
            "condition": "count > 10",
        },
        [],
    ),
    (
        f'sum(count_over_time({SVC} | user="" [1m])) == 3',
        {
            "match": {"service": "revel", "user": {"not": {"exists": True, "not": ""}}},
            "window": "1m",
            "condition": "count == 3",
        },
        [],
    ),
    (
        f'sum(count_over_time({SVC} | a="x" or b=~"y.*" | __error__="" [1m])) > 0',
        {
            "match": {"service": "revel", "any": [{"a": "x"}, {"b": {"regex": "^(?:y.*)$"}}]},
            "window": "1m",
            "condition": "count > 0",
        },
        [],
    ),
    (
        f"sum by (h) (rate({SVC} | unwrap bytes_sent [5m])) > 0.5",
        {"match": {"service": "revel"}, "window": "5m", "condition": "sum(bytes_sent) > 150", "group_by": ["h"]},
        [],
    ),
    (
        'count_over_time(({app="a"} |= "x" [90s])) >= 2',
        {"match": {"app": "a", "_line": {"contains": "x"}}, "window": "90s", "condition": "count >= 2"},
        ["_line"],
    ),
    (
        'absent_over_time({container="celery_beat", env=~"prod|stage"}[5m])',
        {
            "match": {"container": "celery_beat", "env": {"regex": "^(?:prod|stage)$"}},
            "absent_for": "5m",
            "group_by": ["container"],
            "expect": [{"container": "celery_beat"}],
        },
        [],
    ),
    # Engine gaps: translated in the same spelling and listed.
    (
        f'sum(count_over_time({SVC} |= "timeout" != "retry" |~ "db-[0-9]" [5m])) > 3',
        {
            "match": {
                "service": "revel",
                "_line": {"contains": "timeout", "not": {"contains": "retry"}, "regex": "db-[0-9]"},
            },
            "window": "5m",
            "condition": "count > 3",
        },
        ["_line"],
    ),
    (
        f'sum(count_over_time({SVC} |= "a" |= "b" [5m])) > 3',
        {
            "match": {"service": "revel", "_line": {"contains": "a"}, "any": [{"_line": {"contains": "b"}}]},
            "window": "5m",
            "condition": "count > 3",
        },
        ["_line"],
    ),
    (
        f"sum(bytes_over_time({SVC}[1m])) > 1000000",
        {"match": {"service": "revel"}, "window": "1m", "condition": "bytes > 1000000"},
        [],
    ),
    (
        f"last_over_time({SVC} | unwrap v [1m]) by (h) > 1",
        {"match": {"service": "revel"}, "window": "1m", "condition": "last(v) > 1", "group_by": ["h"]},
        [],
    ),
    (
        f'sum(count_over_time({SVC} | logfmt | pattern "<ip> <_>" | dur > 2s, size >= 1MB [1m])) > 0',
        {
            "match": {
                "service": "revel",
                "dur": {"gt": 2, "unit": "duration"},
                "size": {"gte": 1000000, "unit": "bytes"},
            },
            "window": "1m",
            "condition": "count > 0",
            "extract": [{"pattern": "<ip> <_>"}],
        },
        ["parser:logfmt"],
    ),
    (
        f"sum without (pod) (sum_over_time({SVC} | unwrap bytes(size) [1m])) > 5",
        {"match": {"service": "revel"}, "window": "1m", "condition": "sum(bytes(size)) > 5", "group_by": ["service"]},
        [],
    ),
]


@pytest.mark.parametrize(("expr", "rule", "needs"), TRANSLATIONS)
def test_translation(expr: str, rule: dict[str, Any], needs: list[str], tmp_path: Path) -> None:
    """Each supported construct gives the expected rule dict; one without needs loads as a streamalert rule."""
    result = translate(expr)
    assert result.rule == rule
    assert sorted(n.feature for n in result.needs) == sorted(needs)
    if result.loadable:
        path = tmp_path / "rules.yaml"
        path.write_text(yaml.safe_dump({"rules": [{"name": "r", **result.rule}]}), encoding="utf-8")
        (loaded,) = load_rules(path)
        assert loaded.name == "r"


def test_need_positions_point_at_the_construct() -> None:
    """A need carries the line and column of the construct that needs it."""
    expr = 'sum(count_over_time({a="b"}\n  |= "x" [1m])) > 0'
    (need,) = translate(expr).needs
    assert (need.feature, need.line, need.column) == ("_line", 2, 3)


def test_bare_range_aggregation_groups_by_varying_selector_labels() -> None:
    """Without an outer sum, Loki's per-stream series map to group_by the non-`=` selector labels, with a note."""
    result = translate('count_over_time({app=~"api|web", env="prod", zone!="x"}[5m]) > 3')
    assert result.rule["group_by"] == ["app", "zone"]
    assert result.rule["condition"] == "count > 3"
    assert "per stream" in result.notes[0]
    assert "app, zone" in result.notes[0]


def test_absent_labels_follow_loki() -> None:
    """absent_over_time expects only the `=` labels no other matcher names (Loki's absentLabels)."""
    rule = translate('absent_over_time({job="beat", env="prod", env!="x"}[1m]) == 1').rule
    assert rule["group_by"] == ["job"]
    assert rule["expect"] == [{"job": "beat"}]


def test_rate_of_unwrapped_range_scales_exactly() -> None:
    """rate(... | unwrap F [W]) > N is sum(F) > N*W with decimal arithmetic, no float residue."""
    result = translate('sum(rate({a="b"} | unwrap v [3m])) > 0.1')
    assert result.rule["condition"] == "sum(v) > 18"
    assert "multiplied by 3m" in result.notes[0]


def test_bare_count_means_any_sample() -> None:
    """A count or rate without a comparison alerts while any line is in the window (> 0)."""
    assert translate('sum(rate({a="b"}[1m]))').rule["condition"] == "rate > 0"
    assert translate('count_over_time({a="b"}[1m])').rule["condition"] == "count > 0"


LABEL_SEMANTICS: list[tuple[str, dict[str, Any], bool]] = [
    ('app=~"api"', {"app": "api-2"}, False),  # Prometheus regexes are anchored
    ('app=~"api.*"', {"app": "api-2"}, True),
    ('app!~"a.*"', {}, True),  # missing label = "" which does not match a.*
    ('app!~".*"', {}, False),  # "" matches .*: a missing label fails !~
    ('app=~".*"', {}, True),
    ('app=""', {}, True),
    ('app=""', {"app": "x"}, False),
    ('app!=""', {}, False),
    ('app!=""', {"app": "x"}, True),
    ('app!="x"', {}, True),
    ('status="500"', {"status": 500}, True),  # Loki's json label of the number 500 is "500"
    ('status="500"', {"status": "500"}, True),
    ('status!="500"', {"status": 500}, False),
    ('status="500"', {"status": 501}, False),
    # label_filter.go: a missing label drops the line for every numeric operator, != included; a value that
    # does not parse sets __error__ (dropped by `__error__=""`): never a match here.
    ("code != 200", {}, False),
    ("code != 200", {"code": "201"}, True),
    ("code != 200", {"code": "abc"}, False),
    ("code == 200", {"code": 200.0}, True),
    ("latency > 250ms", {"latency": "1.5s"}, True),  # time.ParseDuration
    ("latency > 250ms", {"latency": "250ms"}, False),
    ("latency > 250ms", {"latency": "1h"}, True),
    ("latency > 250ms", {"latency": 2}, False),  # "2" has no unit: ParseDuration fails
    ("latency > 250ms", {"latency": "1d"}, False),  # Go durations have no days
    ("latency != 1s", {"latency": "1000ms"}, False),
    ("latency != 1s", {}, False),
    ("size >= 1MB", {"size": "1 MiB"}, True),  # humanize.ParseBytes: spaces, i units are 1024s
    ("size >= 1MB", {"size": "999kB"}, False),
    ("size >= 1MB", {"size": 2000000}, True),  # a JSON number's text: bytes without a unit
    ("size >= 1MB", {"size": "big"}, False),
]


@pytest.mark.parametrize(("matcher", "record", "holds"), LABEL_SEMANTICS)
def test_label_matcher_semantics(matcher: str, record: dict[str, Any], holds: bool) -> None:
    """Translated label filters behave like Prometheus matchers when run by the engine's matcher."""
    result = translate(f'sum(count_over_time({{service="s"}} | {matcher} [1m])) > 0')
    assert compile_match(result.rule["match"])({"service": "s", **record}) is holds
    compiled = compile_rules([result.rule["match"]])  # the engine's hot path agrees
    assert list(compiled.match(compiled.decode(orjson.dumps({"service": "s", **record})))) == ([0] if holds else [])


SET_OPS = [
    ("> 5 or", "> 10", "count > 5"),
    ("> 5 and", "> 10", "count > 10"),
    ("> 5 and", ">= 5", "count > 5"),
    ("> 5 or", ">= 5", "count >= 5"),
    ("< 5 or", "< 10", "count < 10"),
    ("> 10 unless", "< 5", "count > 10"),
    ("> 3 unless", "<= 8", "count > 8"),
]


@pytest.mark.parametrize(("left", "right", "condition"), SET_OPS)
def test_set_operators_when_exact(left: str, right: str, condition: str) -> None:
    """or/and/unless of two comparisons of the same query collapse to the one equivalent threshold."""
    q = 'sum(count_over_time({a="b"}[1m]))'
    assert translate(f"{q} {left} {q} {right}").rule["condition"] == condition


Q = 'count_over_time({a="b"}[1m])'
SEMANTIC_REFUSALS = [
    (f"avg(count_over_time({SVC}[1m])) > 1", 1, 1, "`avg` of `count_over_time` combines per-stream values"),
    (f"count by (h) (rate({SVC}[1m])) > 1", 1, 1, "`count` of `rate`"),
    (f"max(count_over_time({SVC}[1m])) > 1", 1, 1, "`max` of `count_over_time`"),
    (f"sum(avg_over_time({SVC} | unwrap x [1m])) > 1", 1, 1, "`sum` of `avg_over_time`"),
    (f"sum(sum(count_over_time({SVC}[1m]))) > 1", 1, 5, "a nested aggregation is not supported"),
    (f"sum_over_time({SVC}[1m]) > 1", 1, 1, "`sum_over_time` needs `| unwrap FIELD`"),
    (f"count_over_time({SVC} | unwrap x [1m]) > 1", 1, 35, "does not take `| unwrap`"),
    (f"bytes_over_time({SVC} | unwrap x [1m]) > 1", 1, 35, "`bytes_over_time` does not take `| unwrap`"),
    (f"sum_over_time({SVC} | unwrap x [1m]) by (h) > 1", 1, 50, "`sum_over_time` takes no grouping"),
    ('absent_over_time({ foo !~ "bar" }[5h]) by (foo)', 1, 40, "grouping not allowed for absent_over_time"),
    (f"count_over_time({SVC}[1m]) by (h) > 1", 1, 40, "takes no grouping"),
    (f"count_over_time({SVC} | json [1m]) > 1", 1, 1, "one series per set of extracted labels"),
    (f"{Q} != 3", 1, 30, "the comparison `!=` is not supported"),
    (f"{Q} > {Q}", 1, 30, "one metric side and one number"),
    ("3 > 2", 1, 3, "one metric side and one number"),
    (f"sum_over_time({SVC} | unwrap x [1m])", 1, 1, "without a comparison"),
    (f'{Q} > 1 or count_over_time({{a="c"}}[1m]) > 1', 1, 34, "`or` between different queries"),
    (f"{Q} > 1 and {Q} < 5", 1, 34, "is a range, not one threshold"),
    (f"{Q} > 1 unless {Q} == 5", 1, 34, "leaves a gap"),
    (f"absent_over_time({SVC}[5m]) > 3", 1, 41, "compare it only with `> 0` or `== 1`"),
    (f"sum(absent_over_time({SVC}[5m])) > 0", 1, 5, "absent_over_time is only supported alone"),
    (f'{Q[:-5]} != "" [1m]) > 0', 1, 25, "never matches"),
    ('count_over_time({a=~".*", b!="x"}[1m]) > 0', 1, 17, "at least one matcher that does not match the empty"),
    ('count_over_time({a="b"} |~ "(" [1m]) > 0', 1, 25, "invalid regular expression"),
    ('count_over_time({a=~"[z-a]"}[1m]) > 0', 1, 18, "invalid regular expression"),
    (f'sum(count_over_time({SVC} | json x="a[0]" | x > 1 [1m])) > 0', 1, 41, "unsupported json path 'a[0]'"),
    (f'sum(count_over_time({SVC} | _line="x" [1m])) > 0', 1, 41, "`_line` is reserved"),
    (f'sum(count_over_time({SVC} | __error__="JSONParserErr" [1m])) > 0', 1, 41, 'only `__error__=""`'),
]


@pytest.mark.parametrize(("expr", "line", "column", "message"), SEMANTIC_REFUSALS)
def test_semantic_refusals(expr: str, line: int, column: int, message: str) -> None:
    """What cannot be translated exactly is refused with the reason and the position of the construct."""
    with pytest.raises(LogQLError) as info:
        translate(expr)
    assert message in info.value.message
    assert (info.value.line, info.value.column) == (line, column)
