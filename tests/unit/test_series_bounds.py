"""Caps on live series: a matched event beyond a cap starts no series and is counted; memory comes back."""

from __future__ import annotations

import sys

from streamalert.config.rules import Rule
from streamalert.engine import Engine
from streamalert.pipeline import RunSummary, run
from streamalert.state.memory import MemoryStore
from streamalert.testing import CapturingSink, ListSource, rules_from_yaml
from tests.scenarios.timeline import iso, line

PER_USER = """
rules:
  - name: per_user
    match: {level: error}
    window: 10s
    condition: count >= 1
    group_by: [user]
  - name: per_host
    match: {level: error}
    window: 10s
    condition: count >= 1
    group_by: [host]
  - name: heartbeat
    match: {event: beat}
    absent_for: 30s
    group_by: [worker]
    expect: [{worker: w1}, {worker: w2}, {worker: w3}]
"""


async def _replay(rules: list[Rule], lines: list[bytes], **caps: int) -> tuple[CapturingSink, RunSummary, Engine]:
    sink, engine = CapturingSink(), Engine(rules, lateness_ms=0, **caps)
    summary = await run(engine, ListSource(lines, 100), MemoryStore(), sink)
    return sink, summary, engine


async def test_a_rule_at_its_cap_starts_no_series_and_counts_the_event() -> None:
    """With max_series_per_rule=3, a fourth user's event is dropped and counted for that rule only; once the
    window empties, new users get series again."""
    rules = rules_from_yaml(PER_USER)
    lines = [line(f"{k}ms", level="error", user=f"u{k}", host="h") for k in range(6)]
    lines += [line("20s", level="error", user="late", host="h")]
    sink, summary, engine = await _replay(rules, lines, max_series_per_rule=3)
    fired = {dict(t.labels)["user"] for t in sink.transitions if t.rule == "per_user" and t.state == "firing"}
    assert fired == {"u0", "u1", "u2", "late"}
    assert summary.stats.series_dropped == {"per_user": 3}
    assert engine.stats.series_dropped["per_user"] == 3


async def test_the_total_cap_spans_rules_and_spares_expected_absence_groups() -> None:
    """max_series=2 leaves room for two series of all rules together, yet every `expect`ed heartbeat group
    exists and fires when silent."""
    rules = rules_from_yaml(PER_USER)
    lines = [line("0s", event="other")] + [line(f"{k}ms", level="error", user=f"u{k}", host=f"h{k}") for k in (1, 2)]
    lines += [line("40s", event="other")]
    sink, summary, _ = await _replay(rules, lines, max_series=2)
    firing = sorted((t["rule"], t["at"]) for t in sink.as_json() if t["state"] == "firing")
    assert firing == [("heartbeat", iso("30s"))] * 3
    # The three expected groups fill the cap before any event: every window series is refused.
    assert summary.stats.series_dropped == {"per_user": 2, "per_host": 2}


async def test_tables_shrink_back_after_many_series_expire() -> None:
    """20,000 series that end leave the engine's series table, timers and the memory store no bigger than
    a few hundred series would need."""
    rules = rules_from_yaml(PER_USER)[:1]
    lines = [line(f"{k}ms", level="error", user=f"u{k}") for k in range(20_000)]
    lines += [line(f"{60 + k}s", level="info") for k in range(3)]
    store = MemoryStore()
    engine = Engine(rules, lateness_ms=0)
    source = ListSource(lines, 1000)
    await run(engine, source, store, CapturingSink())
    assert engine.series_count() == 0
    assert sys.getsizeof(engine._series[0]) <= sys.getsizeof({k: None for k in range(100)})
    assert len(engine._timers) + engine._wheeled <= 4096
    assert not engine._wheel
    assert not store._series
