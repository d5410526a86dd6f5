"""Revel's ten Grafana/Loki rules, loaded as written from a Loki rule-group file, against their YAML twins.

examples/loki/revel-rules.yaml holds the ten `Query` blocks of revel-grafana-alerting.md unchanged; the twins
are config/rules/revel.yaml. Both replay examples/incident.jsonl through the production pipeline and must give
the same transitions rule by rule. The one twin that differs by decision (DatabaseErrors: `group_by: [host]`)
is compared with that decision taken out, and the decision's effect is asserted too. Where Loki's semantics
differ (a line filter searches the whole raw line, the twin only the message), a line built for it shows it.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from streamalert.config.rules import Rule, load_rules
from streamalert.model import Transition
from streamalert.state.memory import MemoryStore
from streamalert.testing import replay_lines, rules_from_yaml

ROOT = Path(__file__).resolve().parents[2]
LOKI_FILE = ROOT / "examples" / "loki" / "revel-rules.yaml"
TWIN_FILE = ROOT / "config" / "rules" / "revel.yaml"
DB_PATTERN = re.compile(r"(?i)(database|connection|postgres|psycopg)")  # DatabaseErrors' line filter
INCIDENT = (ROOT / "examples" / "incident.jsonl").read_bytes().splitlines()


def _twins(without_host_grouping: bool) -> list[Rule]:
    rules: list[dict[str, Any]] = yaml.safe_load(TWIN_FILE.read_text(encoding="utf-8"))["rules"]
    if without_host_grouping:
        for rule in rules:
            if rule.get("group_by") == ["host"]:
                del rule["group_by"]
                notes = rule["annotations"]
                rule["annotations"] = {k: v.replace(" on {{ labels.host }}", "") for k, v in notes.items()}
    return rules_from_yaml(yaml.safe_dump({"rules": rules}))


def _by_rule(transitions: list[Transition]) -> dict[str, list[tuple[int, str, float | int, tuple[Any, ...]]]]:
    out: dict[str, list[tuple[int, str, float | int, tuple[Any, ...]]]] = {}
    for t in transitions:
        labels = tuple((k, v) for k, v in t.labels if k != "host")
        out.setdefault(t.rule, []).append((t.at_ms, t.state.value, t.value, labels))
    return out


async def _replay(rules: list[Rule], lines: list[bytes]) -> list[Transition]:
    sink, _ = await replay_lines(rules, lines, MemoryStore())
    return sink.transitions


@pytest.fixture(scope="module")
def loki_rules() -> list[Rule]:
    return load_rules(LOKI_FILE)


def test_the_loki_file_loads_unchanged(loki_rules: list[Rule]) -> None:
    """All ten alerts of the rule-group file compile, named as the twins, with the document's labels."""
    twins = load_rules(TWIN_FILE)
    assert [r.name for r in loki_rules] == [r.name for r in twins]
    assert len(loki_rules) == 10
    by_name = {r.name: r for r in loki_rules}
    assert dict(by_name["HighErrorRate"].labels) == {"severity": "critical", "team": "backend", "component": "api"}
    assert by_name["HighErrorRate"].for_ms == 120_000
    assert by_name["GDPRExportFailures"].for_ms == 0  # `for: 0m` fires on the first evaluation


async def test_each_rule_gives_its_twins_transitions_on_the_incident(loki_rules: list[Rule]) -> None:
    """Rule by rule, the LogQL rules fire and resolve at the twins' times with the twins' values.

    DatabaseErrors is the exception on the incident as it is: see the next test.
    """
    loki = _by_rule(await _replay(loki_rules, INCIDENT))
    twins = _by_rule(await _replay(_twins(without_host_grouping=True), INCIDENT))
    assert set(loki) == {r.name for r in loki_rules}, "every rule must fire on the incident to be compared"
    for name in set(loki) - {"DatabaseErrors"}:
        assert loki[name] == twins[name], name


def _only_outside_message(line: bytes) -> bool:
    """A Revel error line whose text matches DatabaseErrors' pattern outside its event name only."""
    try:
        record = orjson.loads(line)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(record, dict) or record.get("service") != "revel" or record.get("level") != "error":
        return False
    return DB_PATTERN.search(line.decode()) is not None and DB_PATTERN.search(str(record.get("event"))) is None


async def test_database_errors_differs_by_the_whole_line_and_the_twins_host_grouping(loki_rules: list[Rule]) -> None:
    """On the incident, Celery failures whose exception text says "connection" count for Loki: it fires at
    10:43:10 on 131 lines; the twin (message only, per host) fires at 10:53:40 on 23. Without those lines and
    without the twin's host grouping, both agree."""
    loki = _by_rule(await _replay(loki_rules, INCIDENT))["DatabaseErrors"]
    twin = _by_rule(await _replay(_twins(without_host_grouping=False), INCIDENT))["DatabaseErrors"]
    assert loki[0][:3] == (1769424190000, "firing", 131)
    assert twin[0][:3] == (1769424820000, "firing", 23)

    outside = [line for line in INCIDENT if _only_outside_message(line)]
    assert len(outside) == 481
    kept = [line for line in INCIDENT if not _only_outside_message(line)]
    loki_kept = _by_rule(await _replay(loki_rules, kept))["DatabaseErrors"]
    twin_kept = _by_rule(await _replay(_twins(without_host_grouping=True), kept))["DatabaseErrors"]
    assert loki_kept == twin_kept
    assert loki_kept != loki


def _line(second: int, **fields: Any) -> bytes:
    return orjson.dumps({"timestamp": f"2026-02-01T00:00:{second:02d}.000Z", "service": "revel", **fields})


async def test_line_filters_search_the_whole_line_where_the_twin_reads_the_message(loki_rules: list[Rule]) -> None:
    """`|= "gdpr_export_failed"` counts a line that has it only in its path; the twin's `message` does not."""
    lines = [_line(1, level="info", event="request_finished", path="/api/gdpr_export_failed/retry")]
    loki = _by_rule(await _replay(loki_rules, lines))
    twins = _by_rule(await _replay(_twins(without_host_grouping=False), lines))
    assert [(state, value) for _, state, value, _ in loki["GDPRExportFailures"]] == [("firing", 1)]
    assert "GDPRExportFailures" not in twins


async def test_line_filters_see_keys_and_json_escapes(loki_rules: list[Rule]) -> None:
    """The raw JSON text is searched as written: a key name matches, and a quote inside a value is `\\"`."""
    rules = rules_from_yaml(
        'rules:\n  - {name: Key, expr: \'count_over_time({service="revel"} |= "gdpr_export_failed" [1m]) > 0\'}\n'
        '  - {name: Quote, expr: \'count_over_time({service="revel"} |= `say \\"hi\\"` [1m]) > 0\'}\n'
    )
    got = _by_rule(await _replay(rules, [_line(1, gdpr_export_failed=True), _line(2, event='say "hi"')]))
    assert [state for _, state, _, _ in got["Key"]] == ["firing"]
    assert [state for _, state, _, _ in got["Quote"]] == ["firing"]
