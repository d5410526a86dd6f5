"""One conformance suite for every HTTP sink, driven through the real `Sender.deliver` (the one place that
retries): rate limits honour Retry-After, server errors back off exponentially, a hanging vendor is timed out
and retried, client errors are not retried, a dead delivery's error names no secret, and every accepted request
is well formed (the vendor's validator) and carries the delivery id.

Each HTTP sink's test module provides `conformance_sink(base_url, tmp_path)` and `conformance_validator(path,
headers, body)`; this suite runs the same cases over all of them. The email sink speaks SMTP: its cases (the last
section) are the SMTP equivalents, against the scripted aiosmtpd server of tests/notify/test_email.py
(`conformance()`): a transient 451 (at RCPT or at DATA) for 429 and 5xx, which SMTP has no Retry-After for; a
permanent 550 for the client error; a DATA never answered for the hanging vendor.
"""

from __future__ import annotations

import pathlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from typing import Any

import aiohttp
import orjson
import pytest
from pydantic import ValidationError

from streamalert.config.notify import NotifySettings
from streamalert.notify.model import ZERO_TIME, Alert, Notification, fingerprint
from streamalert.notify.sender import Outcome, Sender
from streamalert.notify.sinks import registry
from streamalert.notify.sinks.base import Sink
from streamalert.notify.templates import FIELDS
from streamalert.state.base import Changes
from streamalert.state.memory import MemoryStore
from streamalert.telemetry.metrics import Metrics
from streamalert.testing import free_port
from tests.notify import test_alertmanager as alertmanager_tests
from tests.notify import test_apprise as apprise_tests
from tests.notify import test_discord as discord_tests
from tests.notify import test_email as email_tests
from tests.notify import test_msteamsv2 as msteamsv2_tests
from tests.notify import test_opsgenie as opsgenie_tests
from tests.notify import test_pagerduty as pagerduty_tests
from tests.notify import test_slack as slack_tests
from tests.notify import test_telegram as telegram_tests
from tests.notify import test_webhook as webhook_tests
from tests.notify.vendor import Validator, Vendor, serve

MAX_ATTEMPTS = 4
RETRY_INITIAL_S = 0.010  # "10ms"
RETRY_MAX_S = 2.0  # "2s"
HANG_TIMEOUT = "200ms"


@dataclass(frozen=True)
class SinkCase:
    kind: str
    make_sink: Callable[[str, pathlib.Path], Sink]
    validator: Validator
    secrets: tuple[str, ...]  # what conformance_sink configures that must never appear in an error
    ok_body: Any = None  # what the vendor answers a good request with
    # False: the sink cannot see Retry-After (apprise: the library does not pass response headers on), so a 429
    # is retried after the sender's own backoff; documented as best effort
    sees_retry_after: bool = True


CASES = [
    SinkCase(
        "slack",
        slack_tests.conformance_sink,
        slack_tests.conformance_validator,
        (slack_tests.SECRET_PATH, slack_tests.SECRET_PATH.rsplit("/", 1)[1]),
    ),
    SinkCase(
        "discord",
        discord_tests.conformance_sink,
        discord_tests.conformance_validator,
        (discord_tests.SECRET_PATH, discord_tests.SECRET_PATH.rsplit("/", 1)[1]),
    ),
    SinkCase(
        "telegram",
        telegram_tests.conformance_sink,
        telegram_tests.conformance_validator,
        (telegram_tests.TOKEN, telegram_tests.TOKEN.split(":", 1)[1]),
        ok_body=telegram_tests.OK,
    ),
    SinkCase(
        "pagerduty",
        pagerduty_tests.conformance_sink,
        pagerduty_tests.conformance_validator,
        (pagerduty_tests.ROUTING_KEY,),
        ok_body=pagerduty_tests.PD_OK,
    ),
    SinkCase(
        "opsgenie",
        opsgenie_tests.conformance_sink,
        opsgenie_tests.conformance_validator,
        (opsgenie_tests.API_KEY,),
        ok_body=opsgenie_tests.OG_OK,
    ),
    SinkCase(
        "msteamsv2",
        msteamsv2_tests.conformance_sink,
        msteamsv2_tests.conformance_validator,
        (msteamsv2_tests.SIG, msteamsv2_tests.PATH),
    ),
    SinkCase(
        "apprise",
        apprise_tests.conformance_sink,
        apprise_tests.conformance_validator,
        (apprise_tests.TOKEN, apprise_tests.PATH),
        sees_retry_after=False,
    ),
    SinkCase(
        "webhook",
        webhook_tests.conformance_sink,
        webhook_tests.conformance_validator,
        (webhook_tests.PATH, webhook_tests.PATH.rsplit("/", 1)[1]),
    ),
    SinkCase(
        "alertmanager",
        alertmanager_tests.conformance_sink,
        alertmanager_tests.conformance_validator,
        (alertmanager_tests.TOKEN,),
    ),
]


@pytest.fixture(params=CASES, ids=[c.kind for c in CASES])
def case(request: pytest.FixtureRequest) -> SinkCase:
    chosen: SinkCase = request.param
    return chosen


def make_notification(kind: str) -> Notification:
    labels = {"alertname": "HighErrorRate", "severity": "critical", "service": "api"}
    alert = Alert(
        fingerprint=fingerprint(labels),
        status="firing",
        labels=labels,
        annotations={"summary": "error rate above 5%", "runbook_url": "https://runbooks.example/errors"},
        starts_at="2024-05-01T10:00:00Z",
        ends_at=ZERO_TIME,
        value=0.07,
    )
    return Notification(
        id=f"conformance-{kind}-0001",
        receiver="oncall",
        sink=f"{kind}/0",
        group_key='{}:{alertname="HighErrorRate"}',
        group_labels={"alertname": "HighErrorRate"},
        alerts=(alert,),  # one alert: one request for every sink (PagerDuty sends one event per alert)
        at="2024-05-01T10:00:30Z",
        external_url="http://streamalert.example:8080",
    )


class RecordingSleep:
    """The sender's `sleep`: records what it was asked to wait and returns at once."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


async def deliver_through_sender(
    store: MemoryStore, metrics: Metrics, sleep: RecordingSleep, notification: Notification, sink: Sink
) -> Outcome:
    """Commit the notification to the outbox and deliver that entry through a fresh Sender."""
    await store.commit(Changes(meta={}, outbox=[notification.to_json()]), {})
    [(entry_id, _)] = await store.outbox(None, 10)
    settings = NotifySettings(max_attempts=MAX_ATTEMPTS, retry_initial="10ms", retry_max="2s")
    sender = Sender(store, {}, settings, metrics, sleep=sleep)
    try:
        return await sender.deliver(entry_id, notification, sink)
    finally:
        await sender.close()


@dataclass
class Harness:
    case: SinkCase
    vendor: Vendor
    sink: Sink
    notification: Notification
    store: MemoryStore = field(default_factory=MemoryStore)
    metrics: Metrics = field(default_factory=Metrics)
    sleep: RecordingSleep = field(default_factory=RecordingSleep)

    async def deliver(self) -> Outcome:
        return await deliver_through_sender(self.store, self.metrics, self.sleep, self.notification, self.sink)

    def counter(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(f"streamalert_{name}", {"sink": self.case.kind, **labels})
        return value if value is not None else 0.0

    def check_accepted(self) -> None:
        """Every request the vendor accepted is well formed and carries this notification's delivery id."""
        for request in self.vendor.accepted:
            assert request.problems == [], f"{self.case.kind}: {request.problems}"
            assert request.headers.get("x-streamalert-delivery") == self.notification.id


@asynccontextmanager
async def harness(case: SinkCase, tmp_path: pathlib.Path, *, sink_timeout: str | None = None) -> AsyncIterator[Harness]:
    async with serve(Vendor(case.validator, ok_body=case.ok_body)) as vendor:
        sink = case.make_sink(vendor.url, tmp_path)
        if sink_timeout is not None:
            # the sender reads the per-attempt timeout from sink.config when it sends: a sink built from a copy
            # of the conformance config with a short timeout (same secret files) is that sink with the timeout
            sink = registry()[case.kind].build(sink.config.model_copy(update={"timeout": sink_timeout}))
        yield Harness(case, vendor, sink, make_notification(case.kind))


def assert_no_secret(case: SinkCase, error: str | None, *urls: str) -> None:
    assert error, "a dead outcome says why"
    assert error.startswith(case.kind), error  # names the sink
    for secret in case.secrets:
        assert secret not in error, f"{case.kind} error leaks {secret!r}: {error}"
    for url in urls:
        assert url not in error, error
    assert "://" not in error, f"{case.kind} error names a URL: {error}"
    assert "127.0.0.1" not in error, error


# ---- the cases ------------------------------------------------------------------------------------------------


async def test_accepted_request_conforms(case: SinkCase, tmp_path: pathlib.Path) -> None:
    async with harness(case, tmp_path) as h:
        outcome = await h.deliver()
    assert outcome == Outcome("sent", 1)
    assert len(h.vendor.requests) == 1
    assert len(h.vendor.accepted) == 1
    h.check_accepted()
    assert h.sleep.calls == []
    assert h.counter("notifications_total", status="sent") == 1


async def test_every_template_a_sink_lists_reaches_the_vendor(case: SinkCase, tmp_path: pathlib.Path) -> None:
    """Each template field a sink's config lists (TEMPLATES) is in what it sends; every other field is refused
    by its config, so no sink accepts a template it would ignore."""
    config_class = registry()[case.kind].config
    settings = case.make_sink("http://127.0.0.1:9", tmp_path).config.model_dump(exclude_unset=True)
    for name in FIELDS:
        if name not in config_class.TEMPLATES:
            with pytest.raises(ValidationError, match=f"{name}: not a template this sink uses"):
                config_class.model_validate({**settings, name: "{{ Status }}"})
            continue
        marker = f"rendered{name.upper()}template"
        async with harness(case, tmp_path) as h, aiohttp.ClientSession() as http:
            await h.sink.send(replace(h.notification, rendered={name: marker}), http)
        [request] = h.vendor.requests
        assert request.problems == []
        assert marker in orjson.dumps(request.body).decode(), f"{case.kind} ignores its {name} template"


async def test_rate_limit_honours_retry_after(case: SinkCase, tmp_path: pathlib.Path) -> None:
    async with harness(case, tmp_path) as h:
        h.vendor.fail(429, retry_after=1.5)
        outcome = await h.deliver()
    assert outcome == Outcome("sent", 2)
    assert [r.answered for r in h.vendor.requests] == [429, 200]
    [waited] = h.sleep.calls
    if case.sees_retry_after:
        assert 1.5 <= waited <= RETRY_MAX_S  # what Retry-After asked, within retry_max
    else:
        assert RETRY_INITIAL_S <= waited <= 2 * RETRY_INITIAL_S  # the sender's first backoff, with jitter
    assert h.counter("notifications_429_total") == 1
    assert h.counter("notifications_total", status="failed") == 1
    assert h.counter("notifications_total", status="sent") == 1
    h.check_accepted()


async def test_server_errors_back_off_exponentially(case: SinkCase, tmp_path: pathlib.Path) -> None:
    async with harness(case, tmp_path) as h:
        h.vendor.fail(500, times=2)
        outcome = await h.deliver()
    assert outcome == Outcome("sent", 3)
    assert [r.answered for r in h.vendor.requests] == [500, 500, 200]
    assert len(h.sleep.calls) == 2
    for retry, waited in enumerate(h.sleep.calls):
        # exponential with jitter: each wait at least retry_initial * 2^retry (a growing floor), at most retry_max
        assert RETRY_INITIAL_S * 2**retry <= waited <= RETRY_MAX_S, h.sleep.calls
    assert h.counter("notifications_429_total") == 0
    h.check_accepted()


async def test_a_hanging_vendor_is_timed_out_and_retried(case: SinkCase, tmp_path: pathlib.Path) -> None:
    async with harness(case, tmp_path, sink_timeout=HANG_TIMEOUT) as h:
        assert h.sink.config.timeout == HANG_TIMEOUT
        h.vendor.hang()
        outcome = await h.deliver()
    assert outcome == Outcome("sent", 2)
    assert [r.answered for r in h.vendor.requests] == [0, 200]  # 0: never answered
    assert len(h.sleep.calls) == 1
    assert h.counter("notifications_total", status="failed") == 1
    h.check_accepted()


async def test_client_error_is_not_retried(case: SinkCase, tmp_path: pathlib.Path) -> None:
    async with harness(case, tmp_path) as h:
        h.vendor.fail(400)
        outcome = await h.deliver()
    assert outcome.status == "dead"
    assert outcome.attempts == 1
    assert len(h.vendor.requests) == 1
    assert h.sleep.calls == []
    assert outcome.error is not None
    assert "400" in outcome.error
    assert_no_secret(case, outcome.error, h.vendor.url)


async def test_server_error_forever_is_dead_after_max_attempts(case: SinkCase, tmp_path: pathlib.Path) -> None:
    async with harness(case, tmp_path) as h:
        h.vendor.fail(500, times=MAX_ATTEMPTS + 3)
        outcome = await h.deliver()
    assert outcome.status == "dead"
    assert outcome.attempts == MAX_ATTEMPTS
    assert len(h.vendor.requests) == MAX_ATTEMPTS
    assert len(h.sleep.calls) == MAX_ATTEMPTS - 1
    assert outcome.error is not None
    assert "500" in outcome.error
    assert_no_secret(case, outcome.error, h.vendor.url)


@pytest.mark.parametrize("fault", ["400", "429", "500", "timeout"])
async def test_dead_error_names_no_secret(case: SinkCase, tmp_path: pathlib.Path, fault: str) -> None:
    async with harness(case, tmp_path, sink_timeout=HANG_TIMEOUT if fault == "timeout" else None) as h:
        if fault == "timeout":
            h.vendor.hang(times=MAX_ATTEMPTS)
        else:
            h.vendor.fail(int(fault), retry_after=0.5 if fault == "429" else None, times=MAX_ATTEMPTS)
        outcome = await h.deliver()
    assert outcome.status == "dead"
    assert outcome.attempts == (1 if fault == "400" else MAX_ATTEMPTS)
    assert_no_secret(case, outcome.error, h.vendor.url)


async def test_connection_refused_error_names_no_secret(case: SinkCase, tmp_path: pathlib.Path) -> None:
    base_url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    h = Harness(case, Vendor(case.validator), case.make_sink(base_url, tmp_path), make_notification(case.kind))
    outcome = await h.deliver()
    assert outcome.status == "dead"
    assert outcome.attempts == MAX_ATTEMPTS  # a connection failure is retryable
    assert outcome.error == f"{case.kind}: cannot connect (Connection refused)"
    assert_no_secret(case, outcome.error, base_url)


@pytest.mark.parametrize("status", [400, 500])
async def test_an_answer_repeating_the_secrets_is_quoted_without_them(
    case: SinkCase, tmp_path: pathlib.Path, status: int
) -> None:
    """The error quotes what the vendor's error answer says (the cause an operator acts on), with the secrets
    and the address the answer repeats taken out."""
    async with harness(case, tmp_path) as h:
        said = f"rejected {' '.join(case.secrets)} at {h.vendor.url}/x and 127.0.0.1:443"
        h.vendor.fail(status, body={"message": said}, times=MAX_ATTEMPTS)
        outcome = await h.deliver()
    assert outcome.status == "dead"
    assert outcome.error is not None
    assert f"{case.kind}: HTTP {status}: rejected " in outcome.error, outcome.error
    assert_no_secret(case, outcome.error, h.vendor.url)


# ---- email: the same cases over SMTP ----------------------------------------------------------------------------

EMAIL = "email"
# where the scripted server refuses: the sink maps the two through different errors
PHASES: list[email_tests.Phase] = ["rcpt", "data"]


@dataclass
class EmailHarness:
    server: email_tests.Scripted
    sink: Sink
    notification: Notification
    store: MemoryStore = field(default_factory=MemoryStore)
    metrics: Metrics = field(default_factory=Metrics)
    sleep: RecordingSleep = field(default_factory=RecordingSleep)

    async def deliver(self) -> Outcome:
        return await deliver_through_sender(self.store, self.metrics, self.sleep, self.notification, self.sink)

    def counter(self, name: str, **labels: str) -> float:
        value = self.metrics.registry.get_sample_value(f"streamalert_{name}", {"sink": EMAIL, **labels})
        return value if value is not None else 0.0

    def check_accepted(self) -> None:
        """Every message the server accepted is well formed and carries this notification's delivery id."""
        for got in self.server.received:
            assert email_tests.conformance_validator(got) == []
            assert got.message["X-Streamalert-Delivery"] == self.notification.id
            plain, html = email_tests.parts(got.message)  # both alternatives, each about this notification
            assert self.notification.title() in plain
            assert "HighErrorRate" in html


@asynccontextmanager
async def email_harness(*, sink_timeout: str | None = None) -> AsyncIterator[EmailHarness]:
    async with email_tests.conformance() as server:
        config = {} if sink_timeout is None else {"timeout": sink_timeout}
        sink = email_tests.conformance_sink(server.address, **config)
        yield EmailHarness(server, sink, make_notification(EMAIL))


def assert_email_no_secret(error: str | None, address: str) -> None:
    assert error, "a dead outcome says why"
    assert error.startswith(EMAIL), error  # names the sink
    assert email_tests.PASSWORD not in error, f"email error leaks the password: {error}"
    host, _, port = address.rpartition(":")
    for part in (address, host, port):
        assert part not in error, f"email error names the server ({part}): {error}"


async def test_email_accepted_message_conforms() -> None:
    async with email_harness() as h:
        outcome = await h.deliver()
    assert outcome == Outcome("sent", 1)
    assert h.server.answered == [250]
    assert len(h.server.received) == 1
    h.check_accepted()
    assert h.sleep.calls == []
    assert h.counter("notifications_total", status="sent") == 1


@pytest.mark.parametrize("at", PHASES)
async def test_email_transient_refusal_once_is_retried(at: email_tests.Phase) -> None:
    """The counterpart of a 429: SMTP asks for no particular wait, so the sender's own first backoff applies."""
    async with email_harness() as h:
        h.server.fail(email_tests.TRANSIENT, at=at)
        outcome = await h.deliver()
    assert outcome == Outcome("sent", 2)
    assert h.server.answered == [451, 250]
    [waited] = h.sleep.calls
    assert RETRY_INITIAL_S <= waited <= 2 * RETRY_INITIAL_S  # retry_initial plus up to retry_initial of jitter
    assert h.counter("notifications_429_total") == 0
    assert h.counter("notifications_total", status="failed") == 1
    assert h.counter("notifications_total", status="sent") == 1
    assert len(h.server.received) == 1
    h.check_accepted()


@pytest.mark.parametrize("at", PHASES)
async def test_email_transient_refusals_back_off_exponentially(at: email_tests.Phase) -> None:
    async with email_harness() as h:
        h.server.fail(email_tests.TRANSIENT, at=at, times=2)
        outcome = await h.deliver()
    assert outcome == Outcome("sent", 3)
    assert h.server.answered == [451, 451, 250]
    assert len(h.sleep.calls) == 2
    for retry, waited in enumerate(h.sleep.calls):
        floor = RETRY_INITIAL_S * 2**retry  # a growing floor, plus up to retry_initial of jitter
        assert floor <= waited <= floor + RETRY_INITIAL_S, h.sleep.calls
    assert h.sleep.calls[0] < h.sleep.calls[1], h.sleep.calls
    assert h.counter("notifications_total", status="failed") == 2
    assert len(h.server.received) == 1
    h.check_accepted()


async def test_email_hanging_server_is_timed_out_and_retried() -> None:
    async with email_harness(sink_timeout=HANG_TIMEOUT) as h:
        assert h.sink.config.timeout == HANG_TIMEOUT
        h.server.hang()  # the whole message goes out; DATA is never answered
        outcome = await h.deliver()
    assert outcome == Outcome("sent", 2)
    assert h.server.answered == [0, 250]  # 0: never answered
    assert len(h.sleep.calls) == 1
    assert h.counter("notifications_total", status="failed") == 1
    assert h.counter("notifications_total", status="sent") == 1
    assert len(h.server.received) == 1
    h.check_accepted()


@pytest.mark.parametrize("at", PHASES)
async def test_email_permanent_refusal_is_not_retried(at: email_tests.Phase) -> None:
    async with email_harness() as h:
        h.server.fail(email_tests.PERMANENT, at=at, times=MAX_ATTEMPTS)
        outcome = await h.deliver()
    assert outcome.status == "dead"
    assert outcome.attempts == 1
    assert h.server.answered == [550]  # one message attempt reached the server
    assert h.server.received == []
    assert h.sleep.calls == []
    assert outcome.error is not None
    assert "550" in outcome.error
    assert_email_no_secret(outcome.error, h.server.address)


@pytest.mark.parametrize("at", PHASES)
async def test_email_transient_refusal_forever_is_dead_after_max_attempts(at: email_tests.Phase) -> None:
    async with email_harness() as h:
        h.server.fail(email_tests.TRANSIENT, at=at, times=MAX_ATTEMPTS + 3)
        outcome = await h.deliver()
    assert outcome.status == "dead"
    assert outcome.attempts == MAX_ATTEMPTS
    assert h.server.answered == [451] * MAX_ATTEMPTS
    assert h.server.received == []
    assert len(h.sleep.calls) == MAX_ATTEMPTS - 1
    assert outcome.error is not None
    assert "451" in outcome.error
    assert_email_no_secret(outcome.error, h.server.address)


NAMES_ITSELF = "421 4.3.2 [{host}] Service not available, closing transmission channel"  # RFC 5321 4.2: 421 <domain>


@pytest.mark.parametrize(
    "fault",
    [
        "451-rcpt",
        "451-data",
        "550-rcpt",
        "550-data",
        "timeout",
        "421-names-itself",
    ],
)
async def test_email_dead_error_names_no_secret(fault: str) -> None:
    async with email_harness(sink_timeout=HANG_TIMEOUT if fault == "timeout" else None) as h:
        host = h.server.address.rpartition(":")[0]
        if fault == "timeout":
            h.server.hang(times=MAX_ATTEMPTS)
        elif fault == "421-names-itself":
            h.server.fail(NAMES_ITSELF.format(host=host), at="data", times=MAX_ATTEMPTS)
        else:
            code, _, at = fault.partition("-")
            reply = email_tests.PERMANENT if code == "550" else email_tests.TRANSIENT
            h.server.fail(reply, at="rcpt" if at == "rcpt" else "data", times=MAX_ATTEMPTS)
        outcome = await h.deliver()
    assert outcome.status == "dead"
    assert outcome.attempts == (1 if fault.startswith("550") else MAX_ATTEMPTS)
    assert len(h.server.attempts) == outcome.attempts
    assert all(a.authenticated for a in h.server.attempts)  # the password was sent on every attempt
    assert_email_no_secret(outcome.error, h.server.address)


async def test_email_connection_refused_error_names_no_secret() -> None:
    address = f"127.0.0.1:{free_port()}"  # nothing listens there
    server = email_tests.Scripted()
    h = EmailHarness(server, email_tests.conformance_sink(address), make_notification(EMAIL))
    outcome = await h.deliver()
    assert outcome.status == "dead"
    assert outcome.attempts == MAX_ATTEMPTS  # a connection failure is retryable
    assert_email_no_secret(outcome.error, address)
