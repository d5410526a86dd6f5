"""The collector's passes over a large heap, and giving freed memory back after many series have ended.

glibc's malloc keeps freed pages inside its heaps until `malloc_trim` is called; CPython's own allocator
(pymalloc, the default) returns a 1 MiB arena only once every object in it is gone. Calling `malloc_trim(0)`
after the engine compacted its tables (a quarter or less of the series left) returns what glibc holds: with
`PYTHONMALLOC=malloc` that is everything the ended series used (README "Memory"), with pymalloc the large
blocks (table storage). Where there is no glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import functools
import gc
import os
from collections.abc import Callable
from typing import Any

from streamalert.clock import Stopwatch

# A full collection (the oldest generation) that takes this long freezes what it found alive; see
# `freeze_after_long_passes`.
LONG_PASS_S = 0.010


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    import ctypes  # noqa: PLC0415 (only the live loop gives memory back; `check` and the engine's import skip it)

    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release_memory(thaw: bool) -> None:
    """Empty CPython's free lists, on the event loop; with `thaw`, also collect every dead reference cycle.

    After a flood the tuple free lists alone hold tens of thousands of tuples scattered over the arenas the
    flood's series used, each keeping its 1 MiB arena from going back to the system (42 of 87 MB after
    300,000 expired series, in-process). Only a collection of the oldest generation empties them (3.11 has
    no other way), and a full collection walks every tracked object: seconds with a flood's series still
    live. Without `thaw` (the caller still holds many series) everything is frozen first, so the collection
    walks nothing (well under a millisecond) and what it froze stays frozen (see
    `freeze_after_long_passes`). With `thaw` (few series left) everything is unfrozen and walked once:
    the dead cycles that freezing kept (request objects in flight at a freeze, with their bodies) are
    freed with the free lists.
    """
    if thaw:
        gc.unfreeze()
    else:
        gc.freeze()
    gc.collect()


_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_mb() -> float | None:
    """This process's resident memory in MB (Linux: /proc/self/statm), or None where it cannot be read."""
    try:
        with open("/proc/self/statm", "rb") as statm:
            pages = int(statm.read().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return round(pages * _PAGE / 1048576, 1)


def give_back() -> None:
    """Return free memory at the top and inside glibc's heaps to the system (releases the GIL meanwhile)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)


def allocator(maps: str | None = None) -> str:
    """The allocator Python's objects come from, for the start-up log: `pymalloc` (Python's default), or
    `malloc` with the library that provides it when one is preloaded (`malloc+jemalloc`, `malloc+mimalloc`;
    README "Memory after a flood"). `maps`: this process's /proc/self/maps text (read here by default)."""
    if os.environ.get("PYTHONMALLOC", "").split("_")[0] != "malloc":
        return "pymalloc"  # unset, pymalloc, pymalloc_debug (and -X dev, which keeps pymalloc)
    if maps is None:
        try:
            with open("/proc/self/maps", encoding="ascii", errors="replace") as file:
                maps = file.read()
        except OSError:
            maps = ""
    for name in ("jemalloc", "mimalloc", "tcmalloc"):
        if f"/lib{name}" in maps:
            return f"malloc+{name}"
    return "malloc"


class _FreezeAfterLongPasses:
    """A `gc.callbacks` entry: after a full collection that took LONG_PASS_S or more, `gc.freeze()`."""

    def __init__(self, limit_s: float) -> None:
        self.limit_s = limit_s
        self._watch: Stopwatch | None = None

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if info["generation"] != 2:
            return
        if phase == "start":
            self._watch = Stopwatch()
        elif self._watch is not None and self._watch.elapsed() >= self.limit_s:
            self._watch = None
            gc.freeze()


def thaw() -> None:
    """Unfreeze every frozen object (the next full pass walks them again and collects their dead cycles)."""
    gc.unfreeze()


def freeze_after_long_passes(limit_s: float = LONG_PASS_S) -> Callable[[], None]:
    """Keep full collections short while many series are alive; return the function that stops it.

    CPython's full collection walks every object it tracks, in one step of the event loop: with a flood's
    hundreds of thousands of series alive, 100-160 ms under `PYTHONMALLOC=malloc` (README "Event loop"),
    more for larger heaps. After a pass that took `limit_s` or more, what it found alive is frozen
    (`gc.freeze()`: moved where no later pass walks it); the next full pass walks only what was made since.

    Frozen objects are still freed by reference counting (a series that ends, its timers and its times are
    freed as before); what waits is garbage in reference cycles among them (none in the engine's state;
    some in request handling that was in flight at the freeze), until `release_memory` (when few series are
    left, THAW_BELOW_SERIES in pipeline.py), `thaw` (when a writer's term ends: a reload or a takeover drops
    its engine) or the stop function unfreezes them, and the next full pass collects it. A small heap's
    passes stay below the limit, so in a steady state nothing is frozen. The stop function unfreezes
    everything.
    """
    callback = _FreezeAfterLongPasses(limit_s)
    gc.callbacks.append(callback)

    def stop() -> None:
        if callback in gc.callbacks:
            gc.callbacks.remove(callback)
        gc.unfreeze()  # what it froze, and what release_memory left frozen

    return stop
