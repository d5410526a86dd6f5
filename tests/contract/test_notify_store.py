"""The notification part of the Store contract (both backends): groups and the outbox ride the checkpoint;
the outbox drains, dead-letters and re-queues; history is capped; silences end by themselves."""

from __future__ import annotations

import orjson

from streamalert.state.base import Changes, Store

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z


def note(i: int) -> bytes:
    return orjson.dumps({"id": f"n{i}"})


async def test_groups_ride_the_checkpoint(store: Store) -> None:
    await store.commit(Changes(meta={}, groups={b"g1": b"one", b"g2": b"two"}), {})
    await store.commit(Changes(meta={}, groups={b"g1": b"uno"}, groups_deleted=[b"g2"]), {})
    assert (await store.load([])).groups == {b"g1": b"uno"}
    assert await store.groups() == {b"g1": b"uno"}  # what the alert API and the web UI read, without a load


async def test_outbox_is_ordered_and_pages(store: Store) -> None:
    await store.commit(Changes(meta={}, outbox=[note(1), note(2)]), {})
    await store.commit(Changes(meta={}, outbox=[note(3)]), {})
    entries = await store.outbox(None, 10)
    assert [raw for _, raw in entries] == [note(1), note(2), note(3)]
    assert await store.outbox_depth() == 3
    first_id = entries[0][0]
    assert [raw for _, raw in await store.outbox(first_id, 10)] == [note(2), note(3)]
    assert [raw for _, raw in await store.outbox(None, 1)] == [note(1)]


async def test_delivered_entries_leave_the_outbox_into_capped_history(store: Store) -> None:
    await store.commit(Changes(meta={}, outbox=[note(i) for i in range(4)]), {})
    for entry_id, raw in await store.outbox(None, 10):
        assert await store.outbox_attempt(entry_id) == 1
        assert await store.outbox_attempt(entry_id) == 2
        await store.outbox_done(entry_id, b"sent:" + raw, keep=3)
    assert await store.outbox_depth() == 0
    assert await store.notifications(10) == [b"sent:" + note(i) for i in (1, 2, 3)]
    assert await store.notifications(1) == [b"sent:" + note(3)]


async def test_dead_letters_requeue_with_fresh_attempts(store: Store) -> None:
    await store.commit(Changes(meta={}, outbox=[note(1), note(2)]), {})
    (id1, raw1), (id2, raw2) = await store.outbox(None, 10)
    for entry_id, raw in ((id1, raw1), (id2, raw2)):
        await store.outbox_attempt(entry_id)
        record = orjson.dumps({"notification": orjson.loads(raw), "error": "slack: HTTP 500", "attempts": 1})
        await store.outbox_dead(entry_id, record)
    assert await store.outbox_depth() == 0
    dead = await store.dead_letters(10)
    assert [orjson.loads(r)["notification"]["id"] for _, r in dead] == ["n1", "n2"]
    assert await store.requeue([dead[1][0], "0-1"]) == 1  # an unknown id is ignored
    assert [orjson.loads(raw)["id"] for _, raw in await store.outbox(None, 10)] == ["n2"]
    new_id = (await store.outbox(None, 10))[0][0]
    assert await store.outbox_attempt(new_id) == 1
    assert await store.requeue(None) == 1
    assert await store.dead_letters(10) == []
    assert [orjson.loads(raw)["id"] for _, raw in await store.outbox(None, 10)] == ["n2", "n1"]


async def test_silences_end_by_themselves(store: Store) -> None:
    def silence(sid: str, ends: str) -> bytes:
        return orjson.dumps({"id": sid, "matchers": ['a="b"'], "startsAt": "2026-01-26T09:00:00Z", "endsAt": ends})

    await store.put_silence("s1", silence("s1", "2026-01-26T10:00:00Z"))
    await store.put_silence("s2", silence("s2", "2026-01-26T11:00:00Z"))
    assert len(await store.silences(T0)) == 2
    assert [orjson.loads(r)["id"] for r in await store.silences(T0 + 3_600_000)] == ["s2"]  # s1 ended at 10:00
    assert len(await store.silences(T0)) == 1  # and was deleted, not just hidden
    assert await store.delete_silence("s2") is True
    assert await store.delete_silence("s2") is False
    assert await store.silences(T0) == []
