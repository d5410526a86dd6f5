"""Decoding lines and reading event time."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamalert.decode import HOUR_CACHE, decode_line, event_time_ms, format_ms, parse_time

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

T = 1_769_418_915_123  # 2026-01-26T09:15:15.123Z


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2026-01-26T09:15:15.123Z", T),
        ("2026-01-26T09:15:15.123456Z", T),
        ("2026-01-26T09:15:15.1Z", T - 23),
        ("2026-01-26T10:15:15.123+01:00", T),
        ("2026-01-26T08:15:15.123-0100", T),
        ("2026-01-26 09:15:15.123", T),  # no zone: UTC
        ("2026-01-26T09:15:15Z", T - 123),
        (1_769_418_915.123, T),  # epoch seconds
        (1_769_418_915_123, T),  # epoch milliseconds
        ("yesterday", None),
        ("2026-13-45T00:00:00Z", None),
        (True, None),
        (float("nan"), None),
        (None, None),
    ],
)
def test_parse_time(value: Any, expected: int | None) -> None:
    """ISO 8601 with Z or offsets and epoch seconds/ms parse to epoch ms; anything else is unusable."""
    assert parse_time(value) == expected


def test_time_key_precedence() -> None:
    """timestamp wins over @timestamp, time and ts."""
    assert event_time_ms({"ts": 1, "timestamp": "2026-01-26T09:15:15.123Z"}) == T
    assert event_time_ms({"ts": 1_769_418_915.123, "time": "bad"}) is None  # first present is used
    assert event_time_ms({"@timestamp": "2026-01-26T09:15:15.123Z"}) == T


@pytest.mark.parametrize("line", [b"", b"{", b"[1]", b"3", b'"s"', b"null", b"\xff{}", b'{"a": 1} x'])
def test_non_objects_decode_to_none(line: bytes) -> None:
    """Anything that is not one JSON object is rejected, never raised."""
    assert decode_line(line) is None


def test_format_ms_is_utc_with_millis() -> None:
    """Output times are UTC with exactly three fraction digits and Z."""
    assert format_ms(T) == "2026-01-26T09:15:15.123Z"
    assert format_ms(T - 123 + 999) == "2026-01-26T09:15:15.999Z"


@settings(max_examples=300, deadline=None, derandomize=True)
@given(
    moment=st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31, 23)),
    separator=st.sampled_from(["T", "t", " "]),
    minute=st.integers(0, 99),
    second=st.integers(0, 99),
)
def test_canonical_stamps_parse_like_datetime(moment: datetime, separator: str, minute: int, second: int) -> None:
    """The hour cache plus the minute:second table give datetime.fromisoformat's answer for any canonical
    head, minutes or seconds of 60 and more (refused by both) included."""
    text = f"{moment:%Y-%m-%d}{separator}{moment:%H}:{minute:02d}:{second:02d}.{moment.microsecond // 1000:03d}Z"
    try:
        expected: int | None = (datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC) - EPOCH) // timedelta(
            milliseconds=1
        )
    except ValueError:
        expected = None
    assert parse_time(text) == expected


def test_the_stamp_cache_keeps_one_entry_per_hour() -> None:
    """A day of stamps, one per second, adds at most 24 cached entries: entries live as long as the cache, and
    each small long-lived object allocated while a flood of series comes and goes keeps an arena of CPython's
    allocator from being returned after they end (bench/README.md, "Series benchmark")."""
    HOUR_CACHE.clear()
    start = parse_time("2026-03-01T00:00:00.000Z")
    assert start is not None
    for second in range(0, 86_400, 7):
        assert parse_time(format_ms(start + second * 1000 + 5)) == start + second * 1000 + 5
    assert len(HOUR_CACHE) == 24
