"""pagerduty: PagerDuty Events API v2, one alert event per alert of the notification.

A firing alert is sent as `trigger` with a PD-CEF `payload`; a resolved one as `resolve`. The payload's
`severity` is the alert's severity level, or what `severity_map` says for its `severity` label (`page: critical`);
`custom_details` carries the labels, annotations, value, receiver and group labels, plus the configured `details`
and, with `priorities` (`critical: P1`), a `priority` field: the Events API has no priority of its own, so an
Event Orchestration rule on `custom_details.priority` sets the incident's priority. `images` and `links` are
sent as configured (Alertmanager's shape), with the `runbook_url` annotation as the first link. Both carry the same
`dedup_key` (`streamalert-<fingerprint>`), so PagerDuty opens one alert per alert series and closes that same
alert on resolve, whichever process or release sends it. Events go one after another: on a failure the sink
raises at once, and a retry of the same notification skips the events PagerDuty already accepted (the sink
remembers them for the last notifications it sent).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from streamalert.notify.model import SEVERITIES as LEVELS
from streamalert.notify.model import Alert, Notification
from streamalert.notify.sinks.base import SinkConfig, SinkKind, one_secret, post_json, secret
from streamalert.notify.sinks.endpoint import check_token, http_target, scrub
from streamalert.notify.sinks.text import DELIVERY_HEADER

if TYPE_CHECKING:
    import aiohttp

DEFAULT_URL = "https://events.pagerduty.com/v2/enqueue"
SEVERITIES = frozenset({"critical", "error", "warning", "info"})  # the values PD-CEF allows
MAX_SUMMARY = 1024  # characters, documented limit of payload.summary
MAX_DEDUP_KEY = 255  # characters, documented limit of dedup_key
DEDUP_PREFIX = "streamalert-"
_REMEMBERED = 256  # notifications whose accepted events a retry skips
MAX_LINKS = 20  # images and links each: enough for any page, far under the event's 512 KB
DETAIL_KEYS = frozenset({"labels", "annotations", "value", "receiver", "group_labels", "priority"})  # ours


class Image(BaseModel):
    """Alertmanager's `images` item: an https image PagerDuty shows on the incident, optionally linked."""

    model_config = ConfigDict(extra="forbid")

    src: str
    href: str | None = None
    alt: str | None = None

    @field_validator("src")
    @classmethod
    def _https(cls, value: str) -> str:
        if not value.startswith("https://") or any(c.isspace() for c in value):
            raise ValueError("must be an https:// URL (PagerDuty shows only those)")
        return value

    @field_validator("href")
    @classmethod
    def _href(cls, value: str | None) -> str | None:
        return _http_url(value)


class Link(BaseModel):
    """Alertmanager's `links` item."""

    model_config = ConfigDict(extra="forbid")

    href: str
    text: str | None = None

    @field_validator("href")
    @classmethod
    def _href(cls, value: str) -> str:
        _http_url(value)
        return value


def _http_url(value: str | None) -> str | None:
    if value is not None and (not value.startswith(("https://", "http://")) or any(c.isspace() for c in value)):
        raise ValueError("must be an http:// or https:// URL")
    return value


class PagerdutyConfig(SinkConfig):
    TEMPLATES: ClassVar[tuple[str, ...]] = ("summary",)  # every trigger event's summary (one per alert)
    model_config = ConfigDict(validate_by_name=True, validate_by_alias=True)

    routing_key: SecretStr | None = None  # the 32-character integration key
    routing_key_file: Path | None = None
    url: str = DEFAULT_URL
    source: str = Field(default="streamalert", min_length=1)
    component: str | None = None
    group: str | None = None
    class_: str | None = Field(default=None, alias="class")
    client: str = "streamalert"
    client_url: str | None = None  # default: the notification's external URL, when it has one
    severity_map: dict[str, str] = Field(default_factory=dict)  # severity label value -> PD-CEF severity
    priorities: dict[str, str] = Field(default_factory=dict)  # severity level -> custom_details.priority
    details: dict[str, str] = Field(default_factory=dict)  # more custom_details, beside the labels
    images: list[Image] = Field(default_factory=list, max_length=MAX_LINKS)
    links: list[Link] = Field(default_factory=list, max_length=MAX_LINKS)

    @field_validator("severity_map")
    @classmethod
    def _severity_map(cls, value: dict[str, str]) -> dict[str, str]:
        for label, severity in value.items():
            if severity not in SEVERITIES:
                raise ValueError(f"{label}: {severity!r} is not a PagerDuty severity ({', '.join(sorted(SEVERITIES))})")
        return {label.lower(): severity for label, severity in value.items()}

    @field_validator("priorities")
    @classmethod
    def _priorities(cls, value: dict[str, str]) -> dict[str, str]:
        for level, priority in value.items():
            if level not in LEVELS:
                raise ValueError(f"{level!r} is not a severity level ({', '.join(LEVELS)})")
            if not priority.strip():
                raise ValueError(f"{level}: empty priority")
        return value

    @field_validator("details")
    @classmethod
    def _details(cls, value: dict[str, str]) -> dict[str, str]:
        taken = sorted(set(value) & DETAIL_KEYS)
        if taken:
            raise ValueError(f"{taken[0]!r} is a custom_details field of its own")
        return value

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        http_target(value, "")  # its `user:password@`, if any, is sent as basic auth
        return value

    @model_validator(mode="after")
    def _one_routing_key(self) -> Self:
        one_secret(self.routing_key, self.routing_key_file, "routing_key")
        if self.routing_key is not None:
            check_token(self.routing_key.get_secret_value(), "routing_key")
        return self


def dedup_key(alert: Alert) -> str:
    """The alert's PagerDuty dedup key: identical for its trigger and its resolve, and across processes
    (the fingerprint is a hash of the labels). An overlong fingerprint is hashed to fit PD's 255 characters."""
    key = DEDUP_PREFIX + alert.fingerprint
    if len(key) > MAX_DEDUP_KEY:
        key = DEDUP_PREFIX + hashlib.sha256(alert.fingerprint.encode()).hexdigest()
    return key


def pd_severity(alert: Alert, severity_map: dict[str, str] | None = None) -> str:
    """What `severity_map` says for the alert's severity label (case aside), else its severity level (aliases
    such as `high` mapped; unknown: `warning`): one PD-CEF allows."""
    mapped = (severity_map or {}).get(alert.severity.lower())
    return mapped or (severity_map or {}).get(alert.level) or alert.level


def _templated_summary(notification: Notification) -> str | None:
    """The `summary` template's output on one line, at most MAX_SUMMARY characters (None: not set or empty)."""
    line = " ".join((notification.template("summary") or "").split())
    return (line if len(line) <= MAX_SUMMARY else line[: MAX_SUMMARY - 1] + "…") or None


def summary(alert: Alert) -> str:
    """`<alertname>: <summary annotation>` (or the description), else the alert's other labels; at most
    1024 characters."""
    text = alert.annotations.get("summary") or alert.annotations.get("description")
    if not text:
        rest = ", ".join(f"{k}={v}" for k, v in sorted(alert.labels.items()) if k not in {"alertname", "severity"})
        text = f"{alert.status}" + (f" ({rest})" if rest else "")
    line = " ".join(f"{alert.name or 'alert'}: {text}".split())  # one line: PD shows it as a title
    return line if len(line) <= MAX_SUMMARY else line[: MAX_SUMMARY - 1] + "…"


class PagerdutySink:
    def __init__(self, config: PagerdutyConfig) -> None:
        self.config = config
        self._routing_key = secret(config.routing_key, config.routing_key_file, "routing_key")
        check_token(self._routing_key, "routing_key" if config.routing_key is not None else "routing_key_file")
        self._target = http_target(config.url, "url")
        # notification id -> indexes of its events PagerDuty accepted (a retry does not send them again)
        self._accepted: OrderedDict[str, set[int]] = OrderedDict()

    def events(self, notification: Notification) -> list[dict[str, Any]]:
        """The Events API v2 bodies for this notification, in the order of its alerts."""
        out: list[dict[str, Any]] = []
        for alert in notification.alerts:
            if alert.status == "resolved":
                if self.config.send_resolved:
                    out.append(self._resolve(alert))
            else:
                out.append(self._trigger(alert, notification))
        return out

    def _resolve(self, alert: Alert) -> dict[str, Any]:
        return {"routing_key": self._routing_key, "event_action": "resolve", "dedup_key": dedup_key(alert)}

    def _trigger(self, alert: Alert, notification: Notification) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "summary": _templated_summary(notification) or summary(alert),
            "source": self.config.source,
            "severity": pd_severity(alert, self.config.severity_map),
            "timestamp": alert.starts_at,
        }
        for name, value in (
            ("component", self.config.component),
            ("group", self.config.group),
            ("class", self.config.class_),
        ):
            if value:
                payload[name] = value
        details: dict[str, Any] = {
            **self.config.details,
            "labels": alert.labels,
            "annotations": alert.annotations,
            "value": alert.value,
            "receiver": notification.receiver,
            "group_labels": notification.group_labels,
        }
        priority = self.config.priorities.get(alert.level)
        if priority is not None:
            details["priority"] = priority
        payload["custom_details"] = details
        event: dict[str, Any] = {
            "routing_key": self._routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key(alert),
            "payload": payload,
            "client": self.config.client,
        }
        client_url = self.config.client_url or notification.external_url
        if client_url:
            event["client_url"] = client_url
        links = [link.model_dump(exclude_none=True) for link in self.config.links]
        runbook = alert.annotations.get("runbook_url", "")
        if runbook.startswith(("https://", "http://")) and not any(c.isspace() for c in runbook):
            links.insert(0, {"href": runbook, "text": "Runbook"})
        if links:
            event["links"] = links
        if self.config.images:
            event["images"] = [image.model_dump(exclude_none=True) for image in self.config.images]
        return event

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        events = self.events(notification)
        if not events:
            return
        accepted = self._accepted.setdefault(notification.id, set())
        self._accepted.move_to_end(notification.id)
        while len(self._accepted) > _REMEMBERED:
            self._accepted.popitem(last=False)
        headers = {DELIVERY_HEADER: notification.id}
        for index, event in enumerate(events):
            if index in accepted:
                continue
            # raises DeliveryError naming "pagerduty" and the cause; never the URL or the routing key
            await post_json(http, self._target, event, what="pagerduty", headers=headers, hidden=(self._routing_key,))
            accepted.add(index)

    def redact(self, text: str) -> str:
        return scrub(text, (*self._target.hidden, self._routing_key))


KIND = SinkKind("pagerduty", PagerdutyConfig, PagerdutySink)
