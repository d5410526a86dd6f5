"""Flap damping: a series whose alert changes state more than `changes` times within `within` is held in a
`flapping` state: one notification (a firing transition annotated `flapping`), then quiet.

Every firing and resolved the lifecycle decides counts as a change, at its event time. The change that
makes `changes + 1` in (now - within, now] is replaced by one firing transition with the annotation
`flapping: "<n> changes in <within>"`; the changes after it send nothing (the alert stays firing). Once no
change has happened for `within`, the series leaves the flapping state: it resolves then if its condition no
longer fires, and stays firing quietly otherwise. Memory: at most `changes + 1` times per series.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from streamalert.alerts.lifecycle import Change


class FlapEmit(Enum):
    """What the engine sends for one evaluation of a series with flap damping."""

    NOTHING = 0
    AS_DECIDED = 1  # the lifecycle's own change, if any
    FLAPPING = 2  # one firing transition annotated `flapping`
    RESOLVED = 3  # the flapping ended with the condition no longer firing


@dataclass(slots=True)
class Flap:
    """The latest change times of one series, and since when it flaps (None: it does not)."""

    changes: list[int] = field(default_factory=list)
    since: int | None = None

    def ends(self, within_ms: int) -> int | None:
        """When a flapping series leaves the state if nothing changes; None when it does not flap."""
        return self.changes[-1] + within_ms if self.since is not None and self.changes else None

    def dump(self) -> list[Any]:
        return [self.since, *self.changes]

    @classmethod
    def load(cls, data: list[Any]) -> Flap:
        return cls(list(data[1:]), data[0])


def flap_step(flap: Flap, change: Change, now: int, firing: bool, limit: int, within_ms: int) -> FlapEmit:
    """Update `flap` with the lifecycle's decision at `now` (`firing`: the lifecycle's state after it)."""
    if flap.since is not None and now >= flap.changes[-1] + within_ms:
        flap.since, flap.changes = None, []  # quiet for a whole period: no longer flapping
        if change is Change.NONE or change is Change.CANCELLED:
            return FlapEmit.NOTHING if firing else FlapEmit.RESOLVED
        # a change at the very instant the flapping ends: counted below, on a clean slate
        if change is Change.FIRING:
            flap.changes.append(now)
            return FlapEmit.NOTHING  # the alert was held firing: it goes on firing, nothing new to send
    if change is not Change.FIRING and change is not Change.RESOLVED:
        return FlapEmit.AS_DECIDED
    changes = flap.changes
    changes.append(now)
    cutoff = now - within_ms
    while changes and changes[0] <= cutoff:
        changes.pop(0)
    del changes[: max(0, len(changes) - (limit + 1))]
    if flap.since is not None:
        return FlapEmit.NOTHING
    if len(changes) > limit:
        flap.since = now
        return FlapEmit.FLAPPING
    return FlapEmit.AS_DECIDED
