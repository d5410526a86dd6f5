"""`check --config` and `routes test` as a new user meets them: every missing secret and variable in one run,
secret files relative to the config file, and shipped configs that work on a fresh machine."""

from __future__ import annotations

import socket
from pathlib import Path

import orjson

from tests.unit.cli_process import INCIDENT, ROOT, RULES, streamalert

THREE_MISSING = f"""
rules: {RULES}
sources:
  vector: {{auth: none}}
route:
  receiver: pager
  routes:
    - receiver: chat
      matchers: ['team="payments"']
receivers:
  - name: pager
    pagerduty_configs: [{{routing_key_file: secrets/pagerduty-key}}]
  - name: chat
    slack_configs: [{{webhook_url_file: /nonexistent/slack-url}}]
    webhook_configs: [{{url: "https://hooks.example.com/x", bearer_token: "${{HOOK_TOKEN}}"}}]
notify:
  api_token_file: secrets/api-token
"""


def test_check_config_lists_every_missing_secret_and_variable_in_one_run(tmp_path: Path) -> None:
    """Three unreadable secret files and an unset variable: all four reported in one run, each with the
    config file, the receiver and the key; exit 1."""
    config = tmp_path / "service.yaml"
    config.write_text(THREE_MISSING, "utf-8")
    done = streamalert("check", "--config", config)
    assert done.returncode == 1
    err = done.stderr
    assert f"{config}: environment variable(s) not set: HOOK_TOKEN" in err
    assert f"{config}: receivers: pager: pagerduty_configs.0: routing_key_file: cannot read {tmp_path}/secrets" in err
    assert f"{config}: receivers: chat: slack_configs.0: webhook_url_file: cannot read /nonexistent/slack-url" in err
    assert f"{config}: notify.api_token_file: cannot read {tmp_path}/secrets/api-token" in err
    assert f"4 problem(s) in {config}" in err
    assert done.stdout == ""


def test_shipped_config_names_all_its_secrets_at_once() -> None:
    """config/streamalert.yaml on a machine without its secrets: the token variable and all seven secret
    files in one run, not one per run."""
    done = streamalert("check", "--config", "config/streamalert.yaml")
    assert done.returncode == 1
    assert "environment variable(s) not set: STREAMALERT_TOKEN" in done.stderr
    assert done.stderr.count("cannot read /run/secrets/streamalert/") == 7
    assert "8 problem(s) in config/streamalert.yaml" in done.stderr


def test_secret_files_are_relative_to_the_config_file(tmp_path: Path) -> None:
    """`*_file: secrets/x` is read next to the config, whatever the working directory, as `rules:` is."""
    folder = tmp_path / "etc"
    (folder / "secrets").mkdir(parents=True)
    (folder / "secrets" / "hook-url").write_text("https://hooks.example.com/from-a-file\n", "utf-8")
    (folder / "service.yaml").write_text(
        f"""
rules: {RULES}
sources:
  vector: {{auth: none}}
route: {{receiver: hook}}
receivers:
  - name: hook
    webhook_configs: [{{url_file: secrets/hook-url}}]
""",
        "utf-8",
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    done = streamalert("check", "--config", folder / "service.yaml", cwd=elsewhere)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: 18 rules, 1 routes, 1 receivers with 1 sinks")


def test_demo_live_config_passes_check_on_a_fresh_machine(tmp_path: Path) -> None:
    """config/demo-live.yaml needs no variable, secret or service: `check --config` passes from any folder."""
    done = streamalert("check", "--config", ROOT / "config" / "demo-live.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("OK: 18 rules, 1 routes, 1 receivers with 1 sinks")
    assert done.stderr == ""


def test_routes_test_of_the_shipped_config_needs_no_token() -> None:
    """The README's `routes test` works as copied: an unset variable outside the routing tree is noted, not
    fatal."""
    done = streamalert("routes", "test", "--config", "config/streamalert.yaml", "severity=critical", "team=payments")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["pagerduty-oncall", "slack-payments-channel"]
    assert "not set, left as written: STREAMALERT_TOKEN" in done.stderr


def test_check_of_a_file_without_rules_warns_and_counts_the_file(tmp_path: Path) -> None:
    """A rule file holding no rules: a warning on stderr, and the summary counts the one file given."""
    empty = tmp_path / "empty.yaml"
    empty.write_text("rules: []\n", "utf-8")
    done = streamalert("check", empty)
    assert f"warning: no rules in {empty}" in done.stderr
    assert "in 1 file(s)" in done.stdout
    assert "OK: 18 rules (17 window, 1 absence) in 3 file(s)" in streamalert("check", RULES).stdout


PLAIN_ALERTMANAGER = """
global:
  resolve_timeout: 5m
  slack_api_url: https://hooks.slack.example/T000
templates: ['/etc/alertmanager/*.tmpl']
route:
  receiver: default
  group_by: [alertname]
  routes:
    - receiver: legacy-number
      match: {test: 1}
    - receiver: legacy-bool
      match_re: {enabled: true}
      continue: true
    - receiver: team
      matchers: ['team="payments"']
receivers:
  - name: default
  - name: legacy-number
    webhook_configs: [{url: "http://127.0.0.1:9/hook", send_resolved: false, http_config: {follow_redirects: true}}]
  - name: legacy-bool
  - name: team
    slack_configs: [{channel: "#payments", api_url: "${SLACK_URL}"}]
inhibit_rules:
  - source_match: {severity: critical}
    target_match: {severity: warning}
    equal: [alertname]
"""


def test_routes_test_reads_a_plain_alertmanager_file_with_legacy_numbers(tmp_path: Path) -> None:
    """`routes test` takes an Alertmanager file as written: no rules:/sources:, its global/templates/receiver
    settings ignored, and a legacy `match: {test: 1}` is the string "1" (true: "true"), as Alertmanager reads it."""
    config = tmp_path / "alertmanager.yml"
    config.write_text(PLAIN_ALERTMANAGER, "utf-8")
    done = streamalert("routes", "test", "--config", config, "test=1")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == ["legacy-number"]
    assert streamalert("routes", "test", "--config", config, "enabled=true", "team=payments").stdout.splitlines() == [
        "legacy-bool",
        "team",
    ]
    assert streamalert("routes", "test", "--config", config, "test=2").stdout.splitlines() == ["default"]


def test_routes_test_of_a_broken_alertmanager_file_names_the_key(tmp_path: Path) -> None:
    """A plain Alertmanager file routing to a receiver it does not define: exit 2, naming the key."""
    config = tmp_path / "alertmanager.yml"
    config.write_text("route:\n  receiver: nobody\nreceivers:\n  - name: default\n", "utf-8")
    done = streamalert("routes", "test", "--config", config, "a=b")
    assert done.returncode == 2
    assert "route.receiver: unknown receiver 'nobody'" in done.stderr


ROUTE_TO_STDOUT = "route: {receiver: out}\nreceivers: [{name: out, stdout_configs: [{}]}]\n"


def test_webhook_payloads_carry_an_external_url_without_configuration(tmp_path: Path) -> None:
    """externalURL is http://<hostname>:<listener port> unless notify.external_url is set (then that)."""

    def external_urls(*options: str | Path) -> set[str]:
        done = streamalert("replay", INCIDENT, "--rules", RULES, "--notify", *options)
        assert done.returncode == 0, done.stderr
        return {orjson.loads(line)["externalURL"] for line in done.stdout.splitlines()}

    host = socket.gethostname()
    assert external_urls() == {f"http://{host}:8080"}
    config = tmp_path / "service.yaml"
    service = f"rules: {RULES}\nsources:\n  vector: {{auth: none}}\n{ROUTE_TO_STDOUT}"
    config.write_text(service + "http: {listen: ':9093'}\n", "utf-8")
    assert external_urls("--config", config) == {f"http://{host}:9093"}
    config.write_text(service + "notify: {external_url: 'https://alerts.example'}\n", "utf-8")
    assert external_urls("--config", config) == {"https://alerts.example"}


def test_outbox_and_alerts_of_the_shipped_config_need_no_token(redis_url: str) -> None:
    """`outbox`/`alerts` read only the state store: the shipped config's unset source token is noted, not
    fatal; on memory state they explain, on Redis state they answer."""
    done = streamalert("outbox", "--config", "config/streamalert.yaml")
    assert done.returncode == 2
    assert "memory state does not outlive the process" in done.stderr
    assert "not set, left as written: STREAMALERT_TOKEN" in done.stderr
    state = f"{redis_url}?namespace=readme-alerts"
    done = streamalert("alerts", "--config", "config/streamalert.yaml", "--limit", "5", STREAMALERT_STATE=state)
    assert done.returncode == 0, done.stderr
    assert done.stdout == ""
