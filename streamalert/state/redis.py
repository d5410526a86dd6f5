"""Redis store (redis.asyncio with hiredis): one MULTI/EXEC transaction per checkpoint."""

from __future__ import annotations

from typing import cast
from urllib.parse import parse_qs, urlsplit, urlunsplit

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import WatchError

from streamalert.clock import Stopwatch
from streamalert.state import keys
from streamalert.state.base import Changes, Snapshot, requeued, silence_end
from streamalert.state.cluster import SCHEMES as CLUSTER_SCHEMES
from streamalert.state.cluster import SlotRoute, pinned_client
from streamalert.state.lease import Lease, LeaseLost

DEFAULT_NAMESPACE = "default"
DEFAULT_TIMEOUT_S = 5
_COMMIT = "commit"  # checkpoint meta: the last fenced checkpoint, (epoch << 32) + its number in that epoch
# One checkpoint's meta, series, pending events and transitions, written by one EVAL (a script runs atomically),
# so a checkpoint costs one command and one reply whatever it holds; it used to take a MULTI, two commands per
# changed rule, three for pending events, one per transition and an EXEC, each queued, packed and answered
# (QUEUED) by the client on its own. The values travel as one argument, each prefixed by its length (4 bytes,
# big-endian): the client's per-argument packing was most of a checkpoint's cost. The script issues the commands
# those did, grouped per key (the keys are distinct, so the result is the same).
# KEYS: meta, pending, transitions, then the series hash of each touched rule. The values: long ttl,
# transitions kept, m, m (field, value) pairs of meta; r, then per touched rule (KEYS[3 + i]): ttl, u,
# u (field, value) pairs to set, d, d fields to delete; p, p (score, member) pairs of pending events; the
# exclusive score below which pending events are removed ("" for none); t, t transition lines. Commands take
# at most 512 pairs (Lua's unpack has a stack limit).
_COMMIT_SCRIPT = """
local s, pos, v = ARGV[1], 1, {}
while pos <= #s do
  v[#v + 1], pos = struct.unpack('>I4c0', s, pos)
end
local a = 1
local function arg() local x = v[a]; a = a + 1; return x end
local function each(cmd, key, n, width)
  local last = a + n * width - 1
  while a <= last do
    local stop = math.min(a + 512 * width - 1, last)
    redis.call(cmd, key, unpack(v, a, stop))
    a = stop + 1
  end
end
local long, kept = arg(), arg()
local m = tonumber(arg())
if m > 0 then
  each('HSET', KEYS[1], m, 2)
  redis.call('PEXPIRE', KEYS[1], long)
end
local r = tonumber(arg())
for i = 1, r do
  local key, ttl = KEYS[3 + i], arg()
  each('HSET', key, tonumber(arg()), 2)
  each('HDEL', key, tonumber(arg()), 1)
  redis.call('PEXPIRE', key, ttl)
end
each('ZADD', KEYS[2], tonumber(arg()), 2)
local before = arg()
if before ~= '' then redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', before) end
redis.call('PEXPIRE', KEYS[2], long)
local t = tonumber(arg())
if t > 0 then
  for i = 1, t do redis.call('XADD', KEYS[3], 'MAXLEN', '~', kept, '*', 't', arg()) end
  redis.call('PEXPIRE', KEYS[3], long)
end
return 1
"""
_LONG_TTL = b"%d" % keys.LONG_TTL_MS
_KEPT = b"%d" % keys.TRANSITIONS_KEPT


def _script_only(changes: Changes) -> bool:
    """Whether a checkpoint is all in _COMMIT_SCRIPT (no held lines, notification groups or outbox)."""
    return changes.held is None and not changes.groups and not changes.groups_deleted and not changes.outbox


def split_url(url: str) -> tuple[str, str]:
    """`redis://host:port/db?namespace=x` -> (connection URL without our option, namespace)."""
    parts = urlsplit(url)
    query = parse_qs(parts.query)
    namespace = query.pop("namespace", [DEFAULT_NAMESPACE])[0]
    # A Redis that stops answering must raise, not hang a commit forever: bounded unless the URL says otherwise.
    for option in ("socket_timeout", "socket_connect_timeout"):
        query.setdefault(option, [str(DEFAULT_TIMEOUT_S)])
    rest = "&".join(f"{k}={v}" for k, values in query.items() for v in values)
    return urlunsplit((parts.scheme, parts.netloc, parts.path, rest, parts.fragment)), namespace


class RedisStore:
    """Engine state in Redis, shared by every process that uses the same namespace."""

    def __init__(
        self, client: aioredis.Redis, namespace: str = DEFAULT_NAMESPACE, route: SlotRoute | None = None
    ) -> None:
        keys.meta(namespace)  # refuses a namespace that cannot be a hash tag, before any connection
        self._redis = client
        self._route = route  # Redis Cluster: how `client` finds the node owning the namespace's slot
        self.namespace = namespace
        self.fence: int | None = None  # the lease epoch this store writes under (None: no lease in use)
        self.holding: Lease | None = None  # the lease behind `fence`: every fenced commit extends it
        self._commits = 0  # fenced checkpoints committed under the current fence

    @classmethod
    def from_url(cls, url: str) -> RedisStore:
        conn_url, namespace = split_url(url)
        if conn_url.split("://", 1)[0] in CLUSTER_SCHEMES:
            client, route = pinned_client(conn_url, keys.meta(namespace))
            return cls(client, namespace, route)
        return cls(aioredis.Redis.from_url(conn_url), namespace)

    async def load(self, rule_ids: list[str]) -> Snapshot:
        ns = self.namespace
        meta_raw = cast(dict[bytes, bytes], await self._redis.hgetall(keys.meta(ns)))
        snapshot = Snapshot(meta={k.decode(): int(v) for k, v in meta_raw.items()})
        for rule_id in rule_ids:
            table: dict[bytes, bytes] = {}
            async for field, value in self._redis.hscan_iter(keys.series(ns, rule_id), count=1000):
                table[field] = value
            if table:
                snapshot.series[rule_id] = table
        held = cast(dict[bytes, bytes], await self._redis.hgetall(keys.held(ns)))
        snapshot.held = {lane.decode(): value for lane, value in held.items()}
        pending = cast(list[tuple[bytes, float]], await self._redis.zrange(keys.pending(ns), 0, -1, withscores=True))
        snapshot.pending = [(int(score), member) for member, score in pending]
        async for field, value in self._redis.hscan_iter(keys.groups(ns), count=1000):
            snapshot.groups[field] = value
        return snapshot

    @property
    def client(self) -> aioredis.Redis:
        """The connection pool, for parts that keep their own keys in this namespace (replicas mode)."""
        return self._redis

    def lease(self, ttl_ms: int) -> Lease:
        """The writer lease of this store's namespace, on the same connection pool."""
        return Lease(self._redis, self.namespace, ttl_ms)

    def hold(self, lease: Lease | None) -> None:
        """Write under this lease's epoch from now on (None: stop fencing, e.g. back to standby)."""
        self.holding = lease
        self.fence = None if lease is None else lease.epoch
        self._commits = 0

    async def commit(self, changes: Changes, ttl_ms: dict[str, int]) -> None:
        if self.fence is None:
            if _script_only(changes):  # the common checkpoint: one EVAL, atomic by itself
                numkeys, args = self._script_args(changes, ttl_ms)
                await self._redis.eval(_COMMIT_SCRIPT, numkeys, *args)
                return
            await self._fill(self._redis.pipeline(transaction=True), changes, ttl_ms).execute()
            return
        await self._fenced_commit(changes, ttl_ms, self.fence)

    async def _fenced_commit(self, changes: Changes, ttl_ms: dict[str, int], fence: int) -> None:
        """WATCH the epoch, check it is ours, MULTI/EXEC. Each checkpoint carries a number (meta `commit`):
        one whose transaction went through but whose reply was lost (a dropped connection) is not applied
        again when the caller retries it, so the transition log never gets an entry twice."""
        epoch_key, meta_key = keys.epoch(self.namespace), keys.meta(self.namespace)
        number = changes.meta.setdefault(_COMMIT, (fence << 32) + self._commits + 1)  # unique per holder
        async with self._redis.pipeline(transaction=True) as pipe:
            await pipe.watch(epoch_key, meta_key)
            await self._check_fence(fence, await pipe.get(epoch_key))
            done = await pipe.hget(meta_key, _COMMIT)
            if done is not None and int(done) == number:
                self._commits = number & 0xFFFFFFFF
                return
            pipe.multi()  # type: ignore[no-untyped-call]
            self._fill(pipe, changes, ttl_ms)
            lease = self.holding
            if lease is not None and lease.epoch == fence:
                # The epoch is still ours (watched), so nobody took the lease over: a commit is proof of life
                # and extends it, so a holder that is busy committing never loses its lease to a late renewal.
                pipe.set(lease.key, lease.owner, px=lease.ttl_ms)
            try:
                await pipe.execute()
            except WatchError:
                # redis-py also reports a connection lost during EXEC as WatchError: only a changed epoch
                # means another holder; anything else is retried (and skipped above if it was applied)
                await self._check_fence(fence, await self._redis.get(epoch_key))
                raise RedisConnectionError("commit interrupted; the caller retries it") from None
        self._commits = number & 0xFFFFFFFF

    async def _check_fence(self, fence: int, current: bytes | str | None) -> None:
        if current is None or int(current) != fence:
            raise LeaseLost(f"namespace {self.namespace!r} was taken over (epoch {current!r}, ours {fence})")

    def _fill(self, pipe: Pipeline, changes: Changes, ttl_ms: dict[str, int]) -> Pipeline:
        """Queue one checkpoint: meta, series, pending and transitions in one EVAL of _COMMIT_SCRIPT (one
        command and one reply however many series changed), the rarer parts as commands of their own."""
        ns = self.namespace
        numkeys, args = self._script_args(changes, ttl_ms)
        pipe.eval(_COMMIT_SCRIPT, numkeys, *args)
        if changes.held is not None:
            pipe.delete(keys.held(ns))
            if changes.held:
                pipe.hset(keys.held(ns), mapping=changes.held)  # type: ignore[arg-type]
                pipe.pexpire(keys.held(ns), keys.LONG_TTL_MS)
        if changes.groups:
            pipe.hset(keys.groups(ns), mapping=changes.groups)  # type: ignore[arg-type]
        if changes.groups_deleted:
            pipe.hdel(keys.groups(ns), *changes.groups_deleted)
        if changes.groups or changes.groups_deleted:
            pipe.pexpire(keys.groups(ns), keys.LONG_TTL_MS)
        for raw in changes.outbox:
            pipe.xadd(keys.outbox(ns), {"n": raw})  # never trimmed: an entry leaves when delivered or dead
        return pipe

    def _script_args(self, changes: Changes, ttl_ms: dict[str, int]) -> tuple[int, list[str | bytes]]:
        """numkeys, then KEYS and the one value argument of _COMMIT_SCRIPT for a checkpoint (layout described there)."""
        ns = self.namespace
        upserts, deletes = changes.upserts, changes.deletes
        touched = [*upserts, *(rule_id for rule_id in deletes if rule_id not in upserts)]
        names = [keys.meta(ns), keys.pending(ns), keys.transitions(ns), *(keys.series(ns, r) for r in touched)]
        values: list[bytes] = [_LONG_TTL, _KEPT, b"%d" % len(changes.meta)]
        for name, number in changes.meta.items():
            values += (name.encode(), b"%d" % number)
        values.append(b"%d" % len(touched))
        for rule_id in touched:
            items = upserts.get(rule_id, {})
            fields = deletes.get(rule_id, ())
            values += (b"%d" % ttl_ms.get(rule_id, keys.LONG_TTL_MS), b"%d" % len(items))
            for item in items.items():
                values += item
            values.append(b"%d" % len(fields))
            values += fields
        values.append(b"%d" % len(changes.pending_add))
        for score, member in changes.pending_add:
            values += (b"%d" % score, member)
        values.append(b"" if changes.pending_before is None else b"(%d" % changes.pending_before)
        values.append(b"%d" % len(changes.transitions))
        values += changes.transitions
        blob = b"".join([len(value).to_bytes(4, "big") + value for value in values])
        return len(names), [*names, blob]

    async def transitions(self, limit: int) -> list[bytes]:
        if limit <= 0:
            return []
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self._redis.xrevrange(keys.transitions(self.namespace), count=limit),
        )
        return [fields[b"t"] for _, fields in reversed(entries)]

    async def reset(self) -> None:
        batch: list[bytes] = []
        async for key in self._redis.scan_iter(match=keys.pattern(self.namespace), count=1000):
            batch.append(key)
            if len(batch) >= 500:
                await self._redis.delete(*batch)
                batch = []
        if batch:
            await self._redis.delete(*batch)

    # ---- notifications ---------------------------------------------------------------------------------------

    async def outbox(self, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        start = "-" if after is None else f"({after}"
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self._redis.xrange(keys.outbox(self.namespace), min=start, count=limit),
        )
        return [(entry_id.decode(), fields[b"n"]) for entry_id, fields in entries]

    async def outbox_depth(self) -> int:
        return await self._redis.xlen(keys.outbox(self.namespace))

    async def outbox_attempt(self, entry_id: str) -> int:
        return await self._redis.hincrby(keys.outbox_attempts(self.namespace), entry_id, 1)

    async def outbox_done(self, entry_id: str, record: bytes, keep: int) -> None:
        ns = self.namespace
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xdel(keys.outbox(ns), entry_id)
            pipe.hdel(keys.outbox_attempts(ns), entry_id)
            pipe.xadd(keys.notifications(ns), {"r": record}, maxlen=max(keep, 1), approximate=False)
            pipe.pexpire(keys.notifications(ns), keys.LONG_TTL_MS)
            await pipe.execute()

    async def outbox_dead(self, entry_id: str, record: bytes) -> None:
        ns = self.namespace
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.xdel(keys.outbox(ns), entry_id)
            pipe.hdel(keys.outbox_attempts(ns), entry_id)
            pipe.xadd(keys.dead_letters(ns), {"r": record})
            await pipe.execute()

    async def dead_letters(self, limit: int) -> list[tuple[str, bytes]]:
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self._redis.xrange(keys.dead_letters(self.namespace), count=limit),
        )
        return [(entry_id.decode(), fields[b"r"]) for entry_id, fields in entries]

    async def requeue(self, entry_ids: list[str] | None) -> int:
        ns = self.namespace
        dead = await self.dead_letters(1_000_000)
        chosen = [(i, raw) for i, raw in dead if entry_ids is None or i in entry_ids]
        if not chosen:
            return 0
        async with self._redis.pipeline(transaction=True) as pipe:
            for entry_id, raw in chosen:
                pipe.xadd(keys.outbox(ns), {"n": requeued(raw)})
                pipe.xdel(keys.dead_letters(ns), entry_id)
            await pipe.execute()
        return len(chosen)

    async def notifications(self, limit: int) -> list[bytes]:
        if limit <= 0:
            return []
        entries = cast(
            list[tuple[bytes, dict[bytes, bytes]]],
            await self._redis.xrevrange(keys.notifications(self.namespace), count=limit),
        )
        return [fields[b"r"] for _, fields in reversed(entries)]

    async def silences(self, now_ms: int) -> list[bytes]:
        ns = self.namespace
        ended = cast(list[bytes], await self._redis.zrangebyscore(keys.silence_ends(ns), "-inf", now_ms))
        if ended:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.hdel(keys.silences(ns), *ended)
                pipe.zrem(keys.silence_ends(ns), *ended)
                await pipe.execute()
        return list(cast(dict[bytes, bytes], await self._redis.hgetall(keys.silences(ns))).values())

    async def groups(self) -> dict[bytes, bytes]:
        found: dict[bytes, bytes] = {}
        async for field, value in self._redis.hscan_iter(keys.groups(self.namespace), count=1000):
            found[field] = value
        return found

    async def put_silence(self, silence_id: str, record: bytes) -> None:
        ns = self.namespace
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hset(keys.silences(ns), silence_id, record)
            pipe.zadd(keys.silence_ends(ns), {silence_id: silence_end(record)})
            await pipe.execute()

    async def delete_silence(self, silence_id: str) -> bool:
        ns = self.namespace
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.hdel(keys.silences(ns), silence_id)
            pipe.zrem(keys.silence_ends(ns), silence_id)
            removed, _ = await pipe.execute()
        return bool(removed)

    async def ping(self) -> float:
        watch = Stopwatch()
        await self._redis.ping()
        return watch.elapsed()

    async def close(self) -> None:
        await self._redis.aclose()
        if self._route is not None:
            await self._route.aclose()
