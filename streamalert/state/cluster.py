"""Redis Cluster (`redis+cluster://host:port/?namespace=NAME`): a namespace is served by the node owning its slot.

Every key of a namespace carries the hash tag `{namespace}` (state/keys.py), so the whole namespace lives in one
hash slot, on one master. The store therefore talks to that master over an ordinary connection pool: its
WATCH/MULTI/EXEC checkpoints, the lease's Lua scripts, the replicas' append script and blocking XREAD, and the
SCAN of `reset` run exactly as on a single Redis, atomically on the one node. redis-py's cluster client
(`redis.asyncio.cluster.RedisCluster`) is used for what it is good at: learning the slot map from any node.
(Its own transactional ClusterPipeline, in redis-py 8.1, runs every queued command through a new thread and
event loop; a pinned connection needs none of that.)

The node is found at the first connection and found again when it changes:
- MOVED (the slot was resharded, or a promoted replica answers for it): the error names the new owner; the
  connection goes there and the command is sent again (it was not executed). Inside a WATCH the caller sees
  a WatchError instead, as redis-py reports any lost connection while watching: the store's fenced commit
  turns it into a retry, and a checkpoint that did go through is not applied twice.
- a connection that fails (the master died; its replica is promoted after cluster-node-timeout): the slot map
  is asked for again on the next connection, from any node the cluster client knows. Until the cluster has
  failed over, the store sees the same errors as a single Redis that is down, and the pipeline retries.
- ASK / TRYAGAIN (the slot is being migrated right now) reach the caller as errors and are retried like any
  other store error until the migration ends with a MOVED.
"""

from __future__ import annotations

import asyncio
from typing import Any
from urllib.parse import urlsplit

import redis.asyncio as aioredis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.connection import Connection, ConnectionPool, SSLConnection
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.crc import key_slot
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import MovedError, RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

SCHEMES = {"redis+cluster": "redis", "rediss+cluster": "rediss"}


class SlotRoute:
    """Where one hash slot lives: the master's address, learned from the cluster's slot map, moved on MOVED,
    learned again after a connection to it failed."""

    def __init__(self, cluster: RedisCluster, key: str) -> None:
        self._cluster = cluster
        self.slot = key_slot(key.encode())
        self._address: tuple[str, int] | None = None
        self._stale = True  # the next connection asks the cluster first
        self._lock = asyncio.Lock()
        self._initialized = False

    async def address(self) -> tuple[str, int]:
        if self._stale or self._address is None:
            async with self._lock:  # one slot-map query for every connection waiting on it
                if self._stale or self._address is None:
                    await self._learn()
        assert self._address is not None
        return self._address

    async def _learn(self) -> None:
        if not self._initialized:
            await self._cluster.initialize()
            self._initialized = True
        else:
            # any node it knows (not only the one in the URL) answers: the map survives the seed's death
            await self._cluster.nodes_manager.initialize()
        node = self._cluster.nodes_manager.get_node_from_slot(self.slot)
        self._address, self._stale = (node.host, int(node.port)), False

    def moved(self, host: str, port: int) -> None:
        """A node said MOVED: the slot's owner is named in the error, no slot-map query needed."""
        self._address, self._stale = (host, port), False

    def lost(self) -> None:
        """A connection failed: the owner may have changed (failover); ask the cluster on the next connect."""
        self._stale = True

    async def aclose(self) -> None:
        await self._cluster.aclose()


class _Pinned:
    """Connection mix-in: connects to the slot's current owner, and follows MOVED."""

    host: str
    port: int
    _route: SlotRoute

    async def _connect(self) -> None:
        try:
            self.host, self.port = await self._route.address()
            await super()._connect()  # type: ignore[misc]
        except (OSError, RedisError):  # asyncio's TimeoutError is an OSError
            self._route.lost()
            raise

    async def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return await super().read_response(*args, **kwargs)  # type: ignore[misc]
        except MovedError as exc:
            self._route.moved(exc.host, exc.port)
            raise
        except (RedisConnectionError, RedisTimeoutError, OSError):
            self._route.lost()
            raise


class SlotConnection(_Pinned, Connection):
    def __init__(self, *, route: SlotRoute, **kwargs: Any) -> None:
        self._route = route
        super().__init__(**kwargs)


class SlotSSLConnection(_Pinned, SSLConnection):
    def __init__(self, *, route: SlotRoute, **kwargs: Any) -> None:
        self._route = route
        super().__init__(**kwargs)


def check_cluster_url(conn_url: str) -> None:
    """Refuse what a cluster cannot do: several databases (a cluster has only db 0)."""
    path = urlsplit(conn_url).path.strip("/")
    if path not in ("", "0"):
        raise ValueError("a Redis Cluster has only database 0: use redis+cluster://host:port/?namespace=NAME")


def pinned_client(conn_url: str, slot_key: str) -> tuple[aioredis.Redis, SlotRoute]:
    """A client whose connections go to the master owning `slot_key`'s slot, and the route it follows.
    `conn_url` is a cluster URL (redis+cluster:// or rediss+cluster://) naming any node of the cluster."""
    check_cluster_url(conn_url)
    scheme, rest = conn_url.split("://", 1)
    plain_url = f"{SCHEMES[scheme]}://{rest}"
    route = SlotRoute(RedisCluster.from_url(plain_url, require_full_coverage=False), slot_key)
    pool = ConnectionPool.from_url(
        plain_url,
        connection_class=SlotSSLConnection if SCHEMES[scheme] == "rediss" else SlotConnection,
        route=route,
        # MOVED, and only MOVED, is sent again at once (on the new owner): the command did not run there.
        # Connection errors stay the caller's to retry, as with a single Redis (a write may have gone through).
        retry=Retry(NoBackoff(), 1, supported_errors=(MovedError,)),
    )
    return aioredis.Redis(connection_pool=pool), route
