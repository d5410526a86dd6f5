"""Choose a store from a URL: memory:// or redis://host:port/db?namespace=NAME."""

from __future__ import annotations

from streamalert.state.base import Store
from streamalert.state.memory import MemoryStore
from streamalert.state.redis import RedisStore


def open_store(url: str) -> Store:
    """The store a URL names; ValueError for an unsupported URL or a bad namespace."""
    if url.startswith("memory:"):
        return MemoryStore()
    if url.startswith(("redis://", "rediss://", "unix://")):
        return RedisStore.from_url(url)
    raise ValueError("unsupported URL (use memory:// or redis://host:port/db?namespace=NAME)")
