"""Shared fixtures: one real redis-server and one real 3-master Redis Cluster per test session, and a store
fixture over every backend."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Iterator

import pytest

from streamalert.state.base import Store
from streamalert.state.memory import MemoryStore
from streamalert.state.redis import RedisStore
from streamalert.testing import LocalCluster, kafka_broker, redis_cluster, redis_server

_namespaces = itertools.count()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    with redis_server() as url:
        yield url


@pytest.fixture(scope="session")
def cluster() -> Iterator[LocalCluster]:
    """A private Redis Cluster: three masters, no replicas; its URL names the first master."""
    with redis_cluster() as local:
        yield local


@pytest.fixture(scope="session")
def redis_cluster_url(cluster: LocalCluster) -> str:
    return cluster.url


@pytest.fixture(params=["memory", "redis", "cluster"])
async def store(request: pytest.FixtureRequest) -> AsyncIterator[Store]:
    """Every test taking `store` runs once per backend: the contract all must honour. On the cluster, the
    namespaces take turns over the three masters, so most live on a node the URL does not name."""
    if request.param == "memory":
        yield MemoryStore()
        return
    if request.param == "redis":
        url: str = request.getfixturevalue("redis_url")
        backend = RedisStore.from_url(f"{url}?namespace=test{next(_namespaces)}")
    else:
        local: LocalCluster = request.getfixturevalue("cluster")
        namespace = local.namespace_on(next(_namespaces), "test")
        backend = RedisStore.from_url(f"{local.url}?namespace={namespace}")
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
