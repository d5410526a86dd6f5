"""Queries over what the store keeps: recent transitions (filtered by state and severity) and notifications.
Shared by `GET /api/alerts`, `GET /api/notifications` and `streamalert alerts`."""

from __future__ import annotations

from typing import Any

import orjson

from streamalert.state.base import Store

SCAN = 10_000  # transitions read from the end of the log to find `limit` matching ones


async def recent_transitions(store: Store, state: str | None, severity: str | None, limit: int) -> list[Any]:
    """The last `limit` transitions (oldest first) in the given state and with the given severity label."""
    if limit <= 0:
        return []
    raw = await store.transitions(SCAN if state or severity else limit)
    found = []
    for line in reversed(raw):
        item = orjson.loads(line)
        if state and item.get("state") != state:
            continue
        if severity and item.get("labels", {}).get("severity") != severity:
            continue
        found.append(item)
        if len(found) >= limit:
            break
    return found[::-1]


async def recent_notifications(store: Store, limit: int) -> list[Any]:
    return [orjson.loads(r) for r in await store.notifications(limit)]
