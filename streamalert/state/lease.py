"""One writer per namespace: a lease in Redis, with a fencing epoch checked by every checkpoint commit.

A process must hold its namespace's lease before it takes input. The lease is a key holding the owner's
token with a TTL, renewed at a third of the TTL; a process that cannot renew it stops (exit 1) and a standby
that finds it free takes it over. Taking the lease increments the namespace's epoch, and the Redis store
commits only while the epoch is still the one it took (WATCH epoch, compare, MULTI/EXEC): a paused former
owner that wakes up after a take-over cannot write over its successor's state.
"""

from __future__ import annotations

import secrets
import socket
from typing import cast

import redis.asyncio as aioredis

from streamalert.state import keys

_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class LeaseLost(Exception):
    """Another process took this namespace over: this one must stop writing."""


class Lease:
    """The namespace's writer lease, held by this process or not."""

    def __init__(self, client: aioredis.Redis, namespace: str, ttl_ms: int) -> None:
        self._redis = client
        self.key = keys.lease(namespace)
        self.epoch_key = keys.epoch(namespace)
        self.ttl_ms = ttl_ms
        self.owner = f"{socket.gethostname()}:{secrets.token_hex(6)}"
        self.epoch: int | None = None

    async def acquire(self) -> bool:
        """Take the lease if it is free; on success the epoch moves on (fencing out any former owner)."""
        if not await self._redis.set(self.key, self.owner, nx=True, px=self.ttl_ms):
            return False
        self.epoch = int(await self._redis.incr(self.epoch_key))
        return True

    async def renew(self) -> bool:
        """Extend the lease; False when it is no longer ours (expired and taken, or deleted)."""
        renewed = await self._redis.eval(_RENEW, 1, self.key, self.owner, str(self.ttl_ms))
        return bool(renewed)

    async def release(self) -> None:
        """Give the lease up (on a clean shutdown), so a standby takes over at once."""
        await self._redis.eval(_RELEASE, 1, self.key, self.owner)

    async def holder(self) -> str | None:
        value = cast(bytes | None, await self._redis.get(self.key))
        return None if value is None else value.decode()
