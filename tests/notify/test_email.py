"""The email sink against a real SMTP server (aiosmtpd) started by each test on 127.0.0.1.

The server runs on the test's own event loop with a port the OS picks (the sink's smtplib session runs in a
worker thread, so the loop stays free to serve it). TLS tests use a self-signed certificate made here.
`conformance()` (a `Scripted` server: 451/550 at RCPT or DATA, or DATA never answered, per message attempt),
`conformance_sink` and `conformance_validator` are what tests/notify/test_sink_conformance.py runs its email
cases with.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email
import email.policy
import pathlib
import shutil
import socket
import ssl
import subprocess
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import format_datetime
from typing import Any, Literal

import aiohttp
import pydantic
import pytest
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session

from streamalert.notify.model import ZERO_TIME, Alert, Notification, fingerprint
from streamalert.notify.sinks import registry
from streamalert.notify.sinks.base import DeliveryError
from streamalert.notify.sinks.email import EmailConfig, EmailSink

USER = "alerts-bot"
PASSWORD = "pa55-w0rd-never-logged"
FROM = "streamalert@example.com"
TO = ["oncall@example.com"]

Authenticator = Callable[[SMTPServer, Session, Envelope, str, Any], AuthResult]


# ---- a real SMTP server --------------------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str | None
    rcpt_tos: list[str]
    message: EmailMessage
    tls: bool
    authenticated: bool


class Collector:
    """aiosmtpd handler: keeps accepted messages; answers scripted replies to RCPT and DATA."""

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.rcpt_replies: dict[str, str] = {}
        self.data_reply: str | None = None

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.rcpt_replies:
            return self.rcpt_replies[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        assert envelope.original_content is not None
        message = email.message_from_bytes(envelope.original_content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        self.received.append(
            Received(
                envelope.mail_from,
                list(envelope.rcpt_tos),
                message,
                session.ssl is not None,
                bool(session.authenticated),
            )
        )
        return "250 2.0.0 Message accepted for delivery"


@asynccontextmanager
async def smtp_server(
    handler: Collector,
    *,
    starttls: ssl.SSLContext | None = None,
    implicit_tls: ssl.SSLContext | None = None,
    authenticator: Authenticator | None = None,
    auth_require_tls: bool = True,
) -> AsyncIterator[str]:
    """An aiosmtpd server on 127.0.0.1; yields its "host:port"."""

    def protocol() -> SMTPServer:
        return SMTPServer(
            handler,
            hostname="mx.test",
            tls_context=starttls,
            authenticator=authenticator,
            auth_require_tls=auth_require_tls,
        )

    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", 0, ssl=implicit_tls)
    port = server.sockets[0].getsockname()[1]
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.close()
        await server.wait_closed()


def check_password(server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any) -> AuthResult:
    ok = isinstance(data, LoginPassword) and data.login == USER.encode() and data.password == PASSWORD.encode()
    return AuthResult(success=ok, handled=False)


# ---- a scripted server: the SMTP vendor of tests/notify/test_sink_conformance.py ---------------------------

TRANSIENT = "451 4.3.0 try again later"
PERMANENT = "550 5.1.1 mailbox unavailable"
Phase = Literal["rcpt", "data"]
HANG_DEADLINE_S = 5.0  # a hung session ends (its connection closed) within this at the end of a test


@dataclass(frozen=True)
class SmtpFault:
    reply: str | None  # None: no answer at all (a hang)
    at: Phase = "data"


@dataclass
class Attempt:
    """One message attempt (a MAIL FROM transaction) as the server saw it."""

    fault: SmtpFault | None
    authenticated: bool  # logged in before MAIL FROM
    answered: int = 0  # the reply code that ended it (to RCPT or DATA); 0: never answered


class Scripted(Collector):
    """A Collector that answers each message attempt from a script of faults, in order, then accepts:
    `fail(TRANSIENT, at="rcpt", times=2)`, `fail(PERMANENT, at="data")`, `hang()` (DATA is never answered:
    the client's timeout must end the session). Every attempt is recorded in `attempts`, accepted messages in
    `received`; `address` is the server's "host:port" once `conformance()` started it."""

    def __init__(self) -> None:
        super().__init__()
        self.address = ""
        self.faults: list[SmtpFault] = []
        self.attempts: list[Attempt] = []
        self._open: dict[Session, Attempt] = {}
        self._hung: list[tuple[SMTPServer, asyncio.Event]] = []

    def fail(self, reply: str, *, at: Phase = "data", times: int = 1) -> None:
        self.faults.extend(SmtpFault(reply, at) for _ in range(times))

    def hang(self, times: int = 1) -> None:
        self.faults.extend(SmtpFault(None, "data") for _ in range(times))

    @property
    def answered(self) -> list[int]:
        return [a.answered for a in self.attempts]

    async def handle_MAIL(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, mail_options: list[str]
    ) -> str:
        attempt = Attempt(self.faults.pop(0) if self.faults else None, bool(session.authenticated))
        self.attempts.append(attempt)
        self._open[session] = attempt
        envelope.mail_from = address
        envelope.mail_options.extend(mail_options)
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTPServer, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        attempt = self._open[session]
        if attempt.fault is not None and attempt.fault.at == "rcpt" and attempt.fault.reply is not None:
            return self._answer(attempt, attempt.fault.reply)
        return await super().handle_RCPT(server, session, envelope, address, rcpt_options)

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        attempt = self._open.pop(session)
        if attempt.fault is not None and attempt.fault.at == "data":
            if attempt.fault.reply is None:
                return await self._hang(server)
            return self._answer(attempt, attempt.fault.reply)
        return self._answer(attempt, await super().handle_DATA(server, session, envelope))

    @staticmethod
    def _answer(attempt: Attempt, reply: str) -> str:
        attempt.answered = int(reply[:3])
        return reply

    async def _hang(self, server: SMTPServer) -> str:
        """Never answers: aiosmtpd cancels this when the connection ends (the client gave up, or `end_hangs`)."""
        ended = asyncio.Event()
        self._hung.append((server, ended))
        try:
            await asyncio.Event().wait()
        finally:
            ended.set()
        raise AssertionError("unreachable: the wait above never ends")

    async def end_hangs(self) -> None:
        """Close the connections of hung sessions still open (a client thread the sender abandoned may still be
        waiting on one), and wait, with a deadline, until their handlers ended."""
        for server, _ in self._hung:
            if server.transport is not None:
                server.transport.close()
        async with asyncio.timeout(HANG_DEADLINE_S):
            for _, ended in self._hung:
                await ended.wait()


@asynccontextmanager
async def conformance() -> AsyncIterator[Scripted]:
    """The scripted server the conformance suite delivers to: AUTH with USER/PASSWORD, accepted in clear as
    the sink allows it to a loopback relay only (no TLS: the suite is about retries, not transport security)."""
    handler = Scripted()
    async with smtp_server(handler, authenticator=check_password, auth_require_tls=False) as address:
        handler.address = address
        try:
            yield handler
        finally:
            await handler.end_hangs()


def conformance_sink(address: str, **config: Any) -> EmailSink:
    """The email sink as the conformance suite configures it: one recipient, a login with PASSWORD."""
    return make_sink(address, auth_username=USER, auth_password=PASSWORD, **config)


def conformance_validator(got: Received) -> list[str]:
    """What is wrong with an accepted message (the email counterpart of the HTTP vendors' validators)."""
    problems: list[str] = []
    if got.mail_from != FROM:
        problems.append(f"envelope sender {got.mail_from!r}")
    if got.rcpt_tos != TO:
        problems.append(f"envelope recipients {got.rcpt_tos!r}")
    if not got.authenticated:
        problems.append("sent without logging in")
    message = got.message
    for header in ("Subject", "From", "To", "Date", "Message-ID", "X-Streamalert-Delivery"):
        if not message[header]:
            problems.append(f"no {header} header")
    if message["Auto-Submitted"] != "auto-generated":
        problems.append(f"Auto-Submitted: {message['Auto-Submitted']!r}")
    if message.get_content_type() != "multipart/alternative":
        problems.append(f"content type {message.get_content_type()}")
    for subtype in ("plain", "html"):
        body = message.get_body((subtype,))
        if not isinstance(body, EmailMessage) or not str(body.get_content()).strip():
            problems.append(f"no text/{subtype} part")
    return problems


@dataclass(frozen=True)
class Certificate:
    cert: pathlib.Path
    key: pathlib.Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert, self.key)
        return context


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> Certificate:
    """A self-signed certificate for 127.0.0.1 and localhost, made by the openssl command (no Python
    dependency for it)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.fail("the openssl command is needed to make the test certificate")
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "3650",
            "-subj",
            "/CN=streamalert test SMTP",
            "-addext",
            "subjectAltName=DNS:localhost,IP:127.0.0.1",
        ],
        check=True,
        capture_output=True,
    )
    return Certificate(cert, key)


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def free_port() -> int:
    """A port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


# ---- helpers -------------------------------------------------------------------------------------------


def make_alert(status: str = "firing", annotations: dict[str, str] | None = None, **labels: str) -> Alert:
    labels = {"alertname": "HighLatency", "service": "checkout", **labels}
    return Alert(
        fingerprint=fingerprint(labels),
        status="firing" if status == "firing" else "resolved",
        labels=labels,
        annotations=annotations if annotations is not None else {"summary": "p99 above 2s"},
        starts_at="2024-05-01T10:00:00Z",
        ends_at=ZERO_TIME if status == "firing" else "2024-05-01T10:05:00Z",
        value=2.7,
    )


def make_notification(*alerts: Alert, id: str = "delivery-42") -> Notification:
    return Notification(
        id=id,
        receiver="checkout-team",
        sink="email/0",
        group_key='{}:{alertname="HighLatency", service="checkout"}',
        group_labels={"alertname": "HighLatency", "service": "checkout"},
        alerts=alerts or (make_alert(),),
        at="2024-05-01T10:00:30Z",
        external_url="https://streamalert.example",
    )


def make_sink(address: str, **config: Any) -> EmailSink:
    values: dict[str, Any] = {"to": TO, "from": FROM, "smarthost": address, "tls": "none", **config}
    return EmailSink(EmailConfig.model_validate(values))


def parts(message: EmailMessage) -> tuple[str, str]:
    plain, rich = message.get_body(("plain",)), message.get_body(("html",))
    assert isinstance(plain, EmailMessage)
    assert isinstance(rich, EmailMessage)
    return plain.get_content(), rich.get_content()


def no_password(error: DeliveryError) -> bool:
    return all(PASSWORD not in text for text in (str(error), repr(error), repr(error.args)))


# ---- tests ---------------------------------------------------------------------------------------------


def test_registered() -> None:
    assert registry()["email"].config is EmailConfig


async def test_message_content(http: aiohttp.ClientSession) -> None:
    firing = make_alert(
        annotations={
            "summary": '<b>p99</b> & "quotes"',
            "description": "<script>alert(1)</script>",
            "runbook_url": "https://runbooks.example/latency?a=1&b=2",
        },
        severity="critical",
    )
    resolved = make_alert("resolved", annotations={"summary": "recovered"}, pod="p-2")
    notification = make_notification(firing, resolved)
    handler = Collector()
    async with smtp_server(handler) as address:
        sink = make_sink(address, to=["Oncall <oncall@example.com>", "ops@example.com"], hello="alerts.example")
        await sink.send(notification, http)
    (got,) = handler.received
    assert got.mail_from == FROM
    assert got.rcpt_tos == ["oncall@example.com", "ops@example.com"]
    message = got.message
    assert message["Subject"] == notification.title() == "[FIRING:1] HighLatency (checkout)"
    assert message["From"] == FROM
    assert message["To"] == "Oncall <oncall@example.com>, ops@example.com"
    assert message["Message-ID"] == "<delivery-42@example.com>"
    assert message["X-Streamalert-Delivery"] == "delivery-42"
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Date"] == format_datetime(dt.datetime(2024, 5, 1, 10, 0, 30, tzinfo=dt.UTC))
    assert message.get_content_type() == "multipart/alternative"
    text, html = parts(message)
    assert '<b>p99</b> & "quotes"' in text
    assert "<script>alert(1)</script>" in text
    assert "Runbook: https://runbooks.example/latency?a=1&b=2" in text
    assert "Firing (1):" in text
    assert "Resolved (1):" in text
    assert "recovered" in text
    assert "&lt;b&gt;p99&lt;/b&gt; &amp; &quot;quotes&quot;" in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in html
    assert "<b>p99" not in html
    assert '<a href="https://runbooks.example/latency?a=1&amp;b=2">' in html
    assert "severity=critical" in text
    assert "checkout-team" in text
    assert "checkout-team" in html


async def test_same_delivery_same_message_id(http: aiohttp.ClientSession) -> None:
    handler = Collector()
    odd = make_notification(id="group 7 / attempt <x>")
    async with smtp_server(handler) as address:
        await make_sink(address).send(make_notification(), http)
        await make_sink(address).send(make_notification(), http)  # as after a restart: a new sink
        await make_sink(address).send(odd, http)
    first, second, third = (r.message for r in handler.received)
    assert first["Message-ID"] == second["Message-ID"] == "<delivery-42@example.com>"
    local, _, domain = third["Message-ID"].strip("<>").partition("@")
    assert (len(local), domain) == (32, "example.com")  # an id that is not a dot-atom is hashed
    assert third["X-Streamalert-Delivery"] == "group 7 / attempt <x>"


async def test_starttls_with_ca_file_and_auth(http: aiohttp.ClientSession, certificate: Certificate) -> None:
    handler = Collector()
    async with smtp_server(handler, starttls=certificate.server_context(), authenticator=check_password) as address:
        sink = make_sink(address, tls="starttls", ca_file=certificate.cert, auth_username=USER, auth_password=PASSWORD)
        await sink.send(make_notification(), http)
    (got,) = handler.received
    assert got.tls
    assert got.authenticated
    assert got.message["Subject"] == make_notification().title()


async def test_auth_password_file(
    http: aiohttp.ClientSession, certificate: Certificate, tmp_path: pathlib.Path
) -> None:
    password_file = tmp_path / "smtp_password"
    password_file.write_text(PASSWORD + "\n", encoding="utf-8")
    handler = Collector()
    async with smtp_server(handler, starttls=certificate.server_context(), authenticator=check_password) as address:
        sink = make_sink(
            address,
            tls="starttls",
            insecure_skip_verify=True,
            auth_username=USER,
            auth_password_file=password_file,
        )
        await sink.send(make_notification(), http)
    assert [r.authenticated for r in handler.received] == [True]


async def test_starttls_insecure_skip_verify(http: aiohttp.ClientSession, certificate: Certificate) -> None:
    handler = Collector()
    async with smtp_server(handler, starttls=certificate.server_context()) as address:
        await make_sink(address, tls="starttls", insecure_skip_verify=True).send(make_notification(), http)
    assert [r.tls for r in handler.received] == [True]


async def test_untrusted_certificate_is_not_retryable(http: aiohttp.ClientSession, certificate: Certificate) -> None:
    handler = Collector()
    async with smtp_server(handler, starttls=certificate.server_context()) as address:
        with pytest.raises(DeliveryError) as caught:
            await make_sink(address, tls="starttls").send(make_notification(), http)
    assert not caught.value.retryable
    assert "certificate" in str(caught.value)
    assert handler.received == []


async def test_starttls_required_when_not_offered(http: aiohttp.ClientSession) -> None:
    handler = Collector()
    async with smtp_server(handler) as address:  # no TLS context: no STARTTLS in the EHLO answer
        with pytest.raises(DeliveryError, match="does not offer STARTTLS") as caught:
            await make_sink(address, tls="starttls").send(make_notification(), http)
    assert not caught.value.retryable
    assert handler.received == []


async def test_implicit_tls(http: aiohttp.ClientSession, certificate: Certificate) -> None:
    handler = Collector()
    async with smtp_server(handler, implicit_tls=certificate.server_context()) as address:
        await make_sink(address, tls="tls", ca_file=certificate.cert).send(make_notification(), http)
    assert [r.message["Message-ID"] for r in handler.received] == ["<delivery-42@example.com>"]


async def test_wrong_password_is_not_retryable_and_not_shown(
    http: aiohttp.ClientSession, certificate: Certificate
) -> None:
    handler = Collector()
    wrong = PASSWORD + "-wrong"
    async with smtp_server(handler, starttls=certificate.server_context(), authenticator=check_password) as address:
        sink = make_sink(address, tls="starttls", ca_file=certificate.cert, auth_username=USER, auth_password=wrong)
        with pytest.raises(DeliveryError) as caught:
            await sink.send(make_notification(), http)
    error = caught.value
    assert (error.retryable, error.status) == (False, 535)
    assert "login refused: SMTP 535" in str(error)
    assert no_password(error)
    assert wrong not in str(error)
    assert wrong not in repr(sink.config)
    assert handler.received == []


async def test_mailbox_unavailable_is_not_retryable(http: aiohttp.ClientSession) -> None:
    handler = Collector()
    handler.rcpt_replies[TO[0]] = "550 5.1.1 mailbox unavailable"
    async with smtp_server(handler) as address:
        with pytest.raises(DeliveryError) as caught:
            await make_sink(address).send(make_notification(), http)
    assert (caught.value.retryable, caught.value.status) == (False, 550)
    assert str(caught.value) == "email: 1 of 1 recipients refused (SMTP 550)"


async def test_message_refused_with_5xx_is_not_retryable(http: aiohttp.ClientSession) -> None:
    handler = Collector()
    handler.data_reply = "554 5.6.0 message content rejected"
    async with smtp_server(handler) as address:
        with pytest.raises(DeliveryError) as caught:
            await make_sink(address).send(make_notification(), http)
    assert (caught.value.retryable, caught.value.status) == (False, 554)
    assert "message refused: SMTP 554" in str(caught.value)


async def test_temporary_failure_is_retryable(http: aiohttp.ClientSession) -> None:
    handler = Collector()
    handler.data_reply = "451 4.3.0 try again later"
    async with smtp_server(handler) as address:
        sink = make_sink(address)
        with pytest.raises(DeliveryError) as caught:
            await sink.send(make_notification(), http)
        handler.data_reply = None
        await sink.send(make_notification(), http)  # the retry goes through
        await sink.send(make_notification(), http)  # a repeated call for a delivery already made sends nothing
    assert (caught.value.retryable, caught.value.status) == (True, 451)
    assert "SMTP 451 4.3.0 try again later" in str(caught.value)
    assert len(handler.received) == 1


async def test_partial_refusal_retries_only_the_refused_recipient(http: aiohttp.ClientSession) -> None:
    handler = Collector()
    handler.rcpt_replies["ops@example.com"] = "451 4.2.0 greylisted"
    async with smtp_server(handler) as address:
        sink = make_sink(address, to=["oncall@example.com", "ops@example.com"])
        with pytest.raises(DeliveryError) as caught:
            await sink.send(make_notification(), http)
        handler.rcpt_replies.clear()
        await sink.send(make_notification(), http)
        await sink.send(make_notification(), http)  # everyone has it: nothing more to send
    assert caught.value.retryable
    assert str(caught.value) == "email: 1 of 2 recipients refused (SMTP 451)"
    assert [r.rcpt_tos for r in handler.received] == [["oncall@example.com"], ["ops@example.com"]]
    assert handler.received[1].message["To"] == "oncall@example.com, ops@example.com"


async def test_connection_refused_is_retryable(http: aiohttp.ClientSession, free_port: int) -> None:
    with pytest.raises(DeliveryError) as caught:
        await make_sink(f"127.0.0.1:{free_port}").send(make_notification(), http)
    assert caught.value.retryable
    assert str(caught.value) == "email: cannot connect (Connection refused)"


async def test_dns_failure_is_named_without_the_host(http: aiohttp.ClientSession) -> None:
    """A smarthost whose name does not resolve: "DNS lookup failed", retryable, the name not repeated."""
    with pytest.raises(DeliveryError) as caught:
        await make_sink("streamalert-test.invalid:25").send(make_notification(), http)
    assert caught.value.retryable
    assert str(caught.value).startswith("email: DNS lookup failed (")
    assert "streamalert-test" not in str(caught.value)


async def test_implicit_tls_to_a_plain_server_names_the_handshake(http: aiohttp.ClientSession) -> None:
    """`tls: tls` against a server speaking plain SMTP: "TLS handshake failed" with the TLS library's reason."""
    async with smtp_server(Collector()) as address:
        with pytest.raises(DeliveryError) as caught:
            await make_sink(address, tls="tls").send(make_notification(), http)
    assert str(caught.value).startswith("email: TLS handshake failed (")
    assert address.rpartition(":")[0] not in str(caught.value)


def test_non_ascii_credentials_are_refused_when_built(tmp_path: pathlib.Path) -> None:
    """smtplib sends credentials as ASCII only, so a password file with anything else fails the build (and so
    `check` and the start) rather than every send."""
    password_file = tmp_path / "smtp_password"
    password_file.write_text("pässwort\n", encoding="utf-8")
    config = {"tls": "starttls", "auth_username": USER, "auth_password_file": password_file}
    with pytest.raises(ValueError, match="auth_password_file: only ASCII") as caught:
        make_sink("smtp.example.com:587", **config)
    assert "pässwort" not in str(caught.value)


async def test_silent_server_times_out_retryably(http: aiohttp.ClientSession) -> None:
    server = await asyncio.get_running_loop().create_server(asyncio.Protocol, "127.0.0.1", 0)  # never greets
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(DeliveryError) as caught:
            await make_sink(f"127.0.0.1:{port}", timeout="200ms").send(make_notification(), http)
    finally:
        server.close()
    assert caught.value.retryable
    assert str(caught.value) == "email: timed out"


async def test_scripted_faults_then_accepted(http: aiohttp.ClientSession) -> None:
    """The conformance server's script, one fault per message attempt, against the sink alone."""
    async with conformance() as smtp:
        smtp.fail(TRANSIENT, at="rcpt")
        smtp.fail(TRANSIENT, at="data")
        smtp.fail(PERMANENT, at="rcpt")
        smtp.fail(PERMANENT, at="data")
        sink = conformance_sink(smtp.address)
        errors: list[DeliveryError] = []
        for _ in range(4):
            with pytest.raises(DeliveryError) as caught:
                await sink.send(make_notification(), http)
            errors.append(caught.value)
        await sink.send(make_notification(), http)
    assert [(e.retryable, e.status, str(e)) for e in errors] == [
        (True, 451, "email: 1 of 1 recipients refused (SMTP 451)"),
        (True, 451, "email: message refused: SMTP 451 4.3.0 try again later"),
        (False, 550, "email: 1 of 1 recipients refused (SMTP 550)"),
        (False, 550, "email: message refused: SMTP 550 5.1.1 mailbox unavailable"),
    ]
    assert all(no_password(e) for e in errors)
    assert smtp.answered == [451, 451, 550, 550, 250]
    assert [a.authenticated for a in smtp.attempts] == [True] * 5
    (got,) = smtp.received
    assert conformance_validator(got) == []
    assert got.message["X-Streamalert-Delivery"] == "delivery-42"


async def test_unanswered_data_times_out_retryably(http: aiohttp.ClientSession) -> None:
    """The whole message went out but DATA is never answered: the sink's own socket timeout ends the session
    (the sender's timeout aside), and the next attempt goes through."""
    async with conformance() as smtp:
        smtp.hang()
        sink = conformance_sink(smtp.address, timeout="200ms")
        with pytest.raises(DeliveryError) as caught:
            await sink.send(make_notification(), http)
        await sink.send(make_notification(), http)
    assert (caught.value.retryable, str(caught.value)) == (True, "email: timed out")
    assert smtp.answered == [0, 250]
    assert len(smtp.received) == 1


async def test_certificate_for_another_host_error_names_no_host(
    http: aiohttp.ClientSession, certificate: Certificate
) -> None:
    handler = Collector()
    context = certificate.server_context()
    server = await asyncio.get_running_loop().create_server(
        lambda: SMTPServer(handler, hostname="mx.test", tls_context=context), "127.0.0.2", 0
    )  # the certificate names 127.0.0.1 and localhost only
    address = f"127.0.0.2:{server.sockets[0].getsockname()[1]}"
    try:
        with pytest.raises(DeliveryError) as caught:
            await make_sink(address, tls="starttls", ca_file=certificate.cert).send(make_notification(), http)
    finally:
        server.close()
        await server.wait_closed()
    assert not caught.value.retryable
    assert "certificate" in str(caught.value)
    assert handler.received == []
    assert "127.0.0.2" not in str(caught.value), str(caught.value)


async def test_send_resolved_false(http: aiohttp.ClientSession) -> None:
    handler = Collector()
    async with smtp_server(handler) as address:
        sink = make_sink(address, send_resolved=False)
        await sink.send(make_notification(make_alert("resolved")), http)
        await sink.send(make_notification(make_alert(pod="a"), make_alert("resolved", pod="b"), id="d-2"), http)
    (got,) = handler.received
    text, _ = parts(got.message)
    assert "Resolved" not in text
    assert "pod=a" in text
    assert "pod=b" not in text


def test_config_checks(tmp_path: pathlib.Path) -> None:
    base: dict[str, Any] = {"to": TO, "from": FROM, "smarthost": "smtp.example.com:587"}
    config = EmailConfig.model_validate(base)
    assert (config.from_, config.tls, config.hello, config.insecure_skip_verify) == (
        FROM,
        "starttls",
        "localhost",
        False,
    )
    bad: list[tuple[dict[str, Any], str]] = [
        ({"to": []}, "at least 1 item"),
        ({"to": ["not-an-address"]}, "not an email address"),
        ({"to": ["a@example.com\r\nBcc: x@example.com"]}, "line breaks"),
        ({"smarthost": "smtp.example.com"}, "host:port"),
        ({"smarthost": "smtp.example.com:99999"}, "host:port"),
        ({"tls": "ssl"}, "starttls"),
        ({"hello": "two words"}, "one non-empty word"),
        ({"hello": "hôte.example"}, "one non-empty word of ASCII"),
        ({"auth_username": "bötchen", "auth_password": PASSWORD}, "auth_username\n.*only ASCII"),
        ({"auth_username": USER, "auth_password": PASSWORD + "ö"}, "auth_password: only ASCII"),
        ({"auth_username": USER}, "go together"),
        ({"auth_password": PASSWORD}, "go together"),
        ({"auth_username": USER, "auth_password": PASSWORD, "tls": "none"}, "password would cross"),
        ({"auth_username": USER, "auth_password": PASSWORD, "auth_password_file": tmp_path / "p"}, "at most one"),
        ({"sender": FROM}, "extra"),
    ]
    for change, message in bad:
        with pytest.raises(pydantic.ValidationError, match=message) as caught:
            EmailConfig.model_validate({**base, **change})
        assert PASSWORD not in str(caught.value.errors(include_input=False))
    local = {**base, "smarthost": "[::1]:25", "tls": "none", "auth_username": USER, "auth_password": PASSWORD}
    assert EmailConfig.model_validate(local).auth_username == USER  # clear text login to a loopback relay only
    assert PASSWORD not in repr(EmailConfig.model_validate(local))


def test_unreadable_ca_file(tmp_path: pathlib.Path) -> None:
    config = EmailConfig.model_validate(
        {"to": TO, "from": FROM, "smarthost": "smtp.example.com:587", "ca_file": tmp_path / "missing.pem"}
    )
    with pytest.raises(ValueError, match="ca_file: cannot load"):
        EmailSink(config)
