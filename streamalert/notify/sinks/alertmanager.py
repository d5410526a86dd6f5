"""alertmanager sink: placeholder until implemented."""

from __future__ import annotations

import aiohttp

from streamalert.notify.model import Notification
from streamalert.notify.sinks.base import DeliveryError, SinkConfig, SinkKind


class AlertmanagerConfig(SinkConfig):
    pass


class AlertmanagerSink:
    def __init__(self, config: AlertmanagerConfig) -> None:
        self.config = config

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        raise DeliveryError("alertmanager: not implemented", retryable=False)


KIND = SinkKind("alertmanager", AlertmanagerConfig, AlertmanagerSink)
