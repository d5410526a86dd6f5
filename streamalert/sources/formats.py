"""Input formats: logfmt and plain-text lines become JSON records before the engine sees them.

A source's `format` is `json` (the default: lines pass untouched, so JSON input costs nothing more),
`logfmt`, `text` or `auto`:
- logfmt: `level=error msg="smtp down" error_type=Timeout` -> {"level": "error", "msg": "smtp down", ...};
  every value is a string (numeric strings still compare as numbers in rules); a line that is not logfmt is
  passed on as it is, so the engine counts it malformed.
- text: the whole line in `message`.
- auto: a line starting with `{` is JSON (a broken one stays malformed, as it was meant to be JSON);
  otherwise logfmt when it parses as key=value pairs (every token has `=`: "Starting worker" would be two
  bare logfmt keys); otherwise text.
Bytes that are not UTF-8 in a logfmt or text line become U+FFFD (the line still alerts; JSON input
keeps its rule: such a line is malformed). The converted record also holds the original text under
`_line`, which LogQL line filters search (as Loki searches the line as written), so a logfmt or text line
is filtered as written, not as its JSON form.

Time: logfmt lines are timed by their `timestamp`/`@timestamp`/`time`/`ts` keys like JSON. A text line's
time comes from a leading timestamp matched by `time_pattern` (group `time`, default: ISO 8601 with a `T` or
a space, optionally in `[`, as Celery and Python logging print it; a group that is a number is epoch
seconds, or milliseconds from 1e11 on, as for JSON times). A line without a usable time gets its
arrival time in live sources (`stamp_ms`, counted in `arrived`), and in replay the newest event time so far,
which is the previous line's for an ordered file (the engine's rule for untimed lines, counted as untimed).

`parse_logfmt` is the one logfmt parser: the input format uses it, and LogQL's `| logfmt` reads the fields
it produced. It follows Loki's decoder (grafana/loki pkg/logql/log/logfmt/decode.go, from go-logfmt): keys
are runs of bytes above space other than `=` and `"`; a value is bare up to the next space (a `=` or `"`
inside it is an error) or double-quoted with Go escapes; a bare key or `key=` has the empty value.
"""

from __future__ import annotations

import json
import re
from typing import TYPE_CHECKING, Final, Literal

import orjson

from streamalert.decode import LINE_FIELD, TIME_KEYS, format_ms, parse_time

if TYPE_CHECKING:
    from streamalert.telemetry.metrics import Metrics

InputFormat = Literal["json", "logfmt", "text", "auto"]
INPUT_FORMATS: Final = ("json", "logfmt", "text", "auto")
_DATE_TIME: Final = r"[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:[.,][0-9]+)?"
DEFAULT_TIME_PATTERN: Final = r"^\[?(?P<time>" + _DATE_TIME + r"(?:Z|[+-][0-9]{2}:?[0-9]{2})?)"


def parse_logfmt(text: str) -> list[tuple[str, str | None]] | None:
    """The (key, value) pairs of a logfmt line in order, value None for a bare key; None if it is not logfmt.

    Loki's decoder stops at the first syntax error; here the whole line is refused, so that a line is either
    all pairs or handled as something else.
    """
    pairs: list[tuple[str, str | None]] = []
    pos, end = 0, len(text)
    while True:
        while pos < end and text[pos] <= " ":
            pos += 1
        if pos >= end:
            return pairs
        start = pos
        while pos < end and text[pos] > " " and text[pos] not in '="':
            pos += 1
        if pos == start or (pos < end and text[pos] == '"'):
            return None  # an empty key (`=x`) or a quote in a key
        key = text[start:pos]
        if pos >= end or text[pos] <= " ":
            pairs.append((key, None))
            continue
        pos += 1  # the "="
        if pos >= end or text[pos] <= " ":
            pairs.append((key, ""))
            continue
        if text[pos] == '"':
            value, pos = _quoted(text, pos)
            if value is None:
                return None
            pairs.append((key, value))
            continue
        start = pos
        while pos < end and text[pos] > " ":
            if text[pos] in '="':
                return None
            pos += 1
        pairs.append((key, text[start:pos]))


def _quoted(text: str, pos: int) -> tuple[str | None, int]:
    """The Go-unquoted value of the string starting at text[pos] == '"', and the index after it."""
    i, escaped = pos + 1, False
    while i < len(text):
        ch = text[i]
        if escaped:
            escaped = False
        elif ch == "\\":
            escaped = True
        elif ch == '"':
            raw = text[pos : i + 1]
            if "\\" not in raw:
                return raw[1:-1], i + 1
            try:  # Go's strconv escapes that logfmt writers emit are JSON's, \xNN and \' aside
                value = json.loads(raw)
            except ValueError:
                return None, i + 1
            return (value if isinstance(value, str) else None), i + 1
        i += 1
    return None, i  # unterminated quoted value


_EPOCH = re.compile(r"[0-9]+(?:\.[0-9]+)?")


def _time(text: str) -> int | None:
    """A leading timestamp: ISO 8601, or epoch seconds/milliseconds as JSON numbers are read (decode.py)."""
    return parse_time(float(text) if _EPOCH.fullmatch(text) else text)


class LineFormat:
    """Converts the lines of one source from its input format to JSON records (see the module docstring)."""

    def __init__(self, kind: InputFormat, time_pattern: str | None = None) -> None:
        if kind not in INPUT_FORMATS:
            raise ValueError(f"unknown input format {kind!r} (known: {', '.join(INPUT_FORMATS)})")
        self.kind = kind
        self._time = compile_time_pattern(time_pattern or DEFAULT_TIME_PATTERN)
        self.arrived = 0  # lines without a time of their own that took their arrival time

    def convert(self, lines: list[bytes], stamp_ms: int | None = None) -> list[bytes]:
        """The lines as JSON; `stamp_ms` (live sources: the arrival time) times lines that have no time."""
        if self.kind == "json":
            return lines
        convert = self._convert_one
        return [convert(line, stamp_ms) for line in lines]

    def _convert_one(self, line: bytes, stamp_ms: int | None) -> bytes:
        kind = self.kind
        if kind == "auto" and line.lstrip()[:1] == b"{":
            return line
        text = line.decode("utf-8", "replace")
        if kind != "text":
            pairs = parse_logfmt(text)
            if pairs and (kind == "logfmt" or all(value is not None for _, value in pairs)):
                record: dict[str, object] = {key: value or "" for key, value in pairs}
                record[LINE_FIELD] = text
                if stamp_ms is not None and not any(key in record for key in TIME_KEYS):
                    record["timestamp"] = format_ms(stamp_ms)
                    self.arrived += 1
                return orjson.dumps(record)
            if kind == "logfmt":
                return line  # not logfmt: the engine counts it malformed
        if not text:
            return line  # an empty line is nothing to alert on: malformed, as in JSON input
        found = self._time.match(text)
        time_ms = _time(found.group("time")) if found is not None else None
        if time_ms is None and stamp_ms is not None:
            time_ms = stamp_ms
            self.arrived += 1
        out: dict[str, object] = {"message": text, LINE_FIELD: text}
        if time_ms is not None:
            out["timestamp"] = format_ms(time_ms)
        return orjson.dumps(out)


class SourceFormat:
    """A live source's LineFormat: converts a batch at its arrival time and counts those lines in the metric."""

    def __init__(self, source: str, kind: InputFormat, time_pattern: str | None, metrics: Metrics | None) -> None:
        self._format = LineFormat(kind, time_pattern)
        self._counter = metrics.events_arrival_timed.labels(source) if metrics is not None else None

    def convert(self, lines: list[bytes], now_ms: int) -> list[bytes]:
        before = self._format.arrived
        out = self._format.convert(lines, now_ms)
        if self._counter is not None and self._format.arrived > before:
            self._counter.inc(self._format.arrived - before)
        return out


def live_format(
    source: str, kind: InputFormat, time_pattern: str | None, metrics: Metrics | None
) -> SourceFormat | None:
    """The converter of a live source, None for JSON (lines pass untouched: nothing to pay)."""
    return None if kind == "json" else SourceFormat(source, kind, time_pattern, metrics)


def compile_time_pattern(pattern: str) -> re.Pattern[str]:
    """The leading-timestamp pattern, which must have a group named `time`; ValueError otherwise."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"time_pattern: invalid regular expression {pattern!r}: {exc}") from None
    if "time" not in compiled.groupindex:
        raise ValueError(f"time_pattern: {pattern!r} needs a group named `time`, e.g. ^(?P<time>\\S+)")
    return compiled
