"""telegram sink: placeholder until implemented."""

from __future__ import annotations

import aiohttp

from streamalert.notify.model import Notification
from streamalert.notify.sinks.base import DeliveryError, SinkConfig, SinkKind


class TelegramConfig(SinkConfig):
    pass


class TelegramSink:
    def __init__(self, config: TelegramConfig) -> None:
        self.config = config

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        raise DeliveryError("telegram: not implemented", retryable=False)


KIND = SinkKind("telegram", TelegramConfig, TelegramSink)
