"""The alert lifecycle (inactive -> pending -> firing -> resolved) as one pure decision function.

With `keep_firing_for` (as in Prometheus rules) a firing series whose condition stops holding stays firing,
quiet since that instant, and resolves only once it has been quiet for that long; holding again in between
clears the quiet time and nothing is sent.
"""

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
    quiet_since: int | None = None  # firing, but the condition has not held since then (keep_firing_for)

    def due(self, for_ms: int, keep_ms: int = 0) -> int | None:
        """When a pending series fires if the condition keeps holding, or a quiet firing one resolves if it
        keeps not holding; None otherwise."""
        if self.quiet_since is not None:
            return self.quiet_since + keep_ms
        if self.active_since is None or self.firing:
            return None
        return self.active_since + for_ms


INACTIVE = Phase()


def step(phase: Phase, holds: bool, now: int, for_ms: int, keep_ms: int = 0) -> tuple[Phase, Change]:
    """Advance the lifecycle at `now`, given whether the condition holds after every change at `now`."""
    if holds:
        since = now if phase.active_since is None else phase.active_since
        if phase.firing:
            return (phase if phase.quiet_since is None else Phase(since, True)), Change.NONE
        if now >= since + for_ms:
            return Phase(since, True), Change.FIRING
        if phase.active_since is None:
            return Phase(since, False), Change.PENDING
        return phase, Change.NONE
    if phase.firing:
        quiet = now if phase.quiet_since is None else phase.quiet_since
        if now < quiet + keep_ms:
            return (phase if phase.quiet_since is not None else Phase(phase.active_since, True, quiet)), Change.NONE
        return INACTIVE, Change.RESOLVED
    if phase.active_since is not None:
        return INACTIVE, Change.CANCELLED
    return phase, Change.NONE
