"""Times and log lines of a test: `+30s` after the start or ISO 8601, and the lines an `input` item stands for.

Generated lines get their event time in `timestamp`; a file's lines are taken as they are, at their own times.
"""

from __future__ import annotations

import gzip
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from streamalert.decode import decode_line, event_time_ms, format_ms, parse_time
from streamalert.durations import parse_duration

if TYPE_CHECKING:
    from streamalert.ruletest.spec import InputItem

# the field the test writes each line's event time into (the first of decode.TIME_KEYS the engine reads)
TIME_FIELD = "timestamp"


def input_lines(base: Path, item: InputItem, start: int, field: str, out: list[tuple[int, int, bytes]]) -> None:
    """Append (time, order, line) for every line the item stands for (`base`: the test file's folder)."""
    if item.file is not None:
        _file_lines(base / item.file, start, field, out)
        return
    assert item.line is not None  # the model's validator saw to it
    assert item.at is not None
    first = absolute(item.at, start, f"{field}.at")
    step = duration(item.every, f"{field}.every") if item.every is not None else 0
    for n in range(item.count):
        at = first + n * step
        record = {TIME_FIELD: format_ms(at), **item.line}
        out.append((at, len(out), orjson.dumps(record, default=str)))


def _file_lines(file: Path, start: int, field: str, out: list[tuple[int, int, bytes]]) -> None:
    """An NDJSON file's lines (plain or gzip) as they are; a line without a usable time keeps its place after
    the line before it (the engine gives it that line's time, as in replay)."""
    try:
        data = file.read_bytes()
        if data[:2] == b"\x1f\x8b":
            data = gzip.decompress(data)
    except (OSError, EOFError) as exc:
        raise ValueError(f"{field}.file: cannot read {file}: {exc}") from None
    previous = start
    for line in data.splitlines():
        if not line.strip():
            continue
        fields = decode_line(line)
        at = event_time_ms(fields) if fields is not None else None
        previous = at if at is not None else previous
        out.append((previous, len(out), line))


def absolute(when: Any, start: int | None, field: str) -> int:
    """Epoch ms of `+DURATION` (after `start`), an ISO 8601 string or a YAML timestamp."""
    if isinstance(when, datetime):
        moment = when if when.tzinfo is not None else when.replace(tzinfo=UTC)  # YAML without zone: UTC
        return round(moment.timestamp() * 1000)
    if isinstance(when, str) and when.startswith(("+", "-")) and start is not None:
        offset = duration(when[1:], field)
        return start + offset if when[0] == "+" else start - offset
    ms = parse_time(when) if isinstance(when, str) else None
    if ms is None:
        relative = " or +DURATION after start (+30s, +2m)" if start is not None else ""
        raise ValueError(f"{field}: cannot read {when!r} as a time: ISO 8601 (2026-01-26T09:15:00Z){relative}")
    return ms


def duration(text: str, field: str) -> int:
    try:
        return parse_duration(text)
    except ValueError as exc:
        raise ValueError(f"{field}: {exc}") from None
