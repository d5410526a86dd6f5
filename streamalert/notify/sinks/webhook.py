"""webhook: POST Alertmanager's webhook payload (version 4) as is, so receivers written for Alertmanager work.

`url`/`url_file` is a secret (webhook URLs often carry a token). `bearer_token`/`bearer_token_file` adds
`Authorization: Bearer`; a URL with `user:password@` is sent with basic auth instead (the two together are
refused: one request has one `Authorization`). `max_alerts` caps the alerts of one message the way
Alertmanager does: the rest are dropped and counted in `truncatedAlerts`; firing alerts are kept before
resolved ones, so a truncated message keeps the group's status.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Self

from pydantic import Field, SecretStr, model_validator

from streamalert.notify.model import Notification
from streamalert.notify.sinks.base import SinkConfig, SinkKind, bearer_token, one_secret, post_json, secret
from streamalert.notify.sinks.endpoint import Target, check_token, http_target, refuse_two_auths, scrub
from streamalert.notify.sinks.text import DELIVERY_HEADER

if TYPE_CHECKING:
    import aiohttp


class WebhookConfig(SinkConfig):
    TEMPLATES: ClassVar[tuple[str, ...]] = ()  # Alertmanager's webhook payload: data, no message
    url: SecretStr | None = None
    url_file: Path | None = None
    bearer_token: SecretStr | None = None
    bearer_token_file: Path | None = None
    max_alerts: int = Field(default=0, ge=0)  # 0: all

    @model_validator(mode="after")
    def _secrets(self) -> Self:
        one_secret(self.url, self.url_file, "url")
        if self.bearer_token is not None and self.bearer_token_file is not None:
            raise ValueError("set at most one of bearer_token and bearer_token_file")
        if self.url is not None:
            http_target(self.url.get_secret_value(), "url")
            if self.bearer_token is not None or self.bearer_token_file is not None:
                which = "bearer_token" if self.bearer_token is not None else "bearer_token_file"
                refuse_two_auths(self.url.get_secret_value(), "url", which)
        if self.bearer_token is not None:
            check_token(self.bearer_token.get_secret_value(), "bearer_token")
        return self


def target(url: SecretStr | None, url_file: Path | None, token: str | None) -> Target:
    """The webhook's endpoint from `url` or `url_file` (read now), refusing basic auth beside a bearer token."""
    key = "url" if url is not None else "url_file"
    raw = secret(url, url_file, "url")
    found = http_target(raw, key)
    if token is not None:
        refuse_two_auths(raw, key, "a bearer token")
    return found


def truncate(notification: Notification, max_alerts: int) -> Notification:
    """At most `max_alerts` alerts (0: all), firing ones first; the dropped ones add to truncated_alerts."""
    if max_alerts == 0 or len(notification.alerts) <= max_alerts:
        return notification
    kept = (notification.firing + notification.resolved)[:max_alerts]
    dropped = len(notification.alerts) - max_alerts
    return dataclasses.replace(
        notification, alerts=tuple(kept), truncated_alerts=notification.truncated_alerts + dropped
    )


class WebhookSink:
    def __init__(self, config: WebhookConfig) -> None:
        self.config = config
        self._token = bearer_token(config.bearer_token, config.bearer_token_file)
        self._target = target(config.url, config.url_file, self._token)

    def message(self, notification: Notification) -> Notification | None:
        """What is sent: resolved alerts dropped unless send_resolved, then truncated; None: nothing to send."""
        if not self.config.send_resolved and notification.resolved:
            firing = tuple(notification.firing)
            if not firing:
                return None
            notification = dataclasses.replace(notification, alerts=firing)
        return truncate(notification, self.config.max_alerts)

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        message = self.message(notification)
        if message is None:
            return
        headers = {DELIVERY_HEADER: notification.id}
        if self._token is not None:
            headers["Authorization"] = f"Bearer {self._token}"
        await post_json(http, self._target, message.webhook_payload(), what="webhook", headers=headers)

    def redact(self, text: str) -> str:
        return scrub(text, (*self._target.hidden, self._token or ""))


KIND = SinkKind("webhook", WebhookConfig, WebhookSink)
