"""The Kafka source in-process, against a real broker: malformed records, redelivery, revocation."""

from __future__ import annotations

import asyncio
import io
import signal
import warnings
from collections.abc import Callable

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamalert.clock import ManualClock, WallClock
from streamalert.engine import Engine
from streamalert.pipeline import Health, run_live
from streamalert.sources.kafka import OFFSET, KafkaConfig, KafkaSource
from streamalert.state.redis import RedisStore
from streamalert.telemetry.metrics import Metrics
from streamalert.testing import CapturingSink, kafka_broker_process, rules_from_yaml
from tests.integration.kafka_support import create_topic, produce, unique

pytestmark = pytest.mark.redis

RULES = """
rules:
  - name: errors
    match: {level: error}
    window: 1h
    condition: count >= 1000
"""


def record(second: int, level: str = "error") -> bytes:
    """A log line stamped `second` seconds after 2026-01-26T09:00:00Z."""
    minute, second = divmod(second, 60)
    return f'{{"timestamp": "2026-01-26T09:{minute:02d}:{second:02d}.000Z", "level": "{level}"}}'.encode()


class Live:
    """run_live over a KafkaSource and a Redis namespace, until `stop()`."""

    def __init__(
        self, bootstrap: str, topic: str, redis_url: str, namespace: str, group: str, idle_ms: int = 300
    ) -> None:
        config = KafkaConfig(
            brokers=[bootstrap],
            topics=[topic],
            group_id=group,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            tick_ms=50,
            idle_ms=idle_ms,
        )
        self.metrics = Metrics()
        self.source = KafkaSource(config, self.metrics)
        self.store = RedisStore.from_url(f"{redis_url}?namespace={namespace}")
        self.engine = Engine(rules_from_yaml(RULES))
        self.sink = CapturingSink()
        clock = ManualClock(1_769_418_600_000)  # 09:10, after every record of these tests
        self.task = asyncio.create_task(
            run_live(self.engine, self.source, self.store, self.sink, clock, self.metrics, Health())
        )

    async def stop(self, within: float = 20) -> None:
        await self.source.close()
        await asyncio.wait_for(self.task, within)
        await self.store.close()


async def eventually(predicate: Callable[[], bool], within: float, what: str) -> None:
    for _ in range(int(within / 0.02)):  # poll with a deadline
        if predicate():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def stored(live: Live) -> dict[str, int]:
    snapshot = await live.store.load([])
    return {k: v for k, v in snapshot.meta.items() if k.startswith(OFFSET)}


async def test_records_that_are_not_json_objects_are_counted_and_passed(kafka_bootstrap: str, redis_url: str) -> None:
    """Garbage, a JSON array, a string and a tombstone between good records: all counted as malformed, the
    partition moves on to its end and the good records count."""
    topic = create_topic(kafka_bootstrap, partitions=1)
    values: list[bytes | None] = [record(1), b"not json", b"[1, 2]", b'"text"', None, b"\xff\xfe", record(2)]
    produce(kafka_bootstrap, topic, values)
    live = Live(kafka_bootstrap, topic, redis_url, unique("ns"), unique("group"))
    try:
        await eventually(lambda: live.engine.stats.matched == 2, 20, "the good records")
        await eventually(lambda: not live.source.lagging(), 5, "caught up")
    finally:
        await live.stop()
    malformed = live.metrics.events_malformed.labels("kafka")._value.get()
    assert malformed == 5
    assert await stored(live) == {f"{OFFSET}{topic}/0": 7}


async def test_records_below_the_stored_offset_are_not_applied_again(kafka_bootstrap: str, redis_url: str) -> None:
    """A consumer in a new group (Kafka has no offsets for it, so it would read from the start) continues at
    the offsets stored with the state: nothing is counted twice."""
    topic = create_topic(kafka_bootstrap, partitions=2)
    namespace = unique("ns")
    produce(kafka_bootstrap, topic, [record(s) for s in range(10)], partition=0)
    produce(kafka_bootstrap, topic, [record(s) for s in range(5)], partition=1)
    first = Live(kafka_bootstrap, topic, redis_url, namespace, unique("group"))
    try:
        await eventually(lambda: first.engine.stats.matched == 15, 20, "the first 15 records")
    finally:
        await first.stop()
    produce(kafka_bootstrap, topic, [record(s) for s in range(600, 603)], partition=1)  # at the wall clock
    second = Live(kafka_bootstrap, topic, redis_url, namespace, unique("group"))
    try:
        await eventually(lambda: second.engine.stats.matched >= 3, 20, "the 3 new records")
        await eventually(lambda: not second.source.lagging(), 5, "caught up")
    finally:
        await second.stop()
    assert second.engine.stats.matched == 3
    assert await stored(second) == {f"{OFFSET}{topic}/0": 10, f"{OFFSET}{topic}/1": 8}


async def test_revoked_partitions_are_committed_at_the_stored_offsets(kafka_bootstrap: str, redis_url: str) -> None:
    """Another member joins the group: the source finishes its batch, tells Kafka exactly the offsets stored
    with the state, and gives the partitions up."""
    topic = create_topic(kafka_bootstrap, partitions=2)
    group = unique("group")
    produce(kafka_bootstrap, topic, [record(s) for s in range(300)], partition=0)
    produce(kafka_bootstrap, topic, [record(s) for s in range(200)], partition=1)
    live = Live(kafka_bootstrap, topic, redis_url, unique("ns"), group)
    other = AIOKafkaConsumer(
        topic, bootstrap_servers=kafka_bootstrap, group_id=group, session_timeout_ms=6000, enable_auto_commit=False
    )
    try:
        await eventually(lambda: live.engine.stats.matched == 500, 20, "all records")
        await other.start()
        await eventually(lambda: bool(other.assignment()), 30, "the other member's assignment")
        await eventually(lambda: len(live.source.assigned()) < 2, 10, "a revocation")
        offsets = await stored(live)
        for tp in other.assignment():
            assert await other.committed(tp) == offsets[f"{OFFSET}{tp.topic}/{tp.partition}"]
        assert offsets == {f"{OFFSET}{topic}/0": 300, f"{OFFSET}{topic}/1": 200}
        assert TopicPartition(topic, 0) in other.assignment() or TopicPartition(topic, 1) in other.assignment()
    finally:
        await other.stop()
        await live.stop()


async def test_an_unreachable_broker_is_reported_and_stops_nothing_else(redis_url: str) -> None:
    """The broker goes away: within the bound the source reports it no longer fetches (readiness fails),
    and the live loop keeps running (no crash) until it is closed."""
    with kafka_broker_process() as (bootstrap, broker):
        topic = create_topic(bootstrap, partitions=1)
        produce(bootstrap, topic, [record(1)])
        live = Live(bootstrap, topic, redis_url, unique("ns"), unique("group"))
        live.source._clock = WallClock()  # aiokafka stamps fetch responses with the real time
        try:
            await eventually(lambda: live.engine.stats.matched == 1, 20, "the record")
            await eventually(live.source.fetching, 10, "fetching")
            broker.kill()
            broker.wait(timeout=10)
            await eventually(lambda: not live.source.fetching(), 20, "the outage to show")
            assert not live.task.done()
        finally:
            # With the broker gone a clean stop cannot leave the group; `streamalert run` bounds that with
            # shutdown_timeout (exit 1). Here the loop is simply cancelled.
            live.task.cancel()
            done, _ = await asyncio.wait({live.task}, timeout=30)
            await live.store.close()
        if not done:
            # Seen in full runs before KafkaSource ran getmany apart (aiokafka's getmany waited for a
            # reassignment that never came and did not end when cancelled). `streamalert run` bounds its own
            # shutdown; here it is reported with every task's stack rather than failed: not this test's subject.
            stacks = io.StringIO()
            for task in asyncio.all_tasks():
                task.print_stack(file=stacks)
            warnings.warn(f"cancelled live loop still running after 30 s:\n{stacks.getvalue()}", stacklevel=1)


async def test_after_a_broker_outage_a_partition_holds_the_clock_for_idle_ms(redis_url: str) -> None:
    """Producers buffer records while the broker is away and deliver them after reconnecting, often after
    this consumer's first answered fetch: so once fetches are answered again the partition still holds the
    clock (is lagging) for idle_ms, as after a record, instead of letting it follow the wall at once."""
    with kafka_broker_process() as (bootstrap, broker):
        topic = create_topic(bootstrap, partitions=1)
        produce(bootstrap, topic, [record(1)])
        live = Live(bootstrap, topic, redis_url, unique("ns"), unique("group"), idle_ms=3_000)
        clock = WallClock()  # aiokafka stamps fetch responses with the real time
        live.source._clock = clock
        tp = TopicPartition(topic, 0)
        try:
            await eventually(lambda: live.engine.stats.matched == 1, 20, "the record")
            await eventually(lambda: not live.source.lagging(), 20, "caught up and idle")
            broker.send_signal(signal.SIGSTOP)
            try:
                await eventually(lambda: bool(live.source.lagging()), 20, "the outage to hold the clock")
            finally:
                broker.send_signal(signal.SIGCONT)
            resumed = clock.now_ms()
            consumer = live.source._consumer
            assert consumer is not None
            await eventually(lambda: (consumer.last_poll_timestamp(tp) or 0) > resumed, 20, "a fetch answered")
            assert live.source.lagging() == [f"{topic}/0"]  # 3 s from the outage's end, not from the last record
            await eventually(lambda: not live.source.lagging(), 20, "idle again")
        finally:
            await live.stop()
