"""The only module that reads the system clock; everything else takes time as an argument.

Times inside streamalert are integer milliseconds since the Unix epoch (UTC).
"""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    """Something that says what time it is, in epoch milliseconds."""

    def now_ms(self) -> int: ...


class WallClock:
    """The system's real-time clock."""

    def now_ms(self) -> int:
        return time.time_ns() // 1_000_000


class ManualClock:
    """A clock that moves only when told to: for tests and for replay."""

    def __init__(self, start_ms: int = 0) -> None:
        self._now = start_ms

    def now_ms(self) -> int:
        return self._now

    def set(self, now_ms: int) -> None:
        self._now = now_ms

    def advance(self, delta_ms: int) -> None:
        self._now += delta_ms


class Stopwatch:
    """Elapsed seconds on the monotonic clock, for progress and throughput reports only."""

    def __init__(self) -> None:
        self._start = time.perf_counter()

    def elapsed(self) -> float:
        return time.perf_counter() - self._start
