"""The sender: drains the outbox through the sinks. The one place that retries, times out and dead-letters.

Entries are read in outbox order and delivered one lane at a time (a lane is one group's notifications to one
sink), so a resolve never overtakes the trigger it follows, while a slow or failing sink holds up only its own
lanes. Every attempt is counted in the store before it is made; an entry leaves the outbox only after its sink
accepted it (then it goes to the history) or after `max_attempts` (then to the dead letters, which
`streamalert outbox --requeue` puts back). A crash between a send and its removal sends that entry again
after the restart, with the same delivery id: delivery is at least once, and receivers (PagerDuty by
dedup_key, webhooks by the `X-Streamalert-Delivery` header) drop the repeat.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
import orjson
import structlog
from redis.exceptions import RedisError
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, retry_if_exception_type, wait_exponential_jitter

from streamalert.clock import Stopwatch
from streamalert.config.notify import NotifySettings
from streamalert.notify.model import Notification
from streamalert.notify.sinks import build_sinks as build_sinks  # noqa: PLC0414 (re-exported)
from streamalert.notify.sinks.base import DeliveryError, Redacting, Sink
from streamalert.notify.sinks.endpoint import scrub
from streamalert.state.base import Store
from streamalert.telemetry.metrics import Metrics

_log = structlog.get_logger("streamalert.notify")
Sleep = Callable[[float], Awaitable[None]]
T = TypeVar("T")


@dataclass(slots=True)
class Outcome:
    status: str  # "sent" or "dead"
    attempts: int
    error: str | None = None


@dataclass
class _Lane:
    queue: asyncio.Queue[tuple[str, bytes]] = field(default_factory=asyncio.Queue)
    task: asyncio.Task[None] | None = None


class Sender:
    def __init__(
        self,
        store: Store,
        sinks: dict[tuple[str, str], Sink],
        settings: NotifySettings,
        metrics: Metrics,
        sleep: Sleep = asyncio.sleep,
    ) -> None:
        self.store = store
        self.sinks = sinks
        self.settings = settings
        self.metrics = metrics
        self.sleep = sleep
        self.wake = asyncio.Event()
        self._lanes: dict[tuple[str, str, str], _Lane] = {}
        self._seen: str | None = None  # the last outbox entry handed to a lane
        self._slots = asyncio.Semaphore(settings.concurrency)
        self._http: aiohttp.ClientSession | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Drain the outbox until `stop`: on every `wake` (a commit added entries) and every tick."""
        tick = self.settings.ms("tick") / 1000
        try:
            while not stop.is_set():
                self.wake.clear()  # before the poll: a wake arriving during the poll is for entries it may have missed
                try:
                    await self.poll()
                except RedisError as exc:
                    _log.warning("outbox_unavailable", error=type(exc).__name__)
                waits = [asyncio.ensure_future(self.wake.wait()), asyncio.ensure_future(stop.wait())]
                await asyncio.wait(waits, timeout=tick, return_when=asyncio.FIRST_COMPLETED)
                for waiter in waits:
                    waiter.cancel()
        finally:
            await self.close()

    async def poll(self) -> None:
        """Hand every outbox entry not seen yet to its lane."""
        while True:
            entries = await self.store.outbox(self._seen, 500)
            for entry_id, raw in entries:
                self._seen = entry_id
                self._enqueue(entry_id, raw)
            if len(entries) < 500:
                break
        self.metrics.outbox_depth.set(await self.store.outbox_depth())

    async def drain(self) -> None:
        """Deliver everything in the outbox now (replay and tests): returns when every lane is idle."""
        await self.poll()
        for lane in list(self._lanes.values()):
            await lane.queue.join()
        self.metrics.outbox_depth.set(await self.store.outbox_depth())

    async def close(self) -> None:
        for lane in self._lanes.values():
            if lane.task is not None:
                lane.task.cancel()
        for lane in self._lanes.values():
            if lane.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await lane.task
        self._lanes.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    def _enqueue(self, entry_id: str, raw: bytes) -> None:
        try:
            head = orjson.loads(raw)
            key = (str(head["receiver"]), str(head["sink"]), str(head["group_key"]))
        except (orjson.JSONDecodeError, KeyError, TypeError):
            key = ("", "", entry_id)  # unreadable: its own lane, dead-lettered there
        lane = self._lanes.get(key)
        if lane is None:
            lane = self._lanes[key] = _Lane()
            lane.task = asyncio.create_task(self._work(key, lane))
        lane.queue.put_nowait((entry_id, raw))

    async def _work(self, key: tuple[str, str, str], lane: _Lane) -> None:
        while True:
            if lane.queue.empty():  # idle: the lane ends (a group's next notification starts a new one)
                del self._lanes[key]
                return
            entry_id, raw = await lane.queue.get()
            try:
                await self._deliver_entry(entry_id, raw)
            finally:
                lane.queue.task_done()

    async def _deliver_entry(self, entry_id: str, raw: bytes) -> None:
        try:
            notification = Notification.from_json(raw)
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            unreadable = _dead_record(None, raw, "unreadable outbox entry", 0)
            await self._stored(lambda: self.store.outbox_dead(entry_id, unreadable))
            return
        sink = self.sinks.get((notification.receiver, notification.sink))
        kind = notification.sink.partition("/")[0]
        if sink is None:
            outcome = Outcome("dead", 0, f"no sink {notification.sink} in receiver {notification.receiver}")
        else:
            outcome = await self.deliver(entry_id, notification, sink)
        record = {
            "id": notification.id,
            "receiver": notification.receiver,
            "sink": notification.sink,
            "status": outcome.status,
            "alert_status": notification.status,
            "alerts": [
                {"alertname": a.name, "status": a.status, "fingerprint": a.fingerprint} for a in notification.alerts
            ],
            "group_key": notification.group_key,
            "at": notification.at,
            "attempts": outcome.attempts,
        }
        if outcome.status == "sent":
            done = orjson.dumps(record)
            await self._stored(lambda: self.store.outbox_done(entry_id, done, self.settings.history))
        else:
            dead = _dead_record(notification, raw, outcome.error, outcome.attempts)
            await self._stored(lambda: self.store.outbox_dead(entry_id, dead))
            self.metrics.notifications.labels(kind, "dead").inc()
            _log.error(
                "notification_dead",
                receiver=notification.receiver,
                sink=notification.sink,
                id=notification.id,
                error=outcome.error,
                attempts=outcome.attempts,
            )

    async def deliver(self, entry_id: str, notification: Notification, sink: Sink) -> Outcome:
        """Send with retries: exponential backoff with jitter, at least what a 429's Retry-After asks (capped
        at retry_max); no retry for an error a retry cannot fix; dead after max_attempts in all (counted in
        the store, so a restart does not start the count again)."""
        kind = notification.sink.partition("/")[0]
        attempts = 0
        initial = self.settings.ms("retry_initial") / 1000
        # initial, 2x, 4x ... up to retry_max, each plus up to `initial` of jitter (replicas do not retry in step)
        backoff = wait_exponential_jitter(multiplier=initial, max=self.settings.ms("retry_max") / 1000, jitter=initial)
        cap = self.settings.ms("retry_max") / 1000

        def wait(state: RetryCallState) -> float:
            error = state.outcome.exception() if state.outcome is not None else None
            asked = error.retry_after if isinstance(error, DeliveryError) and error.retry_after else 0.0
            return max(backoff(state), min(asked, cap))

        def give_up(state: RetryCallState) -> bool:
            return attempts >= self.settings.max_attempts

        retrying = AsyncRetrying(
            stop=give_up,
            wait=wait,
            retry=retry_if_exception(lambda e: isinstance(e, DeliveryError) and e.retryable),
            sleep=self.sleep,
            reraise=True,
        )

        async def attempt() -> None:
            nonlocal attempts
            attempts = await self._stored(lambda: self.store.outbox_attempt(entry_id))
            if attempts > self.settings.max_attempts:  # attempts made before a restart used them up
                raise DeliveryError(
                    f"{kind}: no attempts left (max_attempts reached before a restart)", retryable=False
                )
            async with self._slots:  # a slot per request in flight: not held through the backoff between attempts
                watch = Stopwatch()
                try:
                    async with asyncio.timeout(sink.config.timeout_s()):
                        await sink.send(notification, await self._session())
                except TimeoutError:
                    timed_out = DeliveryError(f"{kind}: timed out after {sink.config.timeout}", retryable=True)
                    self._failed(kind, str(timed_out))
                    raise timed_out from None
                except DeliveryError as exc:
                    self._failed(kind, str(exc), exc.status)
                    raise
                except Exception as exc:  # a bug in the sink: dead-letter this entry, keep the lane going
                    cause = unexpected(sink, exc)
                    _log.error("sink_error", sink=kind, id=notification.id, error=cause)
                    self._failed(kind, cause)
                    raise DeliveryError(f"{kind}: sink error ({cause})", retryable=False) from None
                finally:
                    self.metrics.send_latency.labels(kind).observe(watch.elapsed())
            self.metrics.notifications.labels(kind, "sent").inc()

        try:
            await retrying(attempt)
        except DeliveryError as exc:
            return Outcome("dead", attempts, str(exc))
        _log.info(
            "notification_sent",
            receiver=notification.receiver,
            sink=notification.sink,
            id=notification.id,
            attempts=attempts,
        )
        return Outcome("sent", attempts)

    async def _stored(self, call: Callable[[], Awaitable[T]]) -> T:
        """A store call retried until it succeeds (Redis down): the entry's bookkeeping is never skipped."""
        retrying = AsyncRetrying(
            wait=wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1),
            retry=retry_if_exception_type((RedisError, OSError)),
            before_sleep=lambda state: _log.warning("outbox_unavailable"),
            sleep=self.sleep,
            reraise=True,
        )

        async def once() -> T:
            return await call()

        result: T = await retrying(once)
        return result

    def _failed(self, kind: str, error: str, status: int | None = None) -> None:
        self.metrics.notifications.labels(kind, "failed").inc()
        if status == 429:
            self.metrics.notifications_429.labels(kind).inc()
        _log.warning("notification_failed", sink=kind, error=error)

    async def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession(headers={"User-Agent": "streamalert"})
        return self._http


def unexpected(sink: Sink, exc: Exception) -> str:
    """An exception a sink did not turn into a DeliveryError, as `Type: message` an operator can act on: the
    text goes through the sink's own `redact` (its URL and tokens), then `scrub` (any URL or address left)."""
    text = str(exc)
    if isinstance(sink, Redacting):
        try:
            text = sink.redact(text)
        except Exception:  # a broken redact must not leak what it was given
            text = ""
    text = scrub(text)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _dead_record(notification: Notification | None, raw: bytes, error: str | None, attempts: int) -> bytes:
    body: Any = (
        orjson.loads(notification.to_json()) if notification is not None else {"raw": raw.decode("utf-8", "replace")}
    )
    return orjson.dumps({"notification": body, "error": error, "attempts": attempts})
