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


def give_back() -> None:
    """Return free memory at the top and inside glibc's heaps to the system (releases the GIL meanwhile)."""
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
