"""The alert lifecycle (inactive -> pending -> firing -> resolved) as one pure decision function."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Change(StrEnum):
    """What one evaluation decided; the name goes into logs and metric labels."""

    NONE = "none"
    PENDING = "pending"  # condition became true, waiting for `for`
    FIRING = "firing"
    RESOLVED = "resolved"
    CANCELLED = "cancelled"  # condition stopped holding before `for` elapsed


@dataclass(frozen=True, slots=True)
class Phase:
    """Where a series is in its lifecycle: active since when (None = inactive) and whether it fires."""

    active_since: int | None = None
    firing: bool = False

    def due(self, for_ms: int) -> int | None:
        """When a pending series fires if the condition keeps holding; None otherwise."""
        if self.active_since is None or self.firing:
            return None
        return self.active_since + for_ms


INACTIVE = Phase()


def step(phase: Phase, holds: bool, now: int, for_ms: int) -> tuple[Phase, Change]:
    """Advance the lifecycle at `now`, given whether the condition holds after every change at `now`."""
    if holds:
        since = now if phase.active_since is None else phase.active_since
        if phase.firing:
            return phase, Change.NONE
        if now >= since + for_ms:
            return Phase(since, True), Change.FIRING
        if phase.active_since is None:
            return Phase(since, False), Change.PENDING
        return phase, Change.NONE
    if phase.firing:
        return INACTIVE, Change.RESOLVED
    if phase.active_since is not None:
        return INACTIVE, Change.CANCELLED
    return phase, Change.NONE
