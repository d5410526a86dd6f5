"""The Store contract: what every backend (memory, Redis) must do with a checkpoint, tested through the protocol.

The `store` fixture runs each contract test once per backend. The Redis-only tests at the end check how the
Redis backend lays out its keys: one hash tag per namespace, idle expiries, isolation between namespaces.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator

import pytest
import redis
import redis.asyncio as aioredis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redis.crc import key_slot

from streamalert.state import keys
from streamalert.state.base import Changes, Snapshot, Store
from streamalert.state.memory import MemoryStore
from streamalert.state.redis import RedisStore

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z in epoch milliseconds
R1 = "errors:0123456789ab"
R2 = "latency:ba9876543210"
NEVER = -(2**62)  # the engine's "nothing processed yet" clock value


def seq_member(seq: int, raw: bytes) -> bytes:
    """A pending member as the engine writes it: 8-byte big-endian sequence, then the raw line."""
    return seq.to_bytes(8, "big") + raw


# ---- the contract, on both backends ---------------------------------------------------------------------------


async def test_empty_store_loads_empty(store: Store) -> None:
    """A store nothing was committed to loads as an empty snapshot, whatever rule ids are asked for."""
    assert await store.load([R1, R2]) == Snapshot()
    assert await store.load([]) == Snapshot()


async def test_meta_roundtrip(store: Store) -> None:
    """Committed meta loads back as the same ints, negative and epoch-millisecond values included."""
    meta = {"done_before": NEVER, "seq": 0, "newest": T0 + 123, "min_accepted": T0, "first_time": T0}
    await store.commit(Changes(meta=meta), {})
    assert (await store.load([])).meta == meta


async def test_meta_merges_key_by_key(store: Store) -> None:
    """A later commit overwrites the meta keys it names and keeps the others."""
    await store.commit(Changes(meta={"done_before": NEVER, "seq": 3, "newest": T0}), {})
    await store.commit(Changes(meta={"done_before": T0 - 5_000, "seq": 4}), {})
    assert (await store.load([])).meta == {"done_before": T0 - 5_000, "seq": 4, "newest": T0}


async def test_upserts_roundtrip_per_rule_id(store: Store) -> None:
    """Upserts land in their own rule's table; a later upsert overwrites or adds keys of that rule only."""
    await store.commit(
        Changes(meta={"seq": 1}, upserts={R1: {b'["h1"]': b"[1]", b'["h2"]': b"[2]"}, R2: {b"[]": b"[9]"}}),
        {R1: 60_000, R2: 60_000},
    )
    await store.commit(Changes(meta={"seq": 2}, upserts={R1: {b'["h2"]': b"[22]", b'["h3"]': b"[3]"}}), {})
    snapshot = await store.load([R1, R2])
    assert snapshot.series == {
        R1: {b'["h1"]': b"[1]", b'["h2"]': b"[22]", b'["h3"]': b"[3]"},
        R2: {b"[]": b"[9]"},
    }


async def test_values_are_binary_safe(store: Store) -> None:
    """Group keys, series values and pending members round-trip byte for byte (NULs, non-UTF-8)."""
    key, value, member = b"\x00\xff[\x01]", b"\x80\x00\xfe", seq_member(0, b"\x00\xff\n{}")
    await store.commit(Changes(meta={}, upserts={R1: {key: value}}, pending_add=[(T0, member)]), {R1: 60_000})
    snapshot = await store.load([R1])
    assert snapshot.series == {R1: {key: value}}
    assert snapshot.pending == [(T0, member)]


async def test_empty_upsert_creates_nothing(store: Store) -> None:
    """An upsert with no keys leaves no (empty) table behind: the rule loads as absent."""
    await store.commit(Changes(meta={}, upserts={R1: {}}), {R1: 60_000})
    assert (await store.load([R1])).series == {}


async def test_deletes_remove_keys(store: Store) -> None:
    """Deleted group keys are gone; the rule's other keys and other rules stay."""
    await store.commit(Changes(meta={}, upserts={R1: {b'["h1"]': b"1", b'["h2"]': b"2"}, R2: {b"[]": b"9"}}), {})
    await store.commit(Changes(meta={}, deletes={R1: [b'["h1"]']}), {})
    assert (await store.load([R1, R2])).series == {R1: {b'["h2"]': b"2"}, R2: {b"[]": b"9"}}


async def test_deleting_last_series_leaves_nothing(store: Store) -> None:
    """Deleting a rule's last group key leaves nothing loadable for that rule (not even an empty table)."""
    await store.commit(Changes(meta={}, upserts={R1: {b'["h1"]': b"1"}}), {R1: 60_000})
    await store.commit(Changes(meta={}, deletes={R1: [b'["h1"]']}), {R1: 60_000})
    assert (await store.load([R1])).series == {}


async def test_deleting_unknown_keys_is_harmless(store: Store) -> None:
    """Deleting keys or rules that were never stored changes nothing and raises nothing."""
    await store.commit(Changes(meta={}, upserts={R1: {b"[]": b"1"}}), {})
    await store.commit(Changes(meta={}, deletes={R1: [b'["nope"]'], R2: [b"[]"], "other:0": []}), {})
    assert (await store.load([R1, R2])).series == {R1: {b"[]": b"1"}}


async def test_upsert_and_delete_in_one_commit(store: Store) -> None:
    """One commit may upsert some keys of a rule and delete others."""
    await store.commit(Changes(meta={}, upserts={R1: {b"[1]": b"a", b"[2]": b"b"}}), {})
    await store.commit(Changes(meta={}, upserts={R1: {b"[3]": b"c"}}, deletes={R1: [b"[1]"]}), {})
    assert (await store.load([R1])).series == {R1: {b"[2]": b"b", b"[3]": b"c"}}


async def test_load_returns_only_requested_rule_ids(store: Store) -> None:
    """load(rule_ids) returns the series of exactly the stored rules among those asked for."""
    await store.commit(Changes(meta={}, upserts={R1: {b"[]": b"1"}, R2: {b"[]": b"2"}}), {})
    assert (await store.load([R1])).series == {R1: {b"[]": b"1"}}
    assert (await store.load([R2, "unknown:000000000000"])).series == {R2: {b"[]": b"2"}}
    assert (await store.load([])).series == {}


async def test_unknown_rule_ids_load_empty(store: Store) -> None:
    """Rule ids never committed load with no series, next to meta and pending that do exist."""
    await store.commit(Changes(meta={"seq": 1}, pending_add=[(T0, seq_member(1, b"{}"))]), {})
    snapshot = await store.load(["unknown:000000000000"])
    assert snapshot.series == {}
    assert snapshot.meta == {"seq": 1}
    assert snapshot.pending == [(T0, seq_member(1, b"{}"))]


async def test_pending_loads_ordered_by_score(store: Store) -> None:
    """Pending events load in ascending score order, whatever order they were added in and across commits."""
    a, b, c, d = (seq_member(i, b'{"n":%d}' % i) for i in range(1, 5))
    await store.commit(Changes(meta={}, pending_add=[(T0 + 300, a), (T0 + 100, b)]), {})
    await store.commit(Changes(meta={}, pending_add=[(T0 + 200, c), (T0 - 50, d)]), {})
    assert (await store.load([])).pending == [(T0 - 50, d), (T0 + 100, b), (T0 + 200, c), (T0 + 300, a)]


async def test_pending_equal_scores_kept_distinct(store: Store) -> None:
    """Distinct members with the same score are all kept, ordered by member bytes."""
    members = [seq_member(seq, b'{"same":"ms"}') for seq in (3, 1, 2)] + [seq_member(0, b"")]
    await store.commit(Changes(meta={}, pending_add=[(T0, m) for m in members]), {})
    assert (await store.load([])).pending == [(T0, m) for m in sorted(members)]


async def test_pending_scores_are_exact_epoch_ms(store: Store) -> None:
    """Pending scores keep every millisecond of an epoch-ms time (no float rounding)."""
    times = [T0 + 1, T0 + 999, 253_402_300_799_999, 0]  # the last millisecond of year 9999, and 1970
    await store.commit(Changes(meta={}, pending_add=[(t, seq_member(i, b"x")) for i, t in enumerate(times)]), {})
    assert [t for t, _ in (await store.load([])).pending] == sorted(times)


async def test_pending_before_removes_strictly_earlier_scores(store: Store) -> None:
    """pending_before=T removes scores < T and keeps scores == T and later; None removes nothing."""
    items = [
        (T0 + 10, seq_member(1, b"a")),
        (T0 + 20, seq_member(2, b"b")),
        (T0 + 20, seq_member(3, b"c")),
        (T0 + 30, seq_member(4, b"d")),
    ]
    await store.commit(Changes(meta={}, pending_add=items), {})
    await store.commit(Changes(meta={}, pending_before=None), {})
    assert (await store.load([])).pending == items
    await store.commit(Changes(meta={}, pending_before=T0 + 20), {})
    assert (await store.load([])).pending == items[1:]
    await store.commit(Changes(meta={}, pending_before=T0 + 21), {})
    assert (await store.load([])).pending == items[3:]
    await store.commit(Changes(meta={}, pending_before=NEVER), {})
    assert (await store.load([])).pending == items[3:]


async def test_pending_add_applies_before_pending_before(store: Store) -> None:
    """In one commit, events added and already applied (score < pending_before) do not stay pending."""
    early, late = (T0 + 5, seq_member(1, b"early")), (T0 + 50, seq_member(2, b"late"))
    await store.commit(Changes(meta={}, pending_add=[early, late], pending_before=T0 + 10), {})
    assert (await store.load([])).pending == [late]


async def test_transitions_are_appended_in_commit_order(store: Store) -> None:
    """The transition log keeps every committed transition once, oldest first; `limit` takes the newest."""
    assert await store.transitions(10) == []
    await store.commit(Changes(meta={}, transitions=[b'{"n":1}', b'{"n":2}']), {})
    await store.commit(Changes(meta={}), {})
    await store.commit(Changes(meta={}, transitions=[b'{"n":3}']), {})
    assert await store.transitions(10) == [b'{"n":1}', b'{"n":2}', b'{"n":3}']
    assert await store.transitions(2) == [b'{"n":2}', b'{"n":3}']
    assert await store.transitions(0) == []


async def test_reset_forgets_everything(store: Store) -> None:
    """reset() forgets meta, series and pending; the store is usable again afterwards."""
    await store.commit(
        Changes(
            meta={"seq": 5},
            upserts={R1: {b"[]": b"1"}},
            pending_add=[(T0, seq_member(5, b"{}"))],
            transitions=[b"{}"],
        ),
        {R1: 60_000},
    )
    await store.reset()
    assert await store.load([R1, R2]) == Snapshot()
    assert await store.transitions(10) == []
    await store.commit(Changes(meta={"seq": 6}, upserts={R2: {b"[]": b"2"}}), {})
    assert await store.load([R1, R2]) == Snapshot(meta={"seq": 6}, series={R2: {b"[]": b"2"}})


async def test_reset_of_empty_store(store: Store) -> None:
    """reset() on a store holding nothing succeeds and leaves it empty."""
    await store.reset()
    assert await store.load([R1]) == Snapshot()


# ---- both backends hold the same thing ---------------------------------------------------------------------

_group_keys = st.sampled_from([b"[]", b'["h1"]', b'["h2"]', b'["h\\u0000"]', b"[1]"])
_rule_ids = st.sampled_from([R1, R2])
_meta = st.dictionaries(st.sampled_from(["done_before", "seq", "newest"]), st.integers(-(2**62), 2**62))


@st.composite
def _commits(draw: st.DrawFn) -> list[Changes]:
    """Random checkpoints; pending members are unique (the engine's sequence prefix makes them so)."""
    out: list[Changes] = []
    seq = 0
    for _ in range(draw(st.integers(1, 6))):
        pending: list[tuple[int, bytes]] = []
        for score in draw(st.lists(st.integers(T0 - 100, T0 + 100), max_size=5)):
            seq += 1
            pending.append((score, seq_member(seq, draw(st.binary(max_size=6)))))
        upserts = draw(st.dictionaries(_rule_ids, st.dictionaries(_group_keys, st.binary(max_size=6)), max_size=2))
        deletes = draw(st.dictionaries(_rule_ids, st.lists(_group_keys, max_size=3), max_size=2))
        before = draw(st.none() | st.integers(T0 - 120, T0 + 120))
        out.append(Changes(draw(_meta), upserts, deletes, pending, before))
    return out


@pytest.mark.redis
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(commits=_commits())
def test_backends_hold_identical_state(redis_url: str, commits: list[Changes]) -> None:
    """After any sequence of commits, MemoryStore and RedisStore load identical snapshots."""

    async def body() -> None:
        memory, red = MemoryStore(), RedisStore.from_url(f"{redis_url}?namespace=diff-{uuid.uuid4().hex}")
        try:
            for changes in commits:
                for backend in (memory, red):
                    await backend.commit(changes, {R1: 60_000, R2: 60_000})
                assert await memory.load([R1, R2]) == await red.load([R1, R2])
        finally:
            await red.reset()
            await red.close()

    asyncio.run(body())


# ---- Redis only: key layout ------------------------------------------------------------------------------------


@pytest.fixture
def plain(redis_url: str) -> Iterator[redis.Redis]:
    """A plain (synchronous) redis-py client on the test server, to look at keys behind the store's back."""
    client = redis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        client.close()


def _keys_of(client: redis.Redis, namespace: str) -> set[bytes]:
    """Every key in the server that mentions the namespace, found without the store's own pattern."""
    return {k for k in client.scan_iter(count=1000) if namespace.encode() in k}


async def _fill(store: RedisStore, ttl: dict[str, int]) -> None:
    """Commit meta, two rules' series and two pending events: every kind of key the store creates."""
    await store.commit(
        Changes(
            meta={"done_before": NEVER, "seq": 2, "newest": T0},
            upserts={R1: {b'["h1"]': b"1"}, R2: {b"[]": b"2"}},
            pending_add=[(T0, seq_member(1, b"{}")), (T0 + 1, seq_member(2, b"{}"))],
        ),
        ttl,
    )


@pytest.mark.redis
async def test_redis_keys_share_one_hash_tag(redis_url: str, plain: redis.Redis) -> None:
    """Every key of a namespace carries the hash tag {namespace}, so all map to one cluster slot."""
    namespace = f"tag-{uuid.uuid4().hex}"
    store = RedisStore.from_url(f"{redis_url}?namespace={namespace}")
    try:
        await _fill(store, {R1: 60_000, R2: 60_000})
        found = _keys_of(plain, namespace)
        assert found == {
            keys.meta(namespace).encode(),
            keys.pending(namespace).encode(),
            keys.series(namespace, R1).encode(),
            keys.series(namespace, R2).encode(),
        }
        tag = f"{{{namespace}}}".encode()
        for key in found:
            assert key.startswith(f"{keys.PREFIX}:".encode() + tag + b":")
            assert key.index(b"{") == key.index(tag)  # the namespace is the first (so the effective) hash tag
        assert {key_slot(k) for k in found} == {key_slot(namespace.encode())}
    finally:
        await store.reset()
        await store.close()


@pytest.mark.redis
async def test_redis_keys_carry_ttl_after_commit(redis_url: str, plain: redis.Redis) -> None:
    """After a commit every key has an expiry: series their rule's ttl (default long), meta and pending long."""
    namespace = f"ttl-{uuid.uuid4().hex}"
    store = RedisStore.from_url(f"{redis_url}?namespace={namespace}")
    try:
        await _fill(store, {R1: 60_000})  # no ttl given for R2: it takes the long default
        pttl = {k: int(plain.pttl(k)) for k in _keys_of(plain, namespace)}
        assert len(pttl) == 4
        assert all(t > 0 for t in pttl.values()), pttl
        assert 0 < pttl[keys.series(namespace, R1).encode()] <= 60_000
        for key in (keys.series(namespace, R2), keys.meta(namespace), keys.pending(namespace)):
            assert keys.LONG_TTL_MS - 60_000 < pttl[key.encode()] <= keys.LONG_TTL_MS
    finally:
        await store.reset()
        await store.close()


@pytest.mark.redis
async def test_redis_commit_refreshes_ttl_of_touched_rules(redis_url: str, plain: redis.Redis) -> None:
    """A commit that upserts or deletes in a rule sets that rule's expiry to the ttl given now."""
    namespace = f"refresh-{uuid.uuid4().hex}"
    store = RedisStore.from_url(f"{redis_url}?namespace={namespace}")
    try:
        await _fill(store, {R1: 60_000, R2: 60_000})
        await store.commit(Changes(meta={}, deletes={R1: [b'["nope"]']}), {R1: 3_600_000})
        await store.commit(Changes(meta={}, upserts={R2: {b"[1]": b"x"}}), {R2: 7_200_000})
        assert 60_000 < int(plain.pttl(keys.series(namespace, R1))) <= 3_600_000
        assert 3_600_000 < int(plain.pttl(keys.series(namespace, R2))) <= 7_200_000
    finally:
        await store.reset()
        await store.close()


@pytest.mark.redis
@pytest.mark.parametrize(
    ("mine", "other"), [("alpha", "beta"), ("a*", "abc"), ("a?c", "abc"), ("[ab]", "a"), ("x\\", "x")]
)
async def test_redis_namespace_in_url_isolates_stores(redis_url: str, mine: str, other: str) -> None:
    """Two stores whose URLs name different namespaces see and reset only their own state."""
    first = RedisStore.from_url(f"{redis_url}?namespace={mine}")
    second = RedisStore.from_url(f"{redis_url}?namespace={other}")
    assert (first.namespace, second.namespace) == (mine, other)
    try:
        await first.reset()
        await second.reset()
        await first.commit(Changes(meta={"seq": 1}, upserts={R1: {b"[]": b"1"}}, pending_add=[(T0, b"a")]), {})
        await second.commit(Changes(meta={"seq": 2}, upserts={R1: {b"[]": b"2"}}, pending_add=[(T0, b"b")]), {})
        assert await first.load([R1]) == Snapshot({"seq": 1}, {R1: {b"[]": b"1"}}, [(T0, b"a")])
        assert await second.load([R1]) == Snapshot({"seq": 2}, {R1: {b"[]": b"2"}}, [(T0, b"b")])
        await first.reset()
        assert await first.load([R1]) == Snapshot()
        assert await second.load([R1]) == Snapshot({"seq": 2}, {R1: {b"[]": b"2"}}, [(T0, b"b")])
    finally:
        await first.reset()
        await second.reset()
        await first.close()
        await second.close()


@pytest.mark.redis
async def test_redis_same_namespace_shares_state(redis_url: str) -> None:
    """Two clients on the same namespace see one state: what one commits the other loads."""
    namespace = f"shared-{uuid.uuid4().hex}"
    writer = RedisStore.from_url(f"{redis_url}?namespace={namespace}")
    reader = RedisStore.from_url(f"{redis_url}?namespace={namespace}")
    try:
        await writer.commit(Changes(meta={"seq": 9}, upserts={R1: {b"[]": b"1"}}), {})
        assert await reader.load([R1]) == Snapshot({"seq": 9}, {R1: {b"[]": b"1"}})
    finally:
        await writer.reset()
        await writer.close()
        await reader.close()


@pytest.mark.redis
async def test_redis_namespace_with_braces_is_refused(redis_url: str) -> None:
    """A namespace containing a brace (or none at all) would break the hash tag: refused at construction."""
    for namespace in ("a{b", "a}b", ""):
        with pytest.raises(ValueError, match="braces"):
            RedisStore(aioredis.Redis.from_url(redis_url), namespace)
