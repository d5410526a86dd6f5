"""The time-interval keys of the service config (Alertmanager's YAML shape): `time_intervals` and the older
`mute_time_intervals`, each a list of named lists of intervals. Semantics and parsing live in
streamalert.notify.timeintervals; here each key is checked where it is written, so errors name its path."""

from __future__ import annotations

from typing import Any, Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from streamalert.notify.timeintervals import (
    TimeInterval,
    parse_days_of_month,
    parse_location,
    parse_months,
    parse_times,
    parse_weekdays,
    parse_years,
)


class TimeRangeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    start_time: str | int | None = None  # int: YAML 1.1's base-60 reading of an unquoted 17:00
    end_time: str | int | None = None

    @model_validator(mode="after")
    def _check(self) -> Self:
        parse_times(self.start_time, self.end_time)
        return self


class TimeIntervalSpec(BaseModel):
    """One of Alertmanager's time intervals (streamalert.notify.timeintervals has the semantics)."""

    model_config = ConfigDict(extra="forbid")

    times: list[TimeRangeSpec] | None = None
    weekdays: list[str | int] | None = None
    days_of_month: list[str | int] | None = None
    months: list[str | int] | None = None
    years: list[str | int] | None = None
    location: str | None = None

    @field_validator("weekdays")
    @classmethod
    def _weekdays(cls, value: list[str | int] | None) -> list[str | int] | None:
        for item in value or []:
            parse_weekdays(item)
        return value

    @field_validator("days_of_month")
    @classmethod
    def _days(cls, value: list[str | int] | None) -> list[str | int] | None:
        for item in value or []:
            parse_days_of_month(item)
        return value

    @field_validator("months")
    @classmethod
    def _months(cls, value: list[str | int] | None) -> list[str | int] | None:
        for item in value or []:
            parse_months(item)
        return value

    @field_validator("years")
    @classmethod
    def _years(cls, value: list[str | int] | None) -> list[str | int] | None:
        for item in value or []:
            parse_years(item)
        return value

    @field_validator("location")
    @classmethod
    def _location(cls, value: str | None) -> str | None:
        if value is not None:
            parse_location(value)
        return value

    def build(self) -> TimeInterval:
        def ranges(items: list[str | int] | None, parse: Any) -> tuple[tuple[int, int], ...] | None:
            return None if items is None else tuple(parse(item) for item in items)

        return TimeInterval(
            times=None if self.times is None else tuple(parse_times(t.start_time, t.end_time) for t in self.times),
            weekdays=ranges(self.weekdays, parse_weekdays),
            days_of_month=ranges(self.days_of_month, parse_days_of_month),
            months=ranges(self.months, parse_months),
            years=ranges(self.years, parse_years),
            location=None if self.location is None else parse_location(self.location),
        )


class NamedTimeIntervals(BaseModel):
    """A `time_intervals` (or the older `mute_time_intervals`) entry: a name and its intervals (any one)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1)
    time_intervals: list[TimeIntervalSpec] = Field(default_factory=list)
