"""pagerduty sink: placeholder until implemented."""

from __future__ import annotations

import aiohttp

from streamalert.notify.model import Notification
from streamalert.notify.sinks.base import DeliveryError, SinkConfig, SinkKind


class PagerdutyConfig(SinkConfig):
    pass


class PagerdutySink:
    def __init__(self, config: PagerdutyConfig) -> None:
        self.config = config

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        raise DeliveryError("pagerduty: not implemented", retryable=False)


KIND = SinkKind("pagerduty", PagerdutyConfig, PagerdutySink)
