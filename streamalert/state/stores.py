"""Choose a store from a URL (memory://, redis://host:port/db?namespace=NAME or, for a Redis Cluster,
redis+cluster://host:port/?namespace=NAME), and show URLs safely."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit, urlunsplit

from streamalert.state import keys
from streamalert.state.memory import MemoryStore

if TYPE_CHECKING:
    from streamalert.state.base import Store

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
    # the namespace as RedisStore.from_url reads it (split_url), without importing redis: loading a config
    # (`check --config`, `routes test`) checks this URL and connects nowhere
    parts = urlsplit(url)
    namespace = parse_qs(parts.query).get("namespace")
    if namespace:  # without one, RedisStore uses its default, a valid name
        keys.meta(namespace[0])
    if url.startswith(("redis+cluster://", "rediss+cluster://")) and parts.path.strip("/") not in ("", "0"):
        # as state.cluster.check_cluster_url says it, without importing redis
        raise ValueError("a Redis Cluster has only database 0: use redis+cluster://host:port/?namespace=NAME")


def open_store(url: str) -> Store:
    """The store a URL names; ValueError for an unsupported URL or a bad namespace."""
    check_url(url)
    if url.startswith("memory:"):
        return MemoryStore()
    from streamalert.state.redis import RedisStore  # noqa: PLC0415 (on use: redis costs 0.2 s of CPU to import)

    return RedisStore.from_url(url)


def redact(url: str) -> str:
    """A URL fit for messages and logs: any user name or password is replaced by ***."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
