"""Batches of canonical timestamps ("YYYY-MM-DDTHH:MM:SS.mmmZ"): validation, times and late lines.

Canonical stamps sort like the times they spell, so the engine's bulk intake path can decide the clock and
lateness for a whole batch with C-level list and bytes operations instead of one line at a time.
"""

from __future__ import annotations

import itertools
import operator

from streamalert.decode import HOUR_CACHE, MILLIS, MINUTE_SECOND, format_ms, parse_time

_SHAPE = b"0000-00-00T00:00:00.000Z"
_DIGITS_TO_ZERO = bytes.maketrans(b"123456789", b"000000000")
_BELOW_SIX = b"012345"


def canonical(stamps: list[str]) -> bool:
    """Whether every stamp is "YYYY-MM-DDTHH:MM:SS.mmmZ" with ASCII digits and minutes and seconds below 60.

    Such stamps sort like their times. Together with a valid first and last stamp on one date (checked by
    the caller) every stamp between them is then a real time. Done on the joined text, at C speed."""
    try:
        joined = "".join(stamps).encode("ascii")  # TypeError: a stamp that is not a string
    except (TypeError, UnicodeEncodeError):
        return False
    return (
        joined.translate(_DIGITS_TO_ZERO) == _SHAPE * len(stamps)
        and not joined[14::24].translate(None, _BELOW_SIX)  # tens of minutes: 0-5 (max() over the bytes
        and not joined[17::24].translate(None, _BELOW_SIX)  # took 15 times as long), tens of seconds: 0-5
    )


def stamp_ms(stamp: str) -> int | None:
    """Epoch ms of a canonical stamp (minutes and seconds checked below 60): three dictionary lookups once
    its hour has been seen."""
    hour = HOUR_CACHE.get(stamp[:13])
    return parse_time(stamp) if hour is None else hour + MINUTE_SECOND[stamp[14:19]] + MILLIS[stamp[20:23]]


# late_lines looks at a batch in chunks of this many lines: one test clears a chunk in which no line can be
# more than `lateness` behind the newest line before it, the common case (lines a few seconds out of order).
_CHUNK = 256


def chunk_bounds(stamps: list[str]) -> list[tuple[str, str]]:
    """The lowest and highest stamp of each chunk of `late_lines`: one pass of min and one of max over the
    batch, from which the caller also takes the batch's lowest and highest stamp (two passes fewer)."""
    bounds: list[tuple[str, str]] = []
    for first in range(0, len(stamps), _CHUNK):
        chunk = stamps[first : first + _CHUNK]
        bounds.append((min(chunk), max(chunk)))
    return bounds


def late_lines(
    stamps: list[str], floor: int, lateness: int, low_ms: int, bounds: list[tuple[str, str]] | None = None
) -> set[int]:
    """Indexes of the late lines of a batch of canonical stamps: below the floor the batch starts with, or
    more than `lateness` behind the newest line before them. `bounds`: the batch's `chunk_bounds`, if known.

    Only lines inside a dip (below the running maximum) can be the latter, and only in a chunk whose lowest
    line is more than `lateness` behind the newest line up to the chunk's end. In such a chunk, the places
    where a dip starts (a stamp lower than its predecessor) are found by one C-level comparison of
    neighbours, and only the lines of each dip are looked at one by one."""
    late: set[int] = set()
    if low_ms < floor:
        below = map(operator.lt, stamps, itertools.repeat(format_ms(floor)))
        late.update(itertools.compress(itertools.count(), below))
    count = len(stamps)
    peak = ""  # max(stamps[:first]), before each chunk
    for first, (lowest, highest) in zip(range(0, count, _CHUNK), bounds or chunk_bounds(stamps), strict=True):
        top = max(peak, highest)
        low_in, top_ms = stamp_ms(lowest), stamp_ms(top)
        if low_in is None or top_ms is None:
            raise AssertionError("stamps were checked with the batch")
        if low_in < top_ms - lateness:  # some line of the chunk may be late: its dips, one by one
            _dips(stamps, first, min(count, first + _CHUNK), peak, lateness, late)
        peak = top
    return late


def _dips(stamps: list[str], first: int, stop: int, peak: str, lateness: int, late: set[int]) -> None:
    """Add to `late` the lines more than `lateness` behind the newest line before them, among those of the
    dips that start in stamps[first:stop]; `peak` is max(stamps[:first])."""
    count, scanned = len(stamps), first  # peak = max(stamps[:scanned])
    for start in itertools.compress(
        range(first, stop), map(operator.lt, stamps[first:stop], [peak, *stamps[first : stop - 1]])
    ):
        if start < scanned:
            continue  # inside a dip already walked
        if scanned < start:
            peak = max(peak, max(stamps[scanned:start]))  # noqa: PLW3301 (unpacking the slice is slower)
        peak_ms = stamp_ms(peak)
        if peak_ms is None:
            raise AssertionError("stamps were checked with the batch")
        end = start
        while end < count and stamps[end] < peak:
            behind = stamp_ms(stamps[end])
            if behind is None:
                raise AssertionError("stamps were checked with the batch")
            if behind < peak_ms - lateness:
                late.add(end)
            end += 1
        scanned = end
