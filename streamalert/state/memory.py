"""In-process store: the default for replay; holds exactly what the Redis store holds, as bytes.

Series are kept per rule as an append-only log of records in one bytearray (see `_Log`), not as a dict of
bytes: a dict entry and two bytes objects cost about 145 bytes a series, a record its own length plus 3.
"""

from __future__ import annotations

import bisect
import collections
import itertools
import struct

from streamalert.state import keys
from streamalert.state.base import Changes, Snapshot, requeued, silence_end
from streamalert.steps import Steps, finish, stepped

# A rule's log is rewritten with only its live records once it holds more records appended since its last
# rewrite than it then held live, and at least this many: each record is parsed a bounded number of times
# (amortised), and memory returns after series expire.
_COMPACT_FROM = 4096
_WRITE_PART = 4096  # series a commit writes before the event loop serves others
_YOUNG = 4096  # series of a rule kept as a dict after their last upsert (see _Log)
_SMALL = struct.Struct("<BH")  # key length < 255, value length < 65535 (65535: deleted)
_LARGE = struct.Struct("<BII")  # 255, then key length, value length (2**32 - 1: deleted)
_SMALL_GONE, _LARGE_GONE = 0xFFFF, 0xFFFFFFFF


class _Log:
    """One rule's series. The series upserted lately are a dict (`young`, at most `_YOUNG` of them, so a busy
    series rewritten at every checkpoint costs a dict update); the others are records (key, value) or (key,
    deleted) appended to one bytearray in commit order, the last record of a key winning, and `young`
    overriding them. `appended` records were added since the log was last rewritten with `live` keys."""

    __slots__ = ("appended", "data", "live", "young")

    def __init__(self) -> None:
        self.data = bytearray()
        self.young: dict[bytes, bytes] = {}
        self.appended = 0
        self.live = 0

    def put(self, key: bytes, value: bytes) -> None:
        young = self.young
        young[_own(key)] = _own(value)
        if len(young) >= _YOUNG:
            self._flush()

    def delete(self, key: bytes) -> None:
        self.young.pop(key, None)
        self._append(key, None)  # the log may hold it too

    def _flush(self) -> None:
        for key, value in self.young.items():
            self._append(key, value)
        self.young = {}

    def _append(self, key: bytes, value: bytes | None) -> None:
        _append_to(self.data, key, value)
        self.appended += 1

    def table(self) -> dict[bytes, bytes]:
        """The live series: of each key, its young value or the last record of the log, unless a deletion."""
        out: dict[bytes, bytes] = {}
        finish(_parse(bytes(self.data), out, 0))
        out.update(self.young)
        return out

    def tidy_steps(self, part: int) -> Steps[bool]:
        """Rewrite the log with only its live records once enough were appended since the last rewrite (each
        record is then parsed a bounded number of times, amortised), yielding after every `part` records read
        or written; returns False when nothing is left. The log reads as before until the rewrite is swapped
        in at the end; nothing may write to it between the steps."""
        if self.appended >= max(_COMPACT_FROM, self.live):
            self._flush()
            table: dict[bytes, bytes] = {}
            yield from _parse(bytes(self.data), table, part)
            data = bytearray()
            for count, (key, value) in enumerate(table.items(), 1):
                _append_to(data, key, value)
                if not count % part:
                    yield
            self.data = bytearray(data)  # a tight copy: appends over-allocate
            self.appended, self.live = 0, len(table)
        return bool(self.live or self.young or self.appended)


def _append_to(data: bytearray, key: bytes, value: bytes | None) -> None:
    """One record (key, value) or (key, deleted) at the end of a log."""
    klen = len(key)
    if value is None:
        data += _SMALL.pack(klen, _SMALL_GONE) if klen < 255 else _LARGE.pack(255, klen, _LARGE_GONE)
    else:
        vlen = len(value)
        data += _SMALL.pack(klen, vlen) if klen < 255 and vlen < _SMALL_GONE else _LARGE.pack(255, klen, vlen)
    data += key
    if value is not None:
        data += value


def _parse(data: bytes, out: dict[bytes, bytes], part: int) -> Steps[None]:
    """The records of a log into `out` in order (a deletion removes its key), yielding after every `part`
    records (0: never)."""
    pos, end, count = 0, len(data), 0
    small, large = _SMALL.unpack_from, _LARGE.unpack_from
    while pos < end:
        klen, vlen = small(data, pos)
        if klen < 255:
            pos += 3
            gone = vlen == _SMALL_GONE
        else:
            _, klen, vlen = large(data, pos)
            pos += 9
            gone = vlen == _LARGE_GONE
        key = data[pos : pos + klen]
        pos += klen
        if gone:
            out.pop(key, None)
        else:
            out[key] = data[pos : pos + vlen]
            pos += vlen
        count += 1
        if count == part:
            count = 0
            yield


def _own(raw: bytes) -> bytes:
    """A tight copy of bytes this store keeps: orjson (3.13) returns bytes that hold about 4 KB of memory
    each whatever their length, so keeping its output as is made every stored series cost 4 KB or more."""
    return bytes(memoryview(raw))


class MemoryStore:
    """A store in this process's memory; it dies with the process."""

    def __init__(self) -> None:
        self._meta: dict[str, int] = {}
        self._series: dict[str, _Log] = {}
        self._pending: list[tuple[int, bytes]] = []
        self._transitions: collections.deque[bytes] = collections.deque(maxlen=keys.TRANSITIONS_KEPT)
        self._groups: dict[bytes, bytes] = {}
        self._held: dict[str, bytes] = {}
        self._outbox: dict[str, bytes] = {}  # insertion-ordered, like a stream
        self._attempts: dict[str, int] = {}
        self._dead: dict[str, bytes] = {}
        self._history: collections.deque[bytes] = collections.deque()
        self._silences: dict[str, tuple[int, bytes]] = {}
        self._ids = itertools.count(1)

    async def load(self, rule_ids: list[str]) -> Snapshot:
        return Snapshot(
            meta=dict(self._meta),
            series={rid: table for rid, table in self._tables(rule_ids) if table},
            pending=list(self._pending),
            groups=dict(self._groups),
            held=dict(self._held),
        )

    def _tables(self, rule_ids: list[str]) -> list[tuple[str, dict[bytes, bytes]]]:
        return [(rid, self._series[rid].table()) for rid in rule_ids if rid in self._series]

    async def commit(self, changes: Changes, ttl_ms: dict[str, int]) -> None:
        # Atomic as a Redis EVAL: once begun, it ends whole even if the caller is cancelled at a yield.
        import asyncio  # noqa: PLC0415 (here: `check` imports this module and must not load asyncio)

        await asyncio.shield(stepped(self._commit_steps(changes)))

    def _commit_steps(self, changes: Changes) -> Steps[None]:
        self._meta.update(changes.meta)
        if changes.held is not None:
            self._held = {lane: bytes(value) for lane, value in changes.held.items()}
        logs = self._series
        done = 0  # series written: the loop serves others every _WRITE_PART (only a restore reads series)
        for rule_id, items in changes.upserts.items():
            if items:
                log = logs.get(rule_id)
                if log is None:
                    log = logs[rule_id] = _Log()
                for key, value in items.items():
                    log.put(key, value)
                    done += 1
                    if not done % _WRITE_PART:
                        yield
        for rule_id, gone in changes.deletes.items():
            log = logs.get(rule_id)
            if log is not None:
                for key in gone:
                    log.delete(key)
                    done += 1
                    if not done % _WRITE_PART:
                        yield
        for rule_id in {*changes.upserts, *changes.deletes}:
            log = logs.get(rule_id)
            if log is not None and not (yield from log.tidy_steps(_WRITE_PART)):
                del logs[rule_id]  # nothing live: the rule's log goes
        if changes.pending_add:
            # Arrival order is nearly time order: one sort of the additions, then an append, or a sort that
            # merges two runs; inserting one by one moved the whole list for every event.
            added, pending = sorted(changes.pending_add), self._pending
            disordered = bool(pending) and added[0] < pending[-1]
            pending.extend(added)
            if disordered:
                pending.sort()
        if changes.pending_before is not None:
            cut = bisect.bisect_left(self._pending, (changes.pending_before, b""))
            del self._pending[:cut]
        self._transitions.extend(map(_own, changes.transitions))
        self._groups.update((_own(key), _own(value)) for key, value in changes.groups.items())
        for key in changes.groups_deleted:
            self._groups.pop(key, None)
        for raw in changes.outbox:
            self._outbox[self._next_id()] = _own(raw)

    async def transitions(self, limit: int) -> list[bytes]:
        return list(self._transitions)[-limit:] if limit > 0 else []

    async def reset(self) -> None:
        self._meta.clear()
        self._series.clear()
        self._pending.clear()
        self._transitions.clear()
        for table in (self._groups, self._outbox, self._attempts, self._dead, self._silences):
            table.clear()
        self._history.clear()

    def _next_id(self) -> str:
        return f"{next(self._ids)}-0"  # ordered like Redis stream ids

    async def outbox(self, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        items = [(i, raw) for i, raw in self._outbox.items() if after is None or _id_key(i) > _id_key(after)]
        return items[:limit]

    async def outbox_depth(self) -> int:
        return len(self._outbox)

    async def outbox_attempt(self, entry_id: str) -> int:
        self._attempts[entry_id] = self._attempts.get(entry_id, 0) + 1
        return self._attempts[entry_id]

    async def outbox_done(self, entry_id: str, record: bytes, keep: int) -> None:
        self._outbox.pop(entry_id, None)
        self._attempts.pop(entry_id, None)
        self._history.append(record)
        while len(self._history) > keep:
            self._history.popleft()

    async def outbox_dead(self, entry_id: str, record: bytes) -> None:
        self._outbox.pop(entry_id, None)
        self._attempts.pop(entry_id, None)
        self._dead[self._next_id()] = record

    async def dead_letters(self, limit: int) -> list[tuple[str, bytes]]:
        return list(self._dead.items())[:limit]

    async def requeue(self, entry_ids: list[str] | None) -> int:
        chosen = list(self._dead) if entry_ids is None else [i for i in entry_ids if i in self._dead]
        for entry_id in chosen:
            self._outbox[self._next_id()] = requeued(self._dead.pop(entry_id))
        return len(chosen)

    async def notifications(self, limit: int) -> list[bytes]:
        return list(self._history)[-limit:] if limit > 0 else []

    async def silences(self, now_ms: int) -> list[bytes]:
        for silence_id in [i for i, (ends, _) in self._silences.items() if ends <= now_ms]:
            del self._silences[silence_id]
        return [raw for _, raw in self._silences.values()]

    async def groups(self) -> dict[bytes, bytes]:
        return dict(self._groups)

    async def put_silence(self, silence_id: str, record: bytes) -> None:
        self._silences[silence_id] = (silence_end(record), record)

    async def delete_silence(self, silence_id: str) -> bool:
        return self._silences.pop(silence_id, None) is not None

    async def ping(self) -> float:
        return 0.0

    async def close(self) -> None:
        return None


def _id_key(entry_id: str) -> tuple[int, int]:
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)
