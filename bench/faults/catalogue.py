"""Every row of the fault suite: name, whether it is quick (also a CI test in tests/faults/), and how it runs.

Timers are compressed where the semantics allow: a 2 s lease for the quick kill row (what it measures is that a
restart continues exactly; the lease's length sets how long the restarted process waits, and also how long a
stall may last before the lease is lost, so the full `kill9` row keeps the default 10 s), and notification
retries from 100 ms to 30 s (20 attempts: a budget of about 6 minutes, longer than the sink outages).
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import redis
from confluent_kafka.admin import AdminClient

from bench.faults.big import big_bodies, groupby_1m, rules_10k
from bench.faults.harness import pause, poll
from bench.faults.hostile import hostile_kafka, hostile_vector
from bench.faults.result import Result
from bench.faults.rows import Env, create_topic, kafka_row, vector_row
from bench.faults.sinks import FaultyHook
from bench.faults.slow import slow_clients


@dataclass(frozen=True)
class Row:
    name: str
    quick: bool
    run: Callable[[Path], Result]


def _stored(env: Env) -> int:
    client = env.redis.client()
    try:
        meta = cast(dict[bytes, bytes], client.hgetall(f"streamalert:{{{env.namespace}}}:meta"))
        return sum(int(v) for k, v in meta.items() if k.startswith(b"offset:"))
    except redis.RedisError:
        return -1
    finally:
        client.close()


def kills(count: int, every_s: float) -> Callable[[Env], str]:
    def fault(env: Env) -> str:
        marks = []
        for _ in range(count):
            env.service.wait_ready(60)
            pause(every_s)
            marks.append(_stored(env))
            env.service.kill9()
        produced = env.load.made
        return f"{count} × kill -9 at stored offsets {marks} (of {produced:,} produced so far), each restarted"

    return fault


def redis_pause(seconds: float) -> Callable[[Env], str]:
    def fault(env: Env) -> str:
        env.redis.signal(signal.SIGSTOP)
        pause(seconds)
        env.redis.signal(signal.SIGCONT)
        return f"redis-server SIGSTOP {seconds:.0f} s, then SIGCONT (lease_ttl 10 s)"

    return fault


def redis_restart(env: Env) -> str:
    before = _stored(env)
    env.redis.stop()
    env.redis.start()
    return f"redis-server (appendonly yes, everysec) SIGTERM + start on the same port at offset {before:,}"


def broker_pause(seconds: float) -> Callable[[Env], str]:
    def fault(env: Env) -> str:
        assert env.broker is not None
        env.broker.signal(signal.SIGSTOP)
        pause(seconds)
        env.broker.signal(signal.SIGCONT)
        return (
            f"Tansu SIGSTOP {seconds:.0f} s then SIGCONT: the broker unreachable with its log kept (a real restart "
            "of Tansu's memory storage loses the log: that is the kafka-restart row)"
        )

    return fault


def _drained(env: Env) -> str:
    """Hold the producer and wait until every delivered record is applied (stored offsets = delivered)."""
    env.load.hold.set()
    pause(0.5)
    env.load.producer.flush(60)  # type: ignore[union-attr]
    done = poll(lambda: _stored(env) >= len(env.load.delivered), 60, 0.1)
    return f"{len(env.load.delivered):,} records applied before the fault" if done else "not drained in 60 s"


def broker_restart(env: Env) -> str:
    assert env.broker is not None
    drained = _drained(env)
    env.broker.stop()
    env.broker.start()
    create_topic(env.broker.bootstrap, env.topic, env.partitions)
    env.load.hold.clear()
    return (
        f"{drained}; Tansu restarted (memory storage: the log is gone), topic created again, producing again: "
        "stored offsets are above the new log end"
    )


def topic_recreate(env: Env) -> str:
    assert env.broker is not None
    drained = _drained(env)
    admin = AdminClient({"bootstrap.servers": env.broker.bootstrap})
    for future in admin.delete_topics([env.topic]).values():
        future.result(timeout=30)
    poll(lambda: env.topic not in admin.list_topics(timeout=5).topics, 30, 0.2)
    create_topic(env.broker.bootstrap, env.topic, env.partitions)
    env.load.hold.clear()
    return f"{drained}; topic deleted and created again on the running broker (Tansu supports both)"


def sink(mode: str, seconds: float, hook: FaultyHook) -> Callable[[Env], str]:
    def fault(env: Env) -> str:
        hook.set(mode)
        pause(seconds)
        hook.set("ok")
        return f"webhook answers {mode} for {seconds:.0f} s"

    return fault


def sinks_in_turn(seconds: float, hook: FaultyHook) -> Callable[[Env], str]:
    def fault(env: Env) -> str:
        for mode in ("5xx", "429", "hang"):
            hook.set(mode)
            pause(seconds)
        hook.set("ok")
        return f"webhook answers 5xx, then 429 (Retry-After: 1), then hangs, {seconds:.0f} s each"

    return fault


def _sink_row(name: str, mode: str, seconds: float) -> Callable[[Path], Result]:
    def run(folder: Path) -> Result:
        hook = FaultyHook()
        if mode == "all":
            fault, label = sinks_in_turn(seconds, hook), f"sink 5xx, 429, hang, {seconds:.0f} s each"
        else:
            fault, label = sink(mode, seconds, hook), f"sink {mode} {seconds:.0f} s"
        try:
            return vector_row(folder, name, label, fault, hook=hook)
        finally:
            hook.close()

    return run


ROWS = [
    Row(  # not in CI: tests/integration/test_kafka.py's kill -9 under Kafka load runs there (about 30 s)
        "kill9-quick",
        False,
        lambda f: kafka_row(f, "kill9-quick", "2 × kill -9 under Kafka load", kills(2, 3), lease_ttl="2s"),
    ),
    Row(
        "kill9",
        False,
        lambda f: kafka_row(f, "kill9", "5 × kill -9 under Kafka load", kills(5, 4), rate=2000),
    ),
    Row(
        "redis-pause-30s",
        False,
        lambda f: kafka_row(f, "redis-pause-30s", "Redis SIGSTOP 30 s", redis_pause(30), after_s=10),
    ),
    Row(
        "redis-pause-120s",
        False,
        lambda f: kafka_row(f, "redis-pause-120s", "Redis SIGSTOP 120 s", redis_pause(120), after_s=10),
    ),
    Row(
        "redis-restart-aof",
        True,
        lambda f: kafka_row(f, "redis-restart-aof", "Redis restart (AOF)", redis_restart, appendonly=True),
    ),
    Row(
        "kafka-pause-30s",
        False,
        lambda f: kafka_row(f, "kafka-pause-30s", "broker SIGSTOP 30 s", broker_pause(30), after_s=10),
    ),
    Row("kafka-restart", False, lambda f: kafka_row(f, "kafka-restart", "broker restart (log lost)", broker_restart)),
    Row("topic-recreate", False, lambda f: kafka_row(f, "topic-recreate", "topic deleted + created", topic_recreate)),
    Row("sinks-quick", True, _sink_row("sinks-quick", "all", 5)),
    Row("sink-5xx", False, _sink_row("sink-5xx", "5xx", 180)),
    Row("sink-429", False, _sink_row("sink-429", "429", 180)),
    Row("sink-hang", False, _sink_row("sink-hang", "hang", 180)),
    Row("slow-clients-quick", True, lambda f: slow_clients(f, "slow-clients-quick", 64, 8)),
    Row("slow-clients", False, lambda f: slow_clients(f, "slow-clients", 64, 60)),
    Row("big-bodies", True, lambda f: big_bodies(f, "big-bodies")),
    Row("groupby-1m", False, lambda f: groupby_1m(f, "groupby-1m", 1_000_000)),
    Row("groupby-1m-jemalloc", False, lambda f: groupby_1m(f, "groupby-1m-jemalloc", 1_000_000, "jemalloc")),
    Row("groupby-1m-pymalloc", False, lambda f: groupby_1m(f, "groupby-1m-pymalloc", 1_000_000, "pymalloc")),
    Row("hostile-vector", True, lambda f: hostile_vector(f, "hostile-vector")),
    Row("hostile-kafka", True, lambda f: hostile_kafka(f, "hostile-kafka")),
    Row("rules-10k", False, lambda f: rules_10k(f, "rules-10k", 10_000)),
]
