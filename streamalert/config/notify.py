"""Notification settings of the service config: `route`, `receivers`, `inhibit_rules`, `silences`,
`time_intervals` / `mute_time_intervals` (streamalert.config.time_intervals), `templates`, `notify`.

`route` and `receivers` have Alertmanager's YAML shape: a receiver has a `name` and any number of
`<sink>_configs` lists (slack_configs, pagerduty_configs, ... or a sink a package registers), plus our
`min_severity`. Every problem is reported with the path of the key (`route.routes.1.matchers.0`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Self

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from streamalert.config.time_intervals import NamedTimeIntervals
from streamalert.decode import parse_time
from streamalert.durations import parse_duration
from streamalert.notify.model import SEVERITIES
from streamalert.notify.routing import (
    DEFAULT_GROUP_INTERVAL,
    DEFAULT_GROUP_WAIT,
    DEFAULT_REPEAT_INTERVAL,
    LABEL_NAME,
    Matcher,
    MatcherError,
    Route,
    parse_matchers,
)
from streamalert.notify.sinks import registry
from streamalert.notify.sinks.base import SinkConfig, secret
from streamalert.notify.timeintervals import RouteTimes, TimeInterval


def _matcher(value: str) -> str:
    parse_matchers(value)  # MatcherError is a ValueError: pydantic reports it at the item's path
    return value


MatcherText = Annotated[str, AfterValidator(_matcher)]


def _label_name(value: str) -> str:
    if not LABEL_NAME.match(value):
        raise ValueError(f"{value!r} is not a label name ([A-Za-z_][A-Za-z0-9_]*)")
    return value


LabelName = Annotated[str, AfterValidator(_label_name)]


def _scalar_text(value: Any) -> Any:
    """A YAML number or boolean as the text of a label value: Alertmanager (Go, map[string]string) reads a
    legacy `match: {test: 1}` as the string "1", so the same file must load here."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


LabelValue = Annotated[str, BeforeValidator(_scalar_text)]


def _durations(value: str | None) -> str | None:
    if value is not None:
        parse_duration(value)
    return value


class RouteSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    receiver: str | None = None
    group_by: list[str] | None = None
    group_wait: str | None = None
    group_interval: str | None = None
    repeat_interval: str | None = None
    matchers: list[MatcherText] = Field(default_factory=list)
    match: dict[LabelName, LabelValue] = Field(default_factory=dict)  # Alertmanager's deprecated forms, accepted
    match_re: dict[LabelName, LabelValue] = Field(default_factory=dict)
    continue_: bool = Field(default=False, alias="continue")
    mute_time_intervals: list[str] = Field(default_factory=list)  # names; not inherited by child routes
    active_time_intervals: list[str] = Field(default_factory=list)
    routes: list[RouteSpec] = Field(default_factory=list)

    _check_durations = field_validator("group_wait")(_durations)

    @field_validator("group_interval", "repeat_interval")
    @classmethod
    def _positive(cls, value: str | None) -> str | None:
        if value is not None and parse_duration(value) <= 0:
            raise ValueError("must be more than 0")
        return value

    @field_validator("group_by")
    @classmethod
    def _group_by(cls, value: list[str] | None) -> list[str] | None:
        for name in value or []:
            if name != "..." and not LABEL_NAME.match(name):
                raise ValueError(f"{name!r} is not a label name")
        if value is not None and "..." in value and len(value) > 1:
            raise ValueError("'...' (every label) cannot be combined with label names")
        return value

    @field_validator("match_re")
    @classmethod
    def _match_re(cls, value: dict[str, str]) -> dict[str, str]:
        for name, pattern in value.items():
            Matcher.make(name, "=~", pattern)
        return value

    def all_matchers(self) -> list[Matcher]:
        found = [m for text in self.matchers for m in parse_matchers(text)]
        found += [Matcher.make(k, "=", v) for k, v in sorted(self.match.items())]
        found += [Matcher.make(k, "=~", v) for k, v in sorted(self.match_re.items())]
        return found


class ReceiverSpec(BaseModel):
    """A receiver: `name`, optional `min_severity`, and `<sink>_configs` lists validated by each sink's config."""

    model_config = ConfigDict(extra="allow")

    name: str = Field(min_length=1)
    min_severity: str | None = None
    _sinks: list[tuple[str, SinkConfig]] = PrivateAttr(default_factory=list)

    @field_validator("min_severity")
    @classmethod
    def _severity(cls, value: str | None) -> str | None:
        if value is not None and value not in SEVERITIES:
            raise ValueError(f"must be one of {', '.join(SEVERITIES)}")
        return value

    @model_validator(mode="after")
    def _check_sinks(self) -> Self:
        kinds = registry()
        problems: list[Any] = []
        for key, value in (self.model_extra or {}).items():
            kind = kinds.get(key.removesuffix("_configs")) if key.endswith("_configs") else None
            if kind is None:
                known = ", ".join(f"{k}_configs" for k in sorted(kinds))
                problems.append(f"{key}: unknown key (sinks: {known})")
                continue
            if not isinstance(value, list):
                problems.append(f"{key}: must be a list of sink settings")
                continue
            for index, item in enumerate(value):
                try:
                    self._sinks.append((kind.name, kind.config.model_validate(item)))
                except ValidationError as exc:
                    for err in exc.errors(include_input=False):
                        where = ".".join(str(p) for p in (key, index, *err["loc"]))
                        problems.append(f"{where}: {err['msg'].removeprefix('Value error, ')}")
        if problems:  # each named by the receiver too: `receivers.2: team: slack_configs.0.webhook_url: ...`
            raise ValueError("; ".join(f"{self.name}: {problem}" for problem in problems))
        return self

    @property
    def sinks(self) -> list[tuple[str, str, SinkConfig]]:
        """(name, kind, validated config) in the order written; the name, `<kind>/<index among that kind>`
        (`slack/0`), identifies the sink in notifications, delivery ids and metrics."""
        seen: dict[str, int] = {}
        named = []
        for kind, config in self._sinks:
            index = seen[kind] = seen.get(kind, -1) + 1
            named.append((f"{kind}/{index}", kind, config))
        return named


class InhibitRuleSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source_matchers: list[MatcherText] = Field(min_length=1)
    target_matchers: list[MatcherText] = Field(min_length=1)
    equal: list[LabelName] = Field(default_factory=list)


class SilenceSpec(BaseModel):
    """A silence written in the config: active from `starts_at` (default: always) until `ends_at`."""

    model_config = ConfigDict(extra="forbid")

    matchers: list[MatcherText] = Field(min_length=1)
    starts_at: str | None = None
    ends_at: str
    created_by: str = "config"
    comment: str = ""

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _time(cls, value: str | None) -> str | None:
        if value is not None and parse_time(value) is None:
            raise ValueError(f"cannot read {value!r} as a time (ISO 8601)")
        return value

    @model_validator(mode="after")
    def _order(self) -> Self:
        starts, ends = parse_time(self.starts_at or 0), parse_time(self.ends_at)
        if starts is not None and ends is not None and ends <= starts:
            raise ValueError("ends_at: must be after starts_at")
        return self


class NotifySettings(BaseModel):
    """How notifications are delivered and kept."""

    model_config = ConfigDict(extra="forbid")

    max_attempts: int = Field(default=10, ge=1)  # then the notification is dead-lettered
    retry_initial: str = "1s"
    retry_max: str = "5m"
    concurrency: int = Field(default=8, ge=1)  # deliveries in flight at once (one per group and sink)
    history: int = Field(default=1000, ge=0)  # notifications kept for `GET /api/notifications`
    tick: str = "1s"  # how often due groups are flushed in live mode
    external_url: str = ""
    api_token: SecretStr | None = None  # protects the silence API (`Authorization: Bearer <token>`)
    api_token_file: Path | None = None

    @field_validator("retry_initial", "retry_max", "tick")
    @classmethod
    def _positive(cls, value: str) -> str:
        if parse_duration(value) <= 0:
            raise ValueError("must be more than 0")
        return value

    @model_validator(mode="after")
    def _retry_order(self) -> Self:
        if self.ms("retry_initial") > self.ms("retry_max"):
            raise ValueError("retry_initial: must not exceed retry_max")
        return self

    def ms(self, name: str) -> int:
        return parse_duration(str(getattr(self, name)))

    def token(self) -> str | None:
        """The API token (read from its file now, if given as one); None: the API is disabled."""
        return secret(self.api_token, self.api_token_file, "notify.api_token", optional=True)


class NotifyConfig(BaseModel):
    """The notification part of AppConfig, validated as a whole (receiver names across the tree)."""

    route: RouteSpec | None = None
    receivers: list[ReceiverSpec] = Field(default_factory=list)
    inhibit_rules: list[InhibitRuleSpec] = Field(default_factory=list)
    silences: list[SilenceSpec] = Field(default_factory=list)
    time_intervals: list[NamedTimeIntervals] = Field(default_factory=list)
    mute_time_intervals: list[NamedTimeIntervals] = Field(default_factory=list)  # Alertmanager's older name
    templates: list[Path] = Field(default_factory=list)  # files of macros (globs), relative to the config file
    notify: NotifySettings = Field(default_factory=NotifySettings)

    def named_intervals(self) -> dict[str, tuple[TimeInterval, ...]]:
        return {
            entry.name: tuple(i.build() for i in entry.time_intervals)
            for entry in (*self.mute_time_intervals, *self.time_intervals)
        }

    def check(self) -> list[str]:
        """Cross-key problems as 'path: message' (unknown receivers, duplicate names, a rootless route)."""
        problems: list[str] = []
        names = [r.name for r in self.receivers]
        for index, name in enumerate(names):
            if name in names[:index]:
                problems.append(f"receivers.{index}.name: duplicate receiver {name!r}")
        if self.route is None:
            if self.receivers:
                problems.append("route: receivers are configured but no route sends to them")
            return problems
        if self.route.receiver is None:
            problems.append("route.receiver: the root route needs a receiver")
        if self.route.matchers or self.route.match or self.route.match_re:
            problems.append("route.matchers: the root route matches every alert and cannot have matchers")
        for key in ("mute_time_intervals", "active_time_intervals"):
            if getattr(self.route, key):
                problems.append(f"route.{key}: the root route must not have any {key.replace('_', ' ')}")
        interval_names: set[str] = set()
        for key in ("mute_time_intervals", "time_intervals"):  # Alertmanager's order: one namespace for both
            for index, entry in enumerate(getattr(self, key)):
                if entry.name in interval_names:
                    problems.append(f"{key}.{index}.name: time interval {entry.name!r} is not unique")
                interval_names.add(entry.name)

        def walk(spec: RouteSpec, path: str) -> None:
            if spec.receiver is not None and spec.receiver not in names:
                problems.append(f"{path}.receiver: unknown receiver {spec.receiver!r}")
            for key in ("mute_time_intervals", "active_time_intervals"):
                for index, name in enumerate(getattr(spec, key)):
                    if name not in interval_names:
                        problems.append(f"{path}.{key}.{index}: undefined time interval {name!r} used in route")
            for index, child in enumerate(spec.routes):
                walk(child, f"{path}.routes.{index}")

        walk(self.route, "route")
        return problems


def build_route(spec: RouteSpec, intervals: dict[str, tuple[TimeInterval, ...]] | None = None) -> Route:
    """The resolved tree: inherited settings filled in, ids assigned, each route's own time intervals
    (`NotifyConfig.named_intervals`) attached. The spec must have passed `check`."""
    root = RouteSpec(
        receiver=spec.receiver,
        group_by=spec.group_by if spec.group_by is not None else [],
        group_wait=spec.group_wait or DEFAULT_GROUP_WAIT,
        group_interval=spec.group_interval or DEFAULT_GROUP_INTERVAL,
        repeat_interval=spec.repeat_interval or DEFAULT_REPEAT_INTERVAL,
    )
    return _resolve(spec, root, "{}", 0, intervals or {}, is_root=True)


def _resolve(
    spec: RouteSpec,
    parent: RouteSpec,
    parent_id: str,
    index: int,
    intervals: dict[str, tuple[TimeInterval, ...]],
    *,
    is_root: bool = False,
) -> Route:
    merged = RouteSpec(
        receiver=spec.receiver or parent.receiver,
        group_by=spec.group_by if spec.group_by is not None else parent.group_by,
        group_wait=spec.group_wait or parent.group_wait,
        group_interval=spec.group_interval or parent.group_interval,
        repeat_interval=spec.repeat_interval or parent.repeat_interval,
    )
    matchers = tuple(spec.all_matchers())
    route_id = "{}" if is_root else f"{parent_id}/{{{','.join(str(m) for m in matchers)}}}/{index}"
    group_by = merged.group_by or []
    assert merged.receiver is not None
    times = None
    if spec.mute_time_intervals or spec.active_time_intervals:  # the route's own: never the parent's
        times = RouteTimes(
            mute=tuple((name, intervals.get(name, ())) for name in spec.mute_time_intervals),
            active=tuple((name, intervals.get(name, ())) for name in spec.active_time_intervals),
        )
    return Route(
        id=route_id,
        receiver=merged.receiver,
        matchers=matchers,
        continue_=spec.continue_,
        group_by=None if "..." in group_by else tuple(group_by),
        group_wait_ms=parse_duration(merged.group_wait or DEFAULT_GROUP_WAIT),
        group_interval_ms=parse_duration(merged.group_interval or DEFAULT_GROUP_INTERVAL),
        repeat_interval_ms=parse_duration(merged.repeat_interval or DEFAULT_REPEAT_INTERVAL),
        times=times,
        routes=tuple(_resolve(child, merged, route_id, i, intervals) for i, child in enumerate(spec.routes)),
    )


__all__ = ["MatcherError", "NotifyConfig", "RouteSpec", "build_route"]
