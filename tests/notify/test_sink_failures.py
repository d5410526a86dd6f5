"""What `check` accepts works at send time, and every failed send names its cause: URLs with `user:password@`
(basic auth at send time; refused by `check` beside a bearer token), values the HTTP client would refuse at send
time (refused by `check` instead), and each way a send fails (connection refused, DNS, TLS, the server hanging up,
a timeout, a 4xx with a body, an answer that is not JSON, a bug in a sink) as the dead letter, the log events and
`streamalert outbox` report it: the cause, and no URL, host, password, token, routing key or chat id.

Every HTTP sink is run through the real Sender against local aiohttp servers (tests/notify/vendor.py)."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import pathlib
from collections.abc import AsyncIterator, Iterator, MutableMapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any
from urllib.parse import quote

import orjson
import pytest
import structlog
from structlog.testing import LogCapture

from streamalert.cli import main
from streamalert.config.app import load_config
from streamalert.config.notify import NotifySettings
from streamalert.notify.sender import Sender, build_sinks
from streamalert.notify.sinks import registry
from streamalert.notify.sinks.base import Sink, SinkConfig
from streamalert.notify.sinks.endpoint import http_target, scrub
from streamalert.state.base import Changes, Store
from streamalert.state.memory import MemoryStore
from streamalert.state.redis import RedisStore
from streamalert.telemetry.metrics import Metrics
from streamalert.testing import free_port
from tests.notify import test_discord as discord_tests
from tests.notify import test_pagerduty as pagerduty_tests
from tests.notify import test_slack as slack_tests
from tests.notify import test_telegram as telegram_tests
from tests.notify import test_webhook as webhook_tests
from tests.notify.test_email import Certificate, certificate  # noqa: F401 (the self-signed certificate fixture)
from tests.notify.test_notify_cli import write_config
from tests.notify.test_sink_conformance import RecordingSleep, make_notification
from tests.notify.vendor import Vendor, serve

USER, PASSWORD = "al ice", "p@ss:wörd"  # what the receiver must get, percent-decoded
USERINFO = "al%20ice:p%40ss:w%C3%B6rd"  # as written in the URL
BASIC = "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
BEARER = "b3arer-SECRET-token"
CHAT_ID = -1001234567890
DNS_HOST = "streamalert-test.invalid"  # RFC 2606: never resolves
KINDS = ["webhook", "slack", "discord", "telegram", "pagerduty", "alertmanager"]
USERINFO_SECRETS = (USER, PASSWORD, USERINFO, "p%40ss:w%C3%B6rd", BASIC.split()[1])
SECRETS: dict[str, tuple[str, ...]] = {  # each sink's own, beside the userinfo
    "webhook": (webhook_tests.PATH, "T0KEN-in-the-url"),
    "slack": (slack_tests.SECRET_PATH, "slack-secret-token-XYZ"),
    "discord": (discord_tests.SECRET_PATH, "discord-secret-token-XYZ"),
    "telegram": (telegram_tests.TOKEN, "telegram-secret-token-XYZ", str(CHAT_ID)),
    "pagerduty": (pagerduty_tests.ROUTING_KEY,),
    "alertmanager": (),
}
OK_BODY: dict[str, Any] = {"telegram": telegram_tests.OK, "pagerduty": pagerduty_tests.PD_OK}


def sink_config(kind: str, base: str) -> dict[str, Any]:
    """A config of `kind` sending to `base` (scheme, userinfo, host and port; no path)."""
    configs: dict[str, dict[str, Any]] = {
        "webhook": {"url": base + webhook_tests.PATH},
        "slack": {"webhook_url": base + slack_tests.SECRET_PATH},
        "discord": {"webhook_url": base + discord_tests.SECRET_PATH},
        "telegram": {"bot_token": telegram_tests.TOKEN, "chat_ids": [CHAT_ID], "api_url": base},
        "pagerduty": {"routing_key": pagerduty_tests.ROUTING_KEY, "url": base + "/v2/enqueue"},
        "alertmanager": {"url": base},
    }
    return configs[kind]


def build(kind: str, base: str, **settings: Any) -> Sink:
    """The sink as the service builds it: its config class validates, then the registry builds."""
    sink_kind = registry()[kind]
    return sink_kind.build(sink_kind.config.model_validate({**sink_config(kind, base), **settings}))


def with_userinfo(url: str) -> str:
    scheme, _, rest = url.partition("://")
    return f"{scheme}://{USERINFO}@{rest}"


def assert_clean(kind: str, text: str) -> None:
    """No secret, URL or server address in `text`."""
    for secret in (*USERINFO_SECRETS, *SECRETS[kind], BEARER, DNS_HOST):
        assert secret not in text, f"{kind}: {secret!r} in {text!r}"
    assert "://" not in text, text
    assert "127.0.0.1" not in text, text


@contextmanager
def captured_logs() -> Iterator[list[MutableMapping[str, Any]]]:
    """Every log event from debug up, whatever level an earlier test configured (structlog's `capture_logs`
    keeps the configured level filter)."""
    saved = structlog.get_config()
    capture = LogCapture()
    structlog.configure(processors=[capture], wrapper_class=structlog.make_filtering_bound_logger(logging.DEBUG))
    try:
        yield capture.entries
    finally:
        structlog.configure(**saved)


async def deliver(store: Store, kind: str, sink: Sink, max_attempts: int = 2) -> list[MutableMapping[str, Any]]:
    """One notification through a fresh Sender until it is sent or dead; the log events of the run."""
    notification = make_notification(kind)
    await store.commit(Changes(meta={}, outbox=[notification.to_json()]), {})
    settings = NotifySettings(max_attempts=max_attempts, retry_initial="10ms", retry_max="20ms")
    sender = Sender(store, {(notification.receiver, notification.sink): sink}, settings, Metrics(), RecordingSleep())
    with captured_logs() as logs:
        try:
            await sender.drain()
        finally:
            await sender.close()
    assert await store.outbox_depth() == 0
    return logs


async def dead_letter(kind: str, sink: Sink) -> tuple[dict[str, Any], list[MutableMapping[str, Any]]]:
    """Deliver until dead: (the dead-letter record, the log events), each error in them checked clean."""
    store = MemoryStore()
    logs = await deliver(store, kind, sink)
    [(_, raw)] = await store.dead_letters(10)
    record: dict[str, Any] = orjson.loads(raw)
    [dead] = [e for e in logs if e["event"] == "notification_dead"]
    assert dead["error"] == record["error"]  # the log event says what the dead letter says
    for event in logs:
        assert_clean(kind, str(event))
    assert_clean(kind, record["error"])
    return record, logs


# ---- userinfo: basic auth at send time, or refused by check ----------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_userinfo_is_sent_as_basic_auth(kind: str) -> None:
    """A URL with `user:password@` (percent-encoded, UTF-8) delivers, and the receiver gets exactly that user
    and password as HTTP basic auth (it refuses anything else)."""

    def only_basic(path: str, headers: dict[str, str], body: Any) -> list[str]:
        got = headers.get("authorization")
        return [] if got == BASIC else [f"authorization: {got!r}"]

    async with serve(Vendor(only_basic, ok_body=OK_BODY.get(kind))) as vendor:
        logs = await deliver(MemoryStore(), kind, build(kind, with_userinfo(vendor.url)))
    [request] = vendor.requests
    assert (request.answered, request.problems) == (200, [])
    assert request.headers["authorization"] == BASIC
    assert "notification_sent" in [e["event"] for e in logs]


async def test_a_checked_config_with_userinfo_delivers_with_basic_auth(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The whole path: `check --config` accepts a webhook URL with userinfo (and prints no part of it), and the
    sinks built from that config deliver with its basic auth."""
    async with serve(Vendor(lambda path, headers, body: [])) as vendor:
        url = with_userinfo(vendor.url) + webhook_tests.PATH
        config = write_config(
            tmp_path,
            f'route: {{receiver: oncall}}\nreceivers:\n  - {{name: oncall, webhook_configs: [{{url: "{url}"}}]}}\n',
        )
        assert main(["check", "--config", str(config)]) == 0
        printed = capsys.readouterr()
        assert printed.out.startswith("OK:")
        assert_clean("webhook", printed.out + printed.err)
        sinks = build_sinks(load_config(config))
        await deliver(MemoryStore(), "webhook", sinks[("oncall", "webhook/0")])
    [request] = vendor.requests
    assert request.headers["authorization"] == BASIC
    assert request.path == webhook_tests.PATH


HOOK = "http://{userinfo}@hooks.example:8080/hook/T0KEN"


def two_receivers(hook: str) -> str:
    """A notification config: the receiver `default` (stdout) at index 0, `hook` with the sink `hook` at index 1."""
    default = "{name: default, stdout_configs: [{}]}"
    return f"route: {{receiver: default}}\nreceivers:\n  - {default}\n  - name: hook\n    {hook}\n"


TWO_AUTHS = [
    pytest.param(
        "webhook_configs: [{url: 'URL', bearer_token: 'BEARER'}]",
        "receivers.1: hook: webhook_configs.0: url: the URL carries user:password@ (basic auth) and bearer_token is",
        id="webhook-url-and-bearer_token",
    ),
    pytest.param(
        "webhook_configs: [{url: 'URL', bearer_token_file: 'TOKEN_FILE'}]",
        "receivers.1: hook: webhook_configs.0: url: the URL carries user:password@ (basic auth) and bearer_token_file",
        id="webhook-url-and-bearer_token_file",
    ),
    pytest.param(
        "webhook_configs: [{url_file: 'URL_FILE', bearer_token: 'BEARER'}]",
        "receivers: hook: webhook_configs.0: url_file: the URL carries user:password@ (basic auth) and a bearer token",
        id="webhook-url_file-and-bearer_token",
    ),
    pytest.param(
        "alertmanager_configs: [{url: 'URL', bearer_token_file: 'TOKEN_FILE'}]",
        "receivers.1: hook: alertmanager_configs.0: url: the URL carries user:password@ (basic auth) and bearer_tok",
        id="alertmanager-url-and-bearer_token_file",
    ),
]


@pytest.mark.parametrize(("sink", "problem"), TWO_AUTHS)
def test_check_refuses_userinfo_beside_a_bearer_token(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], sink: str, problem: str
) -> None:
    """Basic auth from the URL and a bearer token are one `Authorization` too many (Alertmanager's http_config
    refuses the same): `check` fails naming the receiver and the key, repeating neither secret. (It used to
    pass, and every notification was then dead-lettered as "sink error (ValueError)".)"""
    url = HOOK.format(userinfo=USERINFO)
    (tmp_path / "url").write_text(url + "\n", "utf-8")
    (tmp_path / "token").write_text(BEARER + "\n", "utf-8")
    receiver = (
        sink.replace("URL_FILE", str(tmp_path / "url"))
        .replace("URL", url)
        .replace("TOKEN_FILE", str(tmp_path / "token"))
        .replace("BEARER", BEARER)
    )
    config = write_config(tmp_path, two_receivers(receiver))
    assert main(["check", "--config", str(config)]) == 1
    printed = capsys.readouterr()
    assert printed.out == ""
    assert problem in printed.err, printed.err
    assert "set only one way to authenticate" in printed.err
    assert_clean("webhook", printed.err.replace(str(config), "<config>"))


SEND_TIME_REFUSALS = [
    pytest.param(
        "webhook_configs: [{url: 'http://hooks.example/T0KEN', bearer_token: 'two words'}]",
        "receivers.1: hook: webhook_configs.0: bearer_token: contains a space or a control character",
        id="bearer-token-with-a-space",
    ),
    pytest.param(
        "webhook_configs: [{url: 'http://hooks.example/T0KEN', bearer_token_file: 'MULTILINE_FILE'}]",
        "receivers: hook: webhook_configs.0: bearer_token_file: contains a space or a control character",
        id="bearer-token-file-of-two-lines",
    ),
    pytest.param(
        "webhook_configs: [{url: 'http://hooks.example:99999/T0KEN'}]",
        "receivers.1: hook: webhook_configs.0: url: not a valid URL",
        id="port-out-of-range",
    ),
    pytest.param(
        "slack_configs: [{webhook_url: 'https://hooks.slack.example/T0KEN with a space'}]",
        "receivers.1: hook: slack_configs.0: webhook_url: the URL contains a space",
        id="slack-url-with-a-space",
    ),
    pytest.param(
        "discord_configs: [{webhook_url: 'https://'}]",
        "receivers.1: hook: discord_configs.0: webhook_url: must be an absolute http",
        id="discord-url-without-a-host",
    ),
    pytest.param(
        "pagerduty_configs: [{routing_key: 'R0123456789abcdef0123456789abcde', url: 'events.pagerduty.com/v2'}]",
        "receivers.1: hook: pagerduty_configs.0.url: must be an absolute http",
        id="pagerduty-url-without-a-scheme",
    ),
    pytest.param(
        "telegram_configs: [{bot_token: '123:abc', chat_ids: [1], api_url: 'https://:443'}]",
        "receivers.1: hook: telegram_configs.0.api_url: the URL has no host",
        id="telegram-api-url-without-a-host",
    ),
]


@pytest.mark.parametrize(("sink", "problem"), SEND_TIME_REFUSALS)
def test_check_refuses_what_the_http_client_would_refuse_at_send_time(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str], sink: str, problem: str
) -> None:
    """A value the HTTP client refuses when it sends (a header with a space or line break, a port past 65535, a
    URL without a host) fails `check`, naming the receiver and the key; all of these used to pass it."""
    multiline = tmp_path / "token"
    multiline.write_text("first-line\nsecond-line\n", "utf-8")
    receiver = sink.replace("MULTILINE_FILE", str(multiline))
    config = write_config(tmp_path, two_receivers(receiver))
    assert main(["check", "--config", str(config)]) == 1
    printed = capsys.readouterr()
    assert problem in printed.err, printed.err
    assert "T0KEN" not in printed.err
    assert "second-line" not in printed.err


# ---- every failed send names its cause ---------------------------------------------------------------------------


@asynccontextmanager
async def hang_up_server() -> AsyncIterator[str]:
    """A server that reads a request and closes the connection without answering."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(asyncio.IncompleteReadError, ConnectionError):
            await reader.readuntil(b"\r\n\r\n")
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


def echo_of_secrets(kind: str, vendor: Vendor) -> str:
    """What a careless server says back: every secret of the request and its own address."""
    return " ".join((*USERINFO_SECRETS, *SECRETS[kind], vendor.url + "/hook", "127.0.0.1:8080"))


# fault -> (the cause the dead letter names, attempts made: 1 when no retry can help)
FAULTS: dict[str, tuple[str, int]] = {
    "connection-refused": ("cannot connect (Connection refused)", 2),
    "dns-failure": ("DNS lookup failed (", 2),
    "tls-certificate-untrusted": ("TLS certificate not trusted (", 1),
    "tls-to-a-plain-http-server": ("TLS handshake failed (", 2),
    "server-hangs-up": ("the server closed the connection without answering", 2),
    "timeout": ("timed out after 200ms", 2),
    "4xx-with-a-json-body": ("HTTP 403: invalid token", 1),
    "4xx-answer-not-json": ('HTTP 400: {"message": "bad request', 1),
    "5xx-html-page": ("HTTP 502: 502 Bad Gateway", 2),
}


@asynccontextmanager
async def faulty(kind: str, fault: str, cert: Certificate | None) -> AsyncIterator[str]:
    """A base URL (with userinfo) at which sending fails with `fault`."""
    if fault == "connection-refused":
        yield with_userinfo(f"http://127.0.0.1:{free_port()}")  # nothing listens there
    elif fault == "dns-failure":
        yield with_userinfo(f"http://{DNS_HOST}:8080")
    elif fault == "server-hangs-up":
        async with hang_up_server() as url:
            yield with_userinfo(url)
    else:
        tls = cert.server_context() if cert is not None else None
        async with serve(Vendor(lambda path, headers, body: [], ok_body=OK_BODY.get(kind)), tls) as vendor:
            said = echo_of_secrets(kind, vendor)
            if fault == "timeout":
                vendor.hang(times=2)
            elif fault == "4xx-with-a-json-body":
                vendor.fail(403, body={"message": f"invalid token: {said}"})
            elif fault == "4xx-answer-not-json":
                vendor.fail(400, text='{"message": "bad request from ' + said)  # cut off: not JSON
            elif fault == "5xx-html-page":
                page = f"<html><head><title>502 Bad Gateway</title></head><body><p>{said}</p><hr>nginx</body></html>"
                vendor.fail(502, text=page, times=2)
            url = vendor.url.replace("https://", "http://", 1)
            if fault == "tls-to-a-plain-http-server":
                url = url.replace("http://", "https://", 1)
            elif fault == "tls-certificate-untrusted":
                url = vendor.url
            yield with_userinfo(url)


@pytest.mark.parametrize("fault", list(FAULTS))
@pytest.mark.parametrize("kind", KINDS)
async def test_a_dead_letter_names_its_cause_and_no_secret(
    kind: str, fault: str, request: pytest.FixtureRequest
) -> None:
    """Each way a send fails is named in the dead letter and in the log events (the sink, then the cause an
    operator can act on), with no URL, host, password, token, routing key or chat id, even when the server
    repeats them in its answer."""
    cause, attempts = FAULTS[fault]
    cert: Certificate | None = request.getfixturevalue("certificate") if fault.startswith("tls-cert") else None
    async with faulty(kind, fault, cert) as base:
        # Only the timeout row needs a short timeout: on a loaded machine a TLS handshake can take 200 ms, and a
        # timed-out first try would turn a permanent fault's single attempt into two (seen in CI).
        timeout = "200ms" if fault == "timeout" else "10s"
        record, logs = await dead_letter(kind, build(kind, base, timeout=timeout))
    assert record["error"].startswith(f"{kind}: "), record["error"]
    assert cause in record["error"], record["error"]
    assert record["attempts"] == attempts, record
    failed = [e["error"] for e in logs if e["event"] == "notification_failed"]
    assert len(failed) == attempts
    assert all(cause in error for error in failed), failed


TOKEN = "third-party-SECRET"


class BrokenSink:
    """A package's sink with a bug: its exception holds its URL, its server's address and its token."""

    def __init__(self) -> None:
        self.config = SinkConfig()

    async def send(self, notification: Any, http: Any) -> None:
        raise ValueError(f"cannot post to https://{USERINFO}@10.1.2.3:8443/x?key={TOKEN} at 10.1.2.3:8443: {TOKEN}")


class RedactingBrokenSink(BrokenSink):
    def redact(self, text: str) -> str:
        return text.replace(TOKEN, "***")


@pytest.mark.parametrize(
    ("sink", "said"),
    [
        (BrokenSink(), f"cannot post to <url> at <address>: {TOKEN}"),  # without `redact`: URLs and addresses go
        (RedactingBrokenSink(), "cannot post to <url> at <address>: ***"),
    ],
)
async def test_an_unexpected_exception_is_named_with_its_text_scrubbed(sink: BrokenSink, said: str) -> None:
    """A bug in a sink is dead-lettered at once as `sink error (Type: message)`: the message passed through
    the sink's `redact`, if it has one, and with URLs and addresses taken out (it used to say only the type)."""
    store = MemoryStore()
    logs = await deliver(store, "broken", sink)
    [(_, raw)] = await store.dead_letters(10)
    record = orjson.loads(raw)
    assert record["error"] == f"broken: sink error (ValueError: {said})"
    assert record["attempts"] == 1
    [logged] = [e for e in logs if e["event"] == "sink_error"]
    assert logged["error"] == f"ValueError: {said}"
    for text in (record["error"], str(logs)):
        for secret in (USERINFO, "10.1.2.3", "://"):
            assert secret not in text, text


async def test_outbox_lists_the_cause(
    tmp_path: pathlib.Path, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """`streamalert outbox` shows a dead letter's cause, without the URL's secrets."""
    state = f"{redis_url}?namespace=sink-failures-{tmp_path.name}"
    url = with_userinfo(f"http://127.0.0.1:{free_port()}") + webhook_tests.PATH  # nothing listens there
    config = write_config(
        tmp_path,
        f'route: {{receiver: oncall}}\nreceivers:\n  - {{name: oncall, webhook_configs: [{{url: "{url}"}}]}}\n',
        state,
    )
    sinks = build_sinks(load_config(config))
    store = RedisStore.from_url(state)
    try:
        await store.reset()
        await deliver(store, "webhook", sinks[("oncall", "webhook/0")])
    finally:
        await store.close()
    assert await asyncio.to_thread(main, ["outbox", "--config", str(config)]) == 0
    listing = capsys.readouterr().out
    assert "attempts=2  webhook: cannot connect (Connection refused)" in listing, listing
    assert_clean("webhook", listing)


def test_scrub_hides_short_names_only_as_words() -> None:
    """A short host or user name is hidden where it stands alone, not inside other words (an Alertmanager at
    `http://am:9093` must not turn `name` into `n***e`); long secrets, their percent-encoded form, URLs and
    addresses are hidden wherever they appear."""
    target = http_target(f"http://am:{quote(PASSWORD, safe='')}@am:9093/x/T0KEN-in-the-url", "url")
    said = f'invalid name "bad-name" from am at am:9093, 10.0.0.7 and [::1]:80; {quote(PASSWORD)} {PASSWORD}'
    assert scrub(said + " T0KEN-in-the-url-2 https://x.example/y", target.hidden) == (
        'invalid name "bad-name" from *** at ***, <address> and <address>; *** *** ***-2 <url>'
    )
