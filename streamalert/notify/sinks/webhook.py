"""webhook sink: placeholder until implemented."""

from __future__ import annotations

import aiohttp

from streamalert.notify.model import Notification
from streamalert.notify.sinks.base import DeliveryError, SinkConfig, SinkKind


class WebhookConfig(SinkConfig):
    pass


class WebhookSink:
    def __init__(self, config: WebhookConfig) -> None:
        self.config = config

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        raise DeliveryError("webhook: not implemented", retryable=False)


KIND = SinkKind("webhook", WebhookConfig, WebhookSink)
