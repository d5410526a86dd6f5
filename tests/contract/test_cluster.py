"""Redis Cluster state (real 3-master cluster): a namespace is served by the master that owns its slot, whichever
node the URL names, and keeps being served when its slot moves to another master."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import redis
from redis.crc import key_slot
from redis.exceptions import MovedError, RedisError

from streamalert.clock import Stopwatch
from streamalert.state import keys
from streamalert.state.base import Changes, Snapshot
from streamalert.state.redis import RedisStore
from streamalert.state.stores import check_url, redact
from streamalert.testing import LocalCluster, redis_cluster

pytestmark = pytest.mark.redis
R1 = "errors:0123456789ab"


def _slot(namespace: str) -> int:
    return key_slot(keys.meta(namespace).encode())


def _node(port: int) -> redis.Redis:
    return redis.Redis(port=port)


def _command(client: redis.Redis, *args: object) -> Any:
    return client.execute_command(*args)  # type: ignore[no-untyped-call]


async def _until_done(call: Callable[[], Awaitable[None]], within: float) -> int:
    """Call until it succeeds, as the pipeline's store retry does (Redis errors: try again), with a deadline;
    the number of failed attempts."""
    watch, failures = Stopwatch(), 0
    while True:
        try:
            await call()
            return failures
        except (RedisError, OSError):
            failures += 1
            if watch.elapsed() > within:
                raise
            await asyncio.sleep(0.05)  # a pause between attempts, not a wait for a state


def move_slot(cluster: LocalCluster, slot: int, source: int, target: int) -> None:
    """Reshard one slot from master `source` to master `target` (ports), its keys included, as redis-cli does."""
    src, dst = _node(source), _node(target)
    src_id, dst_id = _command(src, "CLUSTER MYID"), _command(dst, "CLUSTER MYID")
    _command(dst, "CLUSTER SETSLOT", slot, "IMPORTING", src_id)
    _command(src, "CLUSTER SETSLOT", slot, "MIGRATING", dst_id)
    while moving := _command(src, "CLUSTER GETKEYSINSLOT", slot, 100):
        _command(src, "MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *moving)
    for node in cluster.nodes:
        with _node(node.port) as client:
            _command(client, "CLUSTER SETSLOT", slot, "NODE", dst_id)
    src.close()
    dst.close()


async def test_a_namespace_on_another_master_than_the_url_names_works(cluster: LocalCluster) -> None:
    """The URL names the first master, the namespace's slot lives on another: the fenced commit, the lease,
    load, the transition log and the outbox all work, and every key is on the slot's owner (a plain
    redis:// client on the first master gets MOVED for the same namespace, as every store did before)."""
    for node in (1, 2):
        namespace = cluster.namespace_on(node, "elsewhere")
        owner = cluster.nodes[node].port
        assert owner != cluster.nodes[0].port
        plain_url = cluster.url.replace("redis+cluster://", "redis://")
        plain = RedisStore.from_url(f"{plain_url}?namespace={namespace}")
        with pytest.raises(MovedError):
            await plain.load([])
        await plain.close()

        store = RedisStore.from_url(f"{cluster.url}?namespace={namespace}")
        try:
            lease = store.lease(10_000)
            assert await lease.acquire()
            store.hold(lease)
            await store.commit(
                Changes(meta={"seq": 1}, upserts={R1: {b"[]": b"1"}}, transitions=[b"t1"], outbox=[b"n1"]), {}
            )
            assert await lease.renew()
            snapshot = await store.load([R1])
            assert (snapshot.meta["seq"], snapshot.series) == (1, {R1: {b"[]": b"1"}})
            assert await store.transitions(10) == [b"t1"]
            assert [raw for _, raw in await store.outbox(None, 10)] == [b"n1"]
            with _node(owner) as client:
                found = set(client.scan_iter(match=keys.pattern(namespace)))
            assert keys.meta(namespace).encode() in found
            assert keys.lease(namespace).encode() in found
            await store.reset()
            with _node(owner) as client:
                assert not list(client.scan_iter(match=keys.pattern(namespace)))
        finally:
            await store.close()


def test_test_namespaces_span_every_master(cluster: LocalCluster) -> None:
    """The store and lease fixtures' namespaces land on all three masters, not only the one the URL names."""
    owners = {cluster.owner(_slot(cluster.namespace_on(node, "spread"))) for node in range(3)}
    assert owners == {node.port for node in cluster.nodes}


async def test_a_store_follows_its_slot_to_another_master(cluster: LocalCluster) -> None:
    """The namespace's slot is resharded to another master while a writer holds the lease: the writer's next
    commit, renewal and load, and another process's calls, go to the new owner (MOVED), with nothing lost
    and the lease still held."""
    namespace = cluster.namespace_on(1, "moving")
    slot, source, target = _slot(namespace), cluster.nodes[1].port, cluster.nodes[2].port
    store = RedisStore.from_url(f"{cluster.url}?namespace={namespace}")
    rival = RedisStore.from_url(f"{cluster.url}?namespace={namespace}")
    try:
        lease = store.lease(10_000)
        assert await lease.acquire()
        store.hold(lease)
        await store.commit(Changes(meta={"seq": 1}, upserts={R1: {b"[]": b"1"}}, transitions=[b"t1"]), {})
        assert (await rival.load([])).meta["seq"] == 1  # the rival too has a connection to the old owner
        move_slot(cluster, slot, source, target)
        await rival.outbox_dead("0-1", b"dead")  # a MULTI/EXEC without WATCH follows MOVED
        await store.commit(Changes(meta={"seq": 2}, transitions=[b"t2"]), {})
        assert await lease.renew()
        assert await store.load([R1]) == Snapshot(
            meta={"seq": 2, "commit": (lease.epoch or 0) << 32 | 2}, series={R1: {b"[]": b"1"}}
        )
        assert await store.transitions(10) == [b"t1", b"t2"]
        assert not await rival.lease(10_000).acquire()  # the lease moved with the slot: still held
        assert [raw for _, raw in await rival.dead_letters(10)] == [b"dead"]
        with _node(target) as client:
            assert client.exists(keys.meta(namespace), keys.lease(namespace), keys.epoch(namespace)) == 3
    finally:
        await store.reset()
        await store.close()
        await rival.close()
        move_slot(cluster, slot, target, source)  # the session's cluster as the other tests expect it


async def test_a_store_follows_its_slot_through_a_failover() -> None:
    """The master serving the namespace is killed (SIGKILL) and its replica takes over: the writer's commits
    fail as in a Redis outage until the cluster names the new master, then go there (the slot map is asked
    again after a failed connection); the lease, the fence and the committed state survive."""
    with redis_cluster(replicas=1) as local:  # its own cluster: a master dies
        namespace = local.namespace_on(1, "failover")
        master, replica = local.nodes[1].port, local.nodes[1].replicas[0]
        store = RedisStore.from_url(f"{local.url}?namespace={namespace}")
        try:
            lease = store.lease(60_000)
            assert await lease.acquire()
            store.hold(lease)
            await store.commit(Changes(meta={"seq": 1}, transitions=[b"t1"]), {})
            with _node(master) as client:
                assert client.wait(1, 5000) == 1  # the replica has the checkpoint and the lease
            local.processes[master].kill()
            local.processes[master].wait()
            with _node(replica) as client:
                _command(client, "CLUSTER FAILOVER", "TAKEOVER")
            failures = await _until_done(lambda: store.commit(Changes(meta={"seq": 2}, transitions=[b"t2"]), {}), 20)
            assert failures >= 1  # the dead master was tried first: the store did not know better
            assert await lease.renew()
            assert (await store.load([])).meta["seq"] == 2
            assert await store.transitions(10) == [b"t1", b"t2"]
            with _node(replica) as client:
                assert client.exists(keys.meta(namespace), keys.lease(namespace)) == 2
        finally:
            await store.close()


def test_cluster_urls_are_checked_and_redacted() -> None:
    """A cluster URL naming a database other than 0 is refused before connecting; its password is redacted."""
    check_url("redis+cluster://127.0.0.1:7000/?namespace=ok")
    check_url("rediss+cluster://127.0.0.1:7000/0?namespace=ok")
    with pytest.raises(ValueError, match="only database 0"):
        check_url("redis+cluster://127.0.0.1:7000/3?namespace=ok")
    with pytest.raises(ValueError, match="braces"):
        check_url("redis+cluster://127.0.0.1:7000/?namespace=a{b")
    shown = redact("redis+cluster://user:s3cret@10.0.0.1:7000/?namespace=x")
    assert "s3cret" not in shown
    assert shown == "redis+cluster://***@10.0.0.1:7000/?namespace=x"
