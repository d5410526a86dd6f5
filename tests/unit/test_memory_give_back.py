"""telemetry/memory.py: malloc_trim is found where glibc is and calling it is harmless; the free lists empty;
long full collections freeze what they find, and a thaw collects the dead cycles that freezing kept."""

from __future__ import annotations

import gc
import os
import platform
import re
import sys
import tempfile
import weakref
from collections.abc import Iterator

import pytest

from streamalert.telemetry.memory import (
    _malloc_trim,
    allocator,
    freeze_after_long_passes,
    give_back,
    release_memory,
    resident_mb,
    thaw,
)
from streamalert.testing import allocator_with


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_malloc_trim_is_found_on_glibc() -> None:
    assert _malloc_trim() is not None
    give_back()


def test_the_allocator_is_named_as_python_was_started() -> None:
    assert allocator_with({}) == "pymalloc"
    assert allocator_with({"PYTHONMALLOC": "pymalloc_debug"}) == "pymalloc"
    assert allocator_with({"PYTHONMALLOC": "malloc"}) == "malloc"


def test_a_preloaded_allocator_is_named_from_the_maps(monkeypatch: pytest.MonkeyPatch) -> None:
    maps = "7f0e1c000000-7f0e1c021000 r-xp 00000000 08:01 1234 /usr/lib/x86_64-linux-gnu/libjemalloc.so.2\n"
    monkeypatch.setenv("PYTHONMALLOC", "malloc")
    assert allocator(maps) == "malloc+jemalloc"
    assert allocator("") == "malloc"
    monkeypatch.delenv("PYTHONMALLOC")
    assert allocator(maps) == "pymalloc"  # a preloaded library serves only what Python asks malloc for


@pytest.mark.skipif(platform.system() != "Linux", reason="reads /proc")
def test_resident_memory_grows_with_what_the_process_holds() -> None:
    before = resident_mb()
    held = bytearray(64 * 1024 * 1024)  # zero pages are resident only once written
    held[::4096] = b"x" * len(held[::4096])
    after = resident_mb()
    assert before is not None
    assert after is not None
    assert after - before > 48, (before, after)
    del held


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


@pytest.fixture
def unfrozen() -> Iterator[None]:
    """Each test starts and ends with nothing frozen (the tests run in one process)."""
    gc.unfreeze()
    yield
    gc.unfreeze()


def _dead_cycle() -> weakref.ref[Holder]:
    """A reference cycle nothing else holds: only a walk of the collector frees it."""
    cycle: list[object] = []
    holder = Holder(cycle)
    return weakref.ref(holder)


def test_release_memory_without_thaw_empties_the_free_lists_and_walks_nothing(unfrozen: None) -> None:
    pairs = [(i, i) for i in range(10_000)]
    del pairs  # the 2-tuple free list fills up (2,000 kept)
    assert _free_pairs() >= 1_000
    probe = _dead_cycle()
    release_memory(thaw=False)
    assert _free_pairs() < 10  # (what the measuring itself frees)
    assert probe() is not None  # frozen before the collection: not walked
    assert gc.get_freeze_count() > 0  # and it stays frozen
    release_memory(thaw=True)
    assert probe() is None  # unfrozen and walked: the dead cycle is freed
    assert gc.get_freeze_count() == 0


def test_a_long_full_pass_freezes_what_it_found_and_stopping_unfreezes(unfrozen: None) -> None:
    callbacks = list(gc.callbacks)
    stop = freeze_after_long_passes(limit_s=0.0)  # every full pass counts as long
    try:
        gc.collect(1)
        assert gc.get_freeze_count() == 0  # younger passes freeze nothing
        alive: list[object] = [object()]
        gc.collect()
        frozen = gc.get_freeze_count()
        assert frozen > 0
        probe = _dead_cycle()  # made after the freeze: the next pass walks it
        del alive  # frozen objects still go when their last reference does
        gc.collect()
        assert probe() is None
    finally:
        stop()
    assert gc.callbacks == callbacks
    assert gc.get_freeze_count() == 0


def test_a_short_full_pass_freezes_nothing(unfrozen: None) -> None:
    stop = freeze_after_long_passes(limit_s=3600.0)
    try:
        gc.collect()
        assert gc.get_freeze_count() == 0
    finally:
        stop()


def test_a_dead_cycle_frozen_alive_waits_for_a_thaw(unfrozen: None) -> None:
    """What a freeze keeps: a cycle alive at the freeze that dies later is freed only once unfrozen."""
    stop = freeze_after_long_passes(limit_s=0.0)
    try:
        cycle: list[object] = []
        probe = weakref.ref(holder := Holder(cycle))
        gc.collect()  # frozen while alive
        del cycle, holder
        gc.collect()
        assert probe() is not None
        thaw()
        gc.collect()
        assert probe() is None
    finally:
        stop()


class Holder:
    def __init__(self, cycle: list[object]) -> None:
        self.cycle = cycle
        cycle.append(self)
