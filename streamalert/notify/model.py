"""Value types of notifications: an alert as a receiver sees it, and one notification of one group.

A `Notification` carries what Alertmanager's webhook payload (version 4) carries, so every sink renders from
the same fields; its `id` is the delivery id a receiver can deduplicate by (stable across retries and restarts).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any, Literal

import orjson

Status = Literal["firing", "resolved"]

# Alertmanager's zero time: the `endsAt` of an alert that has not resolved.
ZERO_TIME = "0001-01-01T00:00:00Z"
SEVERITIES: tuple[str, ...] = ("info", "warning", "error", "critical")  # ascending
# other spellings in use (Grafana's "high", syslog's "warn" and "err", "fatal"), mapped onto SEVERITIES
SEVERITY_ALIASES = {"high": "error", "err": "error", "warn": "warning", "fatal": "critical", "information": "info"}


def severity_level(labels: dict[str, str]) -> str:
    """The `severity` label as one of SEVERITIES (case aside, aliases mapped); unknown or missing: warning."""
    value = labels.get("severity", "").lower()
    value = SEVERITY_ALIASES.get(value, value)
    return value if value in SEVERITIES else "warning"


def severity_rank(labels: dict[str, str]) -> int:
    """Index of the alert's severity level in SEVERITIES (for minimum-severity filters and ordering)."""
    return SEVERITIES.index(severity_level(labels))


def fingerprint(labels: dict[str, str]) -> str:
    """A stable identity of an alert: 16 hex digits of a hash of its sorted labels (rule name included as
    `alertname`). The same labels give the same fingerprint in every process and release."""
    canonical = orjson.dumps(sorted(labels.items()))
    return hashlib.sha256(canonical).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert series as sent: labels include `alertname` (the rule)."""

    fingerprint: str
    status: Status
    labels: dict[str, str]
    annotations: dict[str, str]
    starts_at: str  # RFC 3339, UTC
    ends_at: str  # ZERO_TIME while firing
    value: float | int = 0

    @property
    def name(self) -> str:
        return self.labels.get("alertname", "")

    @property
    def severity(self) -> str:
        return self.labels.get("severity", "")

    @property
    def level(self) -> str:
        """The severity as one of SEVERITIES: what sinks map to colours, emoji and PagerDuty's severity."""
        return severity_level(self.labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "fingerprint": self.fingerprint,
            "status": self.status,
            "labels": self.labels,
            "annotations": self.annotations,
            "startsAt": self.starts_at,
            "endsAt": self.ends_at,
            "value": self.value,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Alert:
        return cls(
            fingerprint=data["fingerprint"],
            status=data["status"],
            labels=dict(data["labels"]),
            annotations=dict(data["annotations"]),
            starts_at=data["startsAt"],
            ends_at=data["endsAt"],
            value=data.get("value", 0),
        )


@dataclass(frozen=True, slots=True)
class Notification:
    """One message for one receiver's sink about one group: its firing (and, if sent, resolved) alerts."""

    id: str  # delivery id: stable across retries, restarts and replicas
    receiver: str
    sink: str  # "<kind>/<index in the receiver>", e.g. "slack/0"
    group_key: str
    group_labels: dict[str, str]
    alerts: tuple[Alert, ...]
    at: str  # when the dispatcher decided it (RFC 3339)
    external_url: str = ""
    truncated_alerts: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    rendered: dict[str, str] = field(default_factory=dict)  # the sink's message templates, by field

    def template(self, name: str) -> str | None:
        """The rendered `name` template (title, text, subject, html, summary); None: the sink's own format."""
        return self.rendered.get(name)

    @property
    def status(self) -> Status:
        return "firing" if any(a.status == "firing" for a in self.alerts) else "resolved"

    @property
    def firing(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "firing"]

    @property
    def resolved(self) -> list[Alert]:
        return [a for a in self.alerts if a.status == "resolved"]

    @property
    def common_labels(self) -> dict[str, str]:
        return _common([a.labels for a in self.alerts])

    @property
    def common_annotations(self) -> dict[str, str]:
        return _common([a.annotations for a in self.alerts])

    def title(self) -> str:
        """The `title` template's output if the sink has one, else a one-line title, Alertmanager style:
        `[FIRING:2] alertname (group label values)`."""
        if "title" in self.rendered:
            return self.rendered["title"]
        count = len(self.firing) if self.status == "firing" else len(self.resolved)
        name = self.common_labels.get("alertname") or ", ".join(sorted({a.name for a in self.alerts}))
        rest = " ".join(v for k, v in sorted(self.group_labels.items()) if k != "alertname")
        return f"[{self.status.upper()}:{count}] {name}" + (f" ({rest})" if rest else "")

    def webhook_payload(self) -> dict[str, Any]:
        """Alertmanager's webhook payload, version 4 (alerts without our `value` field)."""
        return {
            "version": "4",
            "groupKey": self.group_key,
            "truncatedAlerts": self.truncated_alerts,
            "status": self.status,
            "receiver": self.receiver,
            "groupLabels": self.group_labels,
            "commonLabels": self.common_labels,
            "commonAnnotations": self.common_annotations,
            "externalURL": self.external_url,
            "alerts": [
                {
                    "status": a.status,
                    "labels": a.labels,
                    "annotations": a.annotations,
                    "startsAt": a.starts_at,
                    "endsAt": a.ends_at,
                    "generatorURL": "",
                    "fingerprint": a.fingerprint,
                }
                for a in self.alerts
            ],
        }

    def to_json(self) -> bytes:
        return orjson.dumps(
            {
                "id": self.id,
                "receiver": self.receiver,
                "sink": self.sink,
                "group_key": self.group_key,
                "group_labels": self.group_labels,
                "alerts": [a.to_dict() for a in self.alerts],
                "at": self.at,
                "external_url": self.external_url,
                "truncated_alerts": self.truncated_alerts,
                "extra": self.extra,
                "rendered": self.rendered,
            }
        )

    @classmethod
    def from_json(cls, raw: bytes | str) -> Notification:
        data = orjson.loads(raw)
        return cls(
            id=data["id"],
            receiver=data["receiver"],
            sink=data["sink"],
            group_key=data["group_key"],
            group_labels=dict(data["group_labels"]),
            alerts=tuple(Alert.from_dict(a) for a in data["alerts"]),
            at=data["at"],
            external_url=data.get("external_url", ""),
            truncated_alerts=data.get("truncated_alerts", 0),
            extra=dict(data.get("extra", {})),
            rendered=dict(data.get("rendered", {})),
        )


def _common(maps: list[dict[str, str]]) -> dict[str, str]:
    if not maps:
        return {}
    common = dict(maps[0])
    for other in maps[1:]:
        common = {k: v for k, v in common.items() if other.get(k) == v}
    return common
