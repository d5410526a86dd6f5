"""Giving freed memory back to the operating system after many series have ended.

glibc's malloc keeps freed pages inside its heaps until `malloc_trim` is called; CPython's own allocator
(pymalloc, the default) returns a 1 MiB arena only once every object in it is gone. Calling `malloc_trim(0)`
after the engine compacted its tables (a quarter or less of the series left) returns what glibc holds: with
`PYTHONMALLOC=malloc` that is everything the ended series used (README "Memory"), with pymalloc the large
blocks (table storage). Where there is no glibc (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import functools
import gc
from collections.abc import Callable


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return None
    trim = getattr(libc, "malloc_trim", None)
    if trim is None:
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim  # type: ignore[no-any-return]


def release_memory() -> None:
    """Empty CPython's free lists, on the event loop, in constant time.

    After a flood the tuple free lists alone hold tens of thousands of tuples scattered over the arenas the
    flood's series used, each keeping its 1 MiB arena from going back to the system (42 of 87 MB after
    300,000 expired series, in-process). Only a collection of the oldest generation empties them (3.11 has
    no other way), and a full collection walks every tracked object: seconds with a flood's series still
    live. Frozen first, the objects are not walked: what runs is the free lists' clearing.
    """
    gc.freeze()
    try:
        gc.collect()
    finally:
        gc.unfreeze()


def give_back() -> None:
    """Return free memory at the top and inside glibc's heaps to the system (releases the GIL meanwhile)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
