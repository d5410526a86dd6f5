"""Durations, conditions, templates and the lifecycle step: small pure functions, tested by tables."""

from __future__ import annotations

import pytest

from streamalert.alerts.lifecycle import INACTIVE, Change, Phase, step
from streamalert.durations import format_duration, parse_duration
from streamalert.rules.condition import parse_condition
from streamalert.rules.template import parse_template


@pytest.mark.parametrize(
    ("text", "ms"),
    [("500ms", 500), ("30s", 30_000), ("5m", 300_000), ("1h30m", 5_400_000), ("1d", 86_400_000)],
)
def test_durations_roundtrip(text: str, ms: int) -> None:
    """Prometheus-style durations parse to ms and print back the same."""
    assert parse_duration(text) == ms
    assert format_duration(ms) == text


@pytest.mark.parametrize("text", ["", "5", "5 m", "m5", "1.5h", "-1s", "5min"])
def test_bad_durations_are_rejected(text: str) -> None:
    """Anything but integer-unit sequences is an error that quotes the input."""
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


def test_conditions_parse_and_rate_thresholds_are_exact_counts() -> None:
    """`rate > 0.1` over 5m is `count > 30`; sum takes a field; count takes none."""
    cond = parse_condition("rate > 0.1")
    assert cond.count_threshold(300_000) == 30
    assert parse_condition("sum(tokens_used) >= 1e6").threshold == 1_000_000
    for bad in ("count(x) > 1", "sum > 1", "count => 1", "p98(x) > 1", "count > "):  # p99 is a kind now
        with pytest.raises(ValueError, match="invalid condition"):
            parse_condition(bad)


def test_templates_render_safely() -> None:
    """Placeholders are names only; $-prefixed Prometheus spellings work; missing fields render empty."""
    t = parse_template("{{ value }} on {{ $labels.host }} by {{ user.id }}{{ nothing }} ({{rule}})")
    assert t.uses_record
    assert t.render(2.5, "r", {"host": "db-1"}, {"user": {"id": 7}}) == "2.5 on db-1 by 7 (r)"
    for bad in ("{{ value + 1 }}", "{{ __import__('os') }}", "{{ value", "{{ labels }}", "{{ x|upper }}"):
        with pytest.raises(ValueError, match=r"placeholder|unbalanced"):
            parse_template(bad)


@pytest.mark.parametrize(
    ("phase", "holds", "now", "for_ms", "expected_phase", "change"),
    [
        (INACTIVE, True, 10, 0, Phase(10, True), Change.FIRING),
        (INACTIVE, True, 10, 5, Phase(10, False), Change.PENDING),
        (Phase(10, False), True, 14, 5, Phase(10, False), Change.NONE),
        (Phase(10, False), True, 15, 5, Phase(10, True), Change.FIRING),
        (Phase(10, False), False, 14, 5, INACTIVE, Change.CANCELLED),
        (Phase(10, True), True, 99, 5, Phase(10, True), Change.NONE),
        (Phase(10, True), False, 99, 5, INACTIVE, Change.RESOLVED),
        (INACTIVE, False, 99, 5, INACTIVE, Change.NONE),
    ],
)
def test_lifecycle_step(
    phase: Phase, holds: bool, now: int, for_ms: int, expected_phase: Phase, change: Change
) -> None:
    """The lifecycle decision is a pure function of phase, condition and now."""
    assert step(phase, holds, now, for_ms) == (expected_phase, change)
