"""The one interface every sink implements, and what sinks share: config base, secrets, HTTP posting, errors.

A sink turns one `Notification` into one or more requests to its destination. It does not retry: it raises
`DeliveryError` saying whether a retry can help (`retryable`) and how long the destination asked us to wait
(`retry_after`). The sender (streamalert.notify.sender) is the one place that retries, times out and
dead-letters. Error messages name the sink and the cause (the HTTP status and what the answer says, "DNS
lookup failed", "TLS certificate not trusted", ...), never a URL, host, token or key: `scrub` removes them.

Sink URLs may carry `user:password@`: `http_target` takes it out of the URL and sends it as HTTP basic auth
(percent-decoded, UTF-8), the way Go's HTTP client (so Alertmanager) does. A sink with another way to
authenticate (a bearer token) refuses both at once, as Alertmanager's http_config refuses more than one.
"""

from __future__ import annotations

import base64
import math
import os
import re
import ssl
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, overload, runtime_checkable
from urllib.parse import quote, unquote, urlsplit

import aiohttp
import orjson
import yarl
from pydantic import BaseModel, ConfigDict, SecretStr, field_validator

from streamalert.durations import parse_duration
from streamalert.notify.model import Notification


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

    model_config = ConfigDict(extra="forbid")

    send_resolved: bool = True
    timeout: str = "10s"  # per attempt

    @field_validator("timeout")
    @classmethod
    def _duration(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("must be more than 0")
        return value

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


# ---- URLs, credentials and what errors may say --------------------------------------------------------------

_CONTROL = re.compile(r"[\x00-\x20\x7f]")  # control characters and whitespace: never valid in a URL or a token
_URL_TEXT = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://\S*")
_IPV4 = re.compile(r"(?<![\d.])\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?(?![\d.])")
_IPV6 = re.compile(r"\[[0-9A-Fa-f:.%]+\](?::\d+)?")
_HOST_PORT = re.compile(r"(?<![\w.-])[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)+:\d{1,5}(?!\d)")
_TAG = re.compile(r"<[^>]{0,200}>")
_TOKEN_LIKE = re.compile(r"(?=.*[^A-Za-z]).{8,}")  # 8 characters or more, not only letters: not a plain word
_MAX_DETAIL = 200  # characters of a cause (exception text, answer body) kept in an error message


@dataclass(frozen=True, slots=True)
class Target:
    """An endpoint as requests go to it: the URL without userinfo, the `Authorization` value its userinfo
    gives (None: none), and the strings no error may repeat (the URL and its parts)."""

    url: str
    authorization: str | None
    hidden: tuple[str, ...]

    def headers(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        """`extra` plus the basic auth of the userinfo, if any."""
        out = dict(extra or {})
        if self.authorization is not None:
            out["Authorization"] = self.authorization
        return out


def http_target(url: str, key: str, *, query: bool = True) -> Target:
    """Check `url` the way the HTTP client will read it at send time and split off its userinfo. ValueError
    names `key` (none when "": a field validator, whose field pydantic names) and never repeats the URL (it may
    be a secret). `query=False`: a base URL, no query or fragment."""
    where = f"{key}: " if key else ""
    if _CONTROL.search(url):
        raise ValueError(f"{where}the URL contains a space or a control character")
    parts = urlsplit(url)
    if parts.scheme.lower() not in {"http", "https"} or not parts.netloc:
        raise ValueError(f"{where}must be an absolute http:// or https:// URL")
    if not query and (parts.query or parts.fragment):
        raise ValueError(f"{where}a base URL cannot have a query (?) or fragment (#)")
    if not parts.hostname:
        raise ValueError(f"{where}the URL has no host")
    try:
        port = parts.port
        parsed = yarl.URL(url)
    except ValueError:
        raise ValueError(f"{where}not a valid URL (its host or port cannot be read)") from None
    if not parsed.host:
        raise ValueError(f"{where}the URL has no host")
    if port == 0:
        raise ValueError(f"{where}the port must be 1 to 65535")
    userinfo, at, hostport = parts.netloc.rpartition("@")
    authorization = None
    hidden = [url, parts.netloc, hostport, parts.hostname, parts.path, parts.query]
    # a token in the URL is usually one path segment or query value (`/services/T000/B000/XXXX`, `?key=...`)
    hidden += [t for t in re.split(r"[/?&=;]", f"{parts.path}?{parts.query}") if _TOKEN_LIKE.fullmatch(t)]
    if at:
        raw_user, _, raw_password = userinfo.partition(":")
        try:
            user, password = unquote(raw_user, errors="strict"), unquote(raw_password, errors="strict")
        except UnicodeDecodeError:
            raise ValueError(f"{where}the user:password in the URL is not UTF-8 once percent-decoded") from None
        if ":" in user:  # RFC 7617: the user id cannot contain a colon
            raise ValueError(f"{where}the user name in the URL cannot contain ':' (%3A)")
        credentials = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        authorization = f"Basic {credentials}"
        start = len(parts.scheme) + 3  # after "scheme://"
        url = url[:start] + url[start + len(userinfo) + 1 :]
        hidden += [url, userinfo, raw_user, raw_password, user, password, credentials]
    return Target(url, authorization, _hidden(hidden))


def refuse_two_auths(url: str | None, key: str, other: str) -> None:
    """Config check: a URL with userinfo (basic auth) and `other` (a bearer token) are one auth too many."""
    if url is not None and urlsplit(url).netloc.rpartition("@")[1]:
        raise ValueError(
            f"{key}: the URL carries user:password@ (basic auth) and {other} is set too; set only one way to "
            "authenticate"
        )


def bearer_token(value: SecretStr | None, file: Path | None) -> str | None:
    """The optional `bearer_token` / `bearer_token_file`, checked as an HTTP header value (the file is read now)."""
    token = secret(value, file, "bearer_token", optional=True)
    if token is not None:
        check_token(token, "bearer_token" if value is not None else "bearer_token_file")
    return token


def check_token(token: str, key: str) -> None:
    """A token sent in a header: not empty, no whitespace or control character (the HTTP client refuses
    them at send time)."""
    if not token:
        raise ValueError(f"{key}: empty")
    if _CONTROL.search(token):
        raise ValueError(f"{key}: contains a space or a control character")


def _hidden(values: Iterable[str | None]) -> tuple[str, ...]:
    """Non-trivial strings to scrub, longest first (so a URL goes before its parts)."""
    found = {v for v in values if v and v != "/"}
    return tuple(sorted(found, key=len, reverse=True))


def scrub(text: str, hidden: Iterable[str] = ()) -> str:
    """`text` on one line, at most _MAX_DETAIL characters, without the `hidden` strings (and their
    percent-encoded forms), URLs, IP addresses or host:port: safe to log and to keep in a dead letter."""
    text = " ".join(text.split())
    for value in _hidden(h for v in hidden for h in (v, quote(v, safe="/"))):
        text = text.replace(value, "***")
    for pattern, mark in ((_URL_TEXT, "<url>"), (_IPV6, "<address>"), (_IPV4, "<address>"), (_HOST_PORT, "<host>")):
        text = pattern.sub(mark, text)
    return text if len(text) <= _MAX_DETAIL else text[: _MAX_DETAIL - 1] + "…"


def describe(exc: BaseException, hidden: Iterable[str] = ()) -> str:
    """`ExceptionType: scrubbed message` (just the type when it says nothing)."""
    text = scrub(str(exc), hidden)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


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
