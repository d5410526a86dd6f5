"""The sender over a real store (both backends where the store matters) and a stand-in webhook receiver: draining,
lanes (order within a group, independence across groups), dead letters and re-queueing, attempts that survive a
restart, unreadable entries, unconfigured sinks, and the live loop's wake-up and stop."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import orjson

from streamalert.config.notify import NotifySettings
from streamalert.notify.model import ZERO_TIME, Alert, Notification, fingerprint
from streamalert.notify.sender import Sender
from streamalert.notify.sinks.base import Sink, SinkConfig
from streamalert.notify.sinks.webhook import WebhookConfig, WebhookSink
from streamalert.state.base import Changes, Store
from streamalert.state.memory import MemoryStore
from streamalert.telemetry.metrics import Metrics
from tests.notify.test_webhook import PATH, conformance_validator
from tests.notify.vendor import Vendor, serve

RECEIVER = "oncall"
SINK = "webhook/0"
DEADLINE_S = 5.0


# ---- helpers --------------------------------------------------------------------------------------------------


def make_notification(
    id: str, group: str = "g1", status: str = "firing", *, sink: str = SINK, receiver: str = RECEIVER
) -> Notification:
    labels = {"alertname": "DiskFull", "severity": "warning", "group": group}
    alert = Alert(
        fingerprint=fingerprint(labels),
        status="firing" if status == "firing" else "resolved",
        labels=labels,
        annotations={"summary": f"disk full ({group})"},
        starts_at="2024-05-01T10:00:00Z",
        ends_at=ZERO_TIME if status == "firing" else "2024-05-01T10:05:00Z",
        value=97,
    )
    return Notification(
        id=id,
        receiver=receiver,
        sink=sink,
        group_key=f'{{}}:{{group="{group}"}}',
        group_labels={"group": group},
        alerts=(alert,),
        at="2024-05-01T10:05:30Z",
    )


async def enqueue(store: Store, *items: Notification | bytes) -> None:
    raw = [item.to_json() if isinstance(item, Notification) else item for item in items]
    await store.commit(Changes(meta={}, outbox=raw), {})


def webhook(vendor: Vendor, timeout: str = "5s") -> WebhookSink:
    return WebhookSink(WebhookConfig.model_validate({"url": vendor.url + PATH, "timeout": timeout}))


def settings(**overrides: Any) -> NotifySettings:
    values: dict[str, Any] = {"max_attempts": 4, "retry_initial": "10ms", "retry_max": "50ms", **overrides}
    return NotifySettings.model_validate(values)


class RecordingSleep:
    """The sender's `sleep`: records what it was asked to wait and returns at once (no real backoff)."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@asynccontextmanager
async def sending(
    store: Store,
    sinks: dict[tuple[str, str], Sink],
    notify: NotifySettings | None = None,
    *,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    metrics: Metrics | None = None,
) -> AsyncIterator[Sender]:
    sender = Sender(
        store, sinks, notify or settings(), metrics or Metrics(), sleep=sleep if sleep is not None else RecordingSleep()
    )
    try:
        yield sender
    finally:
        await sender.close()


async def drain(sender: Sender) -> None:
    async with asyncio.timeout(DEADLINE_S):
        await sender.drain()


async def until(check: Callable[[], Awaitable[bool]], what: str) -> None:
    """Wait for a state, polling it, within DEADLINE_S."""
    try:
        async with asyncio.timeout(DEADLINE_S):
            while True:
                if await check():
                    return
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def history(store: Store) -> list[dict[str, Any]]:
    return [orjson.loads(r) for r in await store.notifications(100)]


async def dead(store: Store) -> list[dict[str, Any]]:
    return [orjson.loads(r) for _, r in await store.dead_letters(100)]


def delivered_ids(vendor: Vendor) -> list[str]:
    return [r.headers["x-streamalert-delivery"] for r in vendor.accepted]


def requested_ids(vendor: Vendor) -> list[str]:
    return [r.headers["x-streamalert-delivery"] for r in vendor.requests]


def sample(metrics: Metrics, name: str, **labels: str) -> float | None:
    return metrics.registry.get_sample_value(f"streamalert_{name}", labels)


# ---- draining -------------------------------------------------------------------------------------------------


async def test_drain_delivers_each_entry_once_into_history(store: Store) -> None:
    notes = [make_notification("n1", "g1"), make_notification("n2", "g2"), make_notification("n3", "g1", "resolved")]
    await enqueue(store, *notes)
    metrics = Metrics()
    async with (
        serve(Vendor(conformance_validator)) as vendor,
        sending(store, {(RECEIVER, SINK): webhook(vendor)}, metrics=metrics) as sender,
    ):
        await drain(sender)
        await drain(sender)  # nothing left: nothing sent again
    assert Counter(delivered_ids(vendor)) == {"n1": 1, "n2": 1, "n3": 1}
    assert len(vendor.requests) == 3
    assert all(r.problems == [] for r in vendor.requests)
    assert await store.outbox_depth() == 0
    assert await store.outbox(None, 10) == []
    assert sample(metrics, "outbox_depth") == 0
    records = {r["id"]: r for r in await history(store)}
    assert set(records) == {"n1", "n2", "n3"}
    for note in notes:
        record = records[note.id]
        assert record["status"] == "sent"
        assert record["attempts"] == 1
        assert record["receiver"] == RECEIVER
        assert record["sink"] == SINK
        assert record["group_key"] == note.group_key
        assert record["alert_status"] == note.status
    assert await dead(store) == []
    assert sample(metrics, "notifications_total", sink="webhook", status="sent") == 3


# ---- lanes ----------------------------------------------------------------------------------------------------


async def test_a_retried_trigger_is_still_delivered_before_its_resolve(store: Store) -> None:
    await enqueue(store, make_notification("trigger", "g1"), make_notification("resolve", "g1", "resolved"))
    async with (
        serve(Vendor(conformance_validator)) as vendor,
        sending(store, {(RECEIVER, SINK): webhook(vendor)}) as sender,
    ):
        vendor.fail(500, times=2)  # the first two requests: the trigger's first two attempts
        await drain(sender)
    assert requested_ids(vendor) == ["trigger", "trigger", "trigger", "resolve"]
    assert [r.answered for r in vendor.requests] == [500, 500, 200, 200]
    assert [(r["id"], r["attempts"]) for r in await history(store)] == [("trigger", 3), ("resolve", 1)]
    assert await store.outbox_depth() == 0


async def test_a_hanging_group_does_not_hold_up_another_group(store: Store) -> None:
    async with (
        serve(Vendor(conformance_validator)) as vendor,
        sending(store, {(RECEIVER, SINK): webhook(vendor, timeout="1s")}) as sender,
    ):
        vendor.hang()  # the first request (group a's) gets no answer until the sink's timeout
        await enqueue(store, make_notification("a", "ga"))
        await sender.poll()
        await until(lambda: _value(len(vendor.requests) == 1), "group a's request to hang")
        await enqueue(store, make_notification("b", "gb"))
        await sender.poll()
        await until(lambda: _has(store, "b"), "group b to be delivered while group a hangs")
        await drain(sender)  # group a: timed out, retried, delivered
    assert [(r["id"], r["attempts"]) for r in await history(store)] == [("b", 1), ("a", 2)]
    assert requested_ids(vendor) == ["a", "b", "a"]


async def test_a_group_in_backoff_does_not_hold_up_another_group() -> None:
    """A lane waiting out its backoff delivers nothing, so it must not take one of the `concurrency` slots
    (deliveries in flight at once) from the other lanes: with one slot, group b goes out while group a waits."""
    store = MemoryStore()
    release = asyncio.Event()
    waits: list[float] = []

    async def sleep(seconds: float) -> None:  # group a's backoff lasts until the test releases it
        waits.append(seconds)
        await release.wait()

    await enqueue(store, make_notification("a", "ga"), make_notification("b", "gb"))
    async with (
        serve(Vendor(conformance_validator)) as vendor,
        sending(store, {(RECEIVER, SINK): webhook(vendor)}, settings(concurrency=1), sleep=sleep) as sender,
    ):
        vendor.fail(500)  # group a's first attempt
        await sender.poll()
        try:
            await until(lambda: _has(store, "b"), "group b to be delivered while group a backs off")
        finally:
            release.set()
        await drain(sender)
    assert len(waits) == 1
    assert [(r["id"], r["attempts"]) for r in await history(store)] == [("b", 1), ("a", 2)]


async def _value(result: bool) -> bool:
    return result


async def _has(store: Store, notification_id: str) -> bool:
    return any(r["id"] == notification_id for r in await history(store))


# ---- dead letters, re-queueing, restarts ----------------------------------------------------------------------


async def test_dead_letters_after_max_attempts_then_requeued(store: Store) -> None:
    note = make_notification("n1")
    await enqueue(store, note)
    metrics = Metrics()
    async with serve(Vendor(conformance_validator)) as vendor:
        vendor.fail(500, times=3)
        async with sending(store, {(RECEIVER, SINK): webhook(vendor)}, settings(max_attempts=3), metrics=metrics) as s:
            await drain(s)
        assert len(vendor.requests) == 3
        assert vendor.accepted == []
        assert await store.outbox_depth() == 0
        [letter] = await dead(store)
        assert letter["error"] == "webhook: HTTP 500: ok"  # the status and what the answer said
        assert letter["attempts"] == 3
        assert Notification.from_json(orjson.dumps(letter["notification"])) == note
        assert sample(metrics, "notifications_total", sink="webhook", status="dead") == 1
        assert sample(metrics, "notifications_total", sink="webhook", status="failed") == 3

        assert await store.requeue(None) == 1
        assert await dead(store) == []
        assert await store.outbox_depth() == 1
        async with sending(store, {(RECEIVER, SINK): webhook(vendor)}, settings(max_attempts=3)) as again:
            await drain(again)
    assert delivered_ids(vendor) == ["n1"]  # the same delivery id as the failed attempts
    assert requested_ids(vendor) == ["n1"] * 4
    assert [(r["id"], r["status"], r["attempts"]) for r in await history(store)] == [("n1", "sent", 1)]
    assert await store.outbox_depth() == 0


async def test_attempts_counted_before_a_restart_are_not_made_again(store: Store) -> None:
    await enqueue(store, make_notification("n1"))
    [(entry_id, _)] = await store.outbox(None, 10)
    assert await store.outbox_attempt(entry_id) == 1  # a first sender's two attempts
    assert await store.outbox_attempt(entry_id) == 2
    async with serve(Vendor(conformance_validator)) as vendor:
        vendor.fail(500, times=5)
        async with sending(store, {(RECEIVER, SINK): webhook(vendor)}, settings(max_attempts=3)) as sender:
            await drain(sender)
    assert len(vendor.requests) == 1  # the one attempt left
    [letter] = await dead(store)
    assert letter["attempts"] == 3
    assert letter["error"] == "webhook: HTTP 500: ok"


async def test_a_sender_closed_mid_retry_leaves_its_attempts_counted(store: Store) -> None:
    await enqueue(store, make_notification("n1"))
    backing_off = asyncio.Event()

    async def sleep(seconds: float) -> None:  # the first sender stops in its second backoff
        if len(vendor.requests) >= 2:
            backing_off.set()
            await asyncio.Event().wait()

    async with serve(Vendor(conformance_validator)) as vendor:
        vendor.fail(500, times=5)
        async with sending(store, {(RECEIVER, SINK): webhook(vendor)}, settings(max_attempts=3), sleep=sleep) as first:
            await first.poll()
            async with asyncio.timeout(DEADLINE_S):
                await backing_off.wait()
        assert len(vendor.requests) == 2
        assert await store.outbox_depth() == 1
        async with sending(store, {(RECEIVER, SINK): webhook(vendor)}, settings(max_attempts=3)) as second:
            await drain(second)
    assert len(vendor.requests) == 3
    [letter] = await dead(store)
    assert letter["attempts"] == 3
    assert await store.outbox_depth() == 0


# ---- entries the sender cannot deliver -----------------------------------------------------------------------


async def test_unreadable_entries_are_dead_lettered_and_the_lane_goes_on(store: Store) -> None:
    garbage = b"\xff\x00 not json"
    partial = orjson.dumps({"receiver": RECEIVER, "sink": SINK, "group_key": make_notification("x").group_key})
    await enqueue(store, garbage, partial, make_notification("n1"))
    async with (
        serve(Vendor(conformance_validator)) as vendor,
        sending(store, {(RECEIVER, SINK): webhook(vendor)}) as sender,
    ):
        await drain(sender)
    assert delivered_ids(vendor) == ["n1"]
    letters = await dead(store)  # in whichever order their lanes finished
    assert [letter["error"] for letter in letters] == ["unreadable outbox entry"] * 2
    assert [letter["attempts"] for letter in letters] == [0, 0]
    assert sorted(letter["notification"]["raw"] for letter in letters) == sorted(
        [garbage.decode("utf-8", "replace"), partial.decode()]
    )
    assert await store.outbox_depth() == 0


async def test_a_notification_for_an_unconfigured_sink_is_dead_lettered(store: Store) -> None:
    await enqueue(store, make_notification("n1", sink="slack/3"), make_notification("n2", receiver="nobody"))
    metrics = Metrics()
    async with (
        serve(Vendor(conformance_validator)) as vendor,
        sending(store, {(RECEIVER, SINK): webhook(vendor)}, metrics=metrics) as sender,
    ):
        await drain(sender)
    assert vendor.requests == []
    first, second = sorted(await dead(store), key=lambda letter: str(letter["notification"]["id"]))  # two lanes
    assert first["notification"]["id"] == "n1"
    assert "slack/3" in first["error"]
    assert RECEIVER in first["error"]
    assert second["notification"]["id"] == "n2"
    assert SINK in second["error"]
    assert "nobody" in second["error"]
    assert first["attempts"] == second["attempts"] == 0
    assert sample(metrics, "notifications_total", sink="slack", status="dead") == 1
    assert await store.outbox_depth() == 0


class _Broken:
    """A sink (say a third-party one) with a bug for one notification: it raises something not a DeliveryError."""

    def __init__(self, inner: WebhookSink) -> None:
        self.inner = inner

    @property
    def config(self) -> SinkConfig:
        return self.inner.config

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        if notification.id == "buggy":
            raise RuntimeError("sink bug")
        await self.inner.send(notification, http)


async def test_a_sink_raising_an_unexpected_error_does_not_stop_its_lane() -> None:
    """The entry is dead-lettered (an error naming the exception), the next entry of the lane is delivered, and
    the sender closes cleanly."""
    store = MemoryStore()
    await enqueue(store, make_notification("buggy"), make_notification("n2"))
    async with serve(Vendor(conformance_validator)) as vendor:
        sender = Sender(store, {(RECEIVER, SINK): _Broken(webhook(vendor))}, settings(), Metrics(), RecordingSleep())
        try:
            await drain(sender)
        finally:
            await sender.close()
    assert delivered_ids(vendor) == ["n2"]
    [letter] = await dead(store)
    assert letter["notification"]["id"] == "buggy"
    assert "RuntimeError" in letter["error"]
    assert await store.outbox_depth() == 0


# ---- the live loop --------------------------------------------------------------------------------------------


async def test_run_delivers_on_wake_and_returns_on_stop(store: Store) -> None:
    metrics = Metrics()
    metrics.outbox_depth.set(-1)  # each poll sets it: tells when the loop has polled and gone to sleep
    stop = asyncio.Event()
    async with serve(Vendor(conformance_validator)) as vendor:
        sender = Sender(store, {(RECEIVER, SINK): webhook(vendor)}, settings(tick="1h"), metrics, RecordingSleep())
        task = asyncio.create_task(sender.run(stop))
        try:
            await until(lambda: _value(sample(metrics, "outbox_depth") == 0), "the first poll")
            await enqueue(store, make_notification("late"))
            sender.wake.set()  # what a commit does; the tick (1h) would be far too late
            await until(lambda: _has(store, "late"), "the woken sender to deliver")
            stop.set()
            async with asyncio.timeout(DEADLINE_S):
                await task
        finally:
            if not task.done():
                task.cancel()
            await sender.close()
    assert delivered_ids(vendor) == ["late"]
    assert await store.outbox_depth() == 0


class _CommitDuringPoll(MemoryStore):
    """A commit and its wake-up land while the sender reads the outbox (after the read): as when the pipeline
    commits while the sender's poll awaits Redis."""

    def __init__(self, late: Notification) -> None:
        super().__init__()
        self.late = late
        self.wake: Callable[[], None] | None = None

    async def outbox(self, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        entries = await super().outbox(after, limit)
        if self.wake is not None:
            wake, self.wake = self.wake, None
            await enqueue(self, self.late)
            wake()
        return entries


async def test_a_wake_during_a_poll_is_not_lost() -> None:
    store = _CommitDuringPoll(make_notification("late"))
    stop = asyncio.Event()
    async with serve(Vendor(conformance_validator)) as vendor:
        sender = Sender(store, {(RECEIVER, SINK): webhook(vendor)}, settings(tick="1h"), Metrics(), RecordingSleep())
        store.wake = sender.wake.set
        task = asyncio.create_task(sender.run(stop))
        try:
            await until(lambda: _has(store, "late"), "the entry committed (and woken for) during a poll")
        finally:
            stop.set()
            async with asyncio.timeout(DEADLINE_S):
                await task
            await sender.close()
    assert delivered_ids(vendor) == ["late"]


async def test_run_returns_at_once_when_stop_is_set() -> None:
    stop = asyncio.Event()
    stop.set()
    sender = Sender(MemoryStore(), {}, settings(tick="1h"), Metrics(), RecordingSleep())
    async with asyncio.timeout(DEADLINE_S):
        await sender.run(stop)
