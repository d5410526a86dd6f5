"""alertmanager: forward alerts to a Prometheus Alertmanager through its API v2 (`POST /api/v2/alerts`).

One request per notification: a JSON list of postable alerts, one per alert of the notification, each with the
alert's labels as they are (`alertname` included), its annotations, `startsAt`, and `generatorURL` (the
notification's external URL, streamalert's own address) when there is one. Alertmanager identifies an alert by
its labels, so it merges our repeats of one alert, and our resolve into the firing alert it has.

`endsAt`, the one decision this sink makes:

- a resolved alert is sent with its `ends_at`: Alertmanager marks it resolved at that time and notifies its
  receivers with `send_resolved`.
- a firing alert is sent without `endsAt`, as Alertmanager's "Sending alerts" page asks of a client that
  does not know when the alert will end ("endsAt is only set if the end time of an alert is known"). Alertmanager
  then sets `endsAt` to the time it received the alert plus its `resolve_timeout` (global config, 5m by
  default) and resolves the alert when that passes without a new post. A client is expected to re-send active
  alerts (Prometheus re-sends each evaluation with `endsAt` = now + 4 x its resend interval); streamalert
  re-sends a firing alert only on the route's `repeat_interval` (4h by default). So either set Alertmanager's
  `resolve_timeout` above the route's `repeat_interval`, or set `expire_after` on this sink (longer than the
  route's `repeat_interval`): firing alerts are then sent with `endsAt` = the time of sending + `expire_after`,
  the way Prometheus does, and an alert streamalert stops sending (its process gone for good) still ends in
  Alertmanager at that time. The time of sending, not the notification's time, so that a delivery retried
  late does not arrive already ended.

`url` is Alertmanager's base URL (e.g. http://alertmanager:9093, with its route prefix if it has one); one
Alertmanager per sink config: for an Alertmanager cluster, list one config per member (each member must
receive every alert, as Prometheus does it). `bearer_token`/`bearer_token_file` (optional) adds
`Authorization: Bearer`; a `url` with `user:password@` is sent with basic auth instead (not both: refused).
Every request carries `X-Streamalert-Delivery: <notification id>`. Alertmanager answers 400 when any alert is
invalid (a label name outside `[a-zA-Z_][a-zA-Z0-9_]*`, an end before the start): not retryable; it has stored
the valid ones of the list all the same. With `send_resolved: false` resolved alerts are not sent, and
Alertmanager ends them only by `resolve_timeout` or `expire_after`.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import SecretStr, field_validator, model_validator

from streamalert.clock import Clock, WallClock
from streamalert.durations import parse_duration
from streamalert.notify.model import ZERO_TIME, Alert, Notification
from streamalert.notify.sinks.base import SinkConfig, SinkKind, bearer_token, post_json
from streamalert.notify.sinks.endpoint import Target, check_token, http_target, refuse_two_auths, scrub
from streamalert.notify.sinks.text import DELIVERY_HEADER

if TYPE_CHECKING:
    import aiohttp

ALERTS_PATH = "/api/v2/alerts"


class AlertmanagerConfig(SinkConfig):
    TEMPLATES: ClassVar[tuple[str, ...]] = ()  # alerts are forwarded as data: no message to template
    url: str  # Alertmanager's base URL, e.g. http://alertmanager:9093
    bearer_token: SecretStr | None = None
    bearer_token_file: Path | None = None
    expire_after: str | None = None  # firing alerts: endsAt = send time + this; unset: no endsAt

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        try:
            http_target(value, "", query=False)
        except ValueError as exc:
            raise ValueError(f"{exc} (a base URL, e.g. http://alertmanager:9093)") from None
        return value

    @field_validator("expire_after")
    @classmethod
    def _expire_after(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) <= 0:
            raise ValueError("must be a positive duration, e.g. 8h")
        return value

    @model_validator(mode="after")
    def _one_token(self) -> Self:
        if self.bearer_token is not None and self.bearer_token_file is not None:
            raise ValueError("set at most one of bearer_token and bearer_token_file")
        if self.bearer_token is not None or self.bearer_token_file is not None:
            which = "bearer_token" if self.bearer_token is not None else "bearer_token_file"
            refuse_two_auths(self.url, "url", which)
        if self.bearer_token is not None:
            check_token(self.bearer_token.get_secret_value(), "bearer_token")
        return self


def alerts_url(base: str) -> str:
    return base.rstrip("/") + ALERTS_PATH


def alerts_target(base: str) -> Target:
    """The alerts endpoint under Alertmanager's base URL, its userinfo as basic auth."""
    found = http_target(base, "url", query=False)
    return Target(alerts_url(found.url), found.authorization, found.hidden)


def rfc3339_ms(moment: datetime) -> str:
    """UTC, millisecond precision, `Z` suffix (the form Alertmanager itself answers with)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def postable_alert(alert: Alert, notification: Notification, firing_ends_at: str | None = None) -> dict[str, Any]:
    """One alert in Alertmanager's `postableAlert` shape. `firing_ends_at`: the `endsAt` of a firing alert
    (None: omitted, Alertmanager's resolve_timeout applies)."""
    item: dict[str, Any] = {
        "labels": dict(alert.labels),
        "annotations": dict(alert.annotations),
        "startsAt": alert.starts_at,
    }
    if alert.status == "resolved":
        # a resolved alert always has an end; should one come without it, the time it was decided stands in
        item["endsAt"] = alert.ends_at if alert.ends_at not in {"", ZERO_TIME} else notification.at
    elif firing_ends_at is not None:
        item["endsAt"] = firing_ends_at
    if notification.external_url:
        item["generatorURL"] = notification.external_url
    return item


class AlertmanagerSink:
    def __init__(self, config: AlertmanagerConfig, clock: Clock | None = None) -> None:
        self.config = config
        self._target = alerts_target(config.url)
        self._clock: Clock = clock if clock is not None else WallClock()
        self._expire_ms = parse_duration(config.expire_after) if config.expire_after is not None else None
        self._token = bearer_token(config.bearer_token, config.bearer_token_file)

    def payload(self, notification: Notification) -> list[dict[str, Any]]:
        """The postable alerts sent for this notification (empty: nothing to send)."""
        alerts = notification.alerts if self.config.send_resolved else tuple(notification.firing)
        firing_ends_at = None
        if self._expire_ms is not None:
            now = datetime.fromtimestamp(self._clock.now_ms() / 1000, UTC)
            firing_ends_at = rfc3339_ms(now + timedelta(milliseconds=self._expire_ms))
        return [postable_alert(alert, notification, firing_ends_at) for alert in alerts]

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        payload = self.payload(notification)
        if not payload:
            return
        headers = {DELIVERY_HEADER: notification.id}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        await post_json(http, self._target, payload, what="alertmanager", headers=headers)

    def redact(self, text: str) -> str:
        return scrub(text, (*self._target.hidden, self._token or ""))


KIND = SinkKind("alertmanager", AlertmanagerConfig, AlertmanagerSink)
