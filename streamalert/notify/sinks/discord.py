"""discord sink: placeholder until implemented."""

from __future__ import annotations

import aiohttp

from streamalert.notify.model import Notification
from streamalert.notify.sinks.base import DeliveryError, SinkConfig, SinkKind


class DiscordConfig(SinkConfig):
    pass


class DiscordSink:
    def __init__(self, config: DiscordConfig) -> None:
        self.config = config

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        raise DeliveryError("discord: not implemented", retryable=False)


KIND = SinkKind("discord", DiscordConfig, DiscordSink)
