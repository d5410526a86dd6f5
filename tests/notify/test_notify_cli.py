"""The notification commands of the CLI, in process through `main([...])`: `check --config`, `routes test`,
`outbox`, `alerts` (against a real Redis) and `replay --notify`."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest

from streamalert.cli import main
from streamalert.decode import format_ms, parse_time
from streamalert.model import AlertState, Transition
from streamalert.notify.model import ZERO_TIME, Alert, Notification, fingerprint
from streamalert.output import transition_json
from streamalert.state.base import Changes
from streamalert.state.redis import RedisStore
from streamalert.testing import free_port
from tests.notify.test_webhook import PATH, conformance_validator
from tests.notify.vendor import Vendor, serve

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "rules"
INCIDENT = str(ROOT / "examples" / "incident.jsonl")
T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z

SLACK_SECRET = "https://hooks.slack.com/services/T000/B000/XSECRETX"
HOOK_SECRET = "hook-b3arer-SECRET"
API_SECRET = "api-t0ken-SECRET"
SECRETS = (SLACK_SECRET, "XSECRETX", HOOK_SECRET, API_SECRET)

_namespaces = itertools.count()

ROUTING = """
route:
  receiver: default
  group_by: [alertname]
  routes:
    - receiver: pager
      matchers: ['severity="critical"']
      continue: true
    - receiver: team
      matchers: ['team=~"mailer|backend"', 'severity!="info"']
      routes:
        - receiver: mailer-oncall
          matchers: ['team="mailer"']
receivers:
  - name: default
    stdout_configs: [{}]
  - name: pager
    webhook_configs: [{url: "https://hooks.example.com/page", bearer_token: "${HOOK_TOKEN}"}]
  - name: team
    slack_configs: [{webhook_url: "SLACK_SECRET"}]
  - name: mailer-oncall
    stdout_configs: [{}]
inhibit_rules:
  - source_matchers: ['severity="critical"']
    target_matchers: ['severity="warning"']
    equal: [team]
silences:
  - matchers: ['alertname="HighLLMTokenUsage"']
    ends_at: "2030-01-01T00:00:00Z"
    comment: cost review
notify:
  api_token: "API_SECRET"
""".replace("SLACK_SECRET", SLACK_SECRET).replace("API_SECRET", API_SECRET)


def write_config(tmp_path: Path, body: str, state: str = "memory://", name: str = "streamalert.yaml") -> Path:
    """A service config: the repo's rules, an unauthenticated Vector source, `state`, then `body`."""
    path = tmp_path / name
    path.write_text(f'rules: {RULES}\nsources: {{vector: {{auth: none}}}}\nstate: "{state}"\n{body}', "utf-8")
    return path


@pytest.fixture(autouse=True)
def _hook_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOOK_TOKEN", HOOK_SECRET)


def _no_secret(text: str) -> None:
    for secret in SECRETS:
        assert secret not in text, (secret, text)


# ---- check --config -------------------------------------------------------------------------------------


def test_check_config_prints_ok_and_counts(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid config: exit 0 and one line counting rules, routes (root included), receivers, sinks,
    inhibit rules and silences; no secret in the output."""
    config = write_config(tmp_path, ROUTING)
    assert main(["check", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == [
        "OK: 18 rules, 4 routes, 4 receivers with 4 sinks, 1 inhibit rules, 1 silences"
    ]
    _no_secret(captured.out + captured.err)


def test_check_config_without_notifications_counts_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "")
    assert main(["check", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "OK: 18 rules, 0 routes, 0 receivers with 0 sinks, 0 inhibit rules, 0 silences"
    ]


def test_check_needs_exactly_one_of_path_and_config(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, ROUTING)
    assert main(["check"]) == 2
    assert main(["check", str(RULES), "--config", str(config)]) == 2
    assert "give a rule path or --config FILE" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        # an unknown receiver, by its place in the tree
        pytest.param(
            "    - receiver: pager\n",
            "    - receiver: nobody\n",
            "route.routes.0.receiver: unknown receiver 'nobody'",
            id="unknown-receiver",
        ),
        pytest.param(
            "        - receiver: mailer-oncall\n",
            "        - receiver: mailer\n",
            "route.routes.1.routes.0.receiver: unknown receiver 'mailer'",
            id="unknown-nested-receiver",
        ),
        pytest.param(
            "  receiver: default\n  group_by",
            "  receiver: dflt\n  group_by",
            "route.receiver: unknown receiver 'dflt'",
            id="unknown-root-receiver",
        ),
        pytest.param(
            "  - name: mailer-oncall\n",
            "  - name: team\n",
            "receivers.3.name: duplicate receiver 'team'",
            id="duplicate-receiver",
        ),
        # a matcher that does not parse, by list index
        pytest.param("'severity!=\"info\"'", "'severity!!\"info\"'", "route.routes.1.matchers.1: ", id="bad-matcher"),
        pytest.param(
            "['team=\"mailer\"']",
            "['team=\"mailer\"', 'team']",
            "route.routes.1.routes.0.matchers.1: ",
            id="bad-nested-matcher",
        ),
        pytest.param(
            "source_matchers: ['severity=\"critical\"']",
            "source_matchers: ['sev ~ x']",
            "inhibit_rules.0.source_matchers.0: ",
            id="bad-inhibit-matcher",
        ),
        pytest.param("group_by: [alertname]", "group_by: [alert-name]", "route.group_by: ", id="bad-group-by"),
        pytest.param(
            "  receiver: default\n  group_by",
            "  receiver: default\n  group_wait: soon\n  group_by",
            "route.group_wait: ",
            id="bad-duration",
        ),
        pytest.param('ends_at: "2030-01-01T00:00:00Z"', "ends_at: someday", "silences.0.ends_at: ", id="bad-silence"),
    ],
)
def test_check_config_names_the_key_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, where: str
) -> None:
    """Every problem is reported as `<file>: <key path>: <message>`, with a non-zero exit and no secret."""
    assert old in ROUTING
    config = write_config(tmp_path, ROUTING.replace(old, new, 1))
    assert main(["check", "--config", str(config)]) != 0
    captured = capsys.readouterr()
    assert f"{config}: {where}" in captured.err, captured.err
    assert captured.out == ""
    _no_secret(captured.out + captured.err)


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        pytest.param(
            'webhook_url: "', 'webhook_urll: "', ("receivers.2", "slack_configs.0.webhook_urll"), id="unknown-key"
        ),
        pytest.param(
            "slack_configs: [{",
            "slack_configs: [{colour: red, ",
            ("receivers.2", "slack_configs.0.colour"),
            id="unknown-key-beside-the-secret",
        ),
        pytest.param(
            "slack_configs:", "slakc_configs:", ("receivers.2", "slakc_configs: unknown key"), id="unknown-sink"
        ),
        pytest.param(
            "    webhook_configs: [{url: ",
            "    webhook_configs: [{timeout: 5 mins, url: ",
            ("receivers.1", "webhook_configs.0.timeout"),
            id="bad-timeout",
        ),
        pytest.param(
            'url: "https://hooks.example.com/page"',
            'url: "ftp://SECRET-host/x"',
            ("receivers.1", "webhook_configs.0", "url"),
            id="bad-url",
        ),
        pytest.param(
            "  - name: pager\n",
            "  - name: pager\n    min_severity: urgent\n",
            ("receivers.1.min_severity",),
            id="bad-min-severity",
        ),
    ],
)
def test_check_config_names_the_receiver_of_a_bad_sink(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], old: str, new: str, where: tuple[str, ...]
) -> None:
    """A bad sink setting names the receiver (its index under `receivers`) and the sink key; the secrets of
    the sinks (even a malformed one) are not repeated."""
    assert old in ROUTING
    config = write_config(tmp_path, ROUTING.replace(old, new, 1))
    assert main(["check", "--config", str(config)]) != 0
    err = capsys.readouterr().err
    for part in where:
        assert part in err, (part, err)
    _no_secret(err)
    assert "SECRET-host" not in err


def test_check_config_reads_secret_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A `*_file` secret that cannot be read fails the check naming the receiver, the sink, the key and the
    file; a readable one passes and its content is never printed."""
    missing = ROUTING.replace(f'webhook_url: "{SLACK_SECRET}"', "webhook_url_file: /nonexistent")
    config = write_config(tmp_path, missing)
    assert main(["check", "--config", str(config)]) != 0
    captured = capsys.readouterr()
    assert "team: slack_configs.0: webhook_url_file: cannot read /nonexistent" in captured.err
    assert captured.out == ""
    _no_secret(captured.err)

    secret_file = tmp_path / "slack-url"
    secret_file.write_text(SLACK_SECRET + "\n", "utf-8")
    present = ROUTING.replace(f'webhook_url: "{SLACK_SECRET}"', f"webhook_url_file: {secret_file}")
    config = write_config(tmp_path, present, name="present.yaml")
    assert main(["check", "--config", str(config)]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith("OK: 18 rules, 4 routes")
    _no_secret(captured.out + captured.err)


def test_check_config_reads_the_api_token_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """notify.api_token_file is read by the check too: a missing one fails it, naming the key."""
    missing = ROUTING.replace(f'api_token: "{API_SECRET}"', "api_token_file: /nonexistent-token")
    assert missing != ROUTING
    config = write_config(tmp_path, missing)
    assert main(["check", "--config", str(config)]) != 0
    captured = capsys.readouterr()
    assert "notify.api_token_file: cannot read /nonexistent-token" in captured.err
    assert captured.out == ""
    _no_secret(captured.err)


def test_check_config_missing_env_variable_is_named(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("HOOK_TOKEN")
    config = write_config(tmp_path, ROUTING)
    assert main(["check", "--config", str(config)]) != 0
    err = capsys.readouterr().err
    assert f"{config}: environment variable(s) not set: HOOK_TOKEN" in err


def test_check_config_yaml_error_does_not_print_the_secret(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A YAML syntax error on the line of a secret names the file and the line, but not the line's text."""
    broken = ROUTING.replace(f'webhook_url: "{SLACK_SECRET}"}}]', f'webhook_url: "{SLACK_SECRET}"}}]]')
    assert broken != ROUTING
    config = write_config(tmp_path, broken)
    assert main(["check", "--config", str(config)]) != 0
    err = capsys.readouterr().err
    assert str(config) in err
    assert "invalid YAML" in err
    assert "line" in err
    _no_secret(err)


# ---- routes test ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("labels", "receivers"),
    [
        (["severity=critical", "team=mailer"], ["pager", "mailer-oncall"]),
        (["severity=critical", "team=backend"], ["pager", "team"]),
        (["severity=critical", "team=payments"], ["pager"]),  # a match, even a `continue` one, ends the fallback
        (['severity="warning"', 'team="mailer"'], ["mailer-oncall"]),
        (["severity=info", "team=mailer"], ["default"]),
        (["alertname=X"], ["default"]),
        ([], ["default"]),
    ],
)
def test_routes_test_prints_receivers_in_order(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], labels: list[str], receivers: list[str]
) -> None:
    """One receiver per line, in tree order: a `continue` route then the next match; the root when nothing
    matches; values may be quoted as in amtool."""
    config = write_config(tmp_path, ROUTING)
    assert main(["routes", "test", "--config", str(config), *labels]) == 0
    captured = capsys.readouterr()
    assert captured.out.splitlines() == receivers
    _no_secret(captured.out + captured.err)


@pytest.mark.parametrize("label", ["severity", "=critical", ""])
def test_routes_test_refuses_a_bad_label(tmp_path: Path, capsys: pytest.CaptureFixture[str], label: str) -> None:
    config = write_config(tmp_path, ROUTING)
    assert main(["routes", "test", "--config", str(config), "team=mailer", label]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "expected label=value" in captured.err


def test_routes_test_without_a_route_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, "")
    assert main(["routes", "test", "--config", str(config), "a=b"]) == 2
    assert "no route configured" in capsys.readouterr().err


# ---- outbox and alerts against Redis ---------------------------------------------------------------------


def _redis_config(tmp_path: Path, redis_url: str) -> tuple[Path, str]:
    state = f"{redis_url}?namespace=cli-notify-{next(_namespaces)}-{tmp_path.name}"
    return write_config(tmp_path, ROUTING, state=state), state


def _notification(index: int, name: str) -> Notification:
    labels = {"alertname": name, "severity": "critical", "team": "mailer"}
    alert = Alert(fingerprint(labels), "firing", labels, {"summary": name}, format_ms(T0), ZERO_TIME, 3)
    return Notification(
        id=f"delivery-{index}",
        receiver="team",
        sink="slack/0",
        group_key=f'{{}}:{{alertname="{name}"}}',
        group_labels={"alertname": name},
        alerts=(alert,),
        at=format_ms(T0 + index * 1000),
    )


def _dead_record(notification: Notification | None, error: str, attempts: int) -> bytes:
    body: Any = orjson.loads(notification.to_json()) if notification is not None else {"raw": "not json"}
    return orjson.dumps({"notification": body, "error": error, "attempts": attempts})


async def _seed_outbox(state: str) -> dict[str, str]:
    """Four notifications queued; three dead-lettered (one as an unreadable entry); one left pending.
    Returns the dead letters' ids by alert name, and the pending entry's id under "pending"."""
    store = RedisStore.from_url(state)
    try:
        notes = [_notification(i, name) for i, name in enumerate(["Alpha", "Bravo", "Charlie", "Delta"])]
        await store.commit(Changes(meta={}, outbox=[n.to_json() for n in notes]), {})
        entries = await store.outbox(None, 10)
        await store.outbox_dead(entries[0][0], _dead_record(notes[0], "slack: HTTP 500", 10))
        await store.outbox_dead(entries[1][0], _dead_record(notes[1], "slack: HTTP 404 (not retryable)", 1))
        await store.outbox_dead(entries[2][0], _dead_record(None, "unreadable outbox entry", 0))
        dead = await store.dead_letters(10)
        return {"Alpha": dead[0][0], "Bravo": dead[1][0], "raw": dead[2][0], "pending": entries[3][0]}
    finally:
        await store.close()


async def _outbox_names(state: str) -> tuple[list[str], list[str]]:
    """(pending notifications' alert names or "raw", dead letters' alert names or "raw")."""
    store = RedisStore.from_url(state)
    try:
        pending = [orjson.loads(raw) for _, raw in await store.outbox(None, 100)]
        dead = [orjson.loads(raw)["notification"] for _, raw in await store.dead_letters(100)]
    finally:
        await store.close()

    def name(n: Any) -> str:
        return "raw" if "raw" in n else str(n["alerts"][0]["labels"]["alertname"])

    return [name(n) for n in pending], [name(n) for n in dead]


def test_outbox_lists_pending_and_dead_letters(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """The listing: pending count and entries (time, receiver/sink, alert names), then the dead letters with
    their attempts and errors; an unreadable dead letter is listed as such."""
    config, state = _redis_config(tmp_path, redis_url)
    ids = asyncio.run(_seed_outbox(state))
    assert main(["outbox", "--config", str(config)]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "pending: 1",
        f"  {ids['pending']}  {format_ms(T0 + 3000)}  team/slack/0  Delta",
        "dead letters: 3",
        f"  {ids['Alpha']}  {format_ms(T0)}  team/slack/0  Alpha  attempts=10  slack: HTTP 500",
        f"  {ids['Bravo']}  {format_ms(T0 + 1000)}  team/slack/0  Bravo  attempts=1  slack: HTTP 404 (not retryable)",
        f"  {ids['raw']}  (unreadable entry)  attempts=0  unreadable outbox entry",
    ]


def test_outbox_limit_caps_the_listing_not_the_counts(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """--limit lists at most N of each; the counts stay the real totals, for pending and dead letters alike."""
    config, state = _redis_config(tmp_path, redis_url)
    ids = asyncio.run(_seed_outbox(state))
    assert main(["outbox", "--config", str(config), "--limit", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "pending: 1"
    assert [line.split()[0] for line in out[1:] if line.startswith("  ")] == [ids["pending"], ids["Alpha"]]
    assert "dead letters: 3" in out


def test_outbox_requeue_one_then_all(tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    """--requeue ID moves that dead letter back to the outbox (at its end); --requeue alone moves the rest."""
    config, state = _redis_config(tmp_path, redis_url)
    ids = asyncio.run(_seed_outbox(state))
    assert main(["outbox", "--config", str(config), "--requeue", ids["Bravo"]]) == 0
    assert capsys.readouterr().out == "re-queued 1 notification(s)\n"
    assert asyncio.run(_outbox_names(state)) == (["Delta", "Bravo"], ["Alpha", "raw"])

    assert main(["outbox", "--config", str(config), "--requeue", ids["Bravo"]]) == 0  # no longer dead
    assert capsys.readouterr().out == "re-queued 0 notification(s)\n"

    assert main(["outbox", "--config", str(config), "--requeue"]) == 0
    assert capsys.readouterr().out == "re-queued 2 notification(s)\n"
    assert asyncio.run(_outbox_names(state)) == (["Delta", "Bravo", "Alpha", "raw"], [])

    assert main(["outbox", "--config", str(config)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "pending: 4"
    assert out[-2:] == ["  " + out[-2].split()[0] + "  (unreadable entry)", "dead letters: 0"]


def test_outbox_on_an_unreachable_store_hides_the_password(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = f"redis://ops:hunter2@127.0.0.1:{free_port()}/0?namespace=nowhere"
    config = write_config(tmp_path, ROUTING, state=state)
    assert main(["outbox", "--config", str(config)]) == 1
    err = capsys.readouterr().err
    assert "state store redis://***@127.0.0.1:" in err
    assert "hunter2" not in err
    assert "Traceback" not in err


def _transition(at_ms: int, rule: str, state: AlertState, severity: str) -> Transition:
    return Transition(at_ms, rule, state, (("severity", severity), ("team", "backend")), 1, (("summary", rule),))


FIRING, RESOLVED = AlertState.FIRING, AlertState.RESOLVED
TRANSITIONS = [
    _transition(T0, "HighErrorRate", FIRING, "critical"),
    _transition(T0 + 1000, "DiskFull", FIRING, "warning"),
    _transition(T0 + 2000, "HighErrorRate", RESOLVED, "critical"),
    _transition(T0 + 3000, "Latency", FIRING, "critical"),
    _transition(T0 + 4000, "DiskFull", RESOLVED, "warning"),
]
HISTORY = [
    {"id": f"delivery-{i}", "receiver": "team", "sink": "slack/0", "status": "sent", "at": format_ms(T0 + i)}
    for i in range(3)
]


async def _seed_history(state: str) -> None:
    store = RedisStore.from_url(state)
    try:
        lines = [transition_json(t) for t in TRANSITIONS]
        await store.commit(Changes(meta={}, transitions=lines[:3]), {})
        await store.commit(Changes(meta={}, transitions=lines[3:], outbox=[b"{}"] * len(HISTORY)), {})
        for (entry_id, _), record in zip(await store.outbox(None, 10), HISTORY, strict=True):
            await store.outbox_done(entry_id, orjson.dumps(record), keep=100)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ([], [0, 1, 2, 3, 4]),
        (["--state", "firing"], [0, 1, 3]),
        (["--state", "resolved"], [2, 4]),
        (["--severity", "critical"], [0, 2, 3]),
        (["--state", "firing", "--severity", "critical"], [0, 3]),
        (["--severity", "info"], []),
        (["--limit", "2"], [3, 4]),
        (["--state", "firing", "--limit", "1"], [3]),
    ],
)
def test_alerts_prints_the_last_transitions(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str], options: list[str], expected: list[int]
) -> None:
    """JSON lines, oldest first, exactly as the transition log holds them; filtered by state and severity."""
    config, state = _redis_config(tmp_path, redis_url)
    asyncio.run(_seed_history(state))
    assert main(["alerts", "--config", str(config), *options]) == 0
    out = capsys.readouterr().out
    assert out.encode() == b"".join(transition_json(TRANSITIONS[i]) + b"\n" for i in expected)


def test_alerts_notifications_prints_the_history(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    config, state = _redis_config(tmp_path, redis_url)
    asyncio.run(_seed_history(state))
    assert main(["alerts", "--config", str(config), "--notifications"]) == 0
    assert [orjson.loads(line) for line in capsys.readouterr().out.splitlines()] == HISTORY
    assert main(["alerts", "--config", str(config), "--notifications", "--limit", "2"]) == 0
    assert [orjson.loads(line) for line in capsys.readouterr().out.splitlines()] == HISTORY[1:]


def test_alerts_refuses_an_unknown_state(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, ROUTING)
    with pytest.raises(SystemExit) as exited:
        main(["alerts", "--config", str(config), "--state", "pending"])
    assert exited.value.code == 2
    assert "--state" in capsys.readouterr().err


# ---- replay --notify ------------------------------------------------------------------------------------

PAYLOAD_KEYS = {
    "version",
    "groupKey",
    "truncatedAlerts",
    "status",
    "receiver",
    "groupLabels",
    "commonLabels",
    "commonAnnotations",
    "externalURL",
    "alerts",
}


def _replay(capsys: pytest.CaptureFixture[str], *options: str) -> list[Any]:
    assert main(["replay", INCIDENT, "--rules", str(RULES), *options]) == 0
    return [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]


@pytest.fixture(scope="module")
def transitions() -> list[Any]:
    """The example incident's transitions, as plain replay prints them (checked against it below)."""
    lines = (ROOT / "examples" / "expected-transitions.jsonl").read_bytes().splitlines()
    return [orjson.loads(line) for line in lines]


def test_replay_notify_prints_webhook_payloads_in_time_order(capsys: pytest.CaptureFixture[str]) -> None:
    """Each line is an Alertmanager webhook v4 payload plus `id`, `sink` and `at`, in non-decreasing `at`."""
    lines = _replay(capsys, "--notify")
    assert lines
    ats = [parse_time(line["at"]) for line in lines]
    assert None not in ats
    assert ats == sorted(ats, key=lambda at: at or 0)
    for line in lines:
        assert set(line) == PAYLOAD_KEYS | {"id", "sink", "at"}, line
        assert line["version"] == "4"
        assert line["sink"] == "stdout/0"
        assert line["receiver"] == "stdout"
        assert line["status"] in {"firing", "resolved"}
        assert line["alerts"]
        assert {a["status"] for a in line["alerts"]} <= {"firing", "resolved"}
        assert (line["status"] == "firing") == any(a["status"] == "firing" for a in line["alerts"])
        assert line["groupLabels"] == {"alertname": line["commonLabels"]["alertname"]}
    assert len({line["id"] for line in lines}) == len(lines)


def test_replay_notify_notifies_every_firing_and_every_resolution(
    capsys: pytest.CaptureFixture[str], transitions: list[Any]
) -> None:
    """Compared with plain replay: every series that fired is in a firing notification, with its start; every
    series whose last transition resolved is later in a resolved notification; the others stay firing."""
    assert _replay(capsys) == transitions
    lines = _replay(capsys, "--notify")

    def fp(t: Any) -> str:
        return fingerprint({**t["labels"], "alertname": t["rule"]})

    firing_starts = {(fp(t), t["at"]) for t in transitions if t["state"] == "firing"}
    notified_starts = {
        (a["fingerprint"], a["startsAt"]) for line in lines for a in line["alerts"] if a["status"] == "firing"
    }
    assert firing_starts <= notified_starts
    fired_rules = {t["rule"] for t in transitions if t["state"] == "firing"}
    assert fired_rules == {line["commonLabels"]["alertname"] for line in lines if line["status"] == "firing"}

    last_transition = {fp(t): t["state"] for t in transitions}
    last_notified: dict[str, str] = {}
    for line in lines:
        for alert in line["alerts"]:
            last_notified[alert["fingerprint"]] = alert["status"]
    assert last_notified == last_transition
    still_firing = {fp for fp, state in last_transition.items() if state == "firing"}
    assert still_firing  # the example ends with an alert that never resolves
    assert len(still_firing) < len(last_transition)


def test_replay_notify_group_wait_shifts_the_first_notification(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], transitions: list[Any]
) -> None:
    """group_wait 0s notifies at the first firing transition; the default (30s) 30 seconds later."""
    tree = """
route:
  receiver: hook
  group_by: [alertname]GROUP_WAIT
receivers:
  - name: hook
    webhook_configs: [{url: "http://127.0.0.1:9/never"}]
"""
    immediate = write_config(tmp_path, tree.replace("GROUP_WAIT", "\n  group_wait: 0s"), name="immediate.yaml")
    default = write_config(tmp_path, tree.replace("GROUP_WAIT", ""), name="default.yaml")
    first_immediate = _replay(capsys, "--notify", "--config", str(immediate))[0]
    first_default = _replay(capsys, "--notify", "--config", str(default))[0]
    assert first_immediate["sink"] == first_default["sink"] == "webhook/0"
    assert first_immediate["at"] == transitions[0]["at"]
    assert (parse_time(first_default["at"]) or 0) - (parse_time(first_immediate["at"]) or 0) == 30_000
    assert first_default["groupKey"] == first_immediate["groupKey"]


def test_replay_send_needs_config_and_notify(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = write_config(tmp_path, ROUTING)
    assert main(["replay", INCIDENT, "--rules", str(RULES), "--notify", "--send"]) == 2
    captured = capsys.readouterr()
    assert "--send needs --config" in captured.err
    assert captured.out == ""
    assert main(["replay", INCIDENT, "--rules", str(RULES), "--send", "--config", str(config)]) == 2
    assert "go with --notify" in capsys.readouterr().err


async def test_replay_notify_config_is_a_dry_run_unless_send(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--notify --config with a webhook receiver prints what it would send and sends nothing; with --send the
    receiver gets exactly those payloads, once each, and nothing is printed."""
    tree = """
route:
  receiver: hook
  group_by: [alertname]
receivers:
  - name: hook
    webhook_configs: [{url: "URL", bearer_token: "${HOOK_TOKEN}"}]
"""
    async with serve(Vendor(conformance_validator)) as vendor:
        config = write_config(tmp_path, tree.replace("URL", vendor.url + PATH))
        args = ["replay", INCIDENT, "--rules", str(RULES), "--notify", "--config", str(config)]
        assert await asyncio.to_thread(main, args) == 0
        printed = [orjson.loads(line) for line in capsys.readouterr().out.splitlines()]
        assert printed
        assert vendor.requests == []

        assert await asyncio.to_thread(main, [*args, "--send"]) == 0
        captured = capsys.readouterr()
        assert captured.out == ""
        _no_secret(captured.err)
    assert [r.problems for r in vendor.requests] == [[] for _ in printed]
    assert [r.answered for r in vendor.requests] == [200 for _ in printed]
    assert all(r.headers["authorization"] == f"Bearer {HOOK_SECRET}" for r in vendor.requests)
    by_id = {r.headers["x-streamalert-delivery"]: r.body for r in vendor.requests}
    assert by_id == {line["id"]: {k: v for k, v in line.items() if k in PAYLOAD_KEYS} for line in printed}


async def _deliver_later(state: str, note: Notification) -> None:
    """A later notification of the same group and sink delivered (it is in the history)."""
    store = RedisStore.from_url(state)
    try:
        record = {"id": note.id, "receiver": note.receiver, "sink": note.sink, "group_key": note.group_key}
        await store.outbox_done("0-1", orjson.dumps({**record, "at": format_ms(T0 + 60_000), "status": "sent"}), 100)
    finally:
        await store.close()


def test_outbox_requeue_leaves_a_superseded_dead_letter_unless_forced(
    tmp_path: Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """A dead trigger whose group has since had its resolve delivered is not re-sent by default: it would
    reopen a closed incident (PagerDuty) or show a stale page."""
    config, state = _redis_config(tmp_path, redis_url)
    ids = asyncio.run(_seed_outbox(state))
    asyncio.run(_deliver_later(state, _notification(0, "Alpha")))
    assert main(["outbox", "--config", str(config), "--requeue"]) == 0
    out = capsys.readouterr().out
    assert f"{ids['Alpha']}  left dead" in out
    assert out.endswith("re-queued 2 notification(s)\n")
    assert asyncio.run(_outbox_names(state)) == (["Delta", "Bravo", "raw"], ["Alpha"])
    assert main(["outbox", "--config", str(config), "--requeue", ids["Alpha"], "--force"]) == 0
    assert capsys.readouterr().out == "re-queued 1 notification(s)\n"
    assert asyncio.run(_outbox_names(state))[1] == []


def test_replay_notify_with_the_shipped_policy_needs_no_secrets(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The dry run of the shipped config reads no secret file (none exist here), and routes the incident as
    the policy says: critical pages PagerDuty and the on-call Slack, payments go to #payments only."""
    monkeypatch.setenv("STREAMALERT_SECRETS", str(tmp_path))  # empty: any secret read would fail
    monkeypatch.setenv("STREAMALERT_TOKEN", "x")
    notes = _replay(capsys, "--notify", "--config", str(ROOT / "config" / "streamalert.yaml"))
    sent = {(n["groupLabels"]["alertname"], n["receiver"], n["sink"], n["status"]) for n in notes}
    assert ("mailer_rate_limiter_redis_error", "pagerduty-oncall", "pagerduty/0", "firing") in sent
    assert ("mailer_rate_limiter_redis_error", "pagerduty-oncall", "slack/0", "resolved") in sent
    stripe = {(r, s) for name, r, s, _ in sent if name == "StripePaymentFailures"}
    assert stripe == {("slack-payments-channel", "slack/0")}
    first = next(n for n in notes if n["groupLabels"]["alertname"] == "mailer_rate_limiter_redis_error")
    assert first["at"] == "2026-01-26T09:15:42.000Z"  # its transition at 09:15:12 plus group_wait 30s
    assert (
        main(
            [
                "replay",
                INCIDENT,
                "--rules",
                str(RULES),
                "--notify",
                "--send",
                "--config",
                str(ROOT / "config" / "streamalert.yaml"),
            ]
        )
        == 2
    )  # really sending needs the secrets
    assert "smtp-password" in capsys.readouterr().err
