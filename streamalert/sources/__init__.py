"""Sources: where lines come from. One protocol: `batches()` yields batches, `ack(batch)` confirms them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass, field
from typing import Protocol


@dataclass(slots=True)
class Batch:
    """Raw lines in arrival order, plus how far into the source they reach (for progress and commits).

    `token` is the source's own bookkeeping for the batch (for the Vector source: the HTTP requests waiting
    for their answer); nothing else reads it. An empty batch is a tick: the source had nothing to give
    within its tick interval, and live mode uses it to move the wall clock on.

    `timed`, instead of `lines`, carries records already timed by a replica's intake (see `Timed`).
    `lane` names the ordered part of the input the lines come from (a Kafka partition as "topic/partition";
    "" for sources with one order). `meta` is stored in the same checkpoint as the batch's effects (the
    Kafka source's next offset per partition), so redelivered records can be recognised after a crash.
    """

    lines: list[bytes]
    position: int = 0
    token: object = None
    lane: str = ""
    meta: dict[str, int] = field(default_factory=dict)
    timed: Timed | None = None
    # Push sources: the wall time at which the earliest of its lines reached this process. Live mode judges
    # the batch as of then (clock, lateness, future skew), so time the lines spent queued here behind a busy
    # loop or a store outage does not make records late that were delivered on time.
    arrived_ms: int | None = None


@dataclass(slots=True)
class Timed:
    """A batch another replica's intake has already decoded, timed and filtered (replicas mode): the matched
    records as (time, raw line), the lane's newest time and the earliest time among all the batch's lines."""

    records: list[tuple[int, bytes]]
    newest: int | None
    earliest: int | None


class Source(Protocol):
    """Yields batches; a batch is acknowledged only after its effects are durable."""

    name: str

    def batches(self) -> AsyncIterator[Batch]: ...

    async def ack(self, batch: Batch) -> None:
        """The batch's effects are committed: confirm it to whoever sent it."""
        ...

    def lagging(self) -> Collection[str]:
        """The lanes that still hold a backlog; empty when caught up, so live time may follow the wall clock."""
        ...

    def resume(self, meta: Mapping[str, int]) -> None:
        """Called once with the stored checkpoint meta before the first batch (where to continue reading)."""
        ...
