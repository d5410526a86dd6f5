"""apprise: the long tail of channels (Google Chat, Mattermost, Rocket.Chat, Pushover, SNS, ntfy, ...) through the
`apprise` library, one message per notification: best effort.

`url` / `url_file` is one Apprise URL (`gchat://...`, `mmosts://...`, `json://host/path`, ...): a secret, since
such URLs carry the service's token; it is never echoed. The message is a title (`Notification.title()`) and a
plain-text body (one paragraph per alert: status, name, severity, value, summary, labels, runbook), with
Apprise's notify type from the status and the highest severity. The `title` and `text` templates (Apprise's
title and body) replace them; the body in `body_format`, cut to MAX_BODY.

Best effort, because Apprise hides what the service answered: the status is read from Apprise's own log
records (`error=<status>`, kept to this sink, never passed on: they name hosts), so 429 and 5xx are retried and
other 4xx are not, but a 429's Retry-After is not seen (the sender's own backoff applies) and there is no
delivery-id dedup where the service has none (only the json://, form:// and xml:// targets get the
`X-Streamalert-Delivery` header). A service whose plugin logs no status counts as a retryable failure.

Apprise is imported when a sink is built, not when a config is loaded (it costs a few hundred milliseconds);
its blocking send runs in a worker thread with the sink's `timeout` as its socket timeouts.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self
from urllib.parse import urlsplit

from pydantic import SecretStr, model_validator

from streamalert.notify.model import Notification, severity_rank
from streamalert.notify.sinks.base import DeliveryError, SinkConfig, SinkKind, answer_detail, one_secret, secret
from streamalert.notify.sinks.endpoint import hidden_strings, scrub
from streamalert.notify.sinks.text import DELIVERY_HEADER, is_http_url, labels_line, ordered_alerts

if TYPE_CHECKING:
    import aiohttp

WHAT = "apprise"
MAX_ALERTS = 20
MAX_BODY = 4000  # characters; Apprise splits or cuts further to each service's limit
_SCHEME = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S+")
_STATUS = re.compile(r"error=(\d{3})\b")
_ERRNO = re.compile(r"\[Errno (\d+)\]")
_TOKEN_LIKE = re.compile(r"(?=.*[^A-Za-z]).{8,}")
_LOGGER = "apprise"


class AppriseConfig(SinkConfig):
    TEMPLATES: ClassVar[tuple[str, ...]] = ("title", "text")  # the title, and the body
    url: SecretStr | None = None  # one Apprise URL
    url_file: Path | None = None
    body_format: Literal["text", "markdown"] = "text"

    @model_validator(mode="after")
    def _one_url(self) -> Self:
        one_secret(self.url, self.url_file, "url")
        if self.url is not None:
            check_url(self.url.get_secret_value(), "url")
        return self


def check_url(url: str, key: str) -> None:
    """The shape of an Apprise URL (`scheme://...`, no whitespace), without importing Apprise; whether
    Apprise knows the scheme is checked when the sink is built."""
    if not _SCHEME.fullmatch(url):
        raise ValueError(f"{key}: must be an Apprise URL (scheme://...)")


def url_secrets(url: str) -> tuple[str, ...]:
    """The URL and its parts that may be secret: netloc, user, password, path, query, token-like segments."""
    parts = urlsplit(url)
    found = [url, parts.netloc, parts.path, parts.query, parts.username, parts.password, parts.hostname]
    found += [
        t for t in re.split(r"[/?&=;:@]", f"{parts.netloc}{parts.path}?{parts.query}") if _TOKEN_LIKE.fullmatch(t)
    ]
    return hidden_strings(found)


def notify_type(notification: Notification) -> str:
    """Apprise's type: success once resolved, else failure / warning / info by the highest severity."""
    if notification.status == "resolved":
        return "success"
    top = max(severity_rank(a.labels) for a in notification.firing)
    return "failure" if top >= 2 else "warning" if top == 1 else "info"


def _cut(text: str) -> str:
    return text if len(text) <= MAX_BODY else text[: MAX_BODY - 1] + "…"


def body(notification: Notification) -> str:
    """The `text` template's output if set (and not empty), else one paragraph per alert, firing first and most
    severe first; at most MAX_ALERTS, then "and N more"."""
    templated = notification.template("text")
    if templated:
        return _cut(templated)
    alerts = ordered_alerts(notification)
    paragraphs = []
    for alert in alerts[:MAX_ALERTS]:
        head = f"[{alert.status.upper()}] {alert.name or '(unnamed)'}"
        if alert.severity:
            head += f" ({alert.severity})"
        value = f"{alert.value:g}" if isinstance(alert.value, float) else str(alert.value)
        lines = [f"{head} value={value}"]
        summary = alert.annotations.get("summary") or alert.annotations.get("description")
        if summary:
            lines.append(" ".join(summary.split())[:500])
        labels = labels_line(alert, notification.common_labels)
        if labels:
            lines.append(labels[:500])
        runbook = alert.annotations.get("runbook_url", "")
        if is_http_url(runbook):
            lines.append(f"Runbook: {runbook}")
        paragraphs.append("\n".join(lines))
    hidden = len(alerts) - min(len(alerts), MAX_ALERTS) + notification.truncated_alerts
    if hidden > 0:
        paragraphs.append(f"and {hidden} more")
    if is_http_url(notification.external_url):
        paragraphs.append(notification.external_url)
    return _cut("\n\n".join(paragraphs))


class _Capture(logging.Handler):
    """Apprise's log records of one thread (one send): where the status and the cause are."""

    def __init__(self, thread: int) -> None:
        super().__init__(logging.DEBUG)
        self.thread = thread
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread:
            self.records.append(record)


def _quiet_apprise_logger() -> None:
    """Apprise's records name hosts and URLs: they stay with the sink (the capture), not the service's log."""
    logger = logging.getLogger(_LOGGER)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)


class AppriseSink:
    def __init__(self, config: AppriseConfig) -> None:
        import apprise  # noqa: PLC0415 (on use: loading a config does not pay for importing Apprise)

        self.config = config
        key = "url" if config.url is not None else "url_file"
        self._url = secret(config.url, config.url_file, "url")
        check_url(self._url, key)
        self._hidden = url_secrets(self._url)
        _quiet_apprise_logger()
        scheme = self._url.partition("://")[0].lower()
        if apprise.Apprise.instantiate(self._url) is None:
            raise ValueError(
                f"{key}: Apprise cannot use this URL (scheme {scheme!r}: unknown, or the URL is incomplete)"
            )
        self._scheme = scheme

    def _send_blocking(self, title: str, text: str, kind: str, delivery: str) -> list[logging.LogRecord]:
        """Send in this (worker) thread; the records Apprise logged, or [] when the service accepted it."""
        import apprise  # noqa: PLC0415

        capture = _Capture(threading.get_ident())
        logger = logging.getLogger(_LOGGER)
        logger.addHandler(capture)
        try:
            # a plugin of its own per send: the delivery header differs per notification, sends may overlap
            plugin: Any = apprise.Apprise.instantiate(self._url)
            if plugin is None:  # the URL was usable when the sink was built: a file changed since?
                raise DeliveryError(f"{WHAT}: Apprise cannot use the URL (scheme {self._scheme!r})", retryable=False)
            timeout = self.config.timeout_s()
            plugin.socket_connect_timeout = plugin.socket_read_timeout = timeout
            if isinstance(getattr(plugin, "headers", None), dict):  # json://, form://, xml://
                plugin.headers[DELIVERY_HEADER] = delivery
            ok = plugin.notify(
                body=text, title=title, notify_type=apprise.NotifyType(kind), body_format=self.config.body_format
            )
        finally:
            logger.removeHandler(capture)
        return [] if ok else capture.records or [_no_record()]

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        import asyncio  # noqa: PLC0415 (on use: loading a config needs no event loop)

        records = await asyncio.to_thread(
            self._send_blocking, notification.title(), body(notification), notify_type(notification), notification.id
        )
        if records:
            raise self.error(records)

    def error(self, records: list[logging.LogRecord]) -> DeliveryError:
        """The DeliveryError Apprise's records of a failed send describe: the HTTP status if logged, else the
        connection failure, else Apprise's last warning; scrubbed of the URL and its parts."""
        messages = [_message(r) for r in records]
        for text in messages:
            found = _STATUS.search(text)
            if found:
                status = int(found.group(1))
                detail = self._answer(records)
                retryable = status == 429 or status >= 500 or status == 408
                return DeliveryError(
                    f"{WHAT}: HTTP {status}" + (f": {detail}" if detail else ""), retryable=retryable, status=status
                )
        for text in messages:
            if text.startswith("Socket Exception"):
                errno = _ERRNO.search(text)
                if errno:
                    return DeliveryError(f"{WHAT}: cannot connect ({os.strerror(int(errno.group(1)))})", retryable=True)
                if "timed out" in text.lower():
                    return DeliveryError(f"{WHAT}: timed out after {self.config.timeout}", retryable=True)
                return DeliveryError(f"{WHAT}: request failed ({scrub(text, self._hidden)})", retryable=True)
        warnings = [m for r, m in zip(records, messages, strict=True) if r.levelno >= logging.WARNING]
        said = scrub(warnings[-1] if warnings else messages[-1], self._hidden)
        return DeliveryError(f"{WHAT}: the {self._scheme} service did not accept the message ({said})", retryable=True)

    def _answer(self, records: list[logging.LogRecord]) -> str:
        """What the service's error answer said, when the plugin logged it (json://: "Response Details")."""
        import orjson  # noqa: PLC0415

        for record in records:
            if str(record.msg).startswith("Response Details") and record.args:
                args = record.args if isinstance(record.args, tuple) else (record.args,)
                raw = args[0] if isinstance(args[0], bytes) else str(args[0]).encode()
                try:
                    answer: Any = orjson.loads(raw) if raw else None
                except orjson.JSONDecodeError:
                    answer = None
                return answer_detail(answer, raw, self._hidden)
        return ""

    def redact(self, text: str) -> str:
        return scrub(text, self._hidden)


def _message(record: logging.LogRecord) -> str:
    try:
        return record.getMessage()
    except (TypeError, ValueError):
        return str(record.msg)


def _no_record() -> logging.LogRecord:
    return logging.LogRecord(_LOGGER, logging.WARNING, "", 0, "the service refused the message", None, None)


KIND = SinkKind("apprise", AppriseConfig, AppriseSink)
