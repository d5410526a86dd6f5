"""email: one message per notification over SMTP (standard library `smtplib`, run in a worker thread).

The message is multipart/alternative: a plain-text part and an HTML part (user text HTML-escaped). Its
`Message-ID` derives from the delivery id, so a retried send is recognisably the same message, and it carries
`X-Streamalert-Delivery` and `Auto-Submitted: auto-generated` (RFC 3834: not to be auto-replied to).

TLS: `starttls` (default) upgrades the connection and fails when the server does not offer STARTTLS, rather
than sending in clear; `tls` is implicit TLS (SMTPS, usually port 465); `none` sends in clear, and then login
is allowed to a loopback host only (like Go's net/smtp PLAIN auth). Errors: 4xx replies, timeouts and
connection failures are retryable; 5xx replies (550 mailbox unavailable, 535 bad credentials, ...) and TLS
certificate failures are not. If only some recipients are refused, the sink remembers who accepted the
message and a retry sends only to the others.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import html
import ipaddress
import os
import re
import socket
from collections import OrderedDict
from datetime import datetime
from email.message import EmailMessage
from email.utils import format_datetime, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal, Self

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from streamalert.notify.model import Alert, Notification
from streamalert.notify.sinks.base import DeliveryError, SinkConfig, SinkKind, secret
from streamalert.notify.sinks.endpoint import scrub
from streamalert.notify.sinks.text import DELIVERY_HEADER

if TYPE_CHECKING:  # the sending side is imported on use: loading a config needs none of it
    import concurrent.futures
    import smtplib
    import ssl

    import aiohttp

_REMEMBERED = 256  # notifications whose accepting recipients a retry skips
_DOT_ATOM = re.compile(r"[A-Za-z0-9_+-]+(?:\.[A-Za-z0-9_+-]+)*")
_MAX_REPLY = 200  # characters of an SMTP reply kept in an error message


class EmailConfig(SinkConfig):
    TEMPLATES: ClassVar[tuple[str, ...]] = ("title", "subject", "text", "html")  # subject defaults to the title
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    to: list[str] = Field(min_length=1)
    from_: str = Field(alias="from")
    smarthost: str  # "host:port"
    auth_username: str | None = None
    auth_password: SecretStr | None = None
    auth_password_file: Path | None = None
    tls: Literal["starttls", "tls", "none"] = "starttls"
    hello: str = "localhost"  # the EHLO name
    insecure_skip_verify: bool = False
    ca_file: Path | None = None

    @field_validator("to")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        for address in value:
            envelope_address(address)
        return value

    @field_validator("from_")
    @classmethod
    def _sender(cls, value: str) -> str:
        envelope_address(value)
        return value

    @field_validator("smarthost")
    @classmethod
    def _smarthost(cls, value: str) -> str:
        split_smarthost(value)
        return value

    @field_validator("hello")
    @classmethod
    def _hello(cls, value: str) -> str:
        if not value or any(c.isspace() for c in value) or not value.isascii():
            raise ValueError("must be one non-empty word of ASCII (a host name)")
        return value

    @field_validator("auth_username")
    @classmethod
    def _username(cls, value: str | None) -> str | None:
        if value is not None:
            ascii_credential(value, "")
        return value

    @model_validator(mode="after")
    def _auth(self) -> Self:
        if self.auth_password is not None and self.auth_password_file is not None:
            raise ValueError("set at most one of auth_password and auth_password_file")
        has_password = self.auth_password is not None or self.auth_password_file is not None
        if has_password != (self.auth_username is not None):
            raise ValueError("auth_username and auth_password (or auth_password_file) go together")
        if has_password and self.tls == "none" and not _loopback(split_smarthost(self.smarthost)[0]):
            raise ValueError("auth needs tls: starttls or tls (the password would cross the network in clear)")
        if self.auth_password is not None:
            ascii_credential(self.auth_password.get_secret_value(), "auth_password")
        return self


def ascii_credential(value: str, key: str) -> None:
    """smtplib sends the user name and password as ASCII (AUTH PLAIN, LOGIN, CRAM-MD5): anything else would
    fail every send, so it is refused now (the error does not repeat the value)."""
    if not value.isascii():
        raise ValueError(f"{key + ': ' if key else ''}only ASCII characters can be sent (smtplib's AUTH)")


def envelope_address(value: str) -> str:
    """The bare address of `a@b` or `Name <a@b>`; ValueError if there is none or it spans lines."""
    if "\r" in value or "\n" in value:
        raise ValueError("an email address cannot contain line breaks")
    address = parseaddr(value)[1]
    if "@" not in address:
        raise ValueError(f"not an email address: {value!r}")
    return address


def split_smarthost(value: str) -> tuple[str, int]:
    """`host:port` or `[v6 address]:port` to (host, port)."""
    host, sep, port = value.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"smarthost must be host:port, got {value!r}")
    return host, int(port)


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _StartTLSMissing(Exception):
    pass


# ---- rendering ---------------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    return " ".join(text.split())


def message_id(notification: Notification, sender: str) -> str:
    """`<delivery id@sender's domain>`: the same for every attempt at the same delivery."""
    local = notification.id if _DOT_ATOM.fullmatch(notification.id) else ""
    if not local or len(local) > 64:
        local = hashlib.sha256(notification.id.encode()).hexdigest()[:32]
    domain = sender.rpartition("@")[2]
    if not _DOT_ATOM.fullmatch(domain):
        domain = "streamalert.invalid"
    return f"<{local}@{domain}>"


def _labels(alert: Alert) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k != "alertname")


def _is_link(url: str) -> bool:
    return url.startswith(("https://", "http://"))


def render_text(notification: Notification) -> str:
    lines = [notification.title(), ""]
    for heading, alerts in (("Firing", notification.firing), ("Resolved", notification.resolved)):
        if not alerts:
            continue
        lines += [f"{heading} ({len(alerts)}):", ""]
        for alert in alerts:
            severity = f" [{alert.severity}]" if alert.severity else ""
            lines.append(f"* {alert.name or 'alert'}{severity}")
            for key in ("summary", "description"):
                if alert.annotations.get(key):
                    lines.append(f"  {alert.annotations[key]}")
            if labels := _labels(alert):
                lines.append(f"  Labels: {labels}")
            lines.append(f"  Started: {alert.starts_at}")
            if alert.status == "resolved":
                lines.append(f"  Ended: {alert.ends_at}")
            lines.append(f"  Value: {alert.value}")
            if runbook := alert.annotations.get("runbook_url"):
                lines.append(f"  Runbook: {runbook}")
            lines.append("")
    if notification.group_labels:
        lines.append("Group: " + ", ".join(f"{k}={v}" for k, v in sorted(notification.group_labels.items())))
    lines.append(f"Receiver: {notification.receiver}")
    if notification.external_url:
        lines.append(notification.external_url)
    if notification.truncated_alerts:
        lines.append(f"{notification.truncated_alerts} more alerts not shown.")
    return "\n".join(lines) + "\n"


def render_html(notification: Notification) -> str:
    def e(text: object) -> str:
        return html.escape(str(text), quote=True)

    def link(url: str, text: str) -> str:
        return f'<a href="{e(url)}">{e(text)}</a>' if _is_link(url) else e(url)

    color = "#c0392b" if notification.status == "firing" else "#27ae60"
    parts = [
        "<!DOCTYPE html>",
        '<html><head><meta charset="utf-8"></head><body style="font-family: sans-serif">',
        f'<h2 style="color: {color}">{e(notification.title())}</h2>',
    ]
    for heading, alerts in (("Firing", notification.firing), ("Resolved", notification.resolved)):
        if not alerts:
            continue
        parts.append(f"<h3>{heading} ({len(alerts)})</h3>")
        parts.append("<ul>")
        for alert in alerts:
            severity = f" [{e(alert.severity)}]" if alert.severity else ""
            item = [f"<li><strong>{e(alert.name or 'alert')}</strong>{severity}"]
            for key in ("summary", "description"):
                if alert.annotations.get(key):
                    item.append(f"<br>{e(alert.annotations[key])}")
            if labels := _labels(alert):
                item.append(f"<br><small>Labels: {e(labels)}</small>")
            item.append(f"<br><small>Started: {e(alert.starts_at)}")
            if alert.status == "resolved":
                item.append(f", ended: {e(alert.ends_at)}")
            item.append(f", value: {e(alert.value)}</small>")
            if runbook := alert.annotations.get("runbook_url"):
                item.append(f"<br>Runbook: {link(runbook, runbook)}")
            item.append("</li>")
            parts.append("".join(item))
        parts.append("</ul>")
    footer = []
    if notification.group_labels:
        group = ", ".join(f"{k}={v}" for k, v in sorted(notification.group_labels.items()))
        footer.append(f"Group: {e(group)}")
    footer.append(f"Receiver: {e(notification.receiver)}")
    if notification.external_url:
        footer.append(link(notification.external_url, notification.external_url))
    if notification.truncated_alerts:
        footer.append(f"{e(notification.truncated_alerts)} more alerts not shown.")
    parts.append(f"<p><small>{'<br>'.join(footer)}</small></p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def build_message(notification: Notification, config: EmailConfig) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = _one_line(notification.template("subject") or notification.title())
    message["From"] = config.from_
    message["To"] = ", ".join(config.to)
    with contextlib.suppress(ValueError):  # without a Date header, the relay adds one
        message["Date"] = format_datetime(datetime.fromisoformat(notification.at))
    message["Message-ID"] = message_id(notification, envelope_address(config.from_))
    message[DELIVERY_HEADER] = _one_line(notification.id)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(notification.template("text") or render_text(notification))
    message.add_alternative(notification.template("html") or render_html(notification), subtype="html")
    return message


# ---- sending -----------------------------------------------------------------------------------------------


class EmailSink:
    def __init__(self, config: EmailConfig) -> None:
        self.config = config
        self._host, self._port = split_smarthost(config.smarthost)
        self._password: str | None = None
        if config.auth_username is not None:
            self._password = secret(config.auth_password, config.auth_password_file, "auth_password")
            ascii_credential(self._password, "auth_password" if config.auth_password else "auth_password_file")
        self._context: ssl.SSLContext | None = None
        if config.tls != "none":
            self._context = _tls_context(config)
        self._from = envelope_address(config.from_)
        self._to = [envelope_address(a) for a in config.to]
        # notification id -> recipients that accepted it (a retry after a partial refusal skips them)
        self._delivered: OrderedDict[str, set[str]] = OrderedDict()

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        if not self.config.send_resolved and notification.resolved:
            firing = tuple(notification.firing)
            if not firing:
                return
            notification = dataclasses.replace(notification, alerts=firing)
        delivered = self._delivered.setdefault(notification.id, set())
        self._delivered.move_to_end(notification.id)
        while len(self._delivered) > _REMEMBERED:
            self._delivered.popitem(last=False)
        recipients = [r for r in self._to if r not in delivered]
        if not recipients:
            return
        message = build_message(notification, self.config)
        import asyncio  # noqa: PLC0415 (on use, as smtplib: loading a config needs neither)
        import smtplib  # noqa: PLC0415

        try:
            loop = asyncio.get_running_loop()  # its own threads: a hanging server cannot starve DNS lookups
            refused = await loop.run_in_executor(_smtp_threads(), self._deliver, message, recipients)
        except (smtplib.SMTPException, OSError, _StartTLSMissing) as exc:
            raise self._error(exc) from None
        delivered.update(r for r in recipients if r not in refused)
        if refused:
            raise _refused(refused, len(recipients))

    def _deliver(self, message: EmailMessage, recipients: list[str]) -> dict[str, tuple[int, bytes]]:
        """One SMTP session (in a worker thread). Returns the refused recipients when some were accepted."""
        import smtplib  # noqa: PLC0415 (on use)

        timeout = self.config.timeout_s() or 60.0  # a socket timeout also ends the thread of a timed-out send
        client: smtplib.SMTP
        if self.config.tls == "tls":
            client = smtplib.SMTP_SSL(
                self._host, self._port, local_hostname=self.config.hello, timeout=timeout, context=self._context
            )
        else:
            client = smtplib.SMTP(self._host, self._port, local_hostname=self.config.hello, timeout=timeout)
        try:
            client.ehlo_or_helo_if_needed()
            if self.config.tls == "starttls":
                if not client.has_extn("starttls"):
                    raise _StartTLSMissing
                client.starttls(context=self._context)
                client.ehlo()
            if self.config.auth_username is not None and self._password is not None:
                client.login(self.config.auth_username, self._password)
            refused = client.send_message(message, from_addr=self._from, to_addrs=recipients)
            with contextlib.suppress(smtplib.SMTPException, OSError):
                client.quit()  # the message is accepted: a failing QUIT changes nothing
            return refused
        finally:
            client.close()

    def _error(self, exc: BaseException) -> DeliveryError:
        """The DeliveryError for a failed session: no password, host or address in the message."""
        import smtplib  # noqa: PLC0415 (on use)
        import ssl  # noqa: PLC0415

        if isinstance(exc, _StartTLSMissing):
            return DeliveryError(
                "email: the server does not offer STARTTLS (tls: starttls requires it)", retryable=False
            )
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            return _refused(exc.recipients, len(exc.recipients))
        if isinstance(exc, smtplib.SMTPResponseException):
            code = exc.smtp_code
            step = {
                smtplib.SMTPAuthenticationError: "login refused",
                smtplib.SMTPSenderRefused: "sender refused",
                smtplib.SMTPDataError: "message refused",
                smtplib.SMTPConnectError: "connection refused by the server",
                smtplib.SMTPHeloError: "EHLO refused",
            }.get(type(exc), "server refused")
            text = self._reply(exc.smtp_error)
            return DeliveryError(
                f"email: {step}: SMTP {code}" + (f" {text}" if text else ""),
                retryable=not 500 <= code < 600,
                status=code,
            )
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            if isinstance(exc.__context__, TimeoutError):  # smtplib reports a read timeout as a disconnect
                return DeliveryError("email: timed out", retryable=True)
            return DeliveryError("email: the server closed the connection", retryable=True)
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return DeliveryError(f"email: {self._reply(str(exc))}", retryable=False)
        if isinstance(exc, ssl.SSLCertVerificationError):
            reason = self._scrub(exc.verify_message or "verification failed")
            return DeliveryError(f"email: TLS certificate not trusted ({reason})", retryable=False)
        if isinstance(exc, TimeoutError):
            return DeliveryError("email: timed out", retryable=True)
        if isinstance(exc, smtplib.SMTPException):  # e.g. no AUTH mechanism in common
            return DeliveryError(f"email: {self._reply(str(exc))}", retryable=False)
        if isinstance(exc, socket.gaierror):
            return DeliveryError(f"email: DNS lookup failed ({self._os_reason(exc)})", retryable=True)
        if isinstance(exc, ssl.SSLError):  # e.g. implicit TLS to a server that speaks plain SMTP
            return DeliveryError(f"email: TLS handshake failed ({self._scrub(str(exc))})", retryable=True)
        if isinstance(exc, OSError):
            return DeliveryError(f"email: cannot connect ({self._os_reason(exc)})", retryable=True)
        return DeliveryError(f"email: connection failed ({type(exc).__name__})", retryable=True)

    def _os_reason(self, exc: OSError) -> str:
        """The OS's words for a socket error (`Connection refused`), never the address it may name."""
        if isinstance(exc.errno, int) and exc.errno > 0:
            return os.strerror(exc.errno)
        return scrub(self._scrub(exc.strerror or type(exc).__name__))

    def _reply(self, raw: bytes | str) -> str:
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        return self._scrub(_one_line(text))[:_MAX_REPLY]

    def _scrub(self, text: str) -> str:
        """Server or TLS text without the password or the server's address (a 421 names the server)."""
        for hidden, mark in (
            (self._password, "***"),
            (self.config.smarthost, "<smarthost>"),
            (self._host, "<smarthost>"),
        ):
            if hidden:
                text = text.replace(hidden, mark)
        return text


def _refused(refused: dict[str, tuple[int, bytes]], attempted: int) -> DeliveryError:
    codes = sorted({code for code, _ in refused.values()})
    retryable = any(not 500 <= code < 600 for code in codes)
    return DeliveryError(
        f"email: {len(refused)} of {attempted} recipients refused (SMTP {', '.join(map(str, codes))})",
        retryable=retryable,
        status=codes[0] if codes else None,
    )


@functools.cache
def _smtp_threads() -> concurrent.futures.ThreadPoolExecutor:
    """The threads SMTP sessions run in (smtplib blocks), made on first use; an abandoned attempt ends by its
    socket timeout."""
    import concurrent.futures  # noqa: PLC0415 (on use)

    return concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="streamalert-smtp")


def _tls_context(config: EmailConfig) -> ssl.SSLContext:
    import ssl  # noqa: PLC0415 (when a sink is built: loading a config does not need it)

    try:
        context = ssl.create_default_context(cafile=str(config.ca_file) if config.ca_file else None)
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(f"ca_file: cannot load {config.ca_file}: {exc}") from None
    if config.insecure_skip_verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


KIND = SinkKind("email", EmailConfig, EmailSink)
