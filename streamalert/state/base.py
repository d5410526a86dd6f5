"""The store protocol the engine checkpoints into, and the value types that cross it."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import orjson


@dataclass(slots=True)
class Changes:
    """One checkpoint: what changed since the previous one, committed atomically.

    `upserts` and `deletes` are keyed by rule id (name:digest) then by the series' group key (JSON bytes).
    `pending_add` are events still in the reorder buffer as (event time, 8-byte sequence + raw line);
    pending events with a time before `pending_before` have been applied and are removed.
    `transitions` are the JSON lines of the transitions decided since the previous checkpoint: they are
    appended to the store's transition log in the same atomic commit, so each is recorded exactly once.
    `groups` / `groups_deleted` are the notification groups that changed (group key -> JSON), and `outbox`
    the notifications their flushes decided (JSON): committed with the transitions that caused them.
    `held`, when not None, replaces the stored lines that replay holds until the next line of their lane
    decides their time (the engine's far-ahead rule).
    """

    meta: dict[str, int]
    upserts: dict[str, dict[bytes, bytes]] = field(default_factory=dict)
    deletes: dict[str, list[bytes]] = field(default_factory=dict)
    pending_add: list[tuple[int, bytes]] = field(default_factory=list)
    pending_before: int | None = None
    transitions: list[bytes] = field(default_factory=list)
    groups: dict[bytes, bytes] = field(default_factory=dict)
    groups_deleted: list[bytes] = field(default_factory=list)
    outbox: list[bytes] = field(default_factory=list)
    held: dict[str, bytes] | None = None  # replay's held lines by lane (8-byte time + raw line); None: unchanged


@dataclass(slots=True)
class Snapshot:
    """Everything a store holds for a set of rules: the engine resumes from it."""

    meta: dict[str, int] = field(default_factory=dict)
    series: dict[str, dict[bytes, bytes]] = field(default_factory=dict)
    pending: list[tuple[int, bytes]] = field(default_factory=list)
    groups: dict[bytes, bytes] = field(default_factory=dict)
    held: dict[str, bytes] = field(default_factory=dict)


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

    # ---- notifications: outbox, dead letters, history, silences --------------------------------------------

    async def outbox(self, after: str | None, limit: int) -> list[tuple[str, bytes]]:
        """Pending notifications (entry id, JSON), oldest first, after entry `after` (exclusive)."""
        ...

    async def outbox_depth(self) -> int: ...

    async def outbox_attempt(self, entry_id: str) -> int:
        """Count one delivery attempt of an entry; the number of attempts so far, this one included."""
        ...

    async def outbox_done(self, entry_id: str, record: bytes, keep: int) -> None:
        """The entry was delivered: remove it and add `record` to the notification history (last `keep`)."""
        ...

    async def outbox_dead(self, entry_id: str, record: bytes) -> None:
        """Give up on the entry: move it to the dead letters as `record` (notification, error, attempts)."""
        ...

    async def dead_letters(self, limit: int) -> list[tuple[str, bytes]]:
        """Dead-lettered notifications (entry id, record JSON), oldest first."""
        ...

    async def requeue(self, entry_ids: list[str] | None) -> int:
        """Move dead letters (these, or all with None) back to the outbox with fresh attempts; how many."""
        ...

    async def notifications(self, limit: int) -> list[bytes]:
        """The last `limit` delivered notifications' records, oldest first (dead letters: `dead_letters`)."""
        ...

    async def silences(self, now_ms: int) -> list[bytes]:
        """Silences not yet ended at `now_ms` (JSON); ended ones are deleted."""
        ...

    async def put_silence(self, silence_id: str, record: bytes) -> None: ...

    async def groups(self) -> dict[bytes, bytes]:
        """The notification groups as last committed (group key -> JSON): what the alert API and UI show."""
        ...

    async def delete_silence(self, silence_id: str) -> bool: ...

    async def ping(self) -> float:
        """Round-trip time in seconds; raises when the store is unreachable."""
        ...

    async def close(self) -> None: ...


def requeued(dead_record: bytes) -> bytes:
    """The outbox entry for a dead letter being re-queued: its notification, as first queued."""
    return orjson.dumps(orjson.loads(dead_record)["notification"])


def silence_end(record: bytes) -> int:
    """A stored silence's end, in epoch ms (stores index silences by it to drop them when they end)."""
    from streamalert.decode import parse_time  # noqa: PLC0415 (state does not import the decoder otherwise)

    ends = parse_time(orjson.loads(record)["endsAt"])
    if ends is None:
        raise ValueError("silence without a readable endsAt")
    return ends
