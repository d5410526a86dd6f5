"""`streamalert check`: every problem named by file, rule and field; exit 1 on problems, 0 with a summary."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest

from streamalert.cli import main

ROOT = Path(__file__).resolve().parents[2]

BROKEN = """
rules:
  - name: good
    match: {level: error}
    window: 1m
    condition: count >= 1
  - name: bad_window
    match: {level: error}
    window: 5 minutes
    condition: count >= 1
  - name: bad_regex
    match: {message: {regex: "(unclosed"}}
    window: 1m
    condition: count >= 1
  - name: unknown_key
    match: {level: error}
    window: 1m
    condition: count >= 1
    severity: critical
  - name: bad_condition
    match: {level: error}
    window: 1m
    condition: count >> 1
  - name: bad_template
    match: {level: error}
    window: 1m
    condition: count >= 1
    annotations: {summary: "{{ value * 2 }}"}
  - name: absence_with_window
    match: {container: beat}
    absent_for: 5m
    window: 1m
  - name: bad_expect
    match: {container: beat}
    absent_for: 5m
    group_by: [container]
    expect: [{host: a}]
  - name: good
    match: {level: error}
    window: 1m
    condition: count >= 1
"""


def test_check_names_file_rule_and_field_for_every_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Each broken rule is reported with its file, its name and the bad field; the exit code is 1."""
    path = tmp_path / "broken.yaml"
    path.write_text(BROKEN)
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    for rule, field in [
        ("bad_window", "window"),
        ("bad_regex", "match.message.regex"),
        ("unknown_key", "severity: unknown key"),
        ("bad_condition", "condition"),
        ("bad_template", "annotations.summary"),
        ("absence_with_window", "window"),
        ("bad_expect", "expect[0]"),
        ("good", "name: duplicate rule name"),
    ]:
        assert f"{path}: rule '{rule}': {field}" in err, (rule, err)
    assert "rule 'good': window" not in err


def test_check_reports_yaml_errors_with_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Invalid YAML names the file and the line."""
    path = tmp_path / "bad.yaml"
    path.write_text("rules:\n  - name: x\n    match: {level: error\n")
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err
    assert str(path) in err
    assert "line" in err


def test_check_of_a_folder_with_no_rules_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty folder is a mistake, not zero rules."""
    assert main(["check", str(tmp_path)]) == 1
    assert "no *.yaml" in capsys.readouterr().err


def test_shipped_rule_pack_passes_with_a_one_line_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """config/rules is valid; exit 0 prints exactly one summary line. The collector, paused while `check`
    runs, is on again after it (main can run inside a longer process, as here)."""
    assert gc.isenabled()
    assert main(["check", str(ROOT / "config" / "rules")]) == 0
    assert gc.isenabled()
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert out[0].startswith("OK: 18 rules")


def test_replay_cli_prints_jsonl_and_a_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """`streamalert replay` prints the example's transitions as JSON lines and a summary on stderr."""
    code = main(["replay", str(ROOT / "examples" / "incident.jsonl"), "--rules", str(ROOT / "config" / "rules")])
    assert code == 0
    captured = capsys.readouterr()
    assert captured.out.encode() == (ROOT / "examples" / "expected-transitions.jsonl").read_bytes()
    assert "5642 lines read, 3 skipped as malformed, 0 late" in captured.err


EVERY_KIND = """
rules:
  - name: shape_and_meaning
    match: {y: [1, 2], z: {not: {}}, n: {gt: " 10"}}
    window: 5 minutes
    condition: count >= 1
    severity: critical
    labels: {sev: 3, severity: high}
    group_by: [host, host]
    annotations: {summary: "{{ labels.sev }} {{ labels.severity }} on {{ labels.hots }}"}
  - 42
  - [a]
  - name: heartbeat
    match: {container: beat}
    absent_for: 5m
    group_by: [account]
    expect: [{account: 123456789012345678901234567890}, {acount: 1}]
  - name: fine_with_a_huge_number
    match: {account: 123456789012345678901234567890}
    window: 1m
    condition: count >= 1
"""


def test_check_prints_every_problem_of_every_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Non-map items, shape errors, each bad matcher, unknown template labels: all printed, exit 1."""
    path = tmp_path / "every.yaml"
    path.write_text(EVERY_KIND)
    assert main(["check", str(path)]) == 1
    err = capsys.readouterr().err.splitlines()
    rule = f"{path}: rule 'shape_and_meaning': "
    expected_prefixes = [
        f"{rule}labels.sev: Input should be a valid string",
        f"{rule}severity: unknown key",
        f"{rule}match.y: a list is not a matcher",
        f"{rule}match.z.not: empty matcher map",
        f"{rule}match.n.gt: must be a number, got ' 10'",
        f"{rule}annotations.summary: unknown label 'hots' (known: sev, severity, host)",
        f"{rule}group_by: repeated field",
        f"{rule}window: invalid duration",
        f"{path}: rules[1]: must be a map of rule fields, got a number (42)",
        f"{path}: rules[2]: must be a map of rule fields, got a list",
        f"{path}: rule 'heartbeat': expect[1]: keys ['acount'] must be exactly group_by ['account']",
        "11 problem(s) found",
    ]
    assert len(err) == len(expected_prefixes), "\n".join(err)
    for line, prefix in zip(err, expected_prefixes, strict=True):
        assert line.startswith(prefix), (line, prefix)
