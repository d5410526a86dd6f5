"""Shared fixtures: one real redis-server per test session, and a store fixture over both backends."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from streamalert.state.base import Store
from streamalert.state.memory import MemoryStore
from streamalert.state.redis import RedisStore
from streamalert.testing import kafka_broker, redis_server

_namespaces = itertools.count()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(params=["memory", "redis"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """Every test taking `store` runs once per backend: the contract both must honour."""
    if request.param == "memory":
        yield MemoryStore()
        return
    url: str = request.getfixturevalue("redis_url")
    backend = RedisStore.from_url(f"{url}?namespace=test{next(_namespaces)}")
    await backend.reset()
    try:
        yield backend
    finally:
        await backend.close()


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """One private Tansu broker per test session; tests use their own topics and groups."""
    with kafka_broker() as bootstrap:
        yield bootstrap
