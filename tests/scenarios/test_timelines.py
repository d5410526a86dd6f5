"""Hand-computed timelines for every rule kind, replayed on both state backends (exact to the millisecond)."""

from __future__ import annotations

import random

from streamalert.state.base import Store
from streamalert.testing import replay_lines, rules_from_yaml

from .timeline import expect, line, run_timeline

COUNT2 = """
rules:
  - name: two_errors
    match: {level: error}
    window: 10s
    condition: count >= 2
"""


async def test_window_is_half_open_event_exactly_one_window_old_is_out(store: Store) -> None:
    """Events at 0s and 10s never share a 10s window: (t-10s, t] excludes the one at 0s."""
    lines = [line("0s", level="error"), line("10s", level="error")]
    assert await run_timeline(COUNT2, lines, store) == []


async def test_window_fires_at_the_event_and_resolves_when_oldest_leaves(store: Store) -> None:
    """0s and 9.999s share a window: fire at 9.999s; resolve at 10s exactly, when the 0s event leaves."""
    lines = [line("0s", level="error"), line("9.999s", level="error"), line("30s", level="info")]
    assert await run_timeline(COUNT2, lines, store) == [
        expect("9.999s", "two_errors", "firing", 2),
        expect("10s", "two_errors", "resolved", 1),
    ]


async def test_more_matches_while_firing_change_value_not_state(store: Store) -> None:
    """One transition per state change: a burst while firing gives one firing and one resolved."""
    lines = [line(f"{s}s", level="ERROR") for s in (1, 2, 3, 4, 5)] + [line("40s", level="info")]
    assert await run_timeline(COUNT2, lines, store) == [
        expect("2s", "two_errors", "firing", 2),
        expect("14s", "two_errors", "resolved", 1),
    ]


FOR_RULE = """
rules:
  - name: sustained
    match: {level: error}
    window: 4s
    condition: count >= 2
    for: 5s
"""


async def test_for_that_almost_holds_gives_no_alert(store: Store) -> None:
    """Holding for 4s of the 5s `for` gives nothing."""
    # errors at 0s, 1s, 2s: count>=2 holds from 1s; 0s leaves at 4s (count 2), 1s leaves at 5s (count 1).
    # So it holds on [1s, 5s): 4s < 5s, no alert.
    lines = [line("0s", level="error"), line("1s", level="error"), line("2s", level="error"), line("20s")]
    assert await run_timeline(FOR_RULE, lines, store) == []


async def test_for_that_stops_exactly_at_the_deadline_gives_no_alert(store: Store) -> None:
    """Holding on [1s, 6s) is not holding at 6s = 1s + for: no alert at the boundary."""
    lines = [line(s, level="error") for s in ("0s", "1s", "2s", "3s")] + [line("20s")]
    # count>=2 from 1s; at 4s 0s leaves (3 left), 5s: 1s leaves (2), 6s: 2s leaves (1) -> holds on [1s, 6s).
    assert await run_timeline(FOR_RULE, lines, store) == []


async def test_for_that_holds_fires_at_true_plus_for_and_resolves_on_expiry(store: Store) -> None:
    """Holding on [1s, 7s) fires at 1s + 5s = 6s and resolves at 7s (3s event + 4s window)."""
    lines = [line(s, level="error") for s in ("0s", "1s", "2s", "3s", "3.5s")] + [line("20s")]
    # At 6s the window (2s, 6s] holds 3s and 3.5s (the 2s event leaves at exactly 6s): value 2.
    # At 7s the 3s event leaves: only 3.5s remains, the condition fails.
    assert await run_timeline(FOR_RULE, lines, store) == [
        expect("6s", "sustained", "firing", 2),
        expect("7s", "sustained", "resolved", 1),
    ]


SUM_RULE = """
rules:
  - name: tokens
    match: {event: llm_done}
    window: 1m
    condition: sum(tokens_used) > 100
    annotations: {summary: "{{ value }} tokens, last by {{ user.id }}"}
"""


async def test_sum_threshold_fires_and_resolves_with_exact_values(store: Store) -> None:
    """40 + 50 + 20 = 110 > 100 at 20s; at 60s the 40 leaves (70): resolved."""
    lines = [
        line("0s", event="llm_done", tokens_used=40, user={"id": "u1"}),
        line("10s", event="llm_done", tokens_used="50", user={"id": "u2"}),  # numeric strings count
        line("15s", event="llm_done", tokens_used="many"),  # not a number: ignored
        line("20s", event="llm_done", tokens_used=20, user={"id": "u3"}),
        line("90s", event="other"),
    ]
    assert await run_timeline(SUM_RULE, lines, store) == [
        expect("20s", "tokens", "firing", 110),
        expect("60s", "tokens", "resolved", 70),
    ]


async def test_annotations_render_value_and_nested_record_fields(store: Store) -> None:
    """Templates see value and the triggering record's fields, dotted paths included."""
    rules = rules_from_yaml(SUM_RULE)
    lines = [line("0s", event="llm_done", tokens_used=101, user={"id": "u7"}), line("5s")]
    sink, _ = await replay_lines(rules, lines, store)
    assert sink.as_json()[0]["annotations"] == {"summary": "101 tokens, last by u7"}


RATE_RULE = """
rules:
  - name: auth_failures
    match: {message: {regex: "otp_verification_failed|password_reset_.*_failed"}}
    window: 10s
    condition: rate > 0.1
"""


async def test_rate_threshold_is_count_over_window_seconds(store: Store) -> None:
    """rate > 0.1/s over 10s means more than one event: fires at the second with rate 0.2."""
    lines = [
        line("0s", event="otp_verification_failed"),
        line("3s", event="password_reset_email_failed"),
        line("4s", event="login_ok"),
        line("30s"),
    ]
    assert await run_timeline(RATE_RULE, lines, store) == [
        expect("3s", "auth_failures", "firing", 0.2),
        expect("10s", "auth_failures", "resolved", 0.1),
    ]


GROUP_RULE = """
rules:
  - name: db_errors
    match: {level: error, message: {regex: "(?i)(database|psycopg)"}}
    window: 10s
    condition: count >= 2
    group_by: [host]
    labels: {severity: critical}
"""


async def test_group_by_one_group_crosses_and_one_does_not(store: Store) -> None:
    """db-1 has two errors in 10s and fires; db-2 has one and stays quiet."""
    lines = [
        line("0s", level="error", event="Database timeout", host="db-1"),
        line("0.5s", level="error", event="psycopg.OperationalError", host="db-2"),
        line("1s", level="error", event="DATABASE gone", host="db-1"),
        line("30s"),
    ]
    assert await run_timeline(GROUP_RULE, lines, store) == [
        expect("1s", "db_errors", "firing", 2, severity="critical", host="db-1"),
        expect("10s", "db_errors", "resolved", 1, severity="critical", host="db-1"),
    ]


ABSENCE_RULE = """
rules:
  - name: beat_down
    match: {container: {in: [celery_beat, celery_beat_2]}}
    absent_for: 5m
    group_by: [container]
    expect: [{container: celery_beat}, {container: celery_beat_2}]
"""


async def test_absence_fires_at_last_seen_plus_duration_and_resolves_on_next_event(store: Store) -> None:
    """Seen at 0s and 60s: fires at 6m; the event at 8m resolves it at 8m. The never-seen expected group fires
    at first event time + 5m."""
    lines = [
        line("0s", container="celery_beat"),
        line("60s", container="celery_beat"),
        line("7m", container="web"),
        line("8m", container="celery_beat"),
        line("9m", container="web"),
    ]
    assert await run_timeline(ABSENCE_RULE, lines, store) == [
        expect("5m", "beat_down", "firing", 300, container="celery_beat_2"),
        expect("6m", "beat_down", "firing", 300, container="celery_beat"),
        expect("8m", "beat_down", "resolved", 420, container="celery_beat"),
    ]


async def test_absence_resolve_value_is_the_gap_also_with_two_events_in_the_resolving_ms(store: Store) -> None:
    """Two events in the millisecond that ends a silence: the resolve's value is still the gap (420 s), not 0."""
    lines = [
        line("0s", container="celery_beat"),
        line("60s", container="celery_beat"),
        line("7m", container="web"),
        line("8m", container="celery_beat", n=1),
        line("8m", container="celery_beat", n=2),
        line("9m", container="web"),
    ]
    assert await run_timeline(ABSENCE_RULE, lines, store) == [
        expect("5m", "beat_down", "firing", 300, container="celery_beat_2"),
        expect("6m", "beat_down", "firing", 300, container="celery_beat"),
        expect("8m", "beat_down", "resolved", 420, container="celery_beat"),
    ]


async def test_absence_event_exactly_at_deadline_keeps_it_quiet(store: Store) -> None:
    """An event at last_seen + absent_for is inside the half-open window: no alert."""
    lines = [
        line("0s", container="celery_beat"),
        line("5m", container="celery_beat"),
        line("5m", container="celery_beat_2"),
    ]
    assert await run_timeline(ABSENCE_RULE, lines, store) == []


async def test_end_of_input_invents_nothing_but_until_moves_the_clock(store: Store) -> None:
    """Input ending at 2m fires nothing; --until 10m runs the clock on and fires both groups."""
    lines = [line("0s", container="celery_beat"), line("2m", container="celery_beat_2")]
    assert await run_timeline(ABSENCE_RULE, lines, store) == []
    await store.reset()
    assert await run_timeline(ABSENCE_RULE, lines, store, until="10m") == [
        expect("5m", "beat_down", "firing", 300, container="celery_beat"),
        expect("7m", "beat_down", "firing", 300, container="celery_beat_2"),
    ]


async def test_until_ignores_later_events(store: Store) -> None:
    """Events after --until are not applied: the second error at 20s is beyond until=15s."""
    lines = [line("0s", level="error"), line("5s", level="error"), line("20s", level="error")]
    assert await run_timeline(COUNT2, lines, store, until="15s") == [
        expect("5s", "two_errors", "firing", 2),
        expect("10s", "two_errors", "resolved", 1),
    ]


MIXED = (
    COUNT2
    + """
  - name: tokens
    match: {event: llm_done}
    window: 1m
    condition: sum(tokens_used) >= 100
  - name: beat_down
    match: {container: celery_beat}
    absent_for: 40s
    group_by: [container]
    expect: [{container: celery_beat}]
"""
)


def _incident() -> list[bytes]:
    lines = []
    for s in range(0, 300, 7):
        lines.append(line(f"{s}s", level="error" if s % 3 == 0 else "info", host=f"h{s % 2}"))
        if s % 5 == 0:
            lines.append(line(f"{s}.250s", event="llm_done", tokens_used=s))
        if s < 100 or s > 200:
            lines.append(line(f"{s}.5s", container="celery_beat"))
    return lines


async def test_shuffled_within_lateness_gives_identical_output(store: Store) -> None:
    """Input shuffled by up to 20s (lateness 30s) gives exactly the sorted input's transitions."""
    rules = rules_from_yaml(MIXED)
    ordered = _incident()
    sorted_sink, sorted_summary = await replay_lines(rules, ordered, store)
    assert sorted_summary.stats.transitions >= 5
    # Shuffle: sort by (time + random jitter in [0, 20s)): every line arrives at most 20s after a later one.
    rng = random.Random(7)
    keyed = [(i * 7000 / 3 + rng.uniform(0, 20_000), ln) for i, ln in enumerate(ordered)]
    shuffled = [ln for _, ln in sorted(keyed)]
    assert shuffled != ordered
    await store.reset()
    shuffled_sink, shuffled_summary = await replay_lines(rules, shuffled, store)
    assert shuffled_summary.stats.late == 0
    assert shuffled_sink.as_json() == sorted_sink.as_json()


async def test_malformed_lines_are_counted_and_skipped(store: Store) -> None:
    """Truncated JSON, arrays, scalars, empty lines and invalid UTF-8 change nothing but the counter."""
    rules = rules_from_yaml(MIXED)
    clean = _incident()
    bad = [
        b'{"timestamp": "2026-01-26T09:00:01Z", "level": "err',
        b"[1, 2]",
        b"42",
        b"",
        b"\xff\xfe{}",
        b"null",
    ]
    dirty = []
    for i, ln in enumerate(clean):
        dirty.append(ln)
        if i % 10 == 0:
            dirty.append(bad[i // 10 % len(bad)])
    clean_sink, clean_summary = await replay_lines(rules, clean, store)
    await store.reset()
    dirty_sink, dirty_summary = await replay_lines(rules, dirty, store)
    assert dirty_summary.malformed == len(dirty) - len(clean)
    assert clean_summary.malformed == 0
    assert dirty_sink.as_json() == clean_sink.as_json()


async def test_late_events_are_counted_and_dropped(store: Store) -> None:
    """An event more than `lateness` behind the newest is dropped; one exactly at the bound is placed."""
    lines = [
        line("60s", level="info"),
        line("29.999s", level="error"),  # 30.001s behind: late
        line("30s", level="error"),  # exactly 30s behind: accepted
        line("35s", level="error"),
        line("120s"),
    ]
    rules = rules_from_yaml(COUNT2)
    sink, summary = await replay_lines(rules, lines, store, batch_lines=1)
    assert summary.stats.late == 1
    assert [(t["at"], t["state"]) for t in sink.as_json()] == [
        ("2026-01-26T09:00:35.000Z", "firing"),
        ("2026-01-26T09:00:40.000Z", "resolved"),
    ]


async def test_record_without_time_takes_newest_and_never_moves_the_clock(store: Store) -> None:
    """An untimed error is placed at the newest event time seen (5s), joining the error at 5s."""
    lines = [line(None, level="error"), line("5s", level="error"), line(None, level="error"), line("30s")]
    rules = rules_from_yaml(COUNT2)
    sink, summary = await replay_lines(rules, lines, store, batch_lines=1)
    assert summary.stats.untimed_dropped == 1
    assert summary.stats.untimed == 1
    assert [(t["at"], t["state"], t["value"]) for t in sink.as_json()] == [
        ("2026-01-26T09:00:05.000Z", "firing", 2),
        ("2026-01-26T09:00:15.000Z", "resolved", 0),
    ]


EQ_RULE = """
rules:
  - name: exactly_three
    match: {level: error}
    window: 10s
    condition: count == 3
"""


async def test_same_millisecond_events_are_evaluated_once_per_instant(store: Store) -> None:
    """Four events in one ms jump the count from 0 to 4: `count == 3` never holds at any instant."""
    lines = [line("1s", level="error", n=i) for i in range(4)] + [line("30s")]
    assert await run_timeline(EQ_RULE, lines, store) == []


async def test_count_equals_fires_and_resolves_on_both_sides(store: Store) -> None:
    """count == 3 holds from the third event until the fourth arrives, and again as they leave."""
    lines = [line(s, level="error") for s in ("0s", "1s", "2s", "3s")] + [line("30s")]
    assert await run_timeline(EQ_RULE, lines, store) == [
        expect("2s", "exactly_three", "firing", 3),
        expect("3s", "exactly_three", "resolved", 4),
        expect("10s", "exactly_three", "firing", 3),  # the 0s event leaves: 3 again
        expect("11s", "exactly_three", "resolved", 2),
    ]


async def test_timestamp_spellings_agree_and_bad_ones_are_untimed(store: Store) -> None:
    """The same instant written as Z, offset, epoch s and epoch ms counts as one time; a garbled stamp is
    untimed (takes the newest time) instead of moving the clock."""
    lines = [
        b'{"timestamp": "2026-01-26T09:00:01.500Z", "level": "error"}',
        b'{"timestamp": "2026-01-26T10:00:01.500+01:00", "level": "error"}',
        b'{"ts": 1769418001.5, "level": "error"}',
        b'{"time": 1769418001500, "level": "error"}',
        b'{"timestamp": "2026-01-26T09:00:01.5x0Z", "level": "error"}',
        b'{"timestamp": null, "@timestamp": "2026-01-26T09:00:01.500Z", "level": "info"}',
        b'{"timestamp": "2026-01-26T09:00:40.000Z"}',
    ]
    rules = rules_from_yaml(COUNT2.replace("count >= 2", "count >= 5"))
    sink, summary = await replay_lines(rules, lines, store, batch_lines=2)
    assert summary.stats.untimed == 1
    assert [(t["at"], t["state"], t["value"]) for t in sink.as_json()] == [
        ("2026-01-26T09:00:01.500Z", "firing", 5),
        ("2026-01-26T09:00:11.500Z", "resolved", 0),
    ]


async def test_float_sums_are_exact_and_survive_restarts(store: Store) -> None:
    """Float samples sum exactly: when 0.1 leaves, 0.2 + 0.3 is 0.5, not 0.5000000000000001 > 0.5."""
    rules = rules_from_yaml("rules:\n- {name: s, match: {svc: a}, window: 10s, condition: sum(n) > 0.5}\n")
    lines = [
        line("0s", svc="a", n=0.1),
        line("1s", svc="a", n=0.2),
        line("2s", svc="a", n=0.3),
        line("10.5s", svc="a", n=0.0),
        line("60s", svc="a", n=0.0),
    ]
    sink, _ = await replay_lines(rules, lines, store, lateness_ms=0, batch_lines=1)
    assert [(t["at"], t["state"], t["value"]) for t in sink.as_json()] == [
        ("2026-01-26T09:00:02.000Z", "firing", 0.6),
        ("2026-01-26T09:00:10.000Z", "resolved", 0.5),  # the 0.1 leaves: 0.2 + 0.3 is exactly 0.5
    ]


async def test_count_beyond_the_exact_capacity_folds_into_buckets(store: Store) -> None:
    """6,001 events (one per ms) overflow the 1,024 exact times; `value` then comes from the folded buckets
    (exact here, the events being uniform) and the transition times stay exact."""
    rules = rules_from_yaml(
        "rules:\n- {name: flood, match: {level: error}, window: 10s, condition: count >= 1, for: 10500ms}\n"
    )
    lines = [line(f"{ms}ms", level="error") for ms in range(6001)] + [line("20s")]
    sink, _ = await replay_lines(rules, lines, store, batch_lines=1000)
    assert [(t["at"], t["state"], t["value"]) for t in sink.as_json()] == [
        ("2026-01-26T09:00:10.500Z", "firing", 5500),  # window (0.5s, 10.5s] holds events 501..6000 ms
        ("2026-01-26T09:00:16.000Z", "resolved", 0),  # the 6000 ms event leaves at 16s
    ]
