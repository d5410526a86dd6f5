"""MemoryStore keeps a rule's series as a log of records plus a dict of the latest upserts (state/memory.py,
_Log): whatever the mix of commits, it loads exactly what a plain dict of the same upserts and deletes holds,
across the dict's flushes into the log and the log's rewrites; and a rule whose series all ended leaves no
log behind."""

from __future__ import annotations

import asyncio
import random

from streamalert.state.base import Changes
from streamalert.state.memory import _COMPACT_FROM, _YOUNG, MemoryStore

R1, R2 = "r1:000000000000", "r2:000000000000"


def _key(k: int) -> bytes:
    # Mostly short keys; some at and past the short record's limits (255-byte keys), some with NULs.
    if k % 97 == 0:
        return (b"[%d]" % k).ljust(254 + k % 3, b"x")  # 254, 255 and 256 bytes
    if k % 89 == 0:
        return b"\x00\xff%d" % k
    return b'["u%d"]' % k


def _value(rng: random.Random) -> bytes:
    roll = rng.random()
    if roll < 0.01:
        return b"v" * rng.choice([65_534, 65_535, 65_536])  # the short record's values end at 65,534 bytes
    if roll < 0.03:
        return b""
    return b"[%d]" % rng.randrange(10**13)


async def _replay(seed: int) -> None:
    rng = random.Random(seed)
    store = MemoryStore()
    model: dict[str, dict[bytes, bytes]] = {R1: {}, R2: {}}
    universe = 3 * _YOUNG
    for _ in range(25):
        changes = Changes(meta={})
        for rule in (R1, R2):
            ups = {_key(rng.randrange(universe)): _value(rng) for _ in range(rng.choice([0, 10, 500, 3000]))}
            gone = [_key(rng.randrange(universe)) for _ in range(rng.choice([0, 5, 800, 4000]))]
            gone = [key for key in gone if key not in ups]  # one commit does not upsert and delete a key
            if ups:
                changes.upserts[rule] = ups
            if gone:
                changes.deletes[rule] = gone
            model[rule].update(ups)
            for key in gone:
                model[rule].pop(key, None)
        await store.commit(changes, {})
        loaded = (await store.load([R1, R2])).series
        assert loaded == {rule: table for rule, table in model.items() if table}
    # Every series ends: after enough records, the rule's log goes.
    for rule in (R1, R2):
        for _ in range(2):
            await store.commit(Changes(meta={}, deletes={rule: [_key(k) for k in range(universe)]}), {})
    assert (await store.load([R1, R2])).series == {}
    assert store._series == {}


def test_the_log_loads_what_a_dict_of_the_same_commits_holds() -> None:
    assert _COMPACT_FROM <= 3 * _YOUNG  # the random mix reaches rewrites
    for seed in range(3):
        asyncio.run(_replay(seed))
