"""Alertmanager's time intervals: when a route's notifications are muted (`mute_time_intervals`) or allowed
(`active_time_intervals`), ported from Alertmanager's timeinterval/timeinterval.go with its exact semantics.

- An interval holds optional lists of `times` (`start_time`/`end_time` as HH:MM, end exclusive, 24:00 allowed),
  `weekdays` (`monday:friday`, Sunday first), `days_of_month` (`1:15`, `-3:-1` counted from the month's end),
  `months` (`january:march` or numbers), `years` (`2020:2025`), and a `location` (IANA zone; default UTC).
- A time is in the interval when, in that location, it is in one of the ranges of every list that is given
  (an absent list matches everything; an empty one nothing). Every range but `times` is inclusive at both ends.
- Day-of-month ranges are clamped to the month, and a range starting after the month's last day is skipped
  (`30:31` never matches in February); the last day is computed at noon, so a daylight-saving change in the
  month does not shift it (Alertmanager after 0.25; 0.25 computed it from the month's length in hours).
- The parse errors are Alertmanager's words ("start day cannot be before end day", ...).

YAML 1.1 (PyYAML) reads unquoted `17:00` or `1:5` as base-60 numbers (1020, 65) where Alertmanager's parser
keeps the text; such numbers are read back as the text they came from (`times`, `days_of_month`, `months`).
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

WEEKDAYS = {"sunday": 0, "monday": 1, "tuesday": 2, "wednesday": 3, "thursday": 4, "friday": 5, "saturday": 6}
MONTHS = {name.lower(): number for number, name in enumerate(calendar.month_name) if name}
_MONTH_NAMES = {number: name for name, number in MONTHS.items()}
_TIME = re.compile(r"^((([01][0-9])|(2[0-3])):[0-5][0-9])$|(^24:00$)")
_OFFSET_STEP_MS = 15 * 60_000  # zone offsets change on a quarter hour (UTC): re-check at least that often

Range = tuple[int, int]  # inclusive begin and end (times: start minute, exclusive end minute)


def _sexagesimal(value: str | int, plain_max: float = 59) -> str:
    """The text a YAML 1.1 base-60 number was written as (`17:00` read as 1020, `1:15` as 75); a number that can
    be meant as itself (up to `plain_max`: a day, a month, any year) and any other value as text."""
    if isinstance(value, bool) or not isinstance(value, int):
        return str(value)
    sign, rest = ("-" if value < 0 else ""), abs(value)
    if rest <= plain_max or rest < 60:
        return str(value)
    high, low = divmod(rest, 60)
    return f"{sign}{high}:{low:02d}"  # `9:00` stays unpadded, as written, and invalid as a time


def parse_time(text: str | int) -> int:
    """HH:MM as minutes of the day (00:00 to 24:00)."""
    value = _sexagesimal(text)
    if not _TIME.match(value):
        raise ValueError(f"couldn't parse timestamp {value}, invalid format")
    hours, minutes = value.split(":")
    return int(hours) * 60 + int(minutes)


def parse_times(start: str | int | None, end: str | int | None) -> Range:
    if start is None or end is None or start == "" or end == "":
        raise ValueError("both start and end times must be provided")
    begin, finish = parse_time(start), parse_time(end)
    if begin >= finish:
        raise ValueError("start time cannot be equal or greater than end time")
    return begin, finish


def _range(text: str | int, member: dict[str, int] | None, what: str, plain_max: float = 59) -> Range:
    """`a:b` or `a` as a range; names looked up in `member` (case aside), numbers where the kind allows them."""
    raw = _sexagesimal(text, plain_max).lower()
    parts = raw.split(":") if ":" in raw else [raw, raw]
    if len(parts) != 2:
        raise ValueError(f"couldn't parse range {raw}, invalid format")

    def one(part: str) -> int:
        if member is not None and part in member:
            return member[part]
        if what == "weekday":
            raise ValueError(f"{part} is not a valid weekday")
        try:
            return int(part, 10)
        except ValueError:
            if what == "month":
                raise ValueError(f"{part} is not a valid month") from None
            raise ValueError(f'strconv.Atoi: parsing "{part}": invalid syntax') from None

    return one(parts[0]), one(parts[1])


def parse_weekdays(text: str | int) -> Range:
    begin, end = _range(text, WEEKDAYS, "weekday")
    if begin > end:
        raise ValueError("start day cannot be before end day")
    return begin, end


def parse_days_of_month(text: str | int) -> Range:
    begin, end = _range(text, None, "day", 31)
    for day in (begin, end):
        if day == 0 or day < -31 or day > 31:
            raise ValueError(f"{day} is not a valid day of the month: out of range")
    if begin < 0 < end:
        raise ValueError("end day must be negative if start day is negative")
    # months have at least 28 days: a range that is empty even then is always empty
    if (28 + begin if begin < 0 else begin) > (28 + end if end < 0 else end):
        raise ValueError(f"end day {end} is always before start day {begin}")
    return begin, end


def parse_months(text: str | int) -> Range:
    begin, end = _range(text, MONTHS, "month", 12)
    if begin > end:
        raise ValueError(f"end month {_MONTH_NAMES.get(end, '')} is before start month {_MONTH_NAMES.get(begin, '')}")
    return begin, end


def parse_years(text: str | int) -> Range:
    begin, end = _range(text, None, "year", float("inf"))
    if begin > end:
        raise ValueError(f"end year {end} is before start year {begin}")
    return begin, end


def parse_location(name: str) -> tzinfo:
    """An IANA zone; "" and "UTC" are UTC, as Go's LoadLocation has them. "Local" (the machine's zone in Go) is
    refused: name the zone."""
    if name in ("", "UTC"):
        return UTC
    if name == "Local":
        raise ValueError("location Local (this machine's zone) is not supported: give an IANA zone name")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone {name}") from None


def _clamp(n: int, low: int, high: int) -> int:
    return low if n <= low else high if n >= high else n


@dataclass(frozen=True, slots=True)
class TimeInterval:
    """One interval; None: the list was not given (matches every time)."""

    times: tuple[Range, ...] | None = None
    weekdays: tuple[Range, ...] | None = None
    days_of_month: tuple[Range, ...] | None = None
    months: tuple[Range, ...] | None = None
    years: tuple[Range, ...] | None = None
    location: tzinfo | None = None

    def contains_ms(self, at_ms: int) -> bool:
        return self.contains(datetime.fromtimestamp(at_ms / 1000, UTC))

    def contains(self, at: datetime) -> bool:
        """Alertmanager's ContainsTime."""
        t = at.astimezone(self.location or UTC)
        if self.times is not None:
            minute = t.hour * 60 + t.minute
            if not any(start <= minute < end for start, end in self.times):
                return False
        if self.days_of_month is not None and not self._in_days(t):
            return False
        if self.months is not None and not any(b <= t.month <= e for b, e in self.months):
            return False
        if self.weekdays is not None:
            weekday = (t.weekday() + 1) % 7  # Go's: Sunday is 0
            if not any(b <= weekday <= e for b, e in self.weekdays):
                return False
        return self.years is None or any(b <= t.year <= e for b, e in self.years)

    def _in_days(self, t: datetime) -> bool:
        length = calendar.monthrange(t.year, t.month)[1]
        for begin, end in self.days_of_month or ():
            first = length + begin + 1 if begin < 0 else begin
            last = length + end + 1 if end < 0 else end
            if first > length:
                continue  # starts after this month's last day: not clamped to it
            first, last = _clamp(first, -length, length), _clamp(last, -length, length)
            if first <= t.day <= last:
                return True
        return False

    def next_change_ms(self, now_ms: int) -> int:
        """An instant after `now_ms` no later than the first at which `contains` may give another answer: the
        next local midnight, the next `times` boundary today, or the next UTC quarter hour (an offset change)."""
        zone = self.location or UTC
        local = datetime.fromtimestamp(now_ms / 1000, UTC).astimezone(zone)
        midnight = datetime(local.year, local.month, local.day, tzinfo=zone)
        candidates = [int((midnight + timedelta(days=1)).timestamp() * 1000)]
        for start, end in self.times or ():
            for minute in (start, end):
                candidates.append(int((midnight + timedelta(minutes=minute)).timestamp() * 1000))
        candidates.append((now_ms // _OFFSET_STEP_MS + 1) * _OFFSET_STEP_MS)
        return min(c for c in candidates if c > now_ms)


@dataclass(frozen=True, slots=True)
class RouteTimes:
    """A route's own mute and active intervals, by name (a child does not inherit its parent's)."""

    mute: tuple[tuple[str, tuple[TimeInterval, ...]], ...] = ()
    active: tuple[tuple[str, tuple[TimeInterval, ...]], ...] = ()

    def muted(self, at_ms: int) -> str | None:
        """Why the route sends nothing at this time: "time_muted" (in a mute interval; checked after the
        active ones in Alertmanager's pipeline, either drops everything) or "inactive"; None: it sends."""
        at = datetime.fromtimestamp(at_ms / 1000, UTC)
        if self.active and not any(i.contains(at) for _, intervals in self.active for i in intervals):
            return "inactive"
        if any(i.contains(at) for _, intervals in self.mute for i in intervals):
            return "time_muted"
        return None

    def next_change_ms(self, now_ms: int) -> int | None:
        intervals = [i for _, group in (*self.mute, *self.active) for i in group]
        return min((i.next_change_ms(now_ms) for i in intervals), default=None)
