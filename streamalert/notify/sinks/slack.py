"""slack sink: placeholder until implemented."""

from __future__ import annotations

import aiohttp

from streamalert.notify.model import Notification
from streamalert.notify.sinks.base import DeliveryError, SinkConfig, SinkKind


class SlackConfig(SinkConfig):
    pass


class SlackSink:
    def __init__(self, config: SlackConfig) -> None:
        self.config = config

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        raise DeliveryError("slack: not implemented", retryable=False)


KIND = SinkKind("slack", SlackConfig, SlackSink)
