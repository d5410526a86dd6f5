"""telemetry/memory.py: malloc_trim is found where glibc is, and calling it is harmless."""

from __future__ import annotations

import platform

import pytest

from streamalert.telemetry.memory import _malloc_trim, give_back


@pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_malloc_trim_is_found_on_glibc() -> None:
    assert _malloc_trim() is not None
    give_back()
