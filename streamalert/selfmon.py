"""Self-monitoring: built-in alerts about this process being blind, routed like any alert, sent without the store.

Every `interval` (wall time: these alerts are about the process, not the logs) the runner samples the
process's own metrics, pings the store and asks the current term whether input is expected; `Monitor.step`
turns those readings into state changes (pure: readings and `now` in, changes out); `route` turns each
change into one notification per sink of every receiver the route tree picks for its labels; `Outbound`
delivers them with the Sender's retries (both in streamalert.notify.direct).

The send path never touches the store: a notification that the store is down must get out while it is
down. So there is no outbox, no group state and no Redis silence here: only state changes are sent (firing
once, resolved once; the Watchdog again at its route's repeat_interval), deduplicated in this process's
memory. A restarted process sends a still-firing self alert again, and every process monitors (and
reports) itself: the `instance` label says which.
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

import structlog

from streamalert.clock import Clock, Stopwatch
from streamalert.config.app import AppConfig, HeldAlertConfig, SelfAlertConfig, SelfMonitoringConfig
from streamalert.config.notify import build_route
from streamalert.decode import format_ms
from streamalert.http import parse_listen
from streamalert.notify.direct import Outbound, route
from streamalert.notify.model import ZERO_TIME, Alert, fingerprint
from streamalert.notify.notifier import Notifier
from streamalert.notify.sinks.base import Sink
from streamalert.sources.kafka import KafkaSource
from streamalert.state.base import Store
from streamalert.telemetry.metrics import PREFIX, Metrics

_log = structlog.get_logger("streamalert.selfmon")

INPUT_SILENT = "StreamalertInputSilent"
CONSUMER_LAG = "StreamalertConsumerLag"
STORE_DOWN = "StreamalertStoreDown"
DEAD_LETTERED = "StreamalertNotificationsDeadLettered"
SERIES_DROPPED = "StreamalertSeriesDropped"
INPUT_MALFORMED = "StreamalertInputMalformed"
INPUT_LATE = "StreamalertInputLate"
RELOAD_FAILED = "StreamalertReloadFailed"
WATCHDOG = "Watchdog"
# default severities (a `labels: {severity: ...}` override replaces them); Watchdog's "none" as kube-prometheus
SEVERITY = {
    INPUT_SILENT: "critical",
    CONSUMER_LAG: "warning",
    STORE_DOWN: "critical",
    DEAD_LETTERED: "error",
    SERIES_DROPPED: "warning",
    INPUT_MALFORMED: "warning",
    INPUT_LATE: "warning",
    RELOAD_FAILED: "warning",
    WATCHDOG: "none",
}


@dataclass(frozen=True, slots=True)
class Readings:
    """One sample of the process. Counters are totals since the process started (missing: 0)."""

    now_ms: int
    source: str = "vector"  # the source this process reads: the `source` label of its input counters
    lanes: tuple[str, ...] | None = None  # what input is expected from (Kafka: its partitions); None: standby
    lines_in: float = 0.0
    store_error: str | None = None  # None: the store answered
    consumer_lag: Mapping[tuple[str, str], float] = field(default_factory=dict)  # (topic, partition) -> records
    dead_letters: Mapping[str, float] = field(default_factory=dict)  # sink kind -> count
    series_dropped: Mapping[str, float] = field(default_factory=dict)  # rule -> count
    malformed: Mapping[str, float] = field(default_factory=dict)  # source -> count
    late: Mapping[str, float] = field(default_factory=dict)  # source -> count
    reload_ok: bool = True


@dataclass(frozen=True, slots=True)
class Change:
    """A self alert that started or stopped firing."""

    labels: dict[str, str]
    annotations: dict[str, str]
    status: Literal["firing", "resolved"]
    starts_ms: int
    ends_ms: int | None = None
    value: float = 0.0

    def alert(self) -> Alert:
        return Alert(
            fingerprint=fingerprint(self.labels),
            status=self.status,
            labels=self.labels,
            annotations=self.annotations,
            starts_at=format_ms(self.starts_ms),
            ends_at=ZERO_TIME if self.ends_ms is None else format_ms(self.ends_ms),
            value=self.value,
        )


@dataclass(frozen=True, slots=True)
class _Condition:
    name: str
    extra: tuple[tuple[str, str], ...]  # the labels that tell this alert's instances apart (rule, partition...)
    since_ms: int  # when the condition began to hold
    hold_ms: int  # how long it must hold before firing
    value: float
    summary: str


_Key = tuple[str, tuple[tuple[str, str], ...]]


class Monitor:
    """The self alerts' state: conditions holding (since when) and alerts firing (with the labels they fired
    with, so that the resolve matches them whatever a reload changed)."""

    def __init__(self, instance: str) -> None:
        self.instance = instance
        self.started_ms: int | None = None
        self._held: dict[_Key, int] = {}  # held conditions: since when
        self._firing: dict[_Key, Change] = {}
        self._input: tuple[float, int] | None = None  # (lines_in, when it last changed) while input is expected
        self._history: dict[tuple[str, str], deque[tuple[int, float]]] = {}

    @property
    def firing(self) -> list[Change]:
        return list(self._firing.values())

    def step(self, settings: SelfMonitoringConfig, r: Readings) -> list[Change]:
        """The changes since the last step: each alert fires once its condition has held for its bound and
        resolves once it no longer holds (or its alert was disabled)."""
        if self.started_ms is None:
            self.started_ms = r.now_ms
        due = {(c.name, c.extra): c for c in self._conditions(settings, r) if r.now_ms - c.since_ms >= c.hold_ms}
        changes: list[Change] = []
        for key, fired in list(self._firing.items()):
            if key not in due:
                del self._firing[key]
                resolved = Change(fired.labels, fired.annotations, "resolved", fired.starts_ms, r.now_ms, fired.value)
                changes.append(resolved)
        for key, cond in due.items():
            if key in self._firing:
                continue
            config: SelfAlertConfig = getattr(settings, _FIELD[cond.name])
            labels = {"alertname": cond.name, "severity": SEVERITY[cond.name], "instance": self.instance}
            labels |= dict(cond.extra) | settings.labels | config.labels
            annotations = {"summary": cond.summary, "description": _DESCRIPTION[cond.name]}
            change = Change(labels, annotations, "firing", r.now_ms, None, cond.value)
            self._firing[key] = change
            changes.append(change)
        return changes

    def _conditions(self, s: SelfMonitoringConfig, r: Readings) -> Iterable[_Condition]:
        now = r.now_ms
        if not s.enabled:
            return
        if s.watchdog.enabled:
            assert self.started_ms is not None
            yield _Condition(WATCHDOG, (), self.started_ms, 0, 1, "always firing: streamalert is running")
        if s.input_silent.enabled:
            yield from self._silence(s.input_silent, r)
        else:
            self._input = None
        if s.store_down.enabled:
            held = self._hold(STORE_DOWN, (), r.store_error is not None, now)
            if held is not None:
                error = r.store_error or ""
                yield _Condition(STORE_DOWN, (), held, s.store_down.for_ms(), 1, f"store unreachable ({error})")
        if s.reload_failed.enabled:
            held = self._hold(RELOAD_FAILED, (), not r.reload_ok, now)
            if held is not None:
                summary = "the last configuration reload was refused; the previous configuration keeps running"
                yield _Condition(RELOAD_FAILED, (), held, s.reload_failed.for_ms(), 1, summary)
        if s.consumer_lag.enabled:
            bound = s.consumer_lag.threshold
            for (topic, partition), lag in sorted(r.consumer_lag.items()):
                extra = (("partition", partition), ("topic", topic))
                held = self._hold(CONSUMER_LAG, extra, lag > bound, now)
                if held is not None:
                    summary = f"{topic}/{partition} is {lag:.0f} records behind (bound {bound})"
                    yield _Condition(CONSUMER_LAG, extra, held, s.consumer_lag.for_ms(), lag, summary)
        counted = (
            (DEAD_LETTERED, "sink", s.notifications_dead_lettered, r.dead_letters, "notifications dead-lettered"),
            (SERIES_DROPPED, "rule", s.series_dropped, r.series_dropped, "events dropped by the series cap"),
            (INPUT_MALFORMED, "source", s.input_malformed, r.malformed, "malformed lines"),
            (INPUT_LATE, "source", s.input_late, r.late, "lines dropped as late"),
        )
        for name, label, config, totals, what in counted:
            for value, total in sorted(totals.items()):
                added = self._increase((name, value), total, now, config.window_ms())
                if config.enabled and added > config.threshold:
                    summary = f"{added:.0f} {what} in the last {config.window} (bound {config.threshold})"
                    yield _Condition(name, ((label, value),), now, 0, added, summary)

    def _silence(self, config: HeldAlertConfig, r: Readings) -> Iterable[_Condition]:
        """No line from the source since the last one (or since input was first expected) for `for`."""
        if r.lanes is None or (r.source == "kafka" and not r.lanes):  # standby, or no partitions to read
            self._input = None
            return
        if self._input is None or self._input[0] != r.lines_in:
            self._input = (r.lines_in, r.now_ms)
        since = self._input[1]
        lanes = ", ".join(r.lanes)
        silent = (r.now_ms - since) / 1000
        summary = f"no input from {r.source} ({lanes}) for {silent:.0f}s (bound {config.for_})"
        yield _Condition(INPUT_SILENT, (("source", r.source),), since, config.for_ms(), silent, summary)

    def _hold(self, name: str, extra: tuple[tuple[str, str], ...], holds: bool, now: int) -> int | None:
        """Since when a condition has held (None: it does not)."""
        key = (name, extra)
        if not holds:
            self._held.pop(key, None)
            return None
        return self._held.setdefault(key, now)

    def _increase(self, key: tuple[str, str], total: float, now: int, window_ms: int) -> float:
        """How much a counter grew over the last `window_ms`: from the newest sample at least that old, or from
        0 while the process is younger (its counters started at 0)."""
        samples = self._history.setdefault(key, deque())
        samples.append((now, total))
        while len(samples) > 1 and samples[1][0] <= now - window_ms:
            samples.popleft()  # the newest sample at least a window old stays as the baseline
        base = samples[0][1] if samples[0][0] <= now - window_ms else 0.0
        return max(0.0, total - base)


_FIELD = {
    INPUT_SILENT: "input_silent",
    CONSUMER_LAG: "consumer_lag",
    STORE_DOWN: "store_down",
    DEAD_LETTERED: "notifications_dead_lettered",
    SERIES_DROPPED: "series_dropped",
    INPUT_MALFORMED: "input_malformed",
    INPUT_LATE: "input_late",
    RELOAD_FAILED: "reload_failed",
    WATCHDOG: "watchdog",
}
_DESCRIPTION = {
    INPUT_SILENT: "streamalert received nothing from its source: its rules see no events, alerts cannot fire.",
    CONSUMER_LAG: "streamalert is behind on a Kafka partition: alerts come late.",
    STORE_DOWN: "streamalert cannot reach its state store: input is paused until it answers.",
    DEAD_LETTERED: "notifications were given up after their retries (see `streamalert outbox`).",
    SERIES_DROPPED: "a rule hit its series cap: events that would create new series are dropped.",
    INPUT_MALFORMED: "lines that are not JSON objects are skipped.",
    INPUT_LATE: "lines older than the allowed lateness are dropped.",
    RELOAD_FAILED: "a configuration reload was refused (see the logs); the old configuration keeps running.",
    WATCHDOG: "always firing while streamalert runs: route it to a dead man's switch.",
}


# ---- the runner --------------------------------------------------------------------------------------------

Setup = Callable[[], tuple[AppConfig, Mapping[tuple[str, str], Sink] | None]]  # the configuration in force
Probe = Callable[[], tuple[object | None, str | None]]  # (the source input is expected from, the store error)


def instance_of(config: AppConfig) -> str:
    if config.self_monitoring.instance:
        return config.self_monitoring.instance
    return f"{socket.gethostname()}:{parse_listen(config.http.listen)[1]}"


async def run(setup: Setup, store: Store, metrics: Metrics, clock: Clock, probe: Probe) -> None:
    """Sample, evaluate and send every `interval` until cancelled. `probe` tells the current source (None on
    a standby) and the error of the pipeline's last store call."""
    monitor = Monitor(instance_of(setup()[0]))
    outbound = Outbound(metrics)
    sent: dict[tuple[str, str], int] = {}  # Watchdog: (route id, fingerprint) -> when last sent
    try:
        while True:
            watch = Stopwatch()
            config, sinks = setup()
            settings = config.self_monitoring
            try:
                readings = await sample(config, store, metrics, clock, probe, settings.interval_ms() / 1000)
                for change in monitor.step(settings, readings):
                    _log.warning("self_alert", status=change.status, labels=change.labels)
                    _send(change, config, sinks, outbound, sent, readings.now_ms, repeat=False)
                for change in monitor.firing:  # the Watchdog again at its route's repeat_interval
                    if change.labels.get("alertname") == WATCHDOG:
                        _send(change, config, sinks, outbound, sent, readings.now_ms, repeat=True)
            except Exception as exc:  # a bug here must not end self-monitoring (nor the process)
                _log.error("self_monitoring_failed", error=f"{type(exc).__name__}: {exc}")
            await asyncio.sleep(max(0.0, settings.interval_ms() / 1000 - watch.elapsed()))  # a period
    finally:
        await outbound.close()


def _send(
    change: Change,
    config: AppConfig,
    sinks: Mapping[tuple[str, str], Sink] | None,
    outbound: Outbound,
    sent: dict[tuple[str, str], int],
    now_ms: int,
    *,
    repeat: bool,
) -> None:
    if config.route is None or sinks is None:
        return  # no routes: the log line is all there is
    watchdog = change.labels.get("alertname") == WATCHDOG
    for matched, notification in route(
        change.alert(), build_route(config.route, config.named_intervals()), Notifier(config), now_ms
    ):
        key = (matched.id, notification.alerts[0].fingerprint)
        if repeat and key in sent and now_ms - sent[key] <= matched.repeat_interval_ms:  # strictly after, as dispatch
            continue
        if watchdog:
            sent[key] = now_ms
        sink = sinks.get((notification.receiver, notification.sink))
        if sink is not None:
            outbound.send(notification, sink, config)


async def sample(
    config: AppConfig, store: Store, metrics: Metrics, clock: Clock, probe: Probe, timeout_s: float
) -> Readings:
    """The process now: its counters, the store's answer to a ping (within `timeout_s`), the source's lanes."""
    source, store_error = probe()
    try:
        async with asyncio.timeout(timeout_s):
            await store.ping()
    except TimeoutError:
        store_error = store_error or "TimeoutError"
    except Exception as exc:  # any failure to answer is the store being down
        store_error = type(exc).__name__
    name = "kafka" if config.sources.kafka is not None else "vector"
    lanes: tuple[str, ...] | None = None
    if isinstance(source, KafkaSource):
        lanes = tuple(source.assigned())
    elif source is not None:
        lanes = (config.sources.vector.path,) if config.sources.vector is not None else ()
    get = metrics.registry.get_sample_value
    return Readings(
        now_ms=clock.now_ms(),
        source=name,
        lanes=lanes,
        lines_in=get(PREFIX + "events_in_total", {"source": name}) or 0.0,
        store_error=store_error,
        consumer_lag={(s.labels["topic"], s.labels["partition"]): s.value for s in _samples(metrics, "consumer_lag")},
        dead_letters={
            s.labels["sink"]: s.value
            for s in _samples(metrics, "notifications_total")
            if s.labels.get("status") == "dead"
        },
        series_dropped={s.labels["rule"]: s.value for s in _samples(metrics, "series_dropped_total")},
        malformed={s.labels["source"]: s.value for s in _samples(metrics, "events_malformed_total")},
        late={s.labels["source"]: s.value for s in _samples(metrics, "events_late_total")},
        reload_ok=get(PREFIX + "config_last_reload_successful") != 0,
    )


@dataclass(frozen=True, slots=True)
class _Sample:
    labels: dict[str, str]
    value: float


def _samples(metrics: Metrics, name: str) -> list[_Sample]:
    """Every labelled sample of one metric (counters by their `_total` sample name)."""
    full = PREFIX + name
    found = []
    for family in metrics.registry.collect():
        for s in family.samples:
            if s.name == full:
                found.append(_Sample(dict(s.labels), float(s.value)))
    return found
