"""Bytes to log records: JSON objects, event time, field paths. Bad lines are counted, not raised.

msgspec decodes log lines: the engine's hot path decodes into a Struct of the fields rules read (built in
rules/codegen.py), and `decode_line` gives the full record, with the same acceptance rules.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec

from streamalert.model import Fields

TIME_KEYS: Final = ("timestamp", "@timestamp", "time", "ts")
MESSAGE_KEYS: Final = ("message", "event", "msg")
# The virtual field holding the raw line, as LogQL line filters see it (the JSON text for JSON input). Only
# rule sets that read it pay for it (rules/codegen.py); a converted logfmt or text line carries its original
# text under this key (sources/formats.py), which therefore is reserved.
LINE_FIELD: Final = "_line"
# Epoch numbers above this are milliseconds (1e11 s is the year 5138, 1e11 ms is 1973).
_EPOCH_MS_THRESHOLD: Final = 100_000_000_000

_ISO_TAIL = re.compile(r"(?:[.,]([0-9]+))?(Z|z|[+-][0-9][0-9](?::?[0-9][0-9])?)?")
_CANONICAL_HEAD = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}:[0-9]{2}")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
MAX_TIME_MS: Final = 253_402_300_799_999  # 9999-12-31T23:59:59.999Z
# "YYYY-MM-DDTHH" -> epoch ms of that hour (UTC). Per hour, not per second: an entry lives as long as the
# cache, and every small object a long-lived process allocates while a flood of series comes and goes keeps
# a whole 1 MiB arena of CPython's allocator from being returned once they have gone (one entry per second
# of a 36 s flood held 150 MB after its series expired; bench/README.md "Series benchmark").
HOUR_CACHE: dict[str, int] = {}
MILLIS: Final = {f"{ms:03d}": ms for ms in range(1000)}  # "123" -> 123: faster than int(), and digits only
# "MM:SS" -> ms into the hour, for minutes and seconds 00-59 only (a leap second's "59:60" is not a key)
MINUTE_SECOND: Final = {f"{m:02d}:{s:02d}": (m * 60 + s) * 1000 for m in range(60) for s in range(60)}


_RECORD_DECODER: Final = msgspec.json.Decoder(dict[str, Any])
decode_record = _RECORD_DECODER.decode  # bytes -> dict; raises one of DECODE_ERRORS unless one JSON object
# What decoding a hostile line can raise: bad JSON or not an object, bad UTF-8, nesting deeper than the stack.
DECODE_ERRORS: Final = (msgspec.DecodeError, UnicodeDecodeError, RecursionError)


def decode_line(line: bytes) -> Fields | None:
    """The JSON object on this line; None when it is not one (truncated, not UTF-8, array, scalar)."""
    try:
        return decode_record(line)
    except DECODE_ERRORS:
        return None


def event_time_ms(fields: Fields) -> int | None:
    """Event time from the first present of timestamp, @timestamp, time, ts; None when none is usable."""
    return time_from(fields.get(key) for key in TIME_KEYS)


def time_from(values: Iterable[Any]) -> int | None:
    """The time of the first value that is present and not null (None or msgspec.UNSET mean absent)."""
    for value in values:
        if value is not None and value is not msgspec.UNSET:
            return parse_time(value)
    return None


def parse_time(value: Any) -> int | None:
    """ISO 8601 (Z, offset, or none meaning UTC) or epoch seconds/milliseconds as a JSON number.

    Times outside 1970-01-01 .. 9999-12-31 are unusable (None): they could not be printed, and one such
    record would drag the clock to a year nothing else reaches.
    """
    kind = type(value)
    if kind is str:
        ms = _parse_iso(value)
    elif kind is int or kind is float:
        if not math.isfinite(value) or value < 0:
            return None
        ms = int(value) if value >= _EPOCH_MS_THRESHOLD else round(value * 1000)
    else:
        return None
    return ms if ms is not None and 0 <= ms <= MAX_TIME_MS else None


def _parse_iso(text: str) -> int | None:
    # Fast path: a canonical "YYYY-MM-DDTHH:MM:SS" head is cached per second; the tail (fraction, zone) is
    # read by hand. Anything else goes to datetime.fromisoformat.
    if len(text) < 19 or _CANONICAL_HEAD.match(text) is None:
        return _parse_iso_slow(text)
    hour = HOUR_CACHE.get(text[:13])
    if hour is None:
        try:
            hour = _ms(datetime.fromisoformat(text[:13] + ":00:00").replace(tzinfo=UTC))
        except ValueError:
            return None
        if len(HOUR_CACHE) > 100_000:
            HOUR_CACHE.clear()
        HOUR_CACHE[text[:13]] = hour
    within = MINUTE_SECOND.get(text[14:19])
    if within is None:
        return None  # minute or second 60 or more: datetime.fromisoformat refuses them too
    base = hour + within
    if len(text) == 24 and text[19] == "." and text[23] == "Z":
        millis = MILLIS.get(text[20:23])  # the common structlog spelling, "...T09:15:00.123Z"
        return None if millis is None else base + millis
    tail = _ISO_TAIL.fullmatch(text, 19)
    if tail is None:
        return _parse_iso_slow(text)
    frac, zone = tail.groups()
    ms = base
    if frac:
        ms += int((frac + "00")[:3])
    if zone and zone not in ("Z", "z"):
        sign = 1 if zone[0] == "+" else -1
        digits = zone[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + (int(digits[2:4]) if len(digits) >= 4 else 0)
        ms -= sign * minutes * 60_000
    return ms


def _parse_iso_slow(text: str) -> int | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:
        return _ms(parsed)
    except OverflowError:
        return None


def _ms(moment: datetime) -> int:
    """Exact epoch milliseconds (integer arithmetic; sub-millisecond digits are dropped)."""
    return (moment - _EPOCH) // timedelta(milliseconds=1)


_MISSING: Final = object()


def get_path(fields: Fields, path: str) -> Any:
    """The value at a path: the literal key ("a.b") first, then nested lookups; MISSING if absent."""
    value = fields.get(path, _MISSING)
    if value is not _MISSING or "." not in path:
        return value
    node: Any = fields
    for part in path.split("."):
        if type(node) is not dict:
            return _MISSING
        node = node.get(part, _MISSING)
        if node is _MISSING:
            return _MISSING
    return node


def get_message(fields: Fields) -> Any:
    """The virtual `message` field: the first present of message, event (structlog), msg."""
    for key in MESSAGE_KEYS:
        value = fields.get(key, _MISSING)
        if value is not _MISSING:
            return value
    return _MISSING


MISSING: Final = _MISSING


def format_ms(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds and Z."""
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
