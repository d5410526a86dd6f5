"""`streamalert test`: rule unit tests give what replay gives, diff readably, and refuse malformed files."""

from __future__ import annotations

import asyncio
import gzip
import subprocess
import sys
import textwrap
from pathlib import Path

import orjson
import pytest

from streamalert.cli import main
from streamalert.config.rules import load_rules
from streamalert.output import transition_json
from streamalert.ruletest.run import run_case
from streamalert.ruletest.spec import load_test_file
from tests.unit.cli_process import ROOT, clean_env

TESTS = sorted((ROOT / "config" / "tests").glob("*.yaml"))
RULES = ROOT / "config" / "rules"
RATE_LIMITER = (
    "{level: error, app: crm, error_type: rate_limiter_backend_error, policy: fail_open, "
    'event: "Error reserving rate limit token (Redis unavailable)"}'
)


def _write(tmp_path: Path, body: str, name: str = "t.yaml") -> Path:
    path = tmp_path / name
    path.write_text(f"rule_files: [{RULES / 'mailer.yaml'}]\n" + textwrap.dedent(body), encoding="utf-8")
    return path


def test_shipped_rule_tests_pass(capsys: pytest.CaptureFixture[str]) -> None:
    """`streamalert test config/tests/*.yaml` exits 0 with every test passed (so CI runs the rule tests)."""
    assert TESTS
    code = main(["test", *map(str, TESTS)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "FAIL" not in out
    assert out.splitlines()[-1].endswith(" passed, 0 failed")


def test_every_shipped_rule_has_a_firing_and_a_quiet_test() -> None:
    """Each rule of config/rules is expected to fire in some test and compared in some test where it does not."""
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS:
        for case in load_test_file(path).cases:
            fired = {e.rule for e in case.expected if e.state == "firing"}
            fires |= fired
            quiet |= set(case.scope or ()) - fired
    names = {rule.name for rule in load_rules(RULES)}
    assert names - fires == set()
    assert names - quiet == set()


def test_a_test_sees_exactly_what_replay_prints(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The transitions a test compares are replay's output for the same lines, field for field."""
    test_file = load_test_file(ROOT / "config" / "tests" / "revel.yaml")
    case = next(c for c in test_file.cases if "Stripe failures in ten" in c.name)
    logs = tmp_path / "case.jsonl"
    logs.write_bytes(b"\n".join(case.lines) + b"\n")
    assert case.until_ms is not None
    rules = str(RULES / "revel.yaml")
    assert main(["replay", str(logs), "--rules", rules, "--until", str(case.until_ms / 1000)]) == 0
    replayed = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
    outcome = asyncio.run(run_case(case, test_file.rules, None))
    assert [orjson.loads(transition_json(t)) for t in outcome.transitions] == replayed
    assert [t["rule"] for t in replayed] == ["StripePaymentFailures", "StripePaymentFailures"]


def test_a_broken_expectation_shows_an_aligned_diff(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A wrong resolve time fails with exit 1: the file and test named, expected (-) and got (+) rows aligned."""
    path = _write(
        tmp_path,
        f"""
        tests:
          - name: resolves too early
            input: [{{at: +10s, line: {RATE_LIMITER}}}]
            until: +5m
            expect:
              - {{at: +10s, rule: mailer_rate_limiter_redis_error, state: firing}}
              - {{at: +1m, rule: mailer_rate_limiter_redis_error, state: resolved}}
        """,
    )
    assert main(["test", str(path)]) == 1
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f'FAIL {path}: tests[0] "resolves too early"'
    rows = [line for line in out if line.startswith("    ")]
    assert [row[4] for row in rows] == [" ", "-", "+"]
    assert rows[1].split()[1:4] == ["+1m", "resolved", "mailer_rate_limiter_redis_error"]
    assert rows[2].split()[1:5] == ["+1m10s", "resolved", "mailer_rate_limiter_redis_error", "value=0"]
    assert len({row.index("mailer_rate_limiter_redis_error") for row in rows}) == 1  # one column
    assert len({row.index("resolved") for row in rows[1:]}) == 1
    assert out[-1] == "0 passed, 1 failed"


def test_expect_nothing_compares_every_rule(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`expect: []` without `rules:` fails on any transition; with `rules:` only those rules are compared."""
    path = _write(
        tmp_path,
        f"""
        tests:
          - name: nothing at all
            input: [{{at: +0s, line: {RATE_LIMITER}}}]
            expect: []
          - name: nothing from the throttle rule
            rules: [mailer_throttle_backend_error]
            input: [{{at: +0s, line: {RATE_LIMITER}}}]
            expect: []
        """,
    )
    assert main(["test", str(path)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out.split("\n")[0]
    assert " ".join(out.split("\n")[2].split()) == "+ +0s firing mailer_rate_limiter_redis_error value=1"
    assert f'PASS {path}: tests[1] "nothing from the throttle rule"' in out
    assert out.splitlines()[-1] == "1 passed, 1 failed"


def test_labels_value_and_annotations_are_subset_matches(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Given labels, annotations and value must be equal for the keys given; any one wrong is a failure."""
    body = """
        tests:
          - name: {name}
            input:
              - {{at: +0s, line: {{level: error, app: crm, event: "too many transient errors", consecutive_errors: 11,
                                   campaign_id: 42}}}}
            expect:
              - {{at: +0s, rule: mailer_circuit_breaker_triggered, state: firing, value: {value},
                  labels: {{campaign_id: {campaign}, severity: critical}},
                  annotations: {{summary: "{summary}"}}}}
    """

    def run(name: str, campaign: str = '"42"', errors: int = 11, value: int = 1) -> int:
        summary = f"Campaign 42 paused by the circuit breaker ({errors} consecutive transient errors)"
        text = body.format(name=name, campaign=campaign, value=value, summary=summary)
        return main(["test", str(_write(tmp_path, text, f"{name}.yaml"))])

    assert run("right") == 0
    assert run("wrong-text", errors=12) == 1
    assert run("wrong-value", value=2) == 1
    capsys.readouterr()
    assert run("wrong-campaign", campaign="43") == 1
    rows = [" ".join(line.split()) for line in capsys.readouterr().out.splitlines()]
    rule = "mailer_circuit_breaker_triggered"
    assert any(r.startswith(f'- +0s firing {rule} {{campaign_id="43", severity="critical"}}') for r in rows)
    assert any(r.startswith(f'+ +0s firing {rule} {{campaign_id="42", severity="critical"}}') for r in rows)


def test_file_input_keeps_the_times_of_its_lines(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`file:` lines (gzip or plain) run at their own times, merged in time order with generated lines."""
    (tmp_path / "app.jsonl").write_bytes(
        b'{"time": "2026-01-01T00:00:30Z", "level": "error", "app": "crm", "error_type": "throttle_backend_error"}\n'
        b"not json\n"
    )
    (tmp_path / "more.jsonl.gz").write_bytes(
        gzip.compress(b'{"ts": 1767225720, "level": "ERROR", "app": "crm", "error_type": "throttle_backend_error"}\n')
    )
    path = _write(
        tmp_path,
        """
        tests:
          - name: from a file
            input:
              - {file: more.jsonl.gz}                                       # +2m
              - {file: app.jsonl}                                           # +30s
              - {at: +0s, line: {app: crm, level: info, message: started}}
            until: +10m
            expect:
              - {at: +30s, rule: mailer_throttle_backend_error, state: firing, value: 1}
              - {at: +7m, rule: mailer_throttle_backend_error, state: resolved}
        """,
    )
    assert main(["test", str(path)]) == 0, capsys.readouterr().out


def test_notifications_are_compared_after_routing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """With `config:`, notifications are those `replay --notify` prints; a wrong receiver shows in the diff."""
    path = _write(
        tmp_path,
        f"""
        config: {ROOT / "config" / "streamalert.yaml"}
        tests:
          - name: wrong receiver
            rules: [mailer_rate_limiter_redis_error]
            input: [{{at: +0s, line: {RATE_LIMITER}}}]
            until: +10m
            expect:
              - {{at: +0s, rule: mailer_rate_limiter_redis_error, state: firing}}
              - {{at: +1m, rule: mailer_rate_limiter_redis_error, state: resolved}}
            notifications:
              - {{at: +30s, receiver: default-email, status: firing,
                  alerts: [{{alertname: mailer_rate_limiter_redis_error}}]}}
              - {{at: +5m30s, receiver: pagerduty-oncall, status: resolved, sinks: [pagerduty/0, slack/0],
                  alerts: [{{alertname: mailer_rate_limiter_redis_error}}]}}
        """,
    )
    assert main(["test", str(path)]) == 1
    out = capsys.readouterr().out
    lines = [" ".join(line.split()) for line in out.splitlines()]
    assert "notifications (- expected, + got):" in lines
    assert "- +30s firing default-email [mailer_rate_limiter_redis_error]" in lines
    assert "+ +30s firing pagerduty-oncall [mailer_rate_limiter_redis_error] sinks=pagerduty/0,slack/0" in lines
    assert "+5m30s resolved pagerduty-oncall [mailer_rate_limiter_redis_error] sinks=pagerduty/0,slack/0" in lines


def test_expectations_after_the_clock_stops_get_a_note(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Without `until`, the clock stops at the last line: a later expectation fails with a note saying so."""
    path = _write(
        tmp_path,
        f"""
        tests:
          - name: no until
            input: [{{at: +0s, line: {RATE_LIMITER}}}]
            expect:
              - {{at: +0s, rule: mailer_rate_limiter_redis_error, state: firing}}
              - {{at: +1m, rule: mailer_rate_limiter_redis_error, state: resolved}}
        """,
    )
    assert main(["test", str(path)]) == 1
    assert "note: the clock stopped at +0s (the last input line)" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        (
            "tests: [{name: a, input: [], expect: [{at: +1m, rule: mailer_processing_stuck, state: fired}]}]",
            'tests[0] "a": expect[0].state: Input should be',
        ),
        ("tests: [{name: b, inputs: []}]", 'tests[0] "b": inputs: Extra inputs are not permitted'),
        ("tests: [{name: c, input: [{at: 30, line: {a: 1}}]}]", 'tests[0] "c": input[0].at: expected a time'),
        ("tests: [{name: d, input: [{at: +5x, line: {a: 1}}]}]", 'tests[0] "d": input[0].at: invalid duration'),
        ("tests: [{name: e, input: [{at: +0s, line: {a: 1}, count: 3}]}]", "`count` above 1 needs `every`"),
        ("tests: [{name: f, expect: [{at: +0s, rule: Nope, state: firing}]}]", "expect[0].rule: no rule named 'Nope'"),
        ("tests: [{name: g, input: [{at: +0s, line: {timestamp: 1}}]}]", "`line` has its own `timestamp`"),
        ("tests: [{name: h, notifications: []}]", "config: `notifications` expectations need `config:`"),
        ("tests: []", "tests: List should have at least 1 item"),
        ("rules: []\ntests: [{name: i}]", "rules: Extra inputs are not permitted"),
    ],
)
def test_malformed_test_files_exit_2_naming_file_test_and_field(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], body: str, problem: str
) -> None:
    """A test file that cannot be run exits 2 and names the file, the test and the field."""
    path = _write(tmp_path, body + "\n")
    assert main(["test", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: " in err
    assert problem in err


def test_a_file_that_is_not_a_map_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """An empty or non-map test file exits 2 with a sentence saying what a test file holds."""
    path = tmp_path / "empty.yaml"
    path.write_text("")
    assert main(["test", str(path)]) == 2
    assert f"{path}: must be a map with `rule_files` and `tests`" in capsys.readouterr().err


def test_rule_files_that_do_not_load_are_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A rule file with problems makes the test file unrunnable (exit 2), with the rule's own problem shown."""
    (tmp_path / "rules.yaml").write_text("rules: [{name: x, match: {a: 1}, window: 5q, condition: count > 1}]\n")
    path = tmp_path / "t.yaml"
    path.write_text("rule_files: [rules.yaml]\ntests: [{name: a, expect: []}]\n")
    assert main(["test", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}: rule_files[0]: {tmp_path / 'rules.yaml'}" in err
    assert "window" in err


def test_test_help_does_not_load_the_engine() -> None:
    """`streamalert test --help` starts light: no engine, aiohttp, aiokafka or redis imported."""
    script = (
        "import sys\nfrom streamalert.cli import main\n"
        "try:\n    main(['test', '--help'])\nexcept SystemExit:\n    pass\n"
        "print(sorted(m for m in ('aiohttp', 'aiokafka', 'redis', 'streamalert.engine') if m in sys.modules))\n"
    )
    command = [sys.executable, "-c", script]
    done = subprocess.run(command, cwd=ROOT, env=clean_env(), capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"


def test_the_readme_example_passes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The test file shown in README.md's "Testing rules" runs and passes as written."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme[readme.index("## Testing rules") :]
    example = section[section.index("```yaml\n") + 8 :]
    example = example[: example.index("```")]
    (tmp_path / "tests").mkdir()
    (tmp_path / "rules").symlink_to(RULES)
    (tmp_path / "streamalert.yaml").symlink_to(ROOT / "config" / "streamalert.yaml")
    path = tmp_path / "tests" / "example.yaml"
    path.write_text(example, encoding="utf-8")
    assert main(["test", str(path)]) == 0, capsys.readouterr()
    assert capsys.readouterr().out.splitlines()[-1] == "1 passed, 0 failed"


def test_rule_files_take_globs_and_refuse_a_name_twice(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`rule_files` globs are relative to the test file; one rule name in two files is a problem naming both."""
    rules = tmp_path / "rules"
    rules.mkdir()
    rule = "rules: [{name: boom, match: {event: boom}, window: 1m, condition: count >= 1}]\n"
    (rules / "a.yaml").write_text(rule)
    path = tmp_path / "t.yaml"
    path.write_text(
        "rule_files: ['rules/*.yaml']\n"
        "tests: [{name: a, input: [{at: +0s, line: {event: boom}}], expect: [{at: +0s, rule: boom, state: firing}]}]\n"
    )
    assert main(["test", str(path)]) == 0
    (rules / "b.yaml").write_text(rule)
    assert main(["test", str(path)]) == 2
    assert f"rule boom is in both {rules / 'a.yaml'} and {rules / 'b.yaml'}" in capsys.readouterr().err
