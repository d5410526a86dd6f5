"""The intake reads a matched rule's group key and sample from the matcher's record when they are top-level
fields (engine._record_reader): it keeps what decoding the whole line would give, and every path that buffers
a line (bulk, line by line, restore, held line) takes and refuses the same lines."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
from hypothesis import given, settings
from hypothesis import strategies as st

from streamalert.decode import format_ms
from streamalert.engine import Engine
from streamalert.model import Transition
from streamalert.state.memory import MemoryStore
from streamalert.testing import rules_from_yaml

T0 = 1_769_471_940_000
RULES = rules_from_yaml(
    """
rules:
  - name: by_user
    match: {r: by_user, user: {exists: true}}
    group_by: [user]
    window: 10s
    condition: count >= 2
  - name: by_pair
    match: {r: by_pair}
    group_by: [user, host]
    window: 10s
    condition: count >= 2
  - name: slow
    match: {r: slow}
    group_by: [user]
    window: 10s
    condition: p90(dur) > 100
  - name: tokens
    match: {r: tokens}
    window: 10s
    condition: sum(tokens) > 10
  - name: users
    match: {r: users}
    window: 10s
    condition: distinct(user) > 2
  - name: both_a
    match: {both: yes, user: {exists: true}}
    group_by: [user]
    window: 10s
    condition: count >= 2
  - name: both_b
    match: {both: yes}
    window: 10s
    condition: count >= 3
  - name: failed
    match: {r: failed}
    ratio: {where: {status: failed}}
    window: 10s
    condition: ratio > 0.5
  - name: shown
    match: {r: shown}
    window: 10s
    condition: count >= 2
    annotations: {summary: "{{ user }} again"}
  - name: nested
    match: {r: nested}
    group_by: [a.b]
    window: 10s
    condition: count >= 2
"""
)
# From the record: rules with a sample, and count rules whose group_by fields the matchers read anyway (by_pair's
# host is not: decoding it on every line would cost more than decoding its rare matched lines in full).
READ = ["by_user", "slow", "tokens", "users", "both_a", "both_b"]

VALUES = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.integers(2**53, 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "u1", "12", "1.5e3", "1m30s", "nan", "-0"])
    | st.text(max_size=4)
    | st.lists(st.integers(0, 3), max_size=2)
    | st.dictionaries(st.sampled_from(["b", "c"]), st.integers(0, 3), max_size=2)
)


@st.composite
def records(draw: st.DrawFn) -> dict[str, Any]:
    record: dict[str, Any] = {"timestamp": format_ms(T0 + draw(st.integers(0, 5_000)))}
    record["r" if draw(st.booleans()) else "both"] = draw(
        st.sampled_from(["by_user", "by_pair", "slow", "tokens", "users", "failed", "shown", "nested", "yes"])
    )
    for name in ("user", "host", "dur", "tokens", "status", "a"):
        if draw(st.booleans()):
            record[name] = draw(VALUES)
    return record


def test_rules_reading_top_level_fields_have_readers_and_the_others_not() -> None:
    engine = Engine(RULES)
    assert [rule.name for rule, read in zip(RULES, engine._readers, strict=True) if read is not None] == READ


@settings(max_examples=400, deadline=None)
@given(record=records())
def test_a_reader_keeps_what_the_decoded_line_gives(record: dict[str, Any]) -> None:
    engine, by_fields = Engine(RULES), Engine(RULES)
    by_fields._readers = [None] * len(RULES)  # every rule reads the fully decoded line
    line = msgspec.json.encode(record)
    decoded = engine._rules.decode(line)
    matched = engine._rules.match(decoded)
    if matched:
        assert engine._kept(matched, decoded, line) == by_fields._kept(matched, by_fields._rules.decode(line), line)


def _stream(bad: bytes) -> list[bytes]:
    """Lines of the slow rule around one (`bad`) that the full decoder refuses for a field no rule reads."""
    lines = []
    for k in range(12):
        stamp = format_ms(T0 + 2_000 * k).encode()
        lines.append(b'{"timestamp":"%s","r":"slow","user":"u","dur":%s}' % (stamp, b"500" + bad if k == 5 else b"50"))
    return lines


def _transitions(lines: list[bytes], each: bool, restart_at: int | None) -> tuple[list[Transition], int]:
    store, engine, malformed = MemoryStore(), Engine(RULES, lateness_ms=60_000), 0
    for k, line in enumerate(lines):
        malformed += engine._accept_each([line]) if each else engine.accept_lines([line])
        if k == restart_at:  # everything still waits for the lateness: restored from the checkpoint's pending
            asyncio.run(store.commit(engine.checkpoint(), {}))
            engine = Engine(RULES, lateness_ms=60_000)
            engine.restore(asyncio.run(store.load(engine.rule_ids)))
    engine.finish()
    return engine.drain(), malformed


def test_a_line_refused_only_for_a_field_no_rule_reads_is_taken_by_every_path() -> None:
    """Bad UTF-8 in a string and a number out of range, in a field the p90 rule does not read: the line counts
    (its 500 ms is the only slow sample: with 5 samples in the window the p90 is the slowest)."""
    for bad in (b',"junk":"\xff"', b',"junk":1e400'):
        lines = _stream(bad)
        paths = [(each, restart) for each in (False, True) for restart in (None, 5, 8)]
        found = {path: _transitions(lines, *path) for path in paths}
        first = found[False, None]
        assert first[1] == 0
        assert [(t.rule, t.state.value) for t in first[0]] == [("slow", "firing"), ("slow", "resolved")]
        assert all(result == first for result in found.values())
        assert _transitions(lines[:5] + lines[6:], False, None) == ([], 0)


def test_a_rule_that_shows_the_record_still_refuses_such_a_line() -> None:
    """A rule whose template reads the record renders the raw line: it must pass the full decoder."""
    engine = Engine(RULES)
    stamp = format_ms(T0).encode()
    assert engine.accept_lines([b'{"timestamp":"%s","r":"shown","junk":"\xff"}' % stamp]) == 1
    assert engine._accept_each([b'{"timestamp":"%s","r":"shown","junk":"\xff"}' % stamp]) == 1
    assert engine.accept_lines([b'{"timestamp":"%s","r":"by_user","junk":"\xff"}' % stamp]) == 0
