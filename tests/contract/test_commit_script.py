"""A checkpoint larger than one command of the Redis commit script (it writes at most 512 pairs a command) lands
whole, on every backend: the script's slicing loses, repeats and shifts nothing."""

from __future__ import annotations

from streamalert.state.base import Changes, Store

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z in epoch milliseconds
R1 = "errors:0123456789ab"
R2 = "latency:ba9876543210"


def _member(seq: int) -> bytes:
    return seq.to_bytes(8, "big") + b'{"n":%d}' % seq


async def test_a_checkpoint_of_many_slices_lands_whole(store: Store) -> None:
    """1,300 upserts, 1,200 pending events and 700 transitions in one commit; then 1,100 deletes in one rule,
    an upsert in another and 1,025 pending events applied in the next: the store holds exactly the rest."""
    upserts = {b'["k%d"]' % i: b"[%d,%d]" % (i, i * 7) for i in range(1_300)}
    lines = [b'{"t":%d}' % i for i in range(700)]
    await store.commit(
        Changes(
            meta={"seq": 1_200, "newest": T0 + 1_199},
            upserts={R1: upserts},
            pending_add=[(T0 + i, _member(i)) for i in range(1_200)],
            transitions=lines,
        ),
        {R1: 60_000},
    )
    deleted = [b'["k%d"]' % i for i in range(0, 2_200, 2)]  # every other key, and 450 that were never there
    await store.commit(
        Changes(meta={"seq": 1_201}, upserts={R2: {b"[]": b"[9]"}}, deletes={R1: deleted}, pending_before=T0 + 1_025),
        {R1: 60_000, R2: 60_000},
    )
    snapshot = await store.load([R1, R2])
    assert snapshot.meta == {"seq": 1_201, "newest": T0 + 1_199}
    assert snapshot.series == {R1: {k: v for k, v in upserts.items() if k not in set(deleted)}, R2: {b"[]": b"[9]"}}
    assert snapshot.pending == [(T0 + i, _member(i)) for i in range(1_025, 1_200)]
    assert await store.transitions(1_000) == lines
