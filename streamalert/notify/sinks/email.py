"""email sink: placeholder until implemented."""

from __future__ import annotations

import aiohttp

from streamalert.notify.model import Notification
from streamalert.notify.sinks.base import DeliveryError, SinkConfig, SinkKind


class EmailConfig(SinkConfig):
    pass


class EmailSink:
    def __init__(self, config: EmailConfig) -> None:
        self.config = config

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        raise DeliveryError("email: not implemented", retryable=False)


KIND = SinkKind("email", EmailConfig, EmailSink)
