"""Sources: where lines come from. One protocol: `batches()` yields batches, `ack(batch)` confirms them."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(slots=True)
class Batch:
    """Raw lines in arrival order, plus how far into the source they reach (for progress and commits)."""

    lines: list[bytes]
    position: int = 0


class Source(Protocol):
    """Yields batches; a batch is acknowledged only after its effects are durable."""

    def batches(self) -> AsyncIterator[Batch]: ...

    async def ack(self, batch: Batch) -> None: ...
