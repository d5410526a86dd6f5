"""In-process store: the default for replay; holds exactly what the Redis store holds, as bytes."""

from __future__ import annotations

import bisect
import collections

from streamalert.state import keys
from streamalert.state.base import Changes, Snapshot


class MemoryStore:
    """A store in this process's memory; it dies with the process."""

    def __init__(self) -> None:
        self._meta: dict[str, int] = {}
        self._series: dict[str, dict[bytes, bytes]] = {}
        self._pending: list[tuple[int, bytes]] = []
        self._transitions: collections.deque[bytes] = collections.deque(maxlen=keys.TRANSITIONS_KEPT)

    async def load(self, rule_ids: list[str]) -> Snapshot:
        return Snapshot(
            meta=dict(self._meta),
            series={rid: dict(self._series[rid]) for rid in rule_ids if self._series.get(rid)},
            pending=list(self._pending),
        )

    async def commit(self, changes: Changes, ttl_ms: dict[str, int]) -> None:
        self._meta.update(changes.meta)
        for rule_id, items in changes.upserts.items():
            self._series.setdefault(rule_id, {}).update(items)
        for rule_id, gone in changes.deletes.items():
            table = self._series.get(rule_id, {})
            for key in gone:
                table.pop(key, None)
            if not table:
                self._series.pop(rule_id, None)
        for item in changes.pending_add:
            bisect.insort(self._pending, item)
        if changes.pending_before is not None:
            cut = bisect.bisect_left(self._pending, (changes.pending_before, b""))
            del self._pending[:cut]
        self._transitions.extend(changes.transitions)

    async def transitions(self, limit: int) -> list[bytes]:
        return list(self._transitions)[-limit:] if limit > 0 else []

    async def reset(self) -> None:
        self._meta.clear()
        self._series.clear()
        self._pending.clear()
        self._transitions.clear()

    async def ping(self) -> float:
        return 0.0

    async def close(self) -> None:
        return None
