"""Choose a store from a URL (memory://, redis://host:port/db?namespace=NAME or, for a Redis Cluster,
redis+cluster://host:port/?namespace=NAME), and show URLs safely."""

from __future__ import annotations

from urllib.parse import urlsplit, urlunsplit

from streamalert.state import keys
from streamalert.state.base import Store
from streamalert.state.cluster import check_cluster_url
from streamalert.state.memory import MemoryStore
from streamalert.state.redis import RedisStore, split_url

_REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+cluster://", "rediss+cluster://")


def check_url(url: str) -> None:
    """Refuse (ValueError) an unsupported URL or a namespace that cannot be a hash tag, connecting nowhere."""
    if url.startswith("memory:"):
        return
    if not url.startswith(_REDIS_SCHEMES):
        raise ValueError(
            "unsupported URL (use memory://, redis://host:port/db?namespace=NAME"
            " or redis+cluster://host:port/?namespace=NAME)"
        )
    conn_url, namespace = split_url(url)
    keys.meta(namespace)
    if url.startswith(("redis+cluster://", "rediss+cluster://")):
        check_cluster_url(conn_url)


def open_store(url: str) -> Store:
    """The store a URL names; ValueError for an unsupported URL or a bad namespace."""
    check_url(url)
    if url.startswith("memory:"):
        return MemoryStore()
    return RedisStore.from_url(url)


def redact(url: str) -> str:
    """A URL fit for messages and logs: any user name or password is replaced by ***."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
