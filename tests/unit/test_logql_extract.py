"""LogQL's `| regexp` and `| pattern` parsers: Loki's extraction semantics, their translation, and the engine
reading the extracted labels in label filters, `sum by (...)` and `unwrap`, to the millisecond."""

from __future__ import annotations

import json
from pathlib import Path

import msgspec
import pytest
import yaml

from streamalert.cli import main
from streamalert.config.rules import RuleLoadError, load_rules
from streamalert.explain import Explainer
from streamalert.rules.codegen import compile_rules
from streamalert.rules.extract import compile_extractor
from streamalert.rules.logql import LogQLError, load_loki_rules, translate
from streamalert.testing import rules_from_yaml

# grafana/loki pkg/logql/log/pattern/pattern_test.go `fixtures` (commit 65e30f8488e8a5ea2013c6881675f8103a8f6bc7):
# (pattern, line, the captures Matcher.Matches returns), every case of that table.
FIXTURES = json.loads((Path(__file__).parent / "loki_pattern_fixtures.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize(("pattern", "line", "expected"), FIXTURES)
def test_pattern_extracts_what_lokis_matcher_captures(pattern: str, line: str, expected: list[str]) -> None:
    """The RE2 translation of a pattern gives Loki's captures on each case of Loki's own test table."""
    assert [value for _, value in compile_extractor("pattern", pattern).extract(line)] == expected


def test_pattern_edge_cases_follow_loki() -> None:
    """A leading literal must start the line; a missing literal ends matching with the rest; an empty line: nothing."""
    extractor = compile_extractor("pattern", "<_> <level> <_>")
    assert extractor.extract("2026 error took 3s") == [("level", "error")]
    assert extractor.extract("2026error") == []  # `<_>` misses its literal: Loki returns no capture
    assert extractor.extract("") == []
    assert compile_extractor("pattern", "id=<id> x").extract("xid=1 x") == []
    assert compile_extractor("pattern", "<a> <b>").extract("only") == [("a", "only")]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("<_> <_>", "needs at least one named capture"),
        ("<a><b>", "consecutive captures"),
        ("<a> <a>", "names a capture twice"),
    ],
)
def test_bad_patterns_are_refused_as_loki_does(pattern: str, message: str) -> None:
    """Loki's pattern validation (ErrNoCapture, consecutive captures, duplicate names) refuses the same patterns."""
    with pytest.raises(ValueError, match=message):
        compile_extractor("pattern", pattern)


def test_regexp_is_a_search_and_unset_groups_read_empty() -> None:
    """`| regexp` searches the line (FindSubmatch); a named group outside the match sets "", no match sets nothing."""
    extractor = compile_extractor("regexp", "(?P<a>x)|(?P<b>y)")
    assert extractor.extract("zzy") == [("a", ""), ("b", "y")]
    assert extractor.extract("zzz") == []
    with pytest.raises(ValueError, match="no named capture group"):
        compile_extractor("regexp", "(x)")


@pytest.mark.parametrize(
    ("expression", "guard", "line", "expected"),
    [
        ('"code": (?P<c>[0-9]+)', '"code": ', '{"code": 503}', [("c", "503")]),
        ("ab?(?P<c>c)", "a", "xacx", [("c", "c")]),
        ("(?i)err(?P<c>.)", "", "ERR!", [("c", "!")]),  # a flag: no guard, the match is case-insensitive
        ("x|(?P<c>y)", "", "y", [("c", "y")]),  # an alternation: no guard
    ],
)
def test_regexp_guard_skips_only_lines_that_cannot_match(
    expression: str, guard: str, line: str, expected: list[tuple[str, str]]
) -> None:
    """The literal guard is the plain leading literal, none under flags or alternation; matches are unchanged."""
    extractor = compile_extractor("regexp", expression)
    assert (extractor.guard, extractor.extract(line)) == (guard, expected)


def test_translation_lists_the_parsers_as_extract() -> None:
    """A regexp and a pattern stage become the rule's `extract` list; the label filters read the labels as fields."""
    done = translate(
        'sum by (code) (count_over_time({app="api"} | regexp "(?P<code>[0-9]{3})" | pattern "<_> <verb> <_>"'
        ' | code=~"5.." [1m])) > 1'
    )
    assert done.loadable
    assert done.rule == {
        "match": {"app": "api", "code": {"regex": "^(?:5..)$"}},
        "window": "1m",
        "condition": "count > 1",
        "group_by": ["code"],
        "extract": [{"regexp": "(?P<code>[0-9]{3})"}, {"pattern": "<_> <verb> <_>"}],
    }


@pytest.mark.parametrize(
    ("expr", "message", "column"),
    [
        ('sum(count_over_time({a="b"} | code="5" | regexp "(?P<code>.)" [1m])) > 1', "comes before the parser", 31),
        ('sum(count_over_time({a="b"} | regexp "(?P<c>.)" | pattern "<c> " [1m])) > 1', "extracted twice", 51),
        ('sum(count_over_time({a="b"} | regexp "(?P<c>[)" [1m])) > 1', "invalid regular expression", 31),
    ],
)
def test_refused_extractions_are_positioned(expr: str, message: str, column: int) -> None:
    """A filter before its parser, a label extracted twice, a bad regexp: refused at the construct's line and column."""
    with pytest.raises(LogQLError, match=message) as info:
        translate(expr)
    assert (info.value.line, info.value.column) == (1, column)


def test_two_rules_extracting_one_label_differently_is_a_load_problem(tmp_path: Path) -> None:
    """One record holds one value per field: a second, different parser of the same label is refused by check."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        yaml.safe_dump(
            {
                "rules": [
                    {"name": "a", "expr": 'sum(count_over_time({s="x"} | regexp "(?P<lvl>[A-Z]+)" [1m])) > 1'},
                    {"name": "b", "expr": 'sum(count_over_time({s="x"} | regexp "(?P<lvl>[a-z]+)" [1m])) > 1'},
                    {"name": "c", "expr": 'sum(count_over_time({s="y"} | regexp "(?P<lvl>[A-Z]+)" [1m])) > 1'},
                ]
            }
        ),
        encoding="utf-8",
    )
    with pytest.raises(RuleLoadError) as info:
        load_rules(path)
    assert [(p.rule, p.field) for p in info.value.problems] == [("b", "extract")]
    assert "extracted by two different parsers" in info.value.problems[0].message


def test_only_rule_sets_with_extractors_pay_and_existing_fields_win() -> None:
    """Without extractors the decoder is msgspec's own; with one, a label the record already has is NAME_extracted."""
    assert compile_rules([{"app": "api"}]).decode.__name__ == "decode"
    get = ("regexp", "GET (?P<code>[0-9]{3})")
    compiled = compile_rules([{"code": "500"}, {"code_extracted": "500"}], [[get], [get]])
    assert list(compiled.match(compiled.decode(b'{"msg": "GET 500"}'))) == [0]
    assert list(compiled.match(compiled.decode(b'{"code": "200", "msg": "GET 500"}'))) == [1]
    assert compiled.fields(b'{"code": "200", "msg": "GET 500"}') == {
        "code": "200",
        "msg": "GET 500",
        "code_extracted": "500",
    }


LOKI = """
groups:
  - name: api
    rules:
      - alert: ServerErrors
        expr: sum by (code) (count_over_time({app="api"} | regexp "(?P<code>[0-9]{3}) [0-9]+ms" | code=~"5.." [1m])) > 1
      - alert: SlowRoute
        expr: |
          max by (route) (max_over_time({app="api"}
            | pattern `<_>"msg": "<verb> <route> <_> <took>ms"<_>` | unwrap took [1m])) > 1000
"""

LINES = [
    (100, "GET /a 500 1200ms"),  # code 500 once; /a takes 1200 ms: SlowRoute fires for /a
    (5_250, "GET /b 503 20ms"),  # code 503: a group of its own, once
    (7_000, "healthcheck ok"),  # neither parser matches: no code, no took
    (10_300, "GET /a 500 30ms"),  # code 500 twice in the minute: ServerErrors fires
    (20_000, "POST /b 200 5ms"),
    (90_000, "POST /b 200 5ms"),  # moves event time past the resolutions
]


def _at(ms: int) -> str:
    return f"2026-01-01T00:{ms // 60_000:02d}:{ms // 1000 % 60:02d}.{ms % 1000:03d}Z"


def test_extracted_labels_filter_group_and_unwrap_in_the_engine(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The regexp's `code` filters and groups, the pattern's `route` groups and `took` is unwrapped: exact times."""
    loaded = load_loki_rules(LOKI, "loki.yaml")
    assert all(r.translation.loadable for r in loaded)
    rules = tmp_path / "loki.yaml"
    rules.write_text(LOKI, encoding="utf-8")
    events = tmp_path / "events.jsonl"
    events.write_text(
        "".join(json.dumps({"timestamp": _at(ms), "app": "api", "msg": msg}) + "\n" for ms, msg in LINES),
        encoding="utf-8",
    )
    assert main(["replay", str(events), "--rules", str(rules)]) == 0
    out = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(t["at"], t["rule"], t["state"], t["labels"]) for t in out] == [
        (_at(100), "SlowRoute", "firing", {"route": "/a"}),
        (_at(10_300), "ServerErrors", "firing", {"code": "500"}),
        (_at(60_100), "ServerErrors", "resolved", {"code": "500"}),  # the 500 at 0.100 leaves the window
        (_at(60_100), "SlowRoute", "resolved", {"route": "/a"}),  # so does its 1200 ms
    ]


def test_explain_shows_extracted_labels_and_the_converted_sample() -> None:
    """`explain` decodes as the engine does: the regexp's labels in the record, the group, the duration in seconds."""
    rules = rules_from_yaml(
        'rules:\n  - name: Slow\n    expr: >-\n      sum by (route) (sum_over_time({app="api"}'
        ' | regexp "(?P<route>/[a-z]+) took (?P<took>[0-9.]+m?s)" | unwrap duration(took) [1m])) > 1\n'
    )
    explanation = Explainer(rules).explain(b'{"app": "api", "msg": "GET /a took 1.5s"}')
    assert (explanation.record["route"], explanation.record["took"]) == ("/a", "1.5s")
    (verdict,) = explanation.verdicts
    assert (verdict.matched, verdict.disagrees, verdict.group) == (True, False, ("/a",))
    assert "sample 1.5 in the 60s window" in verdict.series


def test_bad_extract_entries_in_a_yaml_rule_are_located_problems(tmp_path: Path) -> None:
    """A YAML rule's `extract:` names its faulty entry: unknown parser, no named group, reserved `_line`."""
    path = tmp_path / "rules.yaml"
    path.write_text(
        "rules:\n  - name: r\n    match: {app: api}\n    window: 1m\n    condition: count > 1\n"
        '    extract: [{regex: "(?P<a>x)"}, {regexp: "(x)"}, {pattern: "<_line> <_>"}, {regexp: "(?P<ok>y)"}]\n',
        encoding="utf-8",
    )
    with pytest.raises(RuleLoadError) as info:
        load_rules(path)
    assert [(p.field, p.message.split(":")[0]) for p in info.value.problems] == [
        ("extract[0]", "unknown extractor 'regex'"),
        ("extract[1]", "the regexp '(x)' has no named capture group (?P<name>...)"),
        ("extract[2]", "`_line` is reserved for the raw line and cannot name an extracted label"),
    ]


def test_extractors_run_only_on_lines_their_rules_selectors_admit() -> None:
    """The gate is the rule's match without its extracted-label terms: other lines keep no label, in both decoders."""
    get = ("regexp", "GET (?P<code>[0-9]{3})")
    gated = compile_rules([{"app": "api", "_line": {"contains": "GET"}, "code": "500"}], [[get]])
    api, web = b'{"app": "api", "msg": "GET 500"}', b'{"app": "web", "msg": "GET 500"}'
    assert list(gated.match(gated.decode(api))) == [0]
    assert gated.decode(web).a7 is msgspec.UNSET  # `code`: the selector refuses the line, no extraction ran
    assert (gated.fields(api), gated.fields(web)) == (
        {"app": "api", "msg": "GET 500", "code": "500"},
        {"app": "web", "msg": "GET 500"},
    )
    converted = b'{"app": "api", "_line": "GET 500 from text", "message": "GET 500 from text"}'
    assert gated.fields(converted)["_line"] == "GET 500 from text"  # a converted line keeps its original text
    ungated = compile_rules([{"code": "500"}], [[get]])  # nothing but the extracted label: every line
    assert list(ungated.match(ungated.decode(web))) == [0]
