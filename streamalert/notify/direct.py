"""The direct send path: notifications routed and delivered without the store (self-monitoring's alerts).

Alerts sent this way are not grouped, stored or deduplicated here: the caller sends each state change once.
Routing uses the route tree and the receivers' filters as the dispatcher does; delivery uses the Sender's
`deliver` (retries, backoff, timeouts, metrics) with a process-local attempt counter.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib

import structlog

from streamalert.config.app import AppConfig
from streamalert.decode import format_ms
from streamalert.notify.dispatch import group_key
from streamalert.notify.model import Alert, Notification, severity_rank
from streamalert.notify.notifier import Notifier
from streamalert.notify.routing import Route
from streamalert.notify.sender import Sender
from streamalert.notify.sinks.base import Sink
from streamalert.state.memory import MemoryStore
from streamalert.telemetry.metrics import Metrics

_log = structlog.get_logger("streamalert.notify")


def route(alert: Alert, root: Route, notifier: Notifier, now_ms: int) -> list[tuple[Route, Notification]]:
    """The notifications for one change: one per sink of each receiver the route tree picks, less receivers
    whose minimum severity it is below, routes muted by their time intervals, config silences and (for
    resolves) sinks without send_resolved.
    Each is its own group of one alert: no group_wait, nothing batched with other alerts."""
    out: list[tuple[Route, Notification]] = []
    labels = alert.labels
    if any(s.mutes(labels, now_ms) for s in notifier.config_silences):
        return out
    for matched in root.match(labels):
        receiver = notifier.receivers[matched.receiver]
        if severity_rank(labels) < receiver.min_rank:
            continue
        if matched.times is not None and matched.times.muted(now_ms) is not None:
            continue  # the route is in a mute time interval or outside its active ones
        key = group_key(matched, matched.group_labels(labels))
        for sink_name, sink_config in receiver.sinks:
            if alert.status == "resolved" and not sink_config.send_resolved:
                continue
            stamp = f"{key}\x00{alert.fingerprint}\x00{alert.status}\x00{now_ms}\x00{sink_name}"
            notification = notifier.templated(
                Notification(
                    id=hashlib.sha256(stamp.encode()).hexdigest()[:32],
                    receiver=receiver.name,
                    sink=sink_name,
                    group_key=key,
                    group_labels=matched.group_labels(labels),
                    alerts=(alert,),
                    at=format_ms(now_ms),
                    external_url=notifier.external_url,
                ),
                sink_config,
            )
            out.append((matched, notification))
    return out


class Outbound:
    """Delivery without the outbox: one queue per (receiver, sink), so a resolve never overtakes its trigger.
    The Sender's `deliver` retries as for any notification; it counts attempts in a store, here a private
    MemoryStore (never Redis: this path must work while Redis is down)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._lanes: dict[tuple[str, str], tuple[asyncio.Queue[tuple[Notification, Sink]], asyncio.Task[None]]] = {}
        self._sender: Sender | None = None

    def send(self, notification: Notification, sink: Sink, config: AppConfig) -> None:
        if self._sender is None:
            self._sender = Sender(MemoryStore(), {}, config.notify, self.metrics)
        self._sender.settings = config.notify  # retries as the configuration in force says (a reload)
        lane = self._lanes.get((notification.receiver, notification.sink))
        if lane is None:
            queue: asyncio.Queue[tuple[Notification, Sink]] = asyncio.Queue()
            lane = self._lanes[(notification.receiver, notification.sink)] = (
                queue,
                asyncio.create_task(self._work(queue)),
            )
        lane[0].put_nowait((notification, sink))

    async def idle(self) -> None:
        for queue, _ in list(self._lanes.values()):
            await queue.join()

    async def _work(self, queue: asyncio.Queue[tuple[Notification, Sink]]) -> None:
        while True:
            notification, sink = await queue.get()
            try:
                sender = self._sender
                assert sender is not None
                outcome = await sender.deliver(notification.id, notification, sink)
                await sender.store.outbox_done(notification.id, b"", 0)  # forget its attempt count
                if outcome.status != "sent":
                    _log.error("self_alert_not_sent", sink=notification.sink, error=outcome.error)
            finally:
                queue.task_done()

    async def close(self) -> None:
        for _, task in self._lanes.values():
            task.cancel()
        for _, task in self._lanes.values():
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._lanes.clear()
        if self._sender is not None:
            await self._sender.close()
