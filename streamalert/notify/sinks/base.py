"""The one interface every sink implements, and what sinks share: config base, secrets, HTTP posting, errors.

A sink turns one `Notification` into one or more requests to its destination. It does not retry: it raises
`DeliveryError` saying whether a retry can help (`retryable`) and how long the destination asked us to wait
(`retry_after`). The sender (streamalert.notify.sender) is the one place that retries, times out and
dead-letters. Error messages name the sink and the HTTP status, never a URL, token or key.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Generic, Protocol, TypeVar, overload

import aiohttp
import orjson
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
    url: str,
    payload: Any,
    *,
    what: str,
    headers: Mapping[str, str] | None = None,
) -> Any:
    """POST `payload` as JSON; return the decoded JSON answer (None if not JSON). Raises DeliveryError on any
    non-2xx answer or transport failure, classified for the sender, with `what` (the sink) and the status
    in the message and never the URL (webhook URLs and bot tokens are secrets)."""
    body = orjson.dumps(payload)
    all_headers = {"Content-Type": "application/json", **(headers or {})}
    try:
        async with http.post(url, data=body, headers=all_headers) as response:
            raw = await response.read()
            status = response.status
            retry_header = response.headers.get("Retry-After")
    except aiohttp.ClientError as exc:
        # aiohttp's messages can contain the URL: keep only the exception type
        raise DeliveryError(f"{what}: connection failed ({type(exc).__name__})", retryable=True) from None
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
    raise DeliveryError(f"{what}: HTTP {status}", retryable=retryable, retry_after=retry_after, status=status)
