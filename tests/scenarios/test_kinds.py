"""Hand-computed timelines for the SLO / anomaly kinds (ratio, quantiles, distinct), each checked three ways
(replay, live, restart mid-window: kinds_support.three_ways) on every state backend."""

from __future__ import annotations

from streamalert.state.base import Store
from streamalert.state.memory import MemoryStore
from streamalert.testing import replay_lines, rules_from_yaml

from .kinds_support import three_ways
from .timeline import expect, iso, line

RATIO = """
rules:
  - name: failed_share
    match: {event: campaign_finished}
    ratio: {where: {status: failed}}
    window: 10s
    condition: ratio > 0.25
    group_by: [tenant]
"""


def _done(offset: str, tenant: str, status: str) -> bytes:
    return line(offset, event="campaign_finished", tenant=tenant, status=status)


async def test_ratio_fires_and_resolves_on_the_share_of_the_base(store: Store) -> None:
    """Tenant a: ok 0s, failed 1s, ok 2s, ok 3s: 1/2 fires at 1s, 1/4 = 0.25 is not > 0.25 at 3s, the ok of
    0s leaving makes 1/3 at 10s, the failure leaving at 11s resolves; tenant b never fails; out-of-order and
    late lines change nothing."""
    lines = [
        _done("0s", "a", "ok"),
        _done("2s", "a", "ok"),  # before the 1s line: out of order within the lateness
        _done("1s", "a", "failed"),
        _done("1s", "b", "ok"),
        _done("3s", "a", "ok"),
        _done("3.5s", "b", "ok"),
        line("40s"),
        _done("5s", "a", "failed"),  # 35s behind the newest time, more than the lateness (1s): dropped
    ]
    assert await three_ways(RATIO, lines, store) == [
        expect("1s", "failed_share", "firing", 0.5, tenant="a"),
        expect("3s", "failed_share", "resolved", 0.25, tenant="a"),
        expect("10s", "failed_share", "firing", 1 / 3, tenant="a"),
        expect("11s", "failed_share", "resolved", 0.0, tenant="a"),
    ]


async def test_ratio_with_an_empty_base_never_holds(store: Store) -> None:
    """`ratio < 0.5` holds while the base has records and none failed (0/2), and resolves at 11.001s when the
    last base record leaves: 0/0 is no share at all, not 0."""
    rules = RATIO.replace("ratio > 0.25", "ratio < 0.5")
    lines = [_done("0s", "a", "ok"), _done("1.001s", "a", "ok"), line("30s")]
    assert await three_ways(rules, lines, store) == [
        expect("0s", "failed_share", "firing", 0.0, tenant="a"),
        expect("11.001s", "failed_share", "resolved", 0.0, tenant="a"),
    ]


QUANTILES = """
rules:
  - name: wait_p99
    match: {event: sent}
    window: 10s
    condition: p99(wait) > 300
    group_by: [queue]
  - name: wait_median
    match: {event: sent}
    window: 10s
    condition: quantile(0.5, wait) >= 100
"""


async def test_quantiles_are_nearest_rank_over_the_window_with_duration_strings(store: Store) -> None:
    """p99 of [100, 360] is the 2nd of 2 (360 s, written "6m"): fires at 1s; the 360 leaves at 11s (p99 of
    [50] is 50): resolved. The median (rank ceil(n/2)) is 100 from 0s and ends when the 100 leaves at 10s:
    the median of [360, 50] is 50."""
    lines = [
        line("0s", event="sent", queue="q1", wait=100),
        line("1s", event="sent", queue="q1", wait="6m"),
        line("2s", event="sent", queue="q1", wait="50"),
        line("2.5s", event="sent", queue="q1", wait="soon"),  # no number, no duration: not a sample
        line("30s"),
    ]
    assert await three_ways(QUANTILES, lines, store) == [
        expect("0s", "wait_median", "firing", 100),
        expect("1s", "wait_p99", "firing", 360, queue="q1"),
        expect("10s", "wait_median", "resolved", 50),
        expect("11s", "wait_p99", "resolved", 50, queue="q1"),
    ]


DISTINCT = """
rules:
  - name: many_users
    match: {event: login_failed}
    window: 1m
    condition: distinct(user) >= 3
    group_by: [ip]
"""


async def test_distinct_counts_values_by_their_last_sighting(store: Store) -> None:
    """From one ip: u1 0s, u2 10s, u1 20s, 3 (a number, spelt "3") 30s: three distinct at 30s, fires; u2 leaves
    at 1m10s (u1 was seen again at 20s, so it stays until 1m20s): resolved with 2."""
    lines = [
        line("0s", event="login_failed", ip="10.0.0.1", user="u1"),
        line("10s", event="login_failed", ip="10.0.0.1", user="u2"),
        line("20s", event="login_failed", ip="10.0.0.1", user="u1"),
        line("25s", event="login_failed", ip="10.0.0.2", user="u9"),
        line("30s", event="login_failed", ip="10.0.0.1", user=3),
        line("30.5s", event="login_failed", ip="10.0.0.1", user="3"),  # the same value as 3
        line("3m"),
    ]
    assert await three_ways(DISTINCT, lines, store) == [
        expect("30s", "many_users", "firing", 3, ip="10.0.0.1"),
        expect("1m10s", "many_users", "resolved", 2, ip="10.0.0.1"),
    ]


KEEP = """
rules:
  - name: two_errors
    match: {level: error}
    window: 10s
    condition: count >= 2
    keep_firing_for: 5s
"""


async def test_keep_firing_for_bridges_a_gap_shorter_than_it(store: Store) -> None:
    """Errors 0s, 1s fire at 1s; the count drops below 2 at 10s (quiet since 10s) and holds again at 15s,
    exactly 10s + 5s: still firing, nothing sent. 14s leaving at 24s starts a new quiet time that lasts: resolved
    at 24s + 5s = 29s (without keep_firing_for: resolved 10s, firing 15s, resolved 24s)."""
    lines = [line(s, level="error") for s in ("0s", "1s", "14s", "15s")] + [line("40s")]
    assert await three_ways(KEEP, lines, store) == [
        expect("1s", "two_errors", "firing", 2),
        expect("29s", "two_errors", "resolved", 0),
    ]
    assert await three_ways(KEEP.replace("keep_firing_for: 5s", "keep_firing_for: 4999ms"), lines, store) == [
        expect("1s", "two_errors", "firing", 2),
        expect("14.999s", "two_errors", "resolved", 1),
        expect("15s", "two_errors", "firing", 2),
        expect("28.999s", "two_errors", "resolved", 0),
    ]


FLAP = """
rules:
  - name: blinking
    match: {level: error}
    window: 1s
    condition: count >= 1
    flapping: {changes: 3, within: 10s}
"""


async def test_flapping_sends_one_notification_then_quiet_until_a_quiet_period(store: Store) -> None:
    """An error every 2s fires and resolves each second: the 4th change (resolved at 3s) is replaced by one
    firing annotated `flapping`; nothing more until 10s after the last change (9s): resolved at 19s. Then
    the series starts afresh: 25s fires, 26s resolves."""
    lines = [line(s, level="error") for s in ("0s", "2s", "4s", "6s", "8s", "25s")] + [line("40s")]
    assert await three_ways(FLAP, lines, store) == [
        expect("0s", "blinking", "firing", 1),
        expect("1s", "blinking", "resolved", 0),
        expect("2s", "blinking", "firing", 1),
        expect("3s", "blinking", "firing", 0),
        expect("19s", "blinking", "resolved", 0),
        expect("25s", "blinking", "firing", 1),
        expect("26s", "blinking", "resolved", 0),
    ]
    await store.reset()
    sink, _ = await replay_lines(rules_from_yaml(FLAP), lines, store)
    notes = [dict(t.annotations).get("flapping") for t in sink.transitions]
    assert notes == [None, None, None, "4 changes in 10s", None, None, None]


async def test_flapping_that_ends_while_the_condition_holds_stays_firing(store: Store) -> None:
    """Held firing by the flapping state, the series fires underneath at the very instant the state ends
    (9s + 10s = 19s; errors every 500ms from 19s to 21.5s): nothing is sent then, and it resolves as usual
    when the errors stop (22.5s). A change while flapping (an error at 18s) would have extended it instead."""
    errors = ["0s", "2s", "4s", "6s", "8s"] + [f"{19 + k / 2}s" for k in range(6)]
    lines = [line(s, level="error") for s in errors] + [line("40s")]
    assert await three_ways(FLAP, lines, store) == [
        expect("0s", "blinking", "firing", 1),
        expect("1s", "blinking", "resolved", 0),
        expect("2s", "blinking", "firing", 1),
        expect("3s", "blinking", "firing", 0),
        expect("22.5s", "blinking", "resolved", 0),
    ]


NEW = """
rules:
  - name: new_error_type
    match: {level: error}
    window: 10m
    lookback: 1h
    condition: new(error_type) >= 1
    group_by: [service]
"""


async def test_new_value_fires_on_a_value_unseen_for_the_lookback(store: Store) -> None:
    """Per service, a value is new when not seen in the previous hour: a's KeyError at 0s and TypeError at 8m
    are new (resolved when the TypeError's sighting leaves the 10m window, 18m); a's KeyError at
    1h4m59.999s was seen 59m59.999s before (at 5m): not new. b's KeyError at 5m is new for b, and new again
    at 1h5m, exactly one lookback after."""

    def err(offset: str, service: str, error_type: str) -> bytes:
        return line(offset, level="error", service=service, error_type=error_type)

    lines = [
        err("0s", "a", "KeyError"),
        err("5m", "a", "KeyError"),
        err("5m", "b", "KeyError"),
        err("8m", "a", "TypeError"),
        err("3899.999s", "a", "KeyError"),  # 1h4m59.999s
        err("1h5m", "b", "KeyError"),
        line("2h"),
    ]
    assert await three_ways(NEW, lines, store) == [
        expect("0s", "new_error_type", "firing", 1, service="a"),
        expect("5m", "new_error_type", "firing", 1, service="b"),
        expect("15m", "new_error_type", "resolved", 0, service="b"),
        expect("18m", "new_error_type", "resolved", 0, service="a"),
        expect("1h5m", "new_error_type", "firing", 1, service="b"),
        expect("1h15m", "new_error_type", "resolved", 0, service="b"),
    ]


SPIKE = """
rules:
  - name: spike
    match: {level: error}
    window: 1m
    condition: count > 2 * count offset 1m
    min_base: 2
"""


async def test_change_against_the_past_window_with_a_minimum_base(store: Store) -> None:
    """Two errors (10s, 20s) in the past window (t - 2m, t - 1m]; the 5th error of a burst at 81s..85s makes
    5 > 2 x 2 at 85s; at 130s the 10s error leaves the past window, 1 is below min_base 2: resolved. Without
    min_base (1) it holds until the 20s error leaves the past window too, at 140s, and the burst then briefly
    spikes against its own first error."""
    lines = [line(s, level="error") for s in ("10s", "20s", "81s", "82s", "83s", "84s", "85s")] + [line("5m")]
    assert await three_ways(SPIKE, lines, store) == [
        expect("85s", "spike", "firing", 5),
        expect("130s", "spike", "resolved", 5),
    ]
    assert await three_ways(SPIKE.replace("    min_base: 2\n", ""), lines, store) == [
        expect("85s", "spike", "firing", 5),
        expect("140s", "spike", "resolved", 5),
        expect("141s", "spike", "firing", 4),  # the burst's own 81s error is now the past: 4 > 2 x 1
        expect("142s", "spike", "resolved", 3),  # 3 > 2 x 2 no longer
    ]


async def test_approximate_values_carry_their_stated_error() -> None:
    """Past 10,000 samples (or values) in a window a quantile (distinct count) is approximate: its transitions
    carry an `accuracy` annotation stating the error; while exact they carry none."""
    rules = rules_from_yaml(
        """
rules:
  - {name: exact, match: {event: req}, window: 1m, condition: p50(ms) >= 0}
  - {name: slow, match: {event: req}, window: 1m, condition: p50(ms) >= 0, for: 50001ms}
  - {name: users, match: {event: req}, window: 1m, condition: distinct(user) > 10000}
"""
    )
    # One sample every 5 ms: the 10,001st (at 50s) is the first one rounded, and the 10,001st user.
    lines = [line(f"{k * 5}ms", event="req", ms=k % 977, user=f"u{k}") for k in range(10_002)] + [line("5m")]
    sink, _ = await replay_lines(rules, lines, MemoryStore(), batch_lines=2_000)
    fired = {
        t.rule: (t.at_iso, t.value, dict(t.annotations).get("accuracy"))
        for t in sink.transitions
        if t.state.value == "firing"
    }
    assert fired["exact"] == (iso("0s"), 0, None)
    assert fired["slow"][::2] == (iso("50.001s"), "within 1% (more than 10000 samples in the window)")
    assert fired["users"][::2] == (iso("50s"), "1.6% standard error (more than 10000 values: HyperLogLog)")
    assert abs(fired["users"][1] - 10_001) <= 4 * 0.016 * 10_001
