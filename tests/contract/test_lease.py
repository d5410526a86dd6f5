"""The namespace writer lease and the fencing of commits on its epoch (real redis-server)."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator

import pytest

from streamalert.state.base import Changes
from streamalert.state.lease import LeaseLost
from streamalert.state.redis import RedisStore
from streamalert.testing import LocalCluster

pytestmark = pytest.mark.redis
_names = itertools.count()


@pytest.fixture(params=["redis", "cluster"])
async def pair(request: pytest.FixtureRequest) -> AsyncIterator[tuple[RedisStore, RedisStore]]:
    """Two processes' stores on one namespace: on a single Redis, and on a cluster master the URL does not
    name (the lease and epoch keys share the namespace's slot, so the scripts and the fence stay atomic)."""
    if request.param == "redis":
        url = f"{request.getfixturevalue('redis_url')}?namespace=lease{next(_names)}"
    else:
        cluster: LocalCluster = request.getfixturevalue("cluster")
        url = f"{cluster.url}?namespace={cluster.namespace_on(1 + next(_names), 'lease')}"
    first, second = RedisStore.from_url(url), RedisStore.from_url(url)
    await first.reset()
    yield first, second
    await first.close()
    await second.close()


async def test_one_holder_at_a_time(pair: tuple[RedisStore, RedisStore]) -> None:
    first, second = pair
    a, b = first.lease(10_000), second.lease(10_000)
    assert await a.acquire()
    assert not await b.acquire()
    assert await b.holder() == a.owner
    assert await a.renew()
    assert not await b.renew()
    await b.release()  # not ours: nothing happens
    assert await a.holder() == a.owner
    await a.release()
    assert await b.acquire()
    assert a.epoch is not None
    assert b.epoch == a.epoch + 1


async def test_a_former_holder_cannot_commit_after_a_take_over(pair: tuple[RedisStore, RedisStore]) -> None:
    """The first holder stalls past its TTL, the second takes over: the first one's next commit is refused
    and writes nothing; the new holder commits."""
    first, second = pair
    a, b = first.lease(10_000), second.lease(10_000)
    assert await a.acquire()
    first.fence = a.epoch
    await first.commit(Changes(meta={"seq": 1}), {})
    await a._redis.delete(a.key)  # the TTL ran out while the first process was paused
    assert await b.acquire()
    second.fence = b.epoch
    with pytest.raises(LeaseLost):
        await first.commit(Changes(meta={"seq": 99}, transitions=[b"{}"]), {})
    assert not await a.renew()
    await second.commit(Changes(meta={"seq": 2}), {})
    assert (await second.load([])).meta["seq"] == 2
    assert await second.transitions(10) == []


async def test_a_commit_whose_reply_was_lost_is_not_applied_twice(pair: tuple[RedisStore, RedisStore]) -> None:
    """The caller retries a checkpoint after a dropped connection; if the first attempt went through, the
    retry changes nothing (the transition log keeps one entry)."""
    first, _ = pair
    lease = first.lease(10_000)
    assert await lease.acquire()
    first.fence = lease.epoch
    changes = Changes(meta={"seq": 1}, transitions=[b'{"n":1}'])
    await first.commit(changes, {})
    await first.commit(changes, {})  # the same checkpoint again, as a retry after a lost reply sends it
    assert await first.transitions(10) == [b'{"n":1}']
    await first.commit(Changes(meta={"seq": 2}, transitions=[b'{"n":2}']), {})
    assert await first.transitions(10) == [b'{"n":1}', b'{"n":2}']
    assert lease.epoch is not None
    assert (await first.load([])).meta["commit"] == (lease.epoch << 32) + 2


async def test_a_lease_that_expired_while_nobody_took_it_is_taken_back(pair: tuple[RedisStore, RedisStore]) -> None:
    """Redis was unreachable past the TTL but no other process took over (the epoch is unchanged): the next
    renewal takes the key back, so an outage alone never costs the writer its lease."""
    first, second = pair
    a, b = first.lease(10_000), second.lease(10_000)
    assert await a.acquire()
    await a._redis.delete(a.key)  # the TTL ran out while Redis did not answer
    assert await a.renew()
    assert await a.holder() == a.owner
    assert not await b.acquire()


async def test_a_fenced_commit_extends_the_lease(pair: tuple[RedisStore, RedisStore]) -> None:
    """Committing under the lease's epoch is proof of life: the lease's TTL is reset (a busy writer whose
    renewals run late keeps it), and a commit never takes back a lease someone else holds."""
    first, _ = pair
    lease = first.lease(60_000)
    assert await lease.acquire()
    first.hold(lease)
    await first._redis.pexpire(lease.key, 50)
    await first.commit(Changes(meta={"seq": 1}), {})
    assert int(await first._redis.pttl(lease.key)) > 50_000
