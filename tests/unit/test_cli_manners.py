"""The command line's manners, through the real console script: quiet under `| head`, loud when the input is
not logs or a notification was not delivered, and flags that would do nothing refused."""

from __future__ import annotations

import subprocess
from pathlib import Path

import orjson
import pytest

from streamalert.testing import free_port
from tests.unit.cli_process import INCIDENT, RULES, clean_env, console_script, streamalert

T0 = 1_769_418_000  # 2026-01-26T09:00:00Z


@pytest.fixture(scope="module")
def flapping(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """2,000 rate-limiter errors two minutes apart: each fires and resolves an alert (a few MB of output,
    far more than a pipe holds, so a writer cannot finish before its reader goes away)."""
    path = tmp_path_factory.mktemp("flapping") / "flapping.jsonl"
    line = {
        "app": "crm",
        "level": "error",
        "error_type": "rate_limiter_backend_error",
        "policy": "fail_open",
        "message": "Error reserving rate limit token (Redis unavailable), allowing send (fail-open)",
    }
    path.write_bytes(b"".join(orjson.dumps({**line, "time": T0 + 120 * i}) + b"\n" for i in range(2000)))
    return path


@pytest.mark.parametrize("options", [[], ["--format", "table"], ["--notify"]], ids=["jsonl", "table", "notify"])
def test_replay_into_head_exits_quietly(flapping: Path, options: list[str]) -> None:
    """`streamalert replay ... | head -n 1`: head gets its line; replay stops with 141 (as SIGPIPE would
    report) and nothing on stderr but its own output, no BrokenPipeError traceback."""
    replay = subprocess.Popen(
        [*console_script(), "replay", str(flapping), "--rules", str(RULES), "--no-progress", *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=clean_env(),
    )
    assert replay.stdout is not None
    assert replay.stderr is not None
    head = subprocess.run(["head", "-n", "1"], stdin=replay.stdout, capture_output=True, timeout=120, check=True)
    replay.stdout.close()  # head holds the only read end now: when it exits, the pipe has no reader
    err = replay.stderr.read().decode()
    assert replay.wait(timeout=120) == 141, err
    assert head.stdout.count(b"\n") == 1
    assert "Traceback" not in err
    assert "BrokenPipeError" not in err
    assert "Exception ignored" not in err


def test_replay_of_a_file_that_is_not_logs_is_an_error() -> None:
    """Every line malformed (README.md given as logs): an error on stderr naming the file, exit 1."""
    readme = Path(RULES).parents[1] / "README.md"
    done = streamalert("replay", readme, "--rules", RULES)
    assert done.returncode == 1
    assert "error: none of the" in done.stderr
    assert f"is {readme} a file of NDJSON logs?" in done.stderr
    assert done.stdout == ""


def test_replay_of_mostly_malformed_input_warns(tmp_path: Path) -> None:
    """More than half the lines malformed: the alerts of the rest are printed, a warning says how many
    lines were skipped, exit 0. Fewer: no warning."""
    good = INCIDENT.read_bytes().splitlines()[:100]
    mostly_bad = tmp_path / "mixed.jsonl"
    mostly_bad.write_bytes(b"\n".join([*good, *[b"plain text, not JSON"] * 101]) + b"\n")
    done = streamalert("replay", mostly_bad, "--rules", RULES)
    assert done.returncode == 0, done.stderr
    assert "warning: 101 of 201 lines are not JSON objects" in done.stderr
    mostly_good = tmp_path / "fine.jsonl"
    mostly_good.write_bytes(b"\n".join([*good, *[b"plain text, not JSON"] * 99]) + b"\n")
    done = streamalert("replay", mostly_good, "--rules", RULES)
    assert done.returncode == 0, done.stderr
    assert "warning" not in done.stderr


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--resume"], "--resume continues a stored state, and memory:// starts empty"),
        (["--resume", "--reset-state", "--state", "redis://127.0.0.1:1/0"], "--resume and --reset-state contradict"),
        (["--notify", "--format", "table"], "--format table is for transitions; --notify prints notifications"),
    ],
    ids=["resume-memory", "resume-reset", "notify-table"],
)
def test_replay_refuses_flags_that_would_do_nothing(options: list[str], message: str) -> None:
    """A flag that would be ignored is refused with exit 2 and a message, before anything is read."""
    done = streamalert("replay", INCIDENT, "--rules", RULES, *options)
    assert done.returncode == 2
    assert message in done.stderr
    assert done.stdout == ""


@pytest.mark.parametrize("command", ["alerts", "outbox"])
def test_alerts_and_outbox_on_memory_state_explain(tmp_path: Path, command: str) -> None:
    """`alerts`/`outbox` with memory:// state say that memory state does not outlive a process (exit 2)
    instead of printing an empty list."""
    config = tmp_path / "service.yaml"
    config.write_text(f"rules: {RULES}\nstate: memory://\nsources:\n  vector: {{auth: none}}\n", "utf-8")
    done = streamalert(command, "--config", config)
    assert done.returncode == 2
    assert "memory state does not outlive the process" in done.stderr


def test_replay_send_exits_1_when_a_notification_is_dead_lettered(tmp_path: Path) -> None:
    """--notify --send to a webhook nobody answers (one attempt allowed): the notifications are
    dead-lettered, replay says so and exits 1."""
    config = tmp_path / "service.yaml"
    config.write_text(
        f"""
rules: {RULES}
sources:
  vector: {{auth: none}}
route: {{receiver: hook, group_by: [alertname], group_wait: 0s}}
receivers:
  - name: hook
    webhook_configs: [{{url: "http://127.0.0.1:{free_port()}/hook", timeout: 2s}}]
notify: {{max_attempts: 1}}
""",
        "utf-8",
    )
    done = streamalert("replay", INCIDENT, "--rules", RULES, "--notify", "--send", "--config", config)
    assert done.returncode == 1
    assert "notification(s) could not be delivered and were dead-lettered" in done.stderr


@pytest.mark.redis
def test_resume_split_at_one_millisecond_gives_one_runs_transitions(redis_url: str, tmp_path: Path) -> None:
    """The incident split between two lines of 10:30:00.000: `replay A --state`, then `replay B --resume`,
    prints one run's transitions (A's provisional lines aside), QuestionnaireEvaluationFailures at 10:30:00
    value 6. (Before: HighAuthFailureRate fired at 10:35:30.500 instead of 10:35:30.000.)"""
    lines = INCIDENT.read_bytes().splitlines(keepends=True)
    stamp = b'{"timestamp": "2026-01-26T10:30:00.000Z"'
    cut = next(k for k in range(1, len(lines)) if lines[k - 1].startswith(stamp) and lines[k].startswith(stamp))
    first, rest = tmp_path / "a.jsonl", tmp_path / "b.jsonl"
    first.write_bytes(b"".join(lines[:cut]))
    rest.write_bytes(b"".join(lines[cut:]))
    assert lines[cut - 1][:40] == lines[cut][:40], "both parts hold lines of 10:30:00.000"
    state = f"{redis_url}?namespace=cli-split-{cut}"
    a = streamalert("replay", first, "--rules", RULES, "--state", state, "--reset-state")
    b = streamalert("replay", rest, "--rules", RULES, "--state", state, "--resume")
    assert a.returncode == b.returncode == 0, a.stderr + b.stderr
    provisional = [line for line in a.stdout.splitlines() if orjson.loads(line).get("provisional")]
    assert provisional, "A ends inside the incident: its end decides something"
    assert f"the last {len(provisional)} transition(s) are provisional" in a.stderr
    final = [line for line in a.stdout.splitlines() if line not in provisional]
    expected = (INCIDENT.parent / "expected-transitions.jsonl").read_text("utf-8").splitlines()
    assert final + b.stdout.splitlines() == expected
    fired = [orjson.loads(line) for line in final + b.stdout.splitlines()]
    questionnaire = [t for t in fired if t["rule"] == "QuestionnaireEvaluationFailures" and t["state"] == "firing"]
    assert [(t["at"], t["value"]) for t in questionnaire] == [("2026-01-26T10:30:00.000Z", 6)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "rules:\n  - name: x\n    match: {a: [\n",
            "invalid YAML: expected the node content, but found '<stream end>' at line 4",
        ),
        ("- name: x\n", "must be a map with a `rules:` list, got a list"),
        ("rules: 5\n", "must be a map with a `rules:` list, got `rules:` holding a number (5)"),
        ("", "must be a map with a `rules:` list, got an empty file"),
        ("rule:\n  - name: x\n", "rules: missing: a rule file holds a `rules:` list"),
    ],
    ids=["yaml-syntax", "a-list", "rules-not-a-list", "empty", "misspelt-key"],
)
def test_rule_file_errors_are_one_readable_line(tmp_path: Path, text: str, message: str) -> None:
    """A broken rule file: file and what is wrong in one line, no "<unicode string>" and no pydantic wording."""
    path = tmp_path / "rules.yaml"
    path.write_text(text, "utf-8")
    done = streamalert("check", path)
    assert done.returncode == 1
    assert f"{path}: {message}" in done.stderr.splitlines()[0]
    for internal in ("<unicode string>", "instance of", "Input should", "Field required"):
        assert internal not in done.stderr


@pytest.mark.parametrize(
    ("argv", "usage"),
    [
        (["replay", "x.jsonl"], "usage: streamalert replay"),
        (["routes", "test"], "usage: streamalert routes test"),
        (["check"], "usage: streamalert check"),
        (["outbox", "--limit", "many"], "usage: streamalert outbox"),
        (["replay", "x.jsonl", "--rules", "r", "--resume"], "usage: streamalert replay"),
        (["replay", "x.jsonl", "--rules", str(RULES), "--lateness", "soon"], "usage: streamalert replay"),
    ],
    ids=["replay-no-rules", "routes-test-no-config", "check-nothing", "outbox-limit", "replay-conflict", "lateness"],
)
def test_sub_command_errors_print_that_sub_commands_usage(argv: list[str], usage: str) -> None:
    """A sub-command used wrongly answers with its own usage line and exit 2."""
    done = streamalert(*argv)
    assert done.returncode == 2
    assert done.stderr.startswith(usage)
