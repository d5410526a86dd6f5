"""A quantile series' final window chunks are stored apart from it (Engine._store_parts): a commit carries the
chunks that became final since the last one, not the whole window; the store never keeps a part its series does
not name (chunks that left the window and the parts of ended series are deleted in the same commits); a restart
reads the series whole again; a foreign part is deleted and a missing one, or a corrupt form, is a clear error."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import orjson
import pytest

from streamalert.decode import format_ms
from streamalert.engine import Engine, StoredStateError
from streamalert.model import Transition
from streamalert.pipeline import rule_ttls
from streamalert.rules.kinds import QuantileSeries
from streamalert.state.base import Changes, Snapshot
from streamalert.state.memory import MemoryStore
from streamalert.testing import rules_from_yaml

RULES = rules_from_yaml(
    """
rules:
  - name: p95
    match: {svc: api}
    window: 10s
    condition: p95(ms) > 1000
    group_by: [host]
"""
)
RULE_ID = f"{RULES[0].name}:{RULES[0].digest}"
T0 = 1_767_225_600_000  # 2026-01-01T00:00:00Z


def _lines(seconds: int, seed: int = 7) -> list[bytes]:
    """A sample every 2 ms from host a for `seconds`, host b for the first 5 s only; a slow burst at 12-13 s
    makes host a's p95 fire (and resolve once it leaves the window)."""
    rng = random.Random(seed)
    out = []
    for ms in range(0, seconds * 1000, 2):
        slow = 12_000 <= ms < 13_000
        hosts = ("a", "b") if ms < 5_000 else ("a",)
        for host in hosts:
            value = rng.uniform(1500, 3000) if slow else round(rng.uniform(1, 900), 1)
            record = {"svc": "api", "host": host, "ms": value, "timestamp": format_ms(T0 + ms)}
            out.append(orjson.dumps(record))
    return out


def _run(engine: Engine, store: MemoryStore, lines: list[bytes], batch: int = 250) -> tuple[list[Transition], int]:
    """Feed `lines` in batches, advancing and committing after each (replay's loop, a checkpoint a batch);
    returns the transitions and the largest commit's bytes of this rule's upserts."""
    transitions: list[Transition] = []
    largest = 0
    ttl = rule_ttls(RULES, 0)
    for start in range(0, len(lines), batch):
        engine.accept_lines(lines[start : start + batch])
        engine.advance()
        transitions += engine.drain()
        changes = engine.checkpoint()
        largest = max(largest, sum(map(len, changes.upserts.get(RULE_ID, {}).values())))
        asyncio.run(store.commit(changes, ttl))
    return transitions, largest


def _stored() -> tuple[MemoryStore, Engine, list[Transition], int]:
    store = MemoryStore()
    engine = Engine(RULES, lateness_ms=0)
    transitions, largest = _run(engine, store, _lines(30))
    return store, engine, transitions, largest


def _restored(snapshot: Snapshot) -> Engine:
    """A new engine continuing from `snapshot`, as a restart does."""
    engine = Engine(RULES, lateness_ms=0)
    engine.restore(snapshot)
    return engine


def _only(engine: Engine) -> QuantileSeries:
    """The engine's one series (host a's)."""
    (series,) = engine._series[0].values()
    assert type(series) is QuantileSeries
    return series


def _table(store: MemoryStore) -> dict[bytes, bytes]:
    return asyncio.run(store.load([RULE_ID])).series.get(RULE_ID, {})


def test_commits_carry_new_chunks_and_the_store_keeps_only_named_parts() -> None:
    store, engine, transitions, largest = _stored()
    assert [t.state for t in transitions] == ["firing", "resolved"]
    series = _only(engine)  # host b's series ended with its window
    whole = len(orjson.dumps(series.dump()))
    assert whole > 40_000  # a dense 10 s window: 5,000 samples
    assert largest < whole / 4, (largest, whole)  # the newest chunk and the few parts a batch made final
    table = _table(store)
    mains = {k: orjson.loads(v) for k, v in table.items() if k[:1] != b"\0"}
    assert set(mains) == {b'["a"]'}
    named = {b'\0["a"]\0%d' % n for n in mains[b'["a"]'][0]["p"]}
    assert len(named) >= 60  # 64 chunks to a window, less the newest
    assert {k for k in table if k[:1] == b"\0"} == named  # no part of host b, none that left the window


def test_a_restart_reads_the_series_whole_and_goes_on_as_an_uninterrupted_run() -> None:
    store, engine, _, _ = _stored()
    restored = _restored(asyncio.run(store.load([RULE_ID])))
    assert orjson.dumps(_only(restored).dump()) == orjson.dumps(_only(engine).dump())
    more = [line.replace(b"T00:00:", b"T00:01:") for line in _lines(20, seed=8)]  # a minute later
    again = MemoryStore()
    asyncio.run(again.commit(Changes(meta={}, upserts={RULE_ID: _table(store)}), rule_ttls(RULES, 0)))
    assert _run(restored, again, more) == _run(engine, store, more)
    assert _table(again) == _table(store)


def test_a_part_no_series_names_is_deleted_and_a_missing_one_is_an_error() -> None:
    store, _, _, _ = _stored()
    table = _table(store)
    foreign = b'\0["z"]\x0012'
    asyncio.run(store.commit(Changes(meta={}, upserts={RULE_ID: {foreign: b"[]"}}), rule_ttls(RULES, 0)))
    assert foreign in _restored(asyncio.run(store.load([RULE_ID]))).checkpoint().deletes[RULE_ID]

    missing = min(k for k in table if k[:1] == b"\0")
    broken = MemoryStore()
    asyncio.run(
        broken.commit(
            Changes(meta={}, upserts={RULE_ID: {k: v for k, v in table.items() if k != missing}}),
            rule_ttls(RULES, 0),
        )
    )
    number = int(missing.rsplit(b"\0", 1)[1])
    with pytest.raises(ValueError, match=f"rule 'p95': stored series .* names chunk {number}, which is missing"):
        _restored(asyncio.run(broken.load([RULE_ID])))


def test_a_series_that_ends_between_two_commits_takes_its_parts_with_it() -> None:
    """Its window empties within one advance (the stream jumps 30 s), so no commit in between deleted them."""
    store, engine = MemoryStore(), Engine(RULES, lateness_ms=0)
    dense = [line for line in _lines(5) if b'"host":"b"' in line]
    _run(engine, store, dense)
    assert any(k[:1] == b"\0" for k in _table(store))
    later = orjson.dumps({"svc": "api", "host": "a", "ms": 5, "timestamp": format_ms(T0 + 35_000)})
    _run(engine, store, [later])
    assert "b" not in engine._series[0]
    assert _table(store) == {}  # host b's series and every part of it gone (host a's line waits for its instant)


def test_forms_stored_before_parts_load_and_go_to_parts_at_the_next_checkpoint() -> None:
    """The whole window in the series' field (before 1d130ab) and 1d130ab's form (the oldest chunk's list in
    the field, the others apart) load as the same series; its next checkpoint stores its chunks as parts."""
    store, engine, _, _ = _stored()
    series = _only(engine)
    whole = orjson.loads(orjson.dumps(series.dump()))  # [oldest, *middle, newest] (inactive: no phase map)
    numbers = list(series.parts)
    assert len(whole) == len(numbers) + 1
    middle = {b'\0["a"]\0%d' % n: orjson.dumps(chunk) for n, chunk in zip(numbers[1:], whole[1:-1], strict=True)}
    forms = {
        "whole": {b'["a"]': orjson.dumps(whole)},
        "1d130ab": {b'["a"]': orjson.dumps([{"p": numbers[1:]}, whole[0], whole[-1]]), **middle},
    }
    later = orjson.dumps({"svc": "api", "host": "a", "ms": 5, "timestamp": format_ms(T0 + 30_001)})
    for name, table in forms.items():
        snapshot = asyncio.run(store.load([RULE_ID]))
        snapshot.series[RULE_ID] = table
        restored = _restored(snapshot)
        assert orjson.dumps(_only(restored).dump()) == orjson.dumps(series.dump()), name
        restored.accept_lines([later])
        restored.advance()
        upserts = restored.checkpoint().upserts[RULE_ID]
        assert b'\0["a"]\0%d' % numbers[0] in upserts, name  # the oldest chunk, now a part of its own


def test_a_millisecond_split_between_two_checkpoints_is_stored_whole() -> None:
    """The newest chunk's form is kept between checkpoints (QuantileSeries._newest_flat): with every
    millisecond's two samples in different batches, what the store holds is still the series."""
    rng = random.Random(3)
    lines = [
        orjson.dumps({"svc": "api", "host": "a", "ms": rng.randint(1, 900), "timestamp": format_ms(T0 + ms)})
        for ms in range(0, 3_000)
        for _ in range(2)
    ]
    store, engine = MemoryStore(), Engine(RULES, lateness_ms=0)
    _run(engine, store, lines, batch=5)
    stored, live = _only(_restored(asyncio.run(store.load([RULE_ID])))), _only(engine)
    assert stored.n == live.n
    assert orjson.dumps(stored.dump()) == orjson.dumps(live.dump())


@pytest.mark.parametrize(
    ("change", "cause"),
    [
        (lambda marker: marker.update(p=5), "TypeError"),  # the part numbers not a list
        (lambda marker: marker.update(c=10**6), "IndexError"),  # more entries gone than the oldest part holds
        (lambda marker: marker.pop("t"), "KeyError"),  # the first time missing
    ],
    ids=["parts-not-a-list", "gone-past-the-part", "no-first-time"],
)
def test_a_corrupt_part_marker_is_a_named_error(change: Any, cause: str) -> None:
    """A stored form this engine did not write fails the restore naming the rule, the series and the cause."""
    store, _, _, _ = _stored()
    table = _table(store)
    form = orjson.loads(table[b'["a"]'])
    change(form[0])
    broken = MemoryStore()
    upserts = {RULE_ID: {**table, b'["a"]': orjson.dumps(form)}}
    asyncio.run(broken.commit(Changes(meta={}, upserts=upserts), rule_ttls(RULES, 0)))
    with pytest.raises(StoredStateError, match=rf"""rule 'p95': stored series b'\["a"\]' cannot be read \({cause}"""):
        _restored(asyncio.run(broken.load([RULE_ID])))
