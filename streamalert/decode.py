"""Bytes to log records: JSON objects, event time, field paths. Bad lines are counted, not raised.

msgspec decodes log lines: the engine's hot path decodes into a Struct of the fields rules read (built in
rules/codegen.py), and `decode_line` gives the full record, with the same acceptance rules.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from streamalert.model import Fields

TIME_KEYS: Final = ("timestamp", "@timestamp", "time", "ts")
MESSAGE_KEYS: Final = ("message", "event", "msg")
# Epoch numbers above this are milliseconds (1e11 s is the year 5138, 1e11 ms is 1973).
_EPOCH_MS_THRESHOLD: Final = 100_000_000_000

_ISO_TAIL = re.compile(r"(?:[.,](\d+))?(Z|z|[+-]\d\d(?::?\d\d)?)?")
# "YYYY-MM-DDTHH:MM:SS" -> epoch ms of that second (UTC).
SECOND_CACHE: dict[str, int] = {}
MILLIS: Final = {f"{ms:03d}": ms for ms in range(1000)}  # "123" -> 123: faster than int(), and digits only


_RECORD_DECODER: Final = msgspec.json.Decoder(dict[str, Any])
decode_record = _RECORD_DECODER.decode  # bytes -> dict; raises msgspec.DecodeError unless one JSON object


def decode_line(line: bytes) -> Fields | None:
    """The JSON object on this line; None when it is not one (truncated, not UTF-8, array, scalar)."""
    try:
        return decode_record(line)
    except msgspec.DecodeError:
        return None


def event_time_ms(fields: Fields) -> int | None:
    """Event time from the first present of timestamp, @timestamp, time, ts; None when none is usable."""
    for key in TIME_KEYS:
        value = fields.get(key)
        if value is not None:
            return parse_time(value)
    return None


def parse_time(value: Any) -> int | None:
    """ISO 8601 (Z, offset, or none meaning UTC) or epoch seconds/milliseconds as a JSON number."""
    kind = type(value)
    if kind is str:
        return _parse_iso(value)
    if kind is int or kind is float:
        if not math.isfinite(value) or value < 0:
            return None
        return int(value) if value >= _EPOCH_MS_THRESHOLD else round(value * 1000)
    return None


def _parse_iso(text: str) -> int | None:
    # Fast path: "YYYY-MM-DDTHH:MM:SS" is cached per second; the tail (fraction, zone) is parsed by hand.
    if len(text) >= 19 and text[4] == "-" and text[10] in "Tt ":
        head = text[:19]
        base = SECOND_CACHE.get(head)
        if base is None:
            try:
                base = int(datetime.fromisoformat(head).replace(tzinfo=UTC).timestamp()) * 1000
            except ValueError:
                return _parse_iso_slow(text)
            if len(SECOND_CACHE) > 100_000:
                SECOND_CACHE.clear()
            SECOND_CACHE[head] = base
        if len(text) == 24 and text[19] == "." and text[23] == "Z" and text[20:23].isdigit():
            return base + int(text[20:23])  # the common structlog spelling, "...T09:15:00.123Z"
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
    return _parse_iso_slow(text)


def _parse_iso_slow(text: str) -> int | None:
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


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


def is_missing(value: Any) -> bool:
    return value is _MISSING


MISSING: Final = _MISSING


def format_ms(ms: int) -> str:
    """Epoch milliseconds as ISO 8601 UTC with milliseconds and Z."""
    dt = datetime.fromtimestamp(ms // 1000, tz=UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
