"""In-process store: the default for replay; holds exactly what the Redis store holds, as bytes."""

from __future__ import annotations

import bisect
import collections
import itertools

from streamalert.state import keys
from streamalert.state.base import Changes, Snapshot, requeued, silence_end

# Dicts never shrink on delete: a rule's table is rebuilt at its current size once it holds less than a
# quarter of its high-water mark (of at least this many series), so memory returns after series expire.
_COMPACT_FROM = 4096


def _own(raw: bytes) -> bytes:
    """A tight copy of bytes this store keeps: orjson (3.13) returns bytes that hold about 4 KB of memory
    each whatever their length, so keeping its output as is made every stored series cost 4 KB or more."""
    return bytes(memoryview(raw))


class MemoryStore:
    """A store in this process's memory; it dies with the process."""

    def __init__(self) -> None:
        self._meta: dict[str, int] = {}
        self._series: dict[str, dict[bytes, bytes]] = {}
        self._peaks: dict[str, int] = {}  # per rule id: the most series since its table was last rebuilt
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
            series={rid: dict(self._series[rid]) for rid in rule_ids if self._series.get(rid)},
            pending=list(self._pending),
            groups=dict(self._groups),
            held=dict(self._held),
        )

    async def commit(self, changes: Changes, ttl_ms: dict[str, int]) -> None:
        self._meta.update(changes.meta)
        if changes.held is not None:
            self._held = {lane: bytes(value) for lane, value in changes.held.items()}
        peaks = self._peaks
        for rule_id, items in changes.upserts.items():
            table = self._series.setdefault(rule_id, {})
            table.update((_own(key), _own(value)) for key, value in items.items())
            peaks[rule_id] = max(peaks.get(rule_id, 0), len(table))
        for rule_id, gone in changes.deletes.items():
            table = self._series.get(rule_id, {})
            for key in gone:
                table.pop(key, None)
            if not table:
                self._series.pop(rule_id, None)
                peaks.pop(rule_id, None)
            elif peaks.get(rule_id, 0) >= _COMPACT_FROM and len(table) * 4 < peaks[rule_id]:
                self._series[rule_id] = dict(table)
                peaks[rule_id] = len(table)
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
        self._peaks.clear()
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
