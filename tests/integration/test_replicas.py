"""Replicas mode's Redis protocol, in-process on a real redis-server and on a real Redis Cluster (the namespace
on a master the URL does not name): forwarding refuses a second writer of a partition, the evaluation applies
each forwarded batch once and holds its clock for silent partitions."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from streamalert.clock import ManualClock
from streamalert.engine import Engine
from streamalert.replicas import Forwarder, IntakeSource
from streamalert.sources import Batch
from streamalert.state import keys
from streamalert.state.redis import RedisStore
from streamalert.telemetry.metrics import Metrics
from streamalert.testing import LocalCluster, rules_from_yaml

pytestmark = pytest.mark.redis
_names = itertools.count()
RULES = "rules:\n  - {name: errors, match: {level: error}, window: 1m, condition: count >= 1}\n"
NOW = 1_769_418_000_000


@pytest.fixture(params=["redis", "cluster"])
async def space(request: pytest.FixtureRequest) -> AsyncIterator[tuple[aioredis.Redis, str]]:
    """A namespace and the client replicas mode gets for it (the store's, as app.py passes it on)."""
    if request.param == "redis":
        namespace = f"rep{next(_names)}"
        store = RedisStore.from_url(f"{request.getfixturevalue('redis_url')}?namespace={namespace}")
    else:
        cluster: LocalCluster = request.getfixturevalue("cluster")
        namespace = cluster.namespace_on(1 + next(_names), "rep")
        store = RedisStore.from_url(f"{cluster.url}?namespace={namespace}")
    yield store.client, namespace
    await store.close()


def forwarder(client: aioredis.Redis, namespace: str) -> Forwarder:
    engine = Engine(rules_from_yaml(RULES))
    return Forwarder(engine, client, namespace, ManualClock(NOW), Metrics())


async def read(source: IntakeSource, count: int) -> list[Batch]:
    batches: list[Batch] = []
    async for batch in source.batches():
        if batch.lines or batch.meta:
            batches.append(batch)
        if len(batches) == count:
            break
    return batches


async def test_a_partition_is_forwarded_by_one_replica_only(space: tuple[aioredis.Redis, str]) -> None:
    """A second forwarder of the same offsets (the former owner after a rebalance) is refused and told where
    the partition stands; continuing from there is accepted."""
    client, namespace = space
    owner, former = forwarder(client, namespace), forwarder(client, namespace)
    assert await owner._append_entry("logs/0", 0, 10, [(NOW, b'{"level":"error"}')], NOW) is None
    assert await former._append_entry("logs/0", 0, 10, [(NOW, b'{"level":"error"}')], NOW) == 10
    assert await former._append_entry("logs/0", 10, 12, [], None) is None
    assert await client.xlen(keys.intake(namespace)) == 2
    assert await client.hget(keys.intake_offsets(namespace), "logs/0") == b"12"


async def test_the_evaluation_applies_each_forwarded_batch_once(space: tuple[aioredis.Redis, str]) -> None:
    """After a restart the evaluation re-reads entries it had applied; those are skipped by offset."""
    client, namespace = space
    owner = forwarder(client, namespace)
    for start, end in ((0, 5), (5, 9), (9, 10)):
        assert await owner._append_entry("logs/0", start, end, [], None) is None
    first = IntakeSource(client, namespace, ManualClock(NOW), tick_ms=50, stale_ms=5_000)
    applied = await read(first, 3)
    assert [b.meta.get("offset:logs/0") for b in applied] == [5, 9, 10]
    restarted = IntakeSource(client, namespace, ManualClock(NOW), tick_ms=50, stale_ms=5_000)
    restarted.resume({"offset:logs/0": 9})  # the checkpoint holding the second entry, not the third
    again = await read(restarted, 3)
    assert [b.timed is not None for b in again] == [False, False, True]
    assert again[2].meta["offset:logs/0"] == 10


async def test_silent_or_unapplied_partitions_hold_the_clock(space: tuple[aioredis.Redis, str]) -> None:
    client, namespace = space
    clock = ManualClock(NOW)
    source = IntakeSource(client, namespace, clock, tick_ms=50, stale_ms=5_000)
    assert source.lagging() == ("",)  # nobody reported yet
    await client.hset(keys.lane_status(namespace), mapping={"logs/0": f"10 10 {NOW} 0", "logs/1": "0 0 0 0"})
    source.resume({"offset:logs/0": 10})
    await source._refresh()
    assert list(source.lagging()) == ["logs/1"]  # never reported by an owner
    await client.hset(keys.lane_status(namespace), "logs/1", f"0 0 {NOW} 0")
    source.resume({"offset:logs/1": 0})
    await source._refresh()
    assert list(source.lagging()) == []
    clock.advance(6_000)  # both owners silent for longer than stale_ms: their replicas may be gone
    assert sorted(source.lagging()) == ["logs/0", "logs/1"]


async def test_a_partition_read_to_its_end_holds_the_clock_until_idle(space: tuple[aioredis.Redis, str]) -> None:
    """Records may still be arriving in a partition just read to its end, older than the other partitions'
    backlog: it holds the clock until it has had no record for idle_ms."""
    client, namespace = space
    clock = ManualClock(NOW)
    source = IntakeSource(client, namespace, clock, tick_ms=50, stale_ms=5_000, idle_ms=2_000)
    await client.hset(keys.lane_status(namespace), "logs/0", f"10 10 {NOW} {NOW}")
    source.resume({"offset:logs/0": 10})
    await source._refresh()
    assert list(source.lagging()) == ["logs/0"]
    clock.advance(2_000)
    await client.hset(keys.lane_status(namespace), "logs/0", f"10 10 {NOW + 2_000} {NOW}")
    await source._refresh()
    assert list(source.lagging()) == []


async def test_an_evaluation_about_to_switch_stops_before_records_matched_for_its_next_rules(
    space: tuple[aioredis.Redis, str],
) -> None:
    """A reload accepted mid-term: the term goes on to its end, but an entry whose records were matched for
    the accepted configuration is left to the next term (which evaluates with it), with all after it."""
    client, namespace = space
    owner = forwarder(client, namespace)
    line = (NOW, b'{"level":"fatal"}')
    assert await owner._append_entry("logs/0", 0, 5, [line], NOW, ["old"]) is None
    assert await owner._append_entry("logs/0", 5, 9, [line], NOW, ["new", "old"]) is None
    assert await owner._append_entry("logs/0", 9, 10, [], None, ["old"]) is None
    accepted = ["old"]
    ending = IntakeSource(
        client, namespace, ManualClock(NOW), tick_ms=50, stale_ms=5_000, digest="old", upcoming=lambda: accepted[0]
    )
    applied: list[dict[str, int]] = []
    ticks = 0
    async for batch in ending.batches():
        if batch.meta:
            applied.append(batch.meta)
            accepted[0] = "new"  # SIGHUP: the term is asked to end; its batch in flight is finished
        else:
            ticks += 1
        if ticks == 3:
            break
    assert [meta["offset:logs/0"] for meta in applied] == [5]
    following = IntakeSource(client, namespace, ManualClock(NOW), tick_ms=50, stale_ms=5_000, digest="new")
    following.resume(applied[-1])  # the checkpoint the ending term stored
    assert [b.meta["offset:logs/0"] for b in await read(following, 2)] == [9, 10]
