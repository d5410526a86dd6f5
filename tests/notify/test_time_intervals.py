"""Time intervals have Alertmanager's semantics: its own test cases, ported, and the config rules around them.

The tables below are Alertmanager's, from timeinterval/timeinterval_test.go (github.com/prometheus/alertmanager,
commit 68fb2d5759b3a92c0bb2a1a13d4ef7ff5b06256d; the same cases as v0.25.0 plus later ones): timeIntervalTestCases
(TestContainsTime), timeStringTestCases (TestParseTimeString), yamlUnmarshalTestCases (TestYamlUnmarshal, with the
exact error texts), completeTestCases (TestTimeIntervalComplete) and TestIntervener_Mutes. Times are written as
there, in Go's RFC822Z layout (`02 Jan 06 15:04 -0700`). The YAML goes through streamalert's own loader, so the
YAML 1.1 reading of unquoted `17:00` is covered too.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from streamalert.config.notify import NotifyConfig
from streamalert.config.time_intervals import TimeIntervalSpec, TimeRangeSpec
from streamalert.config.yaml_load import safe_load
from streamalert.notify.timeintervals import RouteTimes, TimeInterval
from tests.notify.test_dispatch_timelines import T0, M, S, Timeline, at, config, fire, summary


def rfc822z(text: str) -> datetime:
    return datetime.strptime(text, "%d %b %y %H:%M %z")


def interval(**spec: Any) -> TimeInterval:
    return TimeIntervalSpec.model_validate(spec).build()


# timeIntervalTestCases: (interval as config, times inside, times outside)
CONTAINS: list[tuple[dict[str, Any] | TimeInterval, list[str], list[str]]] = [
    ({}, ["02 Jan 06 15:04 +0000", "03 Jan 07 10:04 +0000", "04 Jan 06 09:04 +0000"], []),
    (  # 9am to 5pm, monday to friday
        {"times": [{"start_time": "09:00", "end_time": "17:00"}], "weekdays": ["monday:friday"]},
        ["04 May 20 15:04 +0000", "05 May 20 10:04 +0000", "09 Jun 20 09:04 +0000"],
        ["03 May 20 15:04 +0000", "04 May 20 08:59 +0000", "05 May 20 05:00 +0000"],
    ),
    (  # Easter 2020
        {"days_of_month": ["4:6"], "months": ["april"], "years": ["2020"]},
        ["04 Apr 20 15:04 +0000", "05 Apr 20 00:00 +0000", "06 Apr 20 23:05 +0000"],
        [
            "03 May 18 15:04 +0000",
            "03 Apr 20 23:59 +0000",
            "04 Jun 20 23:59 +0000",
            "06 Apr 19 23:59 +0000",
            "07 Apr 20 00:00 +0000",
        ],
    ),
    (  # negative days of month: the last 3 days of each month
        {"days_of_month": ["-3:-1"]},
        [
            "31 Jan 20 15:04 +0000",
            "30 Jan 20 15:04 +0000",
            "29 Jan 20 15:04 +0000",
            "30 Jun 20 00:00 +0000",
            "29 Feb 20 23:05 +0000",
        ],
        [
            "03 May 18 15:04 +0000",
            "27 Jan 20 15:04 +0000",
            "03 Apr 20 23:59 +0000",
            "04 Jun 20 23:59 +0000",
            "06 Apr 19 23:59 +0000",
            "07 Apr 20 00:00 +0000",
            "01 Mar 20 00:00 +0000",
        ],
    ),
    (  # out of bound days are clamped to month boundaries (built directly: the YAML parser refuses -31:31)
        TimeInterval(months=((6, 6),), days_of_month=((-31, 31),)),
        ["30 Jun 20 00:00 +0000", "01 Jun 20 00:00 +0000"],
        ["31 May 20 00:00 +0000", "1 Jul 20 00:00 +0000"],
    ),
    (  # another time zone: AEST 9AM to 5PM, Monday to Friday
        {
            "times": [{"start_time": "09:00", "end_time": "17:00"}],
            "weekdays": ["monday:friday"],
            "location": "Australia/Sydney",
        },
        ["06 Apr 21 13:00 +1000"],
        ["06 Apr 21 13:00 +0000"],
    ),
    (  # that time zone during daylight saving time
        {
            "times": [{"start_time": "09:00", "end_time": "17:00"}],
            "weekdays": ["monday:friday"],
            "months": ["november"],
            "location": "Australia/Sydney",
        },
        ["01 Nov 21 09:00 +1100", "31 Oct 21 22:00 +0000"],
        ["31 Oct 21 21:00 +0000"],
    ),
    (  # last-day mutes do not shift during spring-forward months
        {"days_of_month": ["-1"], "location": "America/New_York"},
        ["31 Mar 21 12:00 -0400"],
        ["30 Mar 21 12:00 -0400"],
    ),
]


@pytest.mark.parametrize(("spec", "inside", "outside"), CONTAINS)
def test_contains_time_alertmanager_cases(
    spec: dict[str, Any] | TimeInterval, inside: list[str], outside: list[str]
) -> None:
    """Alertmanager's TestContainsTime: each interval contains exactly the times its table says."""
    built = spec if isinstance(spec, TimeInterval) else interval(**spec)
    assert [t for t in inside if not built.contains(rfc822z(t))] == []
    assert [t for t in outside if built.contains(rfc822z(t))] == []


# timeStringTestCases: (start, end, minutes or None for an error)
TIME_STRINGS: list[tuple[str | None, str | None, tuple[int, int] | None]] = [
    ("00:00", "24:00", (0, 1440)),
    ("01:35", "17:39", (95, 1059)),
    ("09:35", "09:39", (575, 579)),
    ("17:31", "17:31", None),  # begin and end the same
    ("12:30", "24:01", None),  # end out of range
    ("09:30", "07:41", None),  # start after end
    ("24:00", "17:41", None),  # start out of range and after end
    ("14:03", None, None),  # no end
]


@pytest.mark.parametrize(("start", "end", "minutes"), TIME_STRINGS)
def test_parse_time_string_alertmanager_cases(start: str | None, end: str | None, minutes: Any) -> None:
    """Alertmanager's TestParseTimeString: valid ranges become minutes of the day, the others are refused."""
    if minutes is None:
        with pytest.raises(ValidationError):
            TimeRangeSpec(start_time=start, end_time=end)
    else:
        built = interval(times=[{"start_time": start, "end_time": end}])
        assert built.times == (minutes,)


# yamlUnmarshalTestCases: (YAML, times inside, times outside, Alertmanager's error or None)
YAML_CASES: list[tuple[str, list[str], list[str], str | None]] = [
    (
        "- weekdays: ['monday:friday']\n  times:\n    - start_time: '09:00'\n      end_time: '17:00'\n",
        ["08 Jul 20 09:00 +0000", "08 Jul 20 16:59 +0000"],
        ["08 Jul 20 05:00 +0000", "08 Jul 20 08:59 +0000"],
        None,
    ),
    (  # last week, excluding Saturday, of the first quarter, business hours, 2020-2025 and 2030-2035
        "- weekdays: ['monday:friday', 'sunday']\n  months: ['january:march']\n  days_of_month: ['-7:-1']\n"
        "  years: ['2020:2025', '2030:2035']\n  times:\n    - start_time: '09:00'\n      end_time: '17:00'\n",
        [
            "27 Jan 21 09:00 +0000",
            "28 Jan 21 16:59 +0000",
            "29 Jan 21 13:00 +0000",
            "31 Mar 25 13:00 +0000",
            "31 Jan 35 13:00 +0000",
        ],
        ["30 Jan 21 13:00 +0000", "01 Apr 21 13:00 +0000", "30 Jan 26 13:00 +0000", "31 Jan 35 17:01 +0000"],
        None,
    ),
    (
        "- weekdays: ['monday:friday']\n  times:\n    - start_time: '09:00'\n      end_time: '17:00'",
        ["01 Apr 21 13:00 +0000"],
        [],
        None,
    ),
    ("- times:\n    - start_time: '01:99'\n      end_time: '23:59'", [], [], "couldn't parse timestamp 01:99"),
    ("- times:\n    - start_time: '00:00'\n      end_time: '99:99'", [], [], "couldn't parse timestamp 99:99"),
    ("- weekdays: ['friday:monday']", [], [], "start day cannot be before end day"),
    ("- weekdays: ['blurgsday:flurgsday']\n", [], [], "blurgsday is not a valid weekday"),
    ("- weekdays: ['1:3']\n", [], [], "1 is not a valid weekday"),
    ("- weekdays: ['-2:-1']\n", [], [], "-2 is not a valid weekday"),
    ("- days_of_month: ['0']\n", [], [], "0 is not a valid day of the month: out of range"),
    ("- days_of_month: ['-50:-20']\n", [], [], "-50 is not a valid day of the month: out of range"),
    ("- days_of_month: ['1:50']\n", [], [], "50 is not a valid day of the month: out of range"),
    ("- days_of_month: ['1:-1']\n", [], [], None),
    ("- days_of_month: ['-15:5']\n", [], [], "end day must be negative if start day is negative"),
    ("- days_of_month: ['10:-25']\n", [], [], "end day -25 is always before start day 10"),
    ("- months: ['January:december']\n", [], [], None),
    ("- years: ['2020:2022']\n  location: 'Australia/Sydney'\n", [], [], None),
    ("- months: ['martius:june']\n", [], [], "martius is not a valid month"),
    ("- months: ['march:junius']\n", [], [], "junius is not a valid month"),
    ("- months: ['december:january']\n", [], [], "end month january is before start month december"),
    ("- years: ['2022:2020']\n", [], [], "end year 2020 is before start year 2022"),
    # not Alertmanager's: YAML 1.1 reads unquoted 17:00 and 1:15 as base-60 numbers; Alertmanager keeps the text
    (
        "- times: [{start_time: '09:00', end_time: 17:00}]\n  days_of_month: [1:15]\n",
        ["15 Jan 21 16:59 +0000"],
        [],
        None,
    ),
    ("- times: [{start_time: 9:00, end_time: 17:00}]\n", [], [], "couldn't parse timestamp 9:00, invalid format"),
    (
        "- {years: [2020], months: [1:3], days_of_month: [1:15, -1], location: ''}\n",
        ["15 Jan 20 10:00 +0000", "31 Mar 20 23:59 +0000"],
        ["16 Jan 20 10:00 +0000", "15 Apr 20 10:00 +0000", "15 Jan 21 10:00 +0000"],
        None,
    ),
]


def _parse(text: str) -> list[TimeInterval]:
    return [TimeIntervalSpec.model_validate(item).build() for item in safe_load(text)]


@pytest.mark.parametrize(("text", "inside", "outside", "error"), YAML_CASES)
def test_yaml_alertmanager_cases(text: str, inside: list[str], outside: list[str], error: str | None) -> None:
    """Alertmanager's TestYamlUnmarshal: the same YAML is accepted or refused with Alertmanager's words, and
    an accepted list contains exactly the times its table says."""
    if error is not None:
        with pytest.raises(ValidationError, match=error):
            _parse(text)
        return
    intervals = _parse(text)
    assert [t for t in inside if not any(i.contains(rfc822z(t)) for i in intervals)] == []
    assert [t for t in outside if any(i.contains(rfc822z(t)) for i in intervals)] == []


COMPLETE: list[tuple[dict[str, Any], list[str], list[str]]] = [
    (
        {
            "weekdays": ["monday:wednesday", "saturday", "sunday"],
            "times": [{"start_time": "13:00", "end_time": "15:00"}],
            "days_of_month": ["1", "10", "20:-1"],
            "years": ["2020:2023"],
            "months": ["january:march"],
        },
        ["10 Jan 21 13:00 +0000", "30 Jan 21 14:24 +0000"],
        ["09 Jan 21 13:00 +0000", "20 Jan 21 12:59 +0000", "02 Feb 21 13:00 +0000"],
    ),
    (  # a range starting after the month's last day is not clamped to it
        {"days_of_month": ["30:31"], "years": ["2020:2023"], "months": ["february"]},
        [],
        ["28 Feb 21 13:00 +0000"],
    ),
]


@pytest.mark.parametrize(("spec", "inside", "outside"), COMPLETE)
def test_complete_alertmanager_cases(spec: dict[str, Any], inside: list[str], outside: list[str]) -> None:
    """Alertmanager's TestTimeIntervalComplete: every list at once, and the broken-clamping case."""
    built = interval(**spec)
    assert [t for t in inside if not built.contains(rfc822z(t))] == []
    assert [t for t in outside if built.contains(rfc822z(t))] == []


SYDNEY = ZoneInfo("Australia/Sydney")
UTC = ZoneInfo("UTC")
EVENINGS = interval(
    times=[{"start_time": "00:00", "end_time": "09:00"}, {"start_time": "17:00", "end_time": "24:00"}],
    location="Australia/Sydney",
)
WEEKENDS = interval(weekdays=["saturday", "sunday"], location="Australia/Sydney")


@pytest.mark.parametrize(
    ("now", "muted_by"),
    [
        (datetime(2024, 1, 1, 0, 0, tzinfo=SYDNEY), {"evenings"}),
        (datetime(2024, 1, 1, 9, 0, tzinfo=SYDNEY), set()),
        (datetime(2024, 1, 6, 10, 0, tzinfo=SYDNEY), {"weekends"}),
        (datetime(2024, 1, 6, 17, 0, tzinfo=SYDNEY), {"evenings", "weekends"}),
        (datetime(2024, 1, 1, 10, 0, tzinfo=UTC), {"evenings"}),
        (datetime(2024, 1, 6, 10, 0, tzinfo=UTC), {"evenings", "weekends"}),
    ],
)
def test_intervener_mutes_alertmanager_cases(now: datetime, muted_by: set[str]) -> None:
    """Alertmanager's TestIntervener_Mutes: which named intervals mute a route at a time, in their zone."""
    named = {"evenings": (EVENINGS,), "weekends": (WEEKENDS,)}
    ms = int(now.timestamp() * 1000)
    assert {name for name, group in named.items() if RouteTimes(mute=((name, group),)).muted(ms)} == muted_by
    everything = RouteTimes(mute=tuple(named.items()))
    assert everything.muted(ms) == ("time_muted" if muted_by else None)
    # the same intervals as active ones: the route sends exactly when it would not be muted
    assert RouteTimes(active=tuple(named.items())).muted(ms) == (None if muted_by else "inactive")


def test_next_change_is_never_after_a_change() -> None:
    """The flush skipping bound: minute by minute over two days around New York's spring-forward (a local hour
    that does not exist) and around a month's end, the answer never changes before the instant
    `next_change_ms` gave."""
    cases = [
        EVENINGS,
        WEEKENDS,
        interval(times=[{"start_time": "01:30", "end_time": "02:30"}], location="America/New_York"),
        interval(times=[{"start_time": "09:05", "end_time": "09:50"}], days_of_month=["-1"], location="Asia/Kolkata"),
    ]
    for first in (datetime(2021, 3, 13, 20, 0, tzinfo=UTC), datetime(2021, 3, 30, 20, 0, tzinfo=UTC)):
        start = int(first.timestamp() * 1000)
        for built in cases:
            ms = start
            while ms < start + 2 * 24 * 60 * M:
                bound = built.next_change_ms(ms)
                assert bound > ms
                answer = built.contains_ms(ms)
                assert all(built.contains_ms(t) == answer for t in range(ms, bound, M)), (built, at(ms))
                ms = bound


# ---- config rules (Alertmanager's config.go) ----

BUSINESS = {"name": "business", "time_intervals": [{"weekdays": ["monday:friday"]}]}


def _problems(route: dict[str, Any], **extra: Any) -> list[str]:
    return config(route, **extra).check()


def test_config_rules_follow_alertmanager() -> None:
    """The root route cannot have time intervals, every name used must be defined, names are unique across
    time_intervals and the older mute_time_intervals."""
    assert _problems({"receiver": "team", "mute_time_intervals": ["business"]}, time_intervals=[BUSINESS]) == [
        "route.mute_time_intervals: the root route must not have any mute time intervals"
    ]
    assert _problems({"receiver": "team", "active_time_intervals": ["business"]}, time_intervals=[BUSINESS]) == [
        "route.active_time_intervals: the root route must not have any active time intervals"
    ]
    child = {"receiver": "team", "routes": [{"matchers": ['a="b"'], "active_time_intervals": ["nights"]}]}
    assert _problems(child, time_intervals=[BUSINESS]) == [
        "route.routes.0.active_time_intervals.0: undefined time interval 'nights' used in route"
    ]
    assert _problems(child, time_intervals=[BUSINESS], mute_time_intervals=[{**BUSINESS, "name": "nights"}]) == []
    assert _problems(child, time_intervals=[{**BUSINESS, "name": "nights"}], mute_time_intervals=[BUSINESS]) == []
    assert _problems(child, time_intervals=[BUSINESS], mute_time_intervals=[BUSINESS, {**BUSINESS, "name": "nights"}])
    with pytest.raises(ValidationError, match="unknown time zone Mars/Olympus"):
        NotifyConfig.model_validate(
            {"time_intervals": [{"name": "x", "time_intervals": [{"location": "Mars/Olympus"}]}]}
        )
    with pytest.raises(ValidationError, match="Extra inputs"):
        NotifyConfig.model_validate({"time_intervals": [{"name": "x", "time_intervals": [{"weekday": ["monday"]}]}]})


# ---- in the dispatcher, at event time ----

# T0 is Monday 2026-01-26 09:00 UTC
WORK_HOURS = {
    "name": "work",
    "time_intervals": [{"weekdays": ["monday:friday"], "times": [{"start_time": "09:00", "end_time": "09:10"}]}],
}
ROUTE = {"receiver": "team", "group_by": ["alertname"], "group_wait": "30s", "group_interval": "5m"}


def test_mute_interval_holds_notifications_until_it_ends_in_event_time() -> None:
    """A route muted 09:00-09:10 sends nothing for a flush inside the interval; the first flush after it ends
    sends the alert (the notification log was not touched while muted), at event time, as replay would."""
    route = {**ROUTE, "routes": [{"matchers": ['team="db"'], "mute_time_intervals": ["work"]}]}
    tl = Timeline(config(route, time_intervals=[WORK_HOURS]))
    assert tl.step(T0 + 9 * M, fire(T0, team="db")) == []  # the 09:00:30 flush is muted
    # the 09:05:30 flush would decide the same (no input, still muted): skipped to 09:10:30, the first flush
    # after the interval's end
    assert tl.notifier.counts.time_muted == 1
    out = tl.step(T0 + 11 * M)
    assert summary(out) == [(at(T0 + 10 * M + 30 * S), "team", "firing", ["db_errors::firing"])]


def test_active_interval_sends_only_inside_it_and_children_do_not_inherit() -> None:
    """A route active only 09:00-09:10 sends during it and not after (a resolve after it is held back); its
    child route, which has no intervals of its own, sends at any time."""
    route = {
        **ROUTE,
        "routes": [
            {
                "matchers": ['team="db"'],
                "active_time_intervals": ["work"],
                "routes": [{"matchers": ['env="prod"'], "receiver": "pager"}],
            }
        ],
    }
    receivers = [{"name": "team", "stdout_configs": [{}]}, {"name": "pager", "stdout_configs": [{}]}]
    tl = Timeline(config(route, receivers, time_intervals=[WORK_HOURS]))
    out = tl.step(T0 + 1 * M, fire(T0, team="db", env="dev"), fire(T0, rule="disk", team="db", env="prod"))
    assert sorted(summary(out)) == [
        (at(T0 + 30 * S), "pager", "firing", ["disk::firing"]),
        (at(T0 + 30 * S), "team", "firing", ["db_errors::firing"]),
    ]
    out = tl.step(T0 + 21 * M, resolve_at(T0 + 12 * M, team="db", env="dev"), resolve_at(T0 + 12 * M, "disk"))
    assert summary(out) == [(at(T0 + 15 * M + 30 * S), "pager", "resolved", ["disk::resolved"])]
    assert tl.notifier.counts.time_muted == 1  # db_errors still firing at the 09:10:30 flush, out of the interval


def resolve_at(ms: int, rule: str = "db_errors", **labels: str) -> Any:
    from tests.notify.test_dispatch_timelines import resolve  # noqa: PLC0415

    labels = labels or ({"team": "db", "env": "prod"} if rule == "disk" else {})
    return resolve(ms, rule, **labels)
