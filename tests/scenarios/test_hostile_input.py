"""Hostile and odd input: every line is counted and skipped or placed, nothing aborts a replay."""

from __future__ import annotations

from streamalert.engine import Engine
from streamalert.rules.series import AggregateSeries
from streamalert.state.base import Store
from streamalert.testing import replay_lines, rules_from_yaml

from .timeline import line

ERRORS = """
rules:
  - name: errors
    match: {level: error}
    window: 1m
    condition: count >= 1
    group_by: [user]
    annotations: {summary: "{{ value }} by {{ user }}: {{ detail }}"}
"""


async def test_lines_the_full_decoder_refuses_are_malformed_not_fatal(store: Store) -> None:
    """Invalid UTF-8, an out-of-range number or 3,000-deep nesting, on matching and other lines alike, are
    counted as malformed and change nothing else."""
    stamp = b'"timestamp":"2026-01-26T09:00:01.000Z"'
    deep = b"[" * 3000 + b"]" * 3000
    hostile = [
        b"{" + stamp + b',"level":"error","x":"\xff"}',
        b"{" + stamp + b',"level":"error","x":1e999}',
        b"{" + stamp + b',"level":"info","x":' + deep + b"}",
        b"{" + stamp + b',"level":"error","x":' + deep + b"}",
    ]
    clean = [line("0s", level="info"), line("2s", level="error", user="u1", detail="d"), line("90s")]
    rules = rules_from_yaml(ERRORS)
    for batch_lines in (1, 100):  # the line-by-line path and the bulk path
        await store.reset()
        sink, summary = await replay_lines(rules, clean[:1] + hostile + clean[1:], store, batch_lines=batch_lines)
        assert summary.malformed == len(hostile)
        assert [(t["at"], t["state"]) for t in sink.as_json()] == [
            ("2026-01-26T09:00:02.000Z", "firing"),
            ("2026-01-26T09:01:02.000Z", "resolved"),
        ]


async def test_records_with_huge_ints_and_deep_nesting_render_and_checkpoint(store: Store) -> None:
    """A 30-digit integer or a 300-deep object in the triggering record neither breaks the checkpoint nor the
    annotation; objects render as JSON."""
    nested: object = {"k": 1}
    for _ in range(300):
        nested = {"n": nested}
    lines = [
        line("0s", level="error", user="u1", detail=123456789012345678901234567890),
        line("1s", level="error", user="u2", detail={"a": [1, 2]}),
        line("2s", level="error", user="u3", detail=nested),
        line("90s"),
    ]
    sink, summary = await replay_lines(rules_from_yaml(ERRORS), lines, store, batch_lines=1)
    assert summary.malformed == 0
    firing = {t["labels"]["user"]: t["annotations"]["summary"] for t in sink.as_json() if t["state"] == "firing"}  # type: ignore[index]
    assert firing["u1"] == "1 by u1: 123456789012345678901234567890"
    assert firing["u2"] == '1 by u2: {"a":[1,2]}'
    assert firing["u3"].startswith('1 by u3: {"n":{"n":')


async def test_times_out_of_range_or_of_the_wrong_type_are_untimed(store: Store) -> None:
    """Years beyond 9999, before 1970, NaN-like numbers and a 24-item array as timestamp take the newest
    time instead of moving the clock or crashing."""
    lines = [
        line("0s", level="info"),
        b'{"ts": 3000000000000000, "level": "error"}',
        b'{"ts": 1e300, "level": "error"}',
        b'{"timestamp": "1969-12-31T23:59:59Z", "level": "error"}',
        b'{"timestamp": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0], "level": "error"}',
        b'{"timestamp": "2026-01-26T09:00:00.1\xc2\xb2Z", "level": "error"}',
        line("5s", level="info"),
    ]
    rules = rules_from_yaml(ERRORS.replace("count >= 1", "count >= 5"))
    for batch_lines in (1, 100):
        await store.reset()
        sink, summary = await replay_lines(rules, lines, store, batch_lines=batch_lines)
        assert summary.stats.untimed == 5
        assert summary.stats.beyond_until == 0
        assert [(t["at"], t["state"], t["value"]) for t in sink.as_json()] == [
            ("2026-01-26T09:00:00.000Z", "firing", 5),  # all five placed at the newest time, 0s
        ]


def test_until_zero_means_the_epoch_on_both_intake_paths() -> None:
    """--until 0 is a time (1970), not "no limit": every later line is beyond it, whatever its spelling."""
    rules = rules_from_yaml(ERRORS)
    for spelling in (b"2026-01-26T09:00:00.000Z", b"2026-01-26T09:00:00Z"):
        engine = Engine(rules, until_ms=0)
        engine.accept_lines([b'{"timestamp":"' + spelling + b'","level":"error"}'])
        assert engine.stats.beyond_until == 1, spelling


def test_min_max_queues_stay_bounded_by_distinct_milliseconds() -> None:
    """10,000 rising samples in one millisecond keep one queue entry, not 10,000."""
    series = AggregateSeries()
    for sample in range(10_000):
        series.observe(1_000, sample)
    assert len(series.entries) == 1
    assert len(series.minq) == 1
    assert len(series.maxq) == 1
    assert series.value("min") == 0
    assert series.value("max") == 9_999
