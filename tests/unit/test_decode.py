"""Decoding lines and reading event time."""

from __future__ import annotations

from typing import Any

import pytest

from streamalert.decode import decode_line, event_time_ms, format_ms, parse_time

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
