"""The store protocol the engine checkpoints into, and the value types that cross it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class Changes:
    """One checkpoint: what changed since the previous one, committed atomically.

    `upserts` and `deletes` are keyed by rule id (name:digest) then by the series' group key (JSON bytes).
    `pending_add` are events still in the reorder buffer as (event time, 8-byte sequence + raw line);
    pending events with a time before `pending_before` have been applied and are removed.
    `transitions` are the JSON lines of the transitions decided since the previous checkpoint: they are
    appended to the store's transition log in the same atomic commit, so each is recorded exactly once.
    """

    meta: dict[str, int]
    upserts: dict[str, dict[bytes, bytes]] = field(default_factory=dict)
    deletes: dict[str, list[bytes]] = field(default_factory=dict)
    pending_add: list[tuple[int, bytes]] = field(default_factory=list)
    pending_before: int | None = None
    transitions: list[bytes] = field(default_factory=list)


@dataclass(slots=True)
class Snapshot:
    """Everything a store holds for a set of rules: the engine resumes from it."""

    meta: dict[str, int] = field(default_factory=dict)
    series: dict[str, dict[bytes, bytes]] = field(default_factory=dict)
    pending: list[tuple[int, bytes]] = field(default_factory=list)


class Store(Protocol):
    """Where engine state lives between batches and across restarts."""

    async def load(self, rule_ids: list[str]) -> Snapshot:
        """The stored state of these rules (unknown rule ids load as empty)."""
        ...

    async def commit(self, changes: Changes, ttl_ms: dict[str, int]) -> None:
        """Apply one checkpoint atomically; refresh each touched rule's idle expiry (`ttl_ms` per rule id)."""
        ...

    async def transitions(self, limit: int) -> list[bytes]:
        """The last `limit` transitions of the log, oldest first."""
        ...

    async def reset(self) -> None:
        """Forget everything in this store's namespace."""
        ...

    async def ping(self) -> float:
        """Round-trip time in seconds; raises when the store is unreachable."""
        ...

    async def close(self) -> None: ...
