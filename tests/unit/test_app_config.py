"""`streamalert run` configuration: validation, ${ENV} substitution, secrets kept out of errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamalert.config.app import ConfigError, load_config
from streamalert.config.notify import build_route
from streamalert.notify.sender import build_sinks

BASE = """
rules: rules
state: "{state}"
sources:
  vector: {{token: "${{TOKEN_FOR_TEST}}"}}
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "streamalert.yaml"
    path.write_text(text)
    return path


def test_env_substitution_defaults_and_relative_rules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """${VAR} comes from the environment, ${VAR:-d} falls back to d, and `rules` is relative to the file."""
    monkeypatch.setenv("TOKEN_FOR_TEST", "t0k")
    config = load_config(_write(tmp_path, BASE.format(state="${STATE_FOR_TEST:-memory://}")))
    assert config.state == "memory://"
    assert config.sources.vector is not None
    assert config.sources.vector.token is not None
    assert config.sources.vector.token.get_secret_value() == "t0k"
    assert config.rules == tmp_path / "rules"
    assert config.ms("lateness") == 30_000


def test_missing_variable_is_named(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unset variable without default fails at start, naming the variable and the file."""
    monkeypatch.delenv("TOKEN_FOR_TEST", raising=False)
    with pytest.raises(ConfigError, match=r"streamalert.yaml: environment variable\(s\) not set: TOKEN_FOR_TEST"):
        load_config(_write(tmp_path, BASE.format(state="memory://")))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ("lateness: 5 minutes\n", "lateness"),
        ("log_level: loud\n", "log_level"),
        ("colour: blue\n", "colour: Extra inputs are not permitted"),
        ("http: {listen: 8080, tls: true}\n", "http.tls"),
    ],
)
def test_bad_settings_name_their_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, extra: str, message: str) -> None:
    """Unknown keys and bad values fail with the key's path."""
    monkeypatch.setenv("TOKEN_FOR_TEST", "t0k")
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, BASE.format(state="memory://") + extra))


def test_bad_state_url_and_namespace_fail_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """An unsupported state URL or a namespace that cannot be a hash tag is refused before anything starts."""
    monkeypatch.setenv("TOKEN_FOR_TEST", "t0k")
    for state in ("postgres://x", "redis://h:6379/0?namespace={x}"):
        with pytest.raises(ConfigError, match="state"):
            load_config(_write(tmp_path, BASE.format(state=state)))


def test_the_token_never_appears_in_errors(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A validation error elsewhere in the file does not echo the token's value."""
    monkeypatch.setenv("TOKEN_FOR_TEST", "very-secret-value")
    text = BASE.format(state="memory://").replace("{token:", "{max_body_bytes: -1, token:")
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert "very-secret-value" not in str(info.value)
    assert "max_body_bytes" in str(info.value)


def test_shipped_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    """config/streamalert.yaml is valid once its token variable is set."""
    monkeypatch.setenv("STREAMALERT_TOKEN", "x")
    config = load_config(Path(__file__).resolve().parents[2] / "config" / "streamalert.yaml")
    assert config.rules.name == "rules"


def test_shipped_kafka_config_loads() -> None:
    """config/streamalert-kafka.yaml is valid with its defaults."""
    config = load_config(Path(__file__).resolve().parents[2] / "config" / "streamalert-kafka.yaml")
    assert config.sources.kafka is not None
    assert config.sources.kafka.topics == ["crm-logs", "revel-logs"]
    assert config.sources.vector is None


@pytest.mark.parametrize(
    ("kafka", "message"),
    [
        ("{brokers: [k:9092]}", "exactly one of topics"),
        ("{brokers: [k:9092], topics: [a], topic_pattern: 'a.*'}", "exactly one of topics"),
        ("{brokers: [k:9092], topics: [a], security_protocol: SASL_SSL}", "needs sasl_mechanism"),
        ("{brokers: [k:9092], topics: [a], sasl_username: u}", "sasl_\\* settings need"),
        ("{brokers: [], topics: [a]}", "sources.kafka.brokers"),
    ],
)
def test_bad_kafka_settings_name_their_key(tmp_path: Path, kafka: str, message: str) -> None:
    text = f"rules: rules\nsources:\n  kafka: {kafka}\n"
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))


def test_one_source_per_process(tmp_path: Path) -> None:
    text = "rules: rules\nsources:\n  kafka: {brokers: [k:9092], topics: [a]}\n  vector: {auth: none}\n"
    with pytest.raises(ConfigError, match="exactly one source"):
        load_config(_write(tmp_path, text))


def test_the_sasl_password_never_appears_in_errors(tmp_path: Path) -> None:
    text = (
        "rules: rules\nsources:\n  kafka: {brokers: [k:9092], topics: [a], security_protocol: SASL_SSL,"
        " sasl_mechanism: PLAIN, sasl_username: u, sasl_password: hunter2-secret, max_batch_lines: 0}\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    assert "hunter2-secret" not in str(info.value)
    assert "max_batch_lines" in str(info.value)


def test_replicas_need_redis_state(tmp_path: Path) -> None:
    text = "rules: rules\nsources:\n  kafka: {brokers: [k:9092], topics: [a], replicas: true}\n"
    with pytest.raises(ConfigError, match="replicas needs Redis state"):
        load_config(_write(tmp_path, text))
    assert load_config(_write(tmp_path, "state: redis://r:6379/0\n" + text)).sources.kafka is not None
    with pytest.raises(ConfigError, match="lateness \\+ max_delay must exceed 5000 ms"):
        load_config(_write(tmp_path, "state: redis://r:6379/0\nlateness: 1s\nmax_delay: 1s\n" + text))


SECRETS = (
    "smtp-password",
    "pagerduty-routing-key",
    "slack-oncall-webhook",
    "slack-payments-webhook",
    "slack-security-webhook",
    "slack-analytics-webhook",
    "api-token",
)


@pytest.mark.parametrize("name", ["streamalert.yaml", "streamalert-kafka.yaml"])
def test_shipped_configs_route_as_the_notification_policy(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Django app's policy: critical -> PagerDuty + Slack (and on), payments -> #payments (and on),
    security -> #security only, info -> #analytics with a daily repeat, the rest -> the ops mailbox."""
    for secret_name in SECRETS:
        (tmp_path / secret_name).write_text("https://hooks.slack.com/services/T000/B000/XXXX\n")
    monkeypatch.setenv("STREAMALERT_SECRETS", str(tmp_path))
    monkeypatch.setenv("STREAMALERT_TOKEN", "x")
    config = load_config(Path(__file__).resolve().parents[2] / "config" / name)
    assert config.route is not None
    root = build_route(config.route)

    def receivers(**labels: str) -> list[str]:
        return [route.receiver for route in root.match(labels)]

    assert receivers(severity="critical", team="mailer") == ["pagerduty-oncall"]
    assert receivers(severity="critical", team="payments") == ["pagerduty-oncall", "slack-payments-channel"]
    assert receivers(severity="high", team="payments") == ["slack-payments-channel"]
    assert receivers(severity="warning", team="security") == ["slack-security-channel"]
    assert receivers(severity="info", team="product") == ["slack-analytics-channel"]
    assert receivers(severity="warning", team="backend") == ["default-email"]
    info = root.match({"severity": "info"})[0]
    assert info.repeat_interval_ms == 24 * 3_600_000
    assert root.repeat_interval_ms == 4 * 3_600_000
    sinks = build_sinks(config)  # every secret file is read
    assert sorted(sinks) == [
        ("default-email", "email/0"),
        ("pagerduty-oncall", "pagerduty/0"),
        ("pagerduty-oncall", "slack/0"),
        ("slack-analytics-channel", "slack/0"),
        ("slack-payments-channel", "slack/0"),
        ("slack-security-channel", "slack/0"),
    ]


def test_shipped_configs_share_one_notification_policy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMALERT_TOKEN", "x")
    folder = Path(__file__).resolve().parents[2] / "config"
    keys = ("route", "receivers", "inhibit_rules", "silences", "notify")
    vector, kafka = (
        load_config(folder / n).model_dump(include=set(keys)) for n in ("streamalert.yaml", "streamalert-kafka.yaml")
    )
    assert vector == kafka


def test_a_missing_secret_file_names_receiver_and_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMALERT_SECRETS", str(tmp_path))  # empty: no secret files
    monkeypatch.setenv("STREAMALERT_TOKEN", "x")
    config = load_config(Path(__file__).resolve().parents[2] / "config" / "streamalert.yaml")
    with pytest.raises(ValueError, match=r"default-email: email_configs.0: auth_password_file: cannot read"):
        build_sinks(config)


@pytest.mark.parametrize(
    ("notify", "message"),
    [
        (
            "silences: [{matchers: ['a=\"b\"'], starts_at: '2026-01-02T00:00:00Z', ends_at: '2026-01-01T00:00:00Z'}]",
            r"silences.0: ends_at: must be after starts_at",
        ),
        ("notify: {tick: 0s}", r"notify.tick: must be more than 0"),
        ("notify: {retry_initial: 0s}", r"notify.retry_initial: must be more than 0"),
        ("notify: {retry_initial: 10m, retry_max: 1m}", r"notify: retry_initial: must not exceed retry_max"),
        ("route: {receiver: r, group_interval: 0s}\nreceivers: [{name: r}]", r"route.group_interval: must be more"),
        ("route: {receiver: r}\nreceivers: [{name: r, stdout_configs: [{timeout: 0s}]}]", r"timeout: must be more"),
        ("route: {receiver: r, routes: [{match: {bad-name: x}}]}\nreceivers: [{name: r}]", r"not a label name"),
        (
            "route: {receiver: r}\nreceivers: [{name: r}]\n"
            "inhibit_rules: [{source_matchers: ['a=\"b\"'], target_matchers: ['c=\"d\"'], equal: [bad-name]}]",
            r"inhibit_rules.0.equal.0: 'bad-name' is not a label name",
        ),
    ],
)
def test_bad_notification_settings_name_their_key(tmp_path: Path, notify: str, message: str) -> None:
    text = f"rules: rules\nsources:\n  vector: {{auth: none}}\n{notify}\n"
    with pytest.raises(ConfigError, match=message):
        load_config(_write(tmp_path, text))
