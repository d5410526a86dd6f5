"""telemetry/memory.py: malloc_trim is found where glibc is and calling it is harmless; the free lists empty."""

from __future__ import annotations

import gc
import os
import platform
import re
import sys
import tempfile
import weakref

import pytest

from streamalert.telemetry.memory import _malloc_trim, give_back, release_memory


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_malloc_trim_is_found_on_glibc() -> None:
    assert _malloc_trim() is not None
    give_back()


def _free_pairs() -> int:
    """How many 2-tuples CPython's free list holds, from its own statistics (written to fd 2)."""
    with tempfile.TemporaryFile() as out:
        saved = os.dup(2)
        try:
            os.dup2(out.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        out.seek(0)
        found = re.search(rb"(\d+) free 2-sized PyTupleObjects", out.read())
    assert found is not None, "no tuple free list in sys._debugmallocstats()"
    return int(found.group(1))


def test_release_memory_empties_the_free_lists_and_leaves_the_collector_as_it_was() -> None:
    pairs = [(i, i) for i in range(10_000)]
    del pairs  # the 2-tuple free list fills up (2,000 kept)
    assert _free_pairs() >= 1_000
    cycle: list[object] = []
    cycle.append(cycle)
    probe = weakref.ref(cycle_holder := Holder(cycle))
    del cycle, cycle_holder
    release_memory()
    assert _free_pairs() < 10  # (what the measuring itself frees)
    assert gc.get_freeze_count() == 0  # nothing left frozen: the next collection sees every object again
    assert probe() is not None  # frozen objects were not collected (no walk of the heap)
    gc.collect()
    assert probe() is None


class Holder:
    def __init__(self, cycle: list[object]) -> None:
        self.cycle = cycle
        cycle.append(self)
