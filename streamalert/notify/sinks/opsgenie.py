"""opsgenie: Opsgenie Alert API v2, one request per alert of the notification.

A firing alert is created (`POST <api_url>v2/alerts`) with `alias` `streamalert-<fingerprint>`; a resolved one
closes the alert with that alias (`POST <api_url>v2/alerts/<alias>/close?identifierType=alias`). The alias is
the same for an alert's create and close and across processes and releases (the fingerprint is a hash of the
labels), so Opsgenie keeps one alert per alert series and a repeat only raises its count. (Alertmanager's
opsgenie_configs use one alias per group instead; per alert, a resolve closes exactly the alert that resolved.)

`priority` comes from the alert's severity through `priorities` (default critical P1, error P2, warning P3,
info P5; a partial map overrides those levels only). `responders`, `tags`, `details`, `entity`, `note` and
`source` follow Alertmanager's opsgenie_config (`type: teams` with comma-separated names is expanded into one
team each, as Alertmanager does). The `title` and `text` templates are Alertmanager's `message` and
`description`: set, they are those of every create request of the notification (the title on one line, cut to
130 characters; the text as written); unset, failed or empty, each alert's own. Texts are cut to the Alert API's
documented limits. The key is sent as `Authorization: GenieKey <api_key>` and never appears in an error.
Requests go one after another: a retry of the same notification skips those Opsgenie already accepted.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Self
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from streamalert.notify.model import SEVERITIES, Alert, Notification
from streamalert.notify.sinks.base import SinkConfig, SinkKind, one_secret, post_json, secret
from streamalert.notify.sinks.endpoint import check_token, http_target, refuse_two_auths, scrub
from streamalert.notify.sinks.text import DELIVERY_HEADER, is_http_url, labels_line

if TYPE_CHECKING:
    import aiohttp

US_API_URL = "https://api.opsgenie.com/"
EU_API_URL = "https://api.eu.opsgenie.com/"
PRIORITIES = ("P1", "P2", "P3", "P4", "P5")
DEFAULT_PRIORITIES = {"critical": "P1", "error": "P2", "warning": "P3", "info": "P5"}
ALIAS_PREFIX = "streamalert-"
# the Alert API's documented limits (characters)
MAX_MESSAGE = 130
MAX_ALIAS = 512
MAX_DESCRIPTION = 15000
MAX_SOURCE = 100
MAX_ENTITY = 512
MAX_NOTE = 25000
MAX_TAGS = 20
MAX_TAG = 50
MAX_RESPONDERS = 50
MAX_DETAILS = 8000  # keys and values together
_REMEMBERED = 256  # notifications whose accepted requests a retry skips
_ELLIPSIS = "…"

ResponderType = Literal["team", "teams", "user", "escalation", "schedule"]


class Responder(BaseModel):
    """Alertmanager's responder: one of `id`, `name`, `username` (users) and a `type`."""

    model_config = ConfigDict(extra="forbid")

    id: str | None = None
    name: str | None = None
    username: str | None = None
    type: ResponderType

    @model_validator(mode="after")
    def _one_identifier(self) -> Self:
        given = [k for k in ("id", "name", "username") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError("set exactly one of id, name and username")
        if self.username and self.type != "user":
            raise ValueError("username identifies a user: type must be user")
        if self.type == "teams" and not self.name:
            raise ValueError("type teams takes comma-separated team names in name")
        return self

    def expand(self) -> list[dict[str, str]]:
        """The API's responder objects (`teams` split into one `team` per name)."""
        if self.type == "teams":
            return [{"name": n.strip(), "type": "team"} for n in (self.name or "").split(",") if n.strip()]
        key = "id" if self.id else "name" if self.name else "username"
        return [{key: str(getattr(self, key)), "type": self.type}]


class OpsgenieConfig(SinkConfig):
    TEMPLATES: ClassVar[tuple[str, ...]] = ("title", "text")  # Alertmanager's message and description
    api_key: SecretStr | None = None  # the API integration's key (GenieKey)
    api_key_file: Path | None = None
    api_url: str = US_API_URL  # EU accounts: https://api.eu.opsgenie.com/
    source: str = Field(default="streamalert", min_length=1, max_length=MAX_SOURCE)
    entity: str | None = Field(default=None, max_length=MAX_ENTITY)
    note: str | None = Field(default=None, max_length=MAX_NOTE)
    responders: list[Responder] = Field(default_factory=list)
    tags: list[str] | str = Field(default_factory=list)  # a list, or Alertmanager's comma-separated string
    details: dict[str, str] = Field(default_factory=dict)  # added to every alert's details, beside its labels
    priorities: dict[str, str] = Field(default_factory=dict)  # severity level -> P1..P5
    priority: str | None = None  # one priority for every alert, instead of `priorities`

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        http_target(value, "", query=False)
        return value if value.endswith("/") else value + "/"

    @field_validator("tags")
    @classmethod
    def _tags(cls, value: list[str] | str) -> list[str]:
        tags = [t.strip() for t in value.split(",")] if isinstance(value, str) else [t.strip() for t in value]
        tags = [t for t in tags if t]
        if len(tags) > MAX_TAGS:
            raise ValueError(f"at most {MAX_TAGS} tags")
        long = [t for t in tags if len(t) > MAX_TAG]
        if long:
            raise ValueError(f"a tag has at most {MAX_TAG} characters: {long[0][:60]!r}")
        return tags

    @field_validator("priorities")
    @classmethod
    def _priorities(cls, value: dict[str, str]) -> dict[str, str]:
        for level, priority in value.items():
            if level not in SEVERITIES:
                raise ValueError(f"{level!r} is not a severity level ({', '.join(SEVERITIES)})")
            if priority not in PRIORITIES:
                raise ValueError(f"{level}: {priority!r} is not one of {', '.join(PRIORITIES)}")
        return value

    @field_validator("priority")
    @classmethod
    def _priority(cls, value: str | None) -> str | None:
        if value is not None and value not in PRIORITIES:
            raise ValueError(f"must be one of {', '.join(PRIORITIES)}")
        return value

    @model_validator(mode="after")
    def _secrets(self) -> Self:
        one_secret(self.api_key, self.api_key_file, "api_key")
        if self.api_key is not None:
            check_token(self.api_key.get_secret_value(), "api_key")
        refuse_two_auths(self.api_url, "api_url", "api_key")
        if self.priority is not None and self.priorities:
            raise ValueError("set at most one of priority and priorities")
        if sum(len(r.expand()) for r in self.responders) > MAX_RESPONDERS:
            raise ValueError(f"responders: at most {MAX_RESPONDERS}")
        return self


def alias(alert: Alert) -> str:
    """The alert's Opsgenie alias: the same for its create and its close, in every process."""
    key = ALIAS_PREFIX + alert.fingerprint
    if len(key) > MAX_ALIAS:
        key = ALIAS_PREFIX + hashlib.sha256(alert.fingerprint.encode()).hexdigest()
    return key


def cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1] + _ELLIPSIS


def message(alert: Alert) -> str:
    """`<alertname>: <summary>` on one line, at most 130 characters (what Opsgenie shows as the title)."""
    text = alert.annotations.get("summary") or alert.annotations.get("description") or ""
    line = " ".join(f"{alert.name or 'alert'}: {text}".split()) if text else alert.name or "alert"
    return cut(line, MAX_MESSAGE)


def description(alert: Alert, notification: Notification) -> str:
    """The alert in plain text: summary, description, value, labels, runbook, where to see it."""
    lines = []
    for key in ("summary", "description"):
        if alert.annotations.get(key):
            lines.append(alert.annotations[key])
    lines.append(f"Value: {alert.value:g}" if isinstance(alert.value, float) else f"Value: {alert.value}")
    labels = labels_line(alert, {})
    if labels:
        lines.append(f"Labels: {labels}")
    runbook = alert.annotations.get("runbook_url", "")
    if is_http_url(runbook):
        lines.append(f"Runbook: {runbook}")
    if is_http_url(notification.external_url):
        lines.append(f"Source: {notification.external_url}")
    return cut("\n".join(lines), MAX_DESCRIPTION)


def templated_message(notification: Notification) -> str:
    """The `title` template's output as the message, on one line and cut to 130; "" if none (or empty)."""
    return cut(" ".join((notification.template("title") or "").split()), MAX_MESSAGE)


def templated_description(notification: Notification) -> str:
    """The `text` template's output as the description, cut to the API's limit; "" if none (or empty)."""
    return cut(notification.template("text") or "", MAX_DESCRIPTION)


def details(alert: Alert, extra: dict[str, str]) -> dict[str, str]:
    """The alert's labels and `extra` (the config's details win), within the API's 8000 characters: labels
    that do not fit are left out, largest last."""
    out: dict[str, str] = {}
    used = 0
    for key, value in [*sorted(extra.items()), *sorted(alert.labels.items(), key=lambda kv: len(kv[1]))]:
        if key in out:
            continue
        size = len(key) + len(value)
        if used + size > MAX_DETAILS:
            continue
        out[key] = value
        used += size
    return out


class OpsgenieSink:
    def __init__(self, config: OpsgenieConfig) -> None:
        self.config = config
        self._key = secret(config.api_key, config.api_key_file, "api_key")
        check_token(self._key, "api_key" if config.api_key is not None else "api_key_file")
        self._base = http_target(config.api_url, "api_url", query=False)
        self._priorities = {**DEFAULT_PRIORITIES, **config.priorities}
        self._responders = [r for responder in config.responders for r in responder.expand()]
        self._tags = config.tags if isinstance(config.tags, list) else [config.tags]  # a list once validated
        # notification id -> indexes of its requests Opsgenie accepted (a retry does not send them again)
        self._accepted: OrderedDict[str, set[int]] = OrderedDict()

    def priority(self, alert: Alert) -> str:
        return self.config.priority or self._priorities[alert.level]

    def requests(self, notification: Notification) -> list[tuple[str, dict[str, Any]]]:
        """(path under api_url, JSON body) for each alert of the notification, in order."""
        out: list[tuple[str, dict[str, Any]]] = []
        for alert in notification.alerts:
            if alert.status == "resolved":
                if self.config.send_resolved:
                    close = {"source": self.config.source, "note": self.config.note or "Resolved"}
                    out.append((f"v2/alerts/{quote(alias(alert), safe='')}/close?identifierType=alias", close))
            else:
                out.append(("v2/alerts", self.create(alert, notification)))
        return out

    def create(self, alert: Alert, notification: Notification) -> dict[str, Any]:
        body: dict[str, Any] = {
            "message": templated_message(notification) or message(alert),
            "alias": alias(alert),
            "description": templated_description(notification) or description(alert, notification),
            "priority": self.priority(alert),
            "source": self.config.source,
            "details": details(alert, self.config.details),
        }
        if self._responders:
            body["responders"] = self._responders
        if self._tags:
            body["tags"] = self._tags
        if self.config.entity:
            body["entity"] = self.config.entity
        if self.config.note:
            body["note"] = self.config.note
        return body

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        requests = self.requests(notification)
        if not requests:
            return
        accepted = self._accepted.setdefault(notification.id, set())
        self._accepted.move_to_end(notification.id)
        while len(self._accepted) > _REMEMBERED:
            self._accepted.popitem(last=False)
        headers = {DELIVERY_HEADER: notification.id, "Authorization": f"GenieKey {self._key}"}
        for index, (path, body) in enumerate(requests):
            if index in accepted:
                continue
            target = dataclasses.replace(self._base, url=self._base.url + path)
            # raises DeliveryError naming "opsgenie" and the cause; never the URL or the key
            await post_json(http, target, body, what="opsgenie", headers=headers, hidden=(self._key,))
            accepted.add(index)

    def redact(self, text: str) -> str:
        return scrub(text, (*self._base.hidden, self._key))


KIND = SinkKind("opsgenie", OpsgenieConfig, OpsgenieSink)
