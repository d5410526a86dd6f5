"""Sources: where lines come from. One protocol: `batches()` yields batches, `ack(batch)` confirms them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class Batch:
    """Raw lines in arrival order, plus how far into the source they reach (for progress and commits).

    `token` is the source's own bookkeeping for the batch (for the Vector source: the HTTP requests waiting
    for their answer); nothing else reads it. An empty batch is a tick: the source had nothing to give
    within its tick interval, and live mode uses it to move the wall clock on.
    """

    lines: list[bytes]
    position: int = 0
    token: object = None


class Source(Protocol):
    """Yields batches; a batch is acknowledged only after its effects are durable."""

    name: str

    def batches(self) -> AsyncIterator[Batch]: ...

    async def ack(self, batch: Batch) -> None:
        """The batch's effects are committed: confirm it to whoever sent it."""
        ...

    def caught_up(self) -> bool:
        """Whether the source holds no backlog, so live time may follow the wall clock."""
        ...
