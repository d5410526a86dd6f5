"""stdout: one JSON line per notification (the webhook payload plus delivery id and sink), for dry runs and
`replay --notify`."""

from __future__ import annotations

import sys
from typing import IO, TYPE_CHECKING, ClassVar

import orjson

from streamalert.notify.model import Notification
from streamalert.notify.sinks.base import SinkConfig, SinkKind

if TYPE_CHECKING:
    import aiohttp


class StdoutConfig(SinkConfig):
    TEMPLATES: ClassVar[tuple[str, ...]] = ("title", "text")  # printed as `title` and `text` when set


class StdoutSink:
    def __init__(self, config: StdoutConfig, out: IO[bytes] | None = None) -> None:
        self.config = config
        self._out = out

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        self.write(notification)

    def write(self, notification: Notification) -> None:
        out = self._out if self._out is not None else sys.stdout.buffer
        line = {"id": notification.id, "sink": notification.sink, "at": notification.at}
        line.update(notification.webhook_payload())
        line.update(notification.rendered)
        out.write(orjson.dumps(line) + b"\n")
        out.flush()


KIND = SinkKind("stdout", StdoutConfig, StdoutSink)
