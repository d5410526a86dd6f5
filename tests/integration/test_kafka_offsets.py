"""Stored Kafka offsets outside the partition's log (topic re-created, data lost), against a real broker.

The topic is deleted and created again with librdkafka's admin client (Tansu supports both), so the offset
stored with the state lies above the new log's end. Tansu answers a fetch there with no records and its high
watermark rather than OFFSET_OUT_OF_RANGE, and cannot delete records (DeleteRecords closes the connection), so
"below the log start" and the broker's refusal are not reproduced here; kafka_offsets.py documents both paths.
"""

from __future__ import annotations

import asyncio
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, MutableMapping
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import redis
import redis.asyncio as aioredis
from aiokafka import TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]
from structlog.testing import capture_logs

from streamalert.clock import ManualClock, Stopwatch
from streamalert.engine import Engine
from streamalert.pipeline import Health, run_live
from streamalert.replicas import Forwarder
from streamalert.sources.kafka import OFFSET, KafkaConfig, KafkaSource
from streamalert.sources.kafka_offsets import OffsetGuard
from streamalert.state import keys
from streamalert.state.redis import RedisStore
from streamalert.telemetry.metrics import Metrics
from streamalert.testing import CapturingSink, free_port, rules_from_yaml
from tests.integration.kafka_support import create_topic, produce, start_run, unique, write_config

pytestmark = pytest.mark.redis

RULES = "rules:\n  - {name: errors, match: {level: error}, window: 1h, condition: count >= 1000}\n"


def records(count: int, first: int = 0) -> list[bytes]:
    """Error lines stamped 09:00:00 + first, first + 1, ... seconds (2026-01-26)."""
    stamps = [divmod(first + i, 60) for i in range(count)]
    return [f'{{"timestamp": "2026-01-26T09:{m:02d}:{s:02d}.000Z", "level": "error"}}'.encode() for m, s in stamps]


def recreate_topic(bootstrap: str, topic: str, partitions: int = 1) -> None:
    """Delete the topic and create it again (empty) under the same name."""
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.delete_topics([topic]).values():
        future.result(timeout=15)
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
        future.result(timeout=15)


class Live:
    """run_live over a KafkaSource and a Redis namespace, until `stop()`; `policy` None: the default."""

    def __init__(
        self, bootstrap: str, topic: str, redis_url: str, namespace: str, group: str, policy: str | None = None
    ) -> None:
        options: dict[str, Any] = {} if policy is None else {"offset_out_of_range": policy}
        config = KafkaConfig(
            brokers=[bootstrap],
            topics=[topic],
            group_id=group,
            auto_offset_reset="earliest",
            session_timeout_ms=6000,
            heartbeat_interval_ms=1000,
            tick_ms=50,
            idle_ms=300,
            **options,
        )
        self.metrics = Metrics()
        self.source = KafkaSource(config, self.metrics)
        self.store = RedisStore.from_url(f"{redis_url}?namespace={namespace}")
        self.engine = Engine(rules_from_yaml(RULES))
        clock = ManualClock(1_769_418_600_000)  # 09:10
        self.task = asyncio.create_task(
            run_live(self.engine, self.source, self.store, CapturingSink(), clock, self.metrics, Health())
        )

    def consumed(self) -> float:
        return float(self.metrics.events_in.labels("kafka")._value.get())

    def out_of_range(self, topic: str, partition: int = 0) -> float:
        return float(self.metrics.kafka_offset_out_of_range.labels(topic, str(partition))._value.get())

    async def stored(self) -> dict[str, int]:
        snapshot = await self.store.load([])
        return {k: v for k, v in snapshot.meta.items() if k.startswith(OFFSET)}

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


async def consumed_then_recreated(bootstrap: str, redis_url: str, namespace: str) -> str:
    """A one-partition topic whose 50 records are consumed (offset 50 stored), then deleted and created again.
    The next consumer is in a group of its own: the offsets stored with the state count, and Tansu makes a
    returning group wait for its former member's session to expire."""
    topic = create_topic(bootstrap, partitions=1)
    produce(bootstrap, topic, records(50), partition=0)
    first = Live(bootstrap, topic, redis_url, namespace, unique("group"))
    try:
        await eventually(lambda: first.consumed() == 50, 20, "the first 50 records")
        await eventually(lambda: first.source._stored.get(f"{topic}/0") == 50, 5, "offset 50 stored")
    finally:
        await first.stop()
    recreate_topic(bootstrap, topic)
    return topic


def reports(logs: list[MutableMapping[str, Any]]) -> list[MutableMapping[str, Any]]:
    return [entry for entry in logs if entry["event"] == "kafka_offset_out_of_range"]


async def test_a_recreated_topic_is_read_from_its_start(kafka_bootstrap: str, redis_url: str) -> None:
    """Stored offset 50, the topic re-created with 30 records: by default (earliest) all 30 and the 30 after
    them are consumed exactly once, the new offsets stored; logged at error level with the log's bounds and
    counted. (Before: nothing consumed, lag 0, nothing logged.)"""
    namespace = unique("ns")
    topic = await consumed_then_recreated(kafka_bootstrap, redis_url, namespace)
    produce(kafka_bootstrap, topic, records(30, 600), partition=0)
    with capture_logs() as logs:
        live = Live(kafka_bootstrap, topic, redis_url, namespace, unique("group"))
        try:
            await eventually(lambda: live.consumed() == 30, 20, "the 30 records of the new topic")
            produce(kafka_bootstrap, topic, records(30, 630), partition=0)
            await eventually(lambda: live.consumed() == 60, 20, "30 more")
            await eventually(lambda: not live.source.lagging(), 5, "caught up")
            assert live.source.fetching()
            assert live.source.problems() == []
            assert await live.stored() == {f"{OFFSET}{topic}/0": 60}
        finally:
            await live.stop()
    assert live.consumed() == 60
    assert live.out_of_range(topic) == 1
    [report] = reports(logs)
    assert report["log_level"] == "error"
    assert (report["topic"], report["partition"], report["stored_offset"]) == (topic, 0, 50)
    assert (report["log_start"], report["log_end"]) == (0, 30)


async def test_a_topic_recreated_while_consumed_is_read_from_its_start(kafka_bootstrap: str, redis_url: str) -> None:
    """The topic is deleted and created again while the source reads it: the records written to the new
    topic are all consumed, once."""
    topic = create_topic(kafka_bootstrap, partitions=1)
    produce(kafka_bootstrap, topic, records(50), partition=0)
    live = Live(kafka_bootstrap, topic, redis_url, unique("ns"), unique("group"))
    try:
        await eventually(lambda: live.consumed() == 50, 20, "the first 50 records")
        await eventually(lambda: live.source._stored.get(f"{topic}/0") == 50, 5, "offset 50 stored")
        recreate_topic(kafka_bootstrap, topic)
        produce(kafka_bootstrap, topic, records(20, 600), partition=0)
        await eventually(lambda: live.consumed() == 70, 30, "the 20 records of the new topic")
        await eventually(lambda: live.source._stored.get(f"{topic}/0") == 20, 5, "offset 20 stored")
        assert live.out_of_range(topic) == 1
    finally:
        await live.stop()
    assert live.consumed() == 70


async def test_latest_continues_at_the_log_end(kafka_bootstrap: str, redis_url: str) -> None:
    """With `latest`, the records written to the new topic before the source saw it are passed over and
    only later ones consumed; the log end becomes the stored offset at once."""
    namespace = unique("ns")
    topic = await consumed_then_recreated(kafka_bootstrap, redis_url, namespace)
    produce(kafka_bootstrap, topic, records(30, 600), partition=0)
    live = Live(kafka_bootstrap, topic, redis_url, namespace, unique("group"), policy="latest")
    try:
        await eventually(lambda: live.out_of_range(topic) == 1, 20, "the offset found out of range")
        await eventually(lambda: live.source._stored.get(f"{topic}/0") == 30, 5, "offset 30 stored")
        assert await live.stored() == {f"{OFFSET}{topic}/0": 30}
        produce(kafka_bootstrap, topic, records(25, 630), partition=0)
        await eventually(lambda: live.source._stored.get(f"{topic}/0") == 55, 20, "the 25 new records")
    finally:
        await live.stop()
    assert live.consumed() == 25


async def test_replicas_forward_a_recreated_topic_from_its_start(kafka_bootstrap: str, redis_url: str) -> None:
    """Replicas mode: the forwarded offset (500) lies above the new log's end; the partition's forwarded
    offset moves to the log start in the intake stream and every record of the log is forwarded once."""
    topic = create_topic(kafka_bootstrap, partitions=1)
    produce(kafka_bootstrap, topic, records(30, 600), partition=0)
    namespace, lane = unique("ns"), f"{topic}/0"
    client = aioredis.Redis.from_url(redis_url)
    await client.hset(keys.intake_offsets(namespace), lane, 500)
    metrics, clock = Metrics(), ManualClock(1_769_418_600_000)
    forwarder = Forwarder(Engine(rules_from_yaml(RULES)), client, namespace, clock, metrics)
    config = KafkaConfig(
        brokers=[kafka_bootstrap], topics=[topic], group_id=unique("group"), session_timeout_ms=6000, tick_ms=50
    )
    source = KafkaSource(config, metrics, positions=forwarder.positions)
    task = asyncio.create_task(forwarder.run(source))
    try:
        for _ in range(1000):  # poll with a deadline (20 s)
            if await client.hget(keys.intake_offsets(namespace), lane) == b"30":
                break
            await asyncio.sleep(0.02)
        stream = cast(list[tuple[bytes, dict[bytes, bytes]]], await client.xrange(keys.intake(namespace)))
        entries = [orjson.loads(fields[b"e"]) for _, fields in stream]
    finally:
        await source.close()
        await asyncio.wait_for(task, 20)
        await client.aclose()
    assert (entries[0]["start"], entries[0]["end"]) == (500, 0)  # moved to the log start
    assert sum(len(e["records"]) for e in entries) == 30
    assert metrics.kafka_offset_out_of_range.labels(topic, "0")._value.get() == 1


def test_a_stopped_partition_is_logged_again_every_minute() -> None:
    """`fail`: the partition is reported as a problem and logged again every minute (counted once); the
    broker's refusal is taken as it is, whatever the log's bounds say."""
    clock, metrics, tp = ManualClock(0), Metrics(), TopicPartition("logs", 3)
    guard = OffsetGuard("fail", clock, metrics)
    with capture_logs() as logs:
        verdict = guard.judge(tp, 5000, (0, 10), None, refused=True)
        clock.advance(59_999)
        guard.remind()
        assert len(reports(logs)) == 1
        clock.advance(1)
        guard.remind()
    assert verdict is not None
    assert verdict.resume_at is None
    assert guard.problems() == ["logs/3: offset 5000 is outside the log [0, 10); not read (offset_out_of_range: fail)"]
    assert [(r["stored_offset"], r["log_start"], r["log_end"]) for r in reports(logs)] == [(5000, 0, 10)] * 2
    assert metrics.kafka_offset_out_of_range.labels("logs", "3")._value.get() == 1
    guard.forget([tp])  # revoked: its next owner looks again
    assert guard.problems() == []


# ---- fail: `streamalert run` itself, for readiness and metrics over HTTP ------------------------------------


def status(port: int, path: str) -> tuple[int, bytes]:
    """(status, body) of a GET, (0, b"") while the process does not listen yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def poll(predicate: Callable[[], bool], within: float, what: str, proc: subprocess.Popen[bytes]) -> None:
    watch = Stopwatch()
    while not predicate():
        if proc.poll() is not None:
            raise AssertionError(f"streamalert run exited ({proc.returncode}) while waiting for {what}")
        if watch.elapsed() > within:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        threading.Event().wait(0.05)  # between polls of another process's state


@pytest.fixture
def plain(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


def test_fail_stops_the_partition_and_keeps_readiness_failed(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, plain: redis.Redis
) -> None:
    """With `fail`, a partition stored at offset 5000 of a 10-record log is not read: /readyz answers 503,
    the metric counts it, the error log names topic, partition and offsets, and the other partition (no
    stored offset) is read on; the process keeps running and stops cleanly."""
    topic = create_topic(kafka_bootstrap, partitions=2)
    namespace, port = unique("ns"), free_port()
    plain.hset(f"streamalert:{{{namespace}}}:meta", f"{OFFSET}{topic}/0", 5000)
    produce(kafka_bootstrap, topic, records(10, 600), partition=0)
    state, policy = f"{redis_url}?namespace={namespace}", "    offset_out_of_range: fail\n"
    config = write_config(tmp_path, kafka_bootstrap, topic, state, port, extra=policy)
    out, err = tmp_path / "out.jsonl", tmp_path / "err.log"
    proc = start_run(config, out, err)
    try:
        metric = f'streamalert_kafka_offset_out_of_range_total{{partition="0",topic="{topic}"}} 1.0'.encode()
        poll(lambda: metric in status(port, "/metrics")[1], 60, "the partition counted", proc)
        produce(kafka_bootstrap, topic, records(7, 610), partition=1)
        produced = b'streamalert_events_in_total{source="kafka"} 7.0'
        poll(lambda: produced in status(port, "/metrics")[1], 30, "the other partition read", proc)
        code, body = status(port, "/readyz")
        assert code == 503, body
        assert produced in status(port, "/metrics")[1]  # nothing of partition 0
        assert plain.hget(f"streamalert:{{{namespace}}}:meta", f"{OFFSET}{topic}/0") == b"5000"
    finally:
        proc.terminate()
        code = proc.wait(timeout=30)
    assert code == 0
    logged = [orjson.loads(line) for line in err.read_bytes().splitlines() if b"kafka_offset_out_of_range" in line]
    assert logged
    assert logged[0]["level"] == "error"
    assert (logged[0]["topic"], logged[0]["partition"], logged[0]["stored_offset"]) == (topic, 0, 5000)
    assert (logged[0]["log_start"], logged[0]["log_end"]) == (0, 10)
