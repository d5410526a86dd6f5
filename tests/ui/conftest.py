"""One running streamalert (tests/ui/service.py) shared by the amtool and browser tests: starting it costs
seconds on a loaded CI machine. Tests keep apart by using their own hosts and silence matchers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from tests.ui.browser import Browser, launch
from tests.ui.service import Service, running


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def service(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Service]:
    async with running(tmp_path_factory.mktemp("service")) as started:
        yield started


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def browser(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Browser]:
    """One headless Chromium; each test opens its pages in fresh browser contexts (no shared cookies)."""
    async with launch(tmp_path_factory.mktemp("chromium")) as started:
        yield started
