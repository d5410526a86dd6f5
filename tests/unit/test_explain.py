"""`streamalert explain`: the engine's own verdict per rule, the failing tests closest first, group and series."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from streamalert.cli import main
from streamalert.config.rules import load_rules
from streamalert.engine import Engine
from streamalert.explain import Explainer, NotARecord

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "rules"
INCIDENT = ROOT / "examples" / "incident.jsonl"
DAY_MS = 86_400_000

RULE_FILE = """
rules:
  - name: one_off
    match: {service: api, level: error, message: {contains: timeout}}
    window: 1m
    condition: count >= 1
  - name: all_off
    match: {service: db, level: warning, message: {contains: deadlock}}
    window: 1m
    condition: count >= 1
  - name: slow_by_host
    match: {service: api, any: [{level: error}, {status: {gte: 500}}]}
    window: 5m
    condition: max(duration_ms) > 900
    group_by: [host, region.name]
  - name: ranged
    match: {service: api, duration_ms: {gt: 10, lt: 100}}
    window: 1m
    condition: count >= 1
"""
LINE = (
    '{"timestamp": "2026-01-26T09:00:00.000Z", "service": "api", "level": "ERROR", "message": "upstream closed",'
    ' "host": "web-1", "region": {"name": "eu"}, "duration_ms": 1250, "status": 502}'
)


@pytest.fixture
def rule_file(tmp_path: Path) -> Path:
    path = tmp_path / "rules.yaml"
    path.write_text(RULE_FILE)
    return path


def test_explain_agrees_with_the_engine_on_every_incident_line() -> None:
    """On every bundled incident line, explain's matches are the rules the engine matched, and its stages agree."""
    rules = load_rules(RULES)
    raw = INCIDENT.read_bytes().splitlines()
    engine = Engine(rules, lateness_ms=DAY_MS, future_skew_ms=DAY_MS)  # every line taken in, none held or late
    malformed = engine.accept_lines(raw)
    # The engine's verdicts, in arrival order: what its reorder buffer holds (before any instant runs).
    engine_matched = [(line, [rules[i].name for i in matched]) for _, _, line, _, matched in sorted(engine._buffer)]
    explainer = Explainer(rules)
    explained: list[tuple[bytes, list[str]]] = []
    refused = 0
    for line in raw:
        try:
            explanation = explainer.explain(line)
        except NotARecord:
            refused += 1
            continue
        assert not [v.rule.name for v in explanation.verdicts if v.disagrees], line
        names = [v.rule.name for v in explanation.matches]
        if names:
            explained.append((line, names))
    assert refused == malformed == 3
    assert len(explained) == engine.stats.matched == 4601  # of 5,642 lines (replay says the same)
    assert sorted(explained) == sorted(engine_matched)


def test_closest_misses_first_with_the_failing_test_named(rule_file: Path) -> None:
    """A rule failing one test is listed before one failing all; each failed test shows what the line gave."""
    explanation = Explainer(load_rules(rule_file)).explain(LINE.encode())
    assert [v.rule.name for v in explanation.matches] == ["slow_by_host"]
    misses = explanation.misses
    assert [v.rule.name for v in misses] == ["one_off", "ranged", "all_off"]
    failed = [(s.name, s.value) for s in misses[0].stages if not s.passed]
    assert failed == [("message", "upstream closed")]
    ranged = next(s for s in misses[1].stages if s.name == "duration_ms")
    assert ranged.failed_parts == ("lt: 100",)  # of {gt: 10, lt: 100}, the part that did not hold
    assert misses[2].failed == 3


def test_group_key_and_series_are_the_engines(rule_file: Path) -> None:
    """A matched rule shows the group key the engine would file the record under, and the sample it adds."""
    rules = load_rules(rule_file)
    verdict = Explainer(rules).explain(LINE.encode()).matches[0]
    assert verdict.group == ("web-1", "eu")
    assert "sample 1250" in verdict.series
    engine = Engine(rules)
    engine.accept_lines([LINE.encode()])
    engine.finish()
    assert engine.firing() == [(rules[2], ("web-1", "eu"))]


def test_explain_json_from_a_file_line(rule_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--file F --line N --format json gives one JSON object: record, time, matches and misses for tools."""
    logs = tmp_path / "app.jsonl"
    logs.write_text('{"message": "first"}\n' + LINE + "\n")
    assert main(["explain", "--rules", str(rule_file), "--file", str(logs), "--line", "2", "--format", "json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["time"] == "2026-01-26T09:00:00.000Z"
    assert [m["rule"] for m in out["matches"]] == ["slow_by_host"]
    assert out["matches"][0]["group"] == ["web-1", "eu"]
    assert [m["rule"] for m in out["misses"]] == ["one_off", "ranged", "all_off"]
    stage = next(s for s in out["misses"][0]["stages"] if not s["passed"])
    assert stage == {
        "name": "message",
        "test": '{"contains":"timeout"}',
        "passed": False,
        "value": "upstream closed",
        "present": True,
    }


def test_explain_json_keeps_integers_beyond_64_bits(rule_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A record with an integer orjson cannot write is still explained in JSON, the integer exact."""
    big = 2**70 + 1
    assert main(["explain", "--rules", str(rule_file), "--format", "json", f'{{"service": "api", "n": {big}}}']) == 0
    assert json.loads(capsys.readouterr().out)["record"]["n"] == big


def test_explain_text_from_stdin(
    rule_file: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Lines on stdin are each explained for people: the match with its group, then misses with FAIL marks."""
    stdin = io.TextIOWrapper(io.BytesIO(f'{LINE}\n\n{{"service": "db"}}\n'.encode()))
    monkeypatch.setattr("sys.stdin", stdin)
    assert main(["explain", "--rules", str(rule_file)]) == 0
    out = capsys.readouterr().out
    assert "== stdin line 1" in out
    assert "== stdin line 3" in out
    assert "+ slow_by_host" in out
    assert "group: host='web-1', region.name='eu'" in out
    assert 'FAIL message: {"contains":"timeout"} | got "upstream closed"' in out
    assert 'FAIL service: "api" | got "db"' in out


def test_explain_refuses_bad_input_clearly(rule_file: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A line that is not a JSON object exits 1 saying so; contradictory or out-of-range arguments exit 2."""
    assert main(["explain", "--rules", str(rule_file), '["not", "an", "object"]']) == 1
    assert "not a JSON object" in capsys.readouterr().err
    assert main(["explain", "--rules", str(rule_file), LINE, "--file", str(rule_file), "--line", "1"]) == 2
    assert "not both" in capsys.readouterr().err
    short = tmp_path / "short.jsonl"
    short.write_text(LINE + "\n")
    assert main(["explain", "--rules", str(rule_file), "--file", str(short), "--line", "5"]) == 2
    assert "fewer than 5 lines" in capsys.readouterr().err
