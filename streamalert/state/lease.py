"""One writer per namespace: a lease in Redis, with a fencing epoch checked by every checkpoint commit.

A process must hold its namespace's lease before it takes input. The lease is a key holding the owner's
token with a TTL, renewed at a third of the TTL (and by every fenced checkpoint commit). Taking the lease
increments the namespace's epoch in the same script, and the Redis store commits only while the epoch is
still the one it took (WATCH epoch, compare, MULTI/EXEC): a paused former owner that wakes up after a
take-over cannot write over its successor's state.

A lease is lost only when Redis says another process has it. A holder that could not renew for longer than
the TTL (Redis paused, a stalled host) finds the key expired but the epoch still its own when Redis answers
again: nobody took over in between (taking over moves the epoch), so it takes the key back and carries on.
"""

from __future__ import annotations

import secrets
import socket
from typing import cast

import redis.asyncio as aioredis

from streamalert.state import keys

# KEYS: lease, epoch. ARGV: owner, ttl ms. Returns the new epoch, or 0 when the lease is held.
_ACQUIRE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
# KEYS: lease, epoch. ARGV: owner, ttl ms, epoch. 1 when still ours (extended, or taken back while nobody
# took it over), 0 when another process holds it or took it over since.
_RENEW = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder and redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
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
        """Take the lease if it is free; on success the epoch moves on (fencing out any former owner).
        One script: no other process can see the key taken with the old epoch."""
        epoch = int(await self._redis.eval(_ACQUIRE, 2, self.key, self.epoch_key, self.owner, str(self.ttl_ms)))
        if not epoch:
            return False
        self.epoch = epoch
        return True

    async def renew(self) -> bool:
        """Extend the lease; False when Redis says it is no longer ours (another process took it over)."""
        if self.epoch is None:
            return False
        renewed = await self._redis.eval(
            _RENEW, 2, self.key, self.epoch_key, self.owner, str(self.ttl_ms), str(self.epoch)
        )
        return bool(renewed)

    async def release(self) -> None:
        """Give the lease up (on a clean shutdown), so a standby takes over at once."""
        await self._redis.eval(_RELEASE, 1, self.key, self.owner)

    async def holder(self) -> str | None:
        value = cast(bytes | None, await self._redis.get(self.key))
        return None if value is None else value.decode()
