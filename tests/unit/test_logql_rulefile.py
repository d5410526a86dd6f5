"""Loki rule-group files: alerts become streamalert rule dicts; every problem names the file, group and rule."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from streamalert.config.rules import load_rules
from streamalert.rules.logql import LokiRuleFileError, load_loki_rules

GOOD = """
groups:
  - name: revel
    interval: 1m
    rules:
      - alert: HighErrorRate
        expr: rate({service="revel", level="error"} |= "unhandled_exception" [5m]) > 0.1
        for: 2m
        labels: {severity: critical, team: backend}
        annotations:
          summary: "High error rate detected: {{ $value }} errors/sec"
      - alert: GDPRExportFailures
        expr: |
          count_over_time(
            {service="revel"} |= "gdpr_export_failed"
            [30m]
          ) > 0
        for: 0m
  - name: heartbeats
    rules:
      - alert: CeleryBeatDown
        expr: absent_over_time({container="celery_beat"}[5m])
        for: 1m30s
        labels: {severity: critical}
        annotations:
          summary: "{{ $labels.container }} silent for {{ $value }}s"
      - alert: SlowRequests
        expr: sum by (route) (count_over_time({service="api"} | json | duration_ms > 2000 [5m])) > 20
"""


def test_groups_become_rule_dicts() -> None:
    """Alert names, for (0m dropped), labels and Go-template annotations carry over as written."""
    loaded = load_loki_rules(GOOD, "loki.yaml")
    assert [(r.group, r.rule["name"]) for r in loaded] == [
        ("revel", "HighErrorRate"),
        ("revel", "GDPRExportFailures"),
        ("heartbeats", "CeleryBeatDown"),
        ("heartbeats", "SlowRequests"),
    ]
    first, second, beat, slow = (r.rule for r in loaded)
    assert first == {
        "name": "HighErrorRate",
        "match": {"service": "revel", "level": "error", "_line": {"contains": "unhandled_exception"}},
        "window": "5m",
        "condition": "rate > 0.1",
        "for": "2m",
        "labels": {"severity": "critical", "team": "backend"},
        "annotations": {"summary": "High error rate detected: {{ $value }} errors/sec"},
    }
    assert "for" not in second
    assert beat["absent_for"] == "6m30s"  # absent over 5m, held for 1m30s: 6m30s of silence
    assert "for" not in beat
    assert beat["expect"] == [{"container": "celery_beat"}]
    assert slow["group_by"] == ["route"]
    assert [r.translation.loadable for r in loaded] == [False, False, True, True]


def test_loadable_translations_pass_the_rule_loader(tmp_path: Path) -> None:
    """Rules whose translation needs nothing new load with streamalert's own loader, templates included."""
    loadable = [r.rule for r in load_loki_rules(GOOD, "loki.yaml") if r.translation.loadable]
    path = tmp_path / "rules.yaml"
    path.write_text(yaml.safe_dump({"rules": loadable}), encoding="utf-8")
    assert [r.name for r in load_rules(path)] == ["CeleryBeatDown", "SlowRequests"]


BAD = """
groups:
  - name: g1
    interval: soon
    rules:
      - alert: Broken
        expr: topk(3, count_over_time({a="b"}[1m]))
      - alert: Unknown
        expr: count_over_time({a="b"}[1m]) > 1
        keep_firing_for: 5m
      - record: job:rate
        expr: rate({a="b"}[1m])
      - alert: NoExpr
      - alert: Broken
        expr: count_over_time({a="b"}[1m]) > 1
  - name: g2
    rules:
      - alert: Absent
        expr: absent_over_time({a="b"} [1m] offset 1m)
"""


def test_every_problem_is_reported_with_group_and_rule() -> None:
    """One error lists all problems, each naming file, group and rule; expr errors keep their position."""
    with pytest.raises(LokiRuleFileError) as info:
        load_loki_rules(BAD, "loki.yaml")
    assert info.value.problems == [
        "loki.yaml: group 'g1': interval: invalid duration 'soon': use e.g. 500ms, 30s, 5m, 1h30m, 1d",
        "loki.yaml: group 'g1' rule 'Broken': expr line 1, column 1: `topk` is not supported (loki.yaml:7:15)",
        "loki.yaml: group 'g1' rule 'Unknown': unknown key 'keep_firing_for'",
        "loki.yaml: group 'g1' rule #3: recording rules (`record:`) are not alerts and are not supported",
        "loki.yaml: group 'g1' rule 'NoExpr': needs `expr`, a LogQL expression",
        "loki.yaml: group 'g1' rule 'Broken': duplicate alert name (rule names must be unique)",
        "loki.yaml: group 'g2' rule 'Absent': expr line 1, column 31: `offset` is not supported (loki.yaml:19:45)",
    ]


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("groups: [", "loki.yaml: invalid YAML"),
        ("rules: []", "loki.yaml: expected a map with one key `groups`"),
        ("groups: [{rules: []}]", "loki.yaml: group #1: must be a map with a `name`"),
        ("groups: [{name: g, rules: {}}]", "loki.yaml: group 'g': `rules` must be a list"),
    ],
)
def test_file_shape_errors(text: str, problem: str) -> None:
    """A malformed file is refused with a message naming where."""
    with pytest.raises(LokiRuleFileError) as info:
        load_loki_rules(text, "loki.yaml")
    assert info.value.problems[0].startswith(problem)
