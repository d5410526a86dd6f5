"""LogQL in rule loading: `expr:` rules, Loki rule-group files, refusals located in the file, the `_line` field."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streamalert.cli import main
from streamalert.config.rules import RuleLoadError, load_rules
from streamalert.engine import Engine
from streamalert.rules.codegen import compile_rules
from streamalert.rules.logql import translate
from streamalert.testing import rules_from_yaml
from tests.unit.test_logql_translate import TRANSLATIONS

EXPR_RULES = """
rules:
  - name: Api5xx
    expr: sum by (host) (count_over_time({service="api"} | status >= 500 [5m])) > 30
    for: 1m
    labels: {severity: page}
    annotations: {summary: "{{ $value }} errors on {{ $labels.host }}"}
  - name: Plain
    match: {service: api}
    window: 5m
    condition: count > 1
"""


def test_an_expr_rule_is_its_translation() -> None:
    """`expr:` gives match/window/condition/group_by; for, labels and annotations are kept as written."""
    rule = rules_from_yaml(EXPR_RULES)[0]
    assert rule.match_spec == {"service": "api", "status": {"gte": 500}}
    assert (rule.window_ms, rule.for_ms, rule.group_by) == (300_000, 60_000, ("host",))
    assert rule.condition is not None
    assert (rule.condition.op, rule.condition.threshold) == (">", 30)
    assert dict(rule.labels) == {"severity": "page"}


def test_an_absent_expr_with_for_is_one_silence() -> None:
    """absent_over_time over W with `for: F` is `absent_for: W+F`, as in Loki rule files."""
    rule = rules_from_yaml("rules:\n  - {name: A, expr: 'absent_over_time({job=\"beat\"}[5m])', for: 2m}\n")[0]
    assert (rule.kind, rule.absent_ms, rule.expect) == ("absence", 420_000, (("beat",),))


def _problems(tmp_path: Path, text: str) -> list[str]:
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RuleLoadError) as caught:
        load_rules(path)
    return [str(p).replace(str(path), "F") for p in caught.value.problems]


def test_expr_problems_name_rule_and_position_in_the_file(tmp_path: Path) -> None:
    """Refused constructs and expr next to match: each named with rule, line and column."""
    problems = _problems(
        tmp_path,
        """rules:
  - name: Top
    expr: |
      topk(3,
        sum by (path) (count_over_time({service="revel"}[5m])))
  - name: Both
    expr: 'count_over_time({app="x"}[1m]) > 0'
    match: {a: b}
  - name: Without
    expr: sum without (a) (bytes_over_time({app="x"} | json [1m])) > 10
""",
    )
    assert problems == [
        "F: rule 'Top': expr: line 1, column 1: `topk` is not supported (F:4:7)",
        "F: rule 'Both': expr: replaces match: give either expr or those (grouping: `sum by (...)`)",
        "F: rule 'Without': expr: line 1, column 5: `without (...)` after `| json` would group by every field of each "
        "line (an open set a log record cannot bound): use `by (...)`, or `| json a, b` to name the labels (F:10:15)",
    ]


def test_a_loki_file_reports_every_refused_alert_with_file_positions(tmp_path: Path) -> None:
    """Each refused alert of a groups: file is reported by group and rule; the others are still checked."""
    problems = _problems(
        tmp_path,
        """groups:
  - name: g
    rules:
      - alert: Ok
        expr: count_over_time({app="x"} |= "boom" [1m]) > 0
      - alert: Pat
        expr: sum(count_over_time({app="x"} | pattern "<a><b>" | a="error" [1m])) > 0
      - alert: Fmt
        expr: |
          sum(count_over_time({app="x"}
            | line_format "{{.a}}" [1m])) > 0
      - record: x:sum
        expr: sum(count_over_time({app="x"}[1m]))
""",
    )
    assert problems == [
        "F: group 'g' rule 'Pat': expr line 1, column 33: the pattern '<a><b>' has consecutive captures <a><b> "
        "(F:7:47)",
        "F: group 'g' rule 'Fmt': expr line 2, column 5: `| line_format` is not supported (F:11:15)",
        "F: group 'g' rule #4: recording rules (`record:`) are not alerts and are not supported",
    ]


def test_check_cli_loads_the_revel_loki_file(capsys: pytest.CaptureFixture[str]) -> None:
    """`streamalert check` accepts the Loki rule-group file of the Revel document unchanged."""
    path = Path(__file__).resolve().parents[2] / "examples" / "loki" / "revel-rules.yaml"
    assert main(["check", str(path)]) == 0
    assert "10 rules" in capsys.readouterr().out


def test_only_rule_sets_with_line_filters_decode_the_raw_line() -> None:
    """Without a `_line` matcher the decoder is msgspec's own (no wrapper, no cost); with one, records carry it."""
    plain = compile_rules([{"service": "api"}])
    assert plain.decode.__name__ == "decode"  # msgspec.json.Decoder.decode itself
    line = b'{"service": "api", "msg": "x"}'
    with_line = compile_rules([{"service": "api", "_line": {"contains": '"msg": "x"'}}])
    assert list(with_line.match(with_line.decode(line))) == [0]
    assert list(with_line.match(with_line.decode(b'{"service": "api", "msg":"x"}'))) == []  # as written, spaces count


def test_a_line_filter_alerts_in_the_engine() -> None:
    """A LogQL line filter matches text in any field of the JSON line, through the engine's accept path."""
    engine = Engine(
        rules_from_yaml('rules:\n  - {name: L, expr: \'count_over_time({app="x"} |~ "time.?out" [1m])\'}\n')
    )
    engine.accept_lines(
        [
            b'{"timestamp": "2026-01-01T00:00:00Z", "app": "x", "detail": {"cause": "timeout"}}',
            b'{"timestamp": "2026-01-01T00:00:01Z", "app": "y", "cause": "timeout"}',
        ]
    )
    engine.finish()
    assert [(t.rule, t.value) for t in engine.drain() if t.state.value == "firing"] == [("L", 1)]


MET = {"_line", "parser:logfmt"}


@pytest.mark.parametrize(("expr", "rule", "needs"), TRANSLATIONS)
def test_every_translation_loads_as_expr_or_names_each_unmet_need(
    expr: str, rule: dict[str, object], needs: list[str], tmp_path: Path
) -> None:
    """An `expr:` rule loads exactly when the engine meets its needs; otherwise each need is a located problem."""
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": [{"name": "r", "expr": expr}]}), encoding="utf-8")
    unmet = [n for n in translate(expr).needs if n.feature not in MET]
    if not unmet:
        (loaded,) = load_rules(path)
        assert loaded.match_spec == rule.get("match", loaded.match_spec)
        return
    with pytest.raises(RuleLoadError) as caught:
        load_rules(path)
    messages = [p.message for p in caught.value.problems]
    assert len(messages) == len(unmet)
    for need, message in zip(unmet, messages, strict=True):
        assert message.startswith(f"line {need.line}, column {need.column}: not supported yet: {need.detail}")


def test_unit_matchers_are_checked(tmp_path: Path) -> None:
    """`unit` takes duration or bytes and goes only with comparisons; `check` says which."""
    problems = _problems(
        tmp_path,
        """rules:
  - {name: A, match: {d: {gt: 1, unit: weeks}}, window: 1m, condition: count > 0}
  - {name: B, match: {d: {contains: x, unit: bytes}}, window: 1m, condition: count > 0}
""",
    )
    assert problems == [
        "F: rule 'A': match.d.unit: must be one of duration, bytes, got 'weeks'",
        "F: rule 'B': match.d.unit: goes only with gt, gte, lt, lte",
    ]
