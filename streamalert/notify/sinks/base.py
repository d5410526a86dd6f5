"""The one interface every sink implements, and what sinks share: config base, secrets, HTTP posting, errors.

A sink turns one `Notification` into one or more requests to its destination. It does not retry: it raises
`DeliveryError` saying whether a retry can help (`retryable`) and how long the destination asked us to wait
(`retry_after`). The sender (streamalert.notify.sender) is the one place that retries, times out and
dead-letters. Error messages name the sink and the cause (the HTTP status and what the answer says, "DNS
lookup failed", "TLS certificate not trusted", ...), never a URL, host, token or key (`endpoint.scrub`).

Sink URLs may carry `user:password@`: `endpoint.http_target` takes it out of the URL and `post_json` sends it
as HTTP basic auth. A sink with another way to authenticate (a bearer token) refuses both at once, as
Alertmanager's http_config refuses more than one.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Protocol, Self, TypeVar, overload, runtime_checkable

import orjson
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator, model_validator

from streamalert.durations import parse_duration
from streamalert.notify.model import Notification
from streamalert.notify.sinks.endpoint import Target, check_token, describe, http_target, scrub
from streamalert.notify.templates import FIELDS, check_syntax

if TYPE_CHECKING:  # aiohttp is imported where a request is made: `check` and `routes test` start without it
    import aiohttp


class DeliveryError(Exception):
    """A send that did not go through. `retryable`: 429, 5xx, timeouts, connection errors; not other 4xx."""

    def __init__(
        self, message: str, *, retryable: bool, retry_after: float | None = None, status: int | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after
        self.status = status


class SinkConfig(BaseModel):
    """Settings every sink has; a sink's own config class adds its fields. Unknown keys are errors."""

    # defer_build: a sink kind's validator is built when a config first uses that kind, so loading a config
    # does not pay for the other ten (bench/startup_bench.py)
    model_config = ConfigDict(extra="forbid", defer_build=True)

    send_resolved: bool = True
    timeout: str = "10s"  # per attempt
    # message templates (streamalert.notify.templates), rendered when the notification is made; a sink reads
    # the ones it names in TEMPLATES, and only those: one it would ignore is refused, so none by default (a
    # sink that shows `Notification.title()` lists "title")
    title: str | None = None
    text: str | None = None
    subject: str | None = None
    html: str | None = None
    summary: str | None = None
    TEMPLATES: ClassVar[tuple[str, ...]] = ()

    @field_validator("timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("must be more than 0")
        return value

    @field_validator(*FIELDS)
    @classmethod
    def _template(cls, value: str | None) -> str | None:
        return None if value is None else check_syntax(value)

    @model_validator(mode="after")
    def _templates_used(self) -> Self:
        for name in FIELDS:
            if getattr(self, name) is not None and name not in self.TEMPLATES:
                uses = ", ".join(self.TEMPLATES) or "none"
                raise ValueError(f"{name}: not a template this sink uses (templates it uses: {uses})")
        return self

    def template_sources(self) -> dict[str, str]:
        """The templates set, by field."""
        return {name: value for name in FIELDS if (value := getattr(self, name)) is not None}

    def timeout_s(self) -> float:
        return parse_duration(self.timeout) / 1000


C_contra = TypeVar("C_contra", bound=SinkConfig, contravariant=True)
C = TypeVar("C", bound=SinkConfig)


class Sink(Protocol):
    """Something that delivers a notification. `http` is the sender's shared client session."""

    @property
    def config(self) -> SinkConfig: ...

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None: ...


@runtime_checkable
class Redacting(Protocol):
    """A sink that knows its secrets: the sender passes the text of an unexpected exception through
    `redact` before it reports it (built-in sinks and any package's sink may implement it)."""

    def redact(self, text: str) -> str: ...


@dataclass(frozen=True, slots=True)
class SinkKind(Generic[C]):
    """A sink type as the registry knows it: its name (receivers say `<name>_configs`), its config class
    and how to build a sink from a validated config."""

    name: str
    config: type[C]
    build: Callable[[C], Sink]


@overload
def secret(value: SecretStr | None, file: Path | None, what: str) -> str: ...
@overload
def secret(value: SecretStr | None, file: Path | None, what: str, *, optional: bool) -> str | None: ...


def secret(value: SecretStr | None, file: Path | None, what: str, *, optional: bool = False) -> str | None:
    """A secret given inline (usually `${ENV}`) or in a file (`*_file`, read when the sink is built)."""
    if value is not None:
        return value.get_secret_value()
    if file is not None:
        try:
            return file.read_text(encoding="utf-8").strip()
        except OSError as exc:
            raise ValueError(f"{what}_file: cannot read {file}: {exc.strerror}") from None
    if optional:
        return None
    raise ValueError(f"{what} or {what}_file is required")


def one_secret(value: SecretStr | None, file: Path | None, what: str) -> None:
    """Config check: exactly one of `what` and `what_file`."""
    if (value is None) == (file is None):
        raise ValueError(f"set exactly one of {what} and {what}_file")


# ---- what errors say -----------------------------------------------------------------------------------------

_TAG = re.compile(r"<[^>]{0,200}>")


def bearer_token(value: SecretStr | None, file: Path | None) -> str | None:
    """The optional `bearer_token` / `bearer_token_file`, checked as an HTTP header value (the file is read now)."""
    token = secret(value, file, "bearer_token", optional=True)
    if token is not None:
        check_token(token, "bearer_token" if value is not None else "bearer_token_file")
    return token


def answer_detail(answer: Any, raw: bytes, hidden: Iterable[str] = ()) -> str:
    """What an error answer says, scrubbed: the message field of a JSON answer (Telegram's `description`,
    Discord's and PagerDuty's `message` and `errors`, Slack's `error`), else its text (HTML tags dropped)."""
    if isinstance(answer, dict):
        said = [answer[k] for k in ("description", "message", "error", "errors") if answer.get(k)]
        text = "; ".join(s if isinstance(s, str) else orjson.dumps(s).decode() for s in said)
        if not text:
            text = orjson.dumps(answer).decode()
    elif isinstance(answer, str):
        text = answer
    elif answer is not None:
        text = orjson.dumps(answer).decode()
    else:
        text = raw[:4096].decode("utf-8", "replace")
        if text.lstrip().startswith("<"):
            text = _TAG.sub(" ", text)
    return scrub(text, hidden)


def transport_error(what: str, exc: BaseException, hidden: Iterable[str] = ()) -> DeliveryError:
    """The DeliveryError for a request that got no HTTP answer, naming the cause (DNS, connection refused,
    TLS, the server hanging up, ...) and never the URL or host."""
    import ssl  # noqa: PLC0415 (on use: loading a config does not need the HTTP client)

    import aiohttp  # noqa: PLC0415

    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return DeliveryError(f"{what}: DNS lookup failed ({_os_reason(exc.os_error, hidden)})", retryable=True)
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        cert = exc.certificate_error
        reason = cert.verify_message if isinstance(cert, ssl.SSLCertVerificationError) else str(cert)
        return DeliveryError(f"{what}: TLS certificate not trusted ({scrub(reason or '', hidden)})", retryable=False)
    if isinstance(exc, aiohttp.ClientSSLError):
        reason = scrub(str(exc.os_error), hidden) or type(exc.os_error).__name__  # [SSL: WRONG_VERSION_NUMBER] ...
        return DeliveryError(f"{what}: TLS handshake failed ({reason})", retryable=True)
    if isinstance(exc, aiohttp.ClientConnectorError):
        return DeliveryError(f"{what}: cannot connect ({_os_reason(exc.os_error, hidden)})", retryable=True)
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return DeliveryError(f"{what}: the server closed the connection without answering", retryable=True)
    if isinstance(exc, aiohttp.InvalidURL):  # `check` refuses such URLs: a URL read from a file since?
        return DeliveryError(f"{what}: invalid URL (InvalidURL)", retryable=False)
    if isinstance(exc, aiohttp.ClientError):
        return DeliveryError(f"{what}: request failed ({describe(exc, hidden)})", retryable=True)
    # the client refused to build the request (a header it will not send): no retry changes that
    return DeliveryError(f"{what}: request refused by the HTTP client ({describe(exc, hidden)})", retryable=False)


def _os_reason(error: OSError, hidden: Iterable[str]) -> str:
    """The OS's words for an error, without the address it names (`Connect call failed ('10.0.0.1', 443)`)."""
    if isinstance(error.errno, int) and error.errno > 0:
        return os.strerror(error.errno)
    return scrub(error.strerror or str(error) or type(error).__name__, hidden)


def retry_after_header(value: str | None) -> float | None:
    """Retry-After in seconds. The HTTP-date form is ignored (reading it needs the wall clock): the sender's
    own backoff applies instead. Unreadable values are ignored too."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def _retry_after_body(body: Any) -> float | None:
    """Discord: {"retry_after": 1.5}; Telegram: {"parameters": {"retry_after": 3}}."""
    if not isinstance(body, dict):
        return None
    for candidate in (body.get("retry_after"), (body.get("parameters") or {}).get("retry_after")):
        if isinstance(candidate, int | float) and not isinstance(candidate, bool) and candidate >= 0:
            return float(candidate)
    return None


async def post_json(
    http: aiohttp.ClientSession,
    url: str | Target,
    payload: Any,
    *,
    what: str,
    headers: Mapping[str, str] | None = None,
    hidden: Iterable[str] = (),
) -> Any:
    """POST `payload` as JSON; return the decoded JSON answer (None if not JSON). Raises DeliveryError on any
    non-2xx answer or transport failure, classified for the sender, naming `what` (the sink) and the cause:
    the status and what the answer says, or why no answer came. Never the URL (webhook URLs and bot tokens
    are secrets), header values or `hidden` (say, a routing key in the body)."""
    import aiohttp  # noqa: PLC0415 (on use: loading a config does not need the HTTP client)

    try:
        target = url if isinstance(url, Target) else http_target(url, "url")
    except ValueError as exc:  # a sink that checks its URL only now: no retry makes it valid
        raise DeliveryError(f"{what}: {exc}", retryable=False) from None
    body = orjson.dumps(payload)
    all_headers = {"Content-Type": "application/json", **target.headers(headers)}
    credentials = [v for k, v in all_headers.items() if k.lower() == "authorization"]
    secrets = (*target.hidden, *hidden, *credentials, *(v.partition(" ")[2] for v in credentials))
    try:
        async with http.post(target.url, data=body, headers=all_headers) as response:
            raw = await response.read()
            status = response.status
            retry_header = response.headers.get("Retry-After")
    except (aiohttp.ClientError, ValueError, TypeError) as exc:
        raise transport_error(what, exc, secrets) from None
    try:
        answer: Any = orjson.loads(raw) if raw else None
    except orjson.JSONDecodeError:
        answer = None
    if 200 <= status < 300:
        return answer
    retry_after = retry_after_header(retry_header)
    if retry_after is None:
        retry_after = _retry_after_body(answer)
    retryable = status == 429 or status >= 500 or status == 408
    detail = answer_detail(answer, raw, secrets)
    message = f"{what}: HTTP {status}" + (f": {detail}" if detail else "")
    raise DeliveryError(message, retryable=retryable, retry_after=retry_after, status=status)
