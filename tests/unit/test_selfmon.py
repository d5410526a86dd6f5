"""Self-monitoring: each built-in alert fires once its bound is reached and resolves when its cause ends (a
ManualClock drives the readings), routes through the route tree, and is delivered to a local webhook."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from streamalert import selfmon
from streamalert.clock import ManualClock, Stopwatch
from streamalert.config.app import AppConfig, ConfigError, SelfMonitoringConfig, load_config
from streamalert.config.notify import build_route
from streamalert.notify import direct
from streamalert.notify.notifier import Notifier
from streamalert.notify.sender import build_sinks
from streamalert.selfmon import Change, Monitor, Readings
from streamalert.state.memory import MemoryStore
from streamalert.state.stores import open_store
from streamalert.telemetry.metrics import Metrics
from tests.notify.test_webhook import conformance_validator as webhook_format
from tests.notify.vendor import Vendor, serve

S = 1000


def settings(**sections: Any) -> SelfMonitoringConfig:
    return SelfMonitoringConfig.model_validate(sections)


class Driver:
    """A Monitor stepped at the times a ManualClock says, remembering every change."""

    def __init__(self, config: SelfMonitoringConfig) -> None:
        self.clock = ManualClock(1_700_000_000_000)
        self.config = config
        self.monitor = Monitor("host-a:8080")
        self.changes: list[Change] = []

    def at(self, offset_ms: int, **fields: Any) -> list[tuple[str, str]]:
        """Step at start + offset; the (alertname, status) pairs that changed."""
        self.clock.set(1_700_000_000_000 + offset_ms)
        found = self.monitor.step(self.config, Readings(now_ms=self.clock.now_ms(), **fields))
        self.changes += found
        return [(c.labels["alertname"], c.status) for c in found]


def test_input_silent_fires_after_the_bound_without_lines_and_resolves_on_the_next_line() -> None:
    """No line for `for` fires StreamalertInputSilent (source label, instance); a line resolves it."""
    d = Driver(settings(input_silent={"for": "2s"}))
    vector = {"lanes": ("/vector",)}
    assert d.at(0, lines_in=3, **vector) == []
    assert d.at(1999, lines_in=3, **vector) == []
    assert d.at(2000, lines_in=3, **vector) == [("StreamalertInputSilent", "firing")]
    assert d.at(2500, lines_in=3, **vector) == []  # firing once, not again every step
    assert d.at(3000, lines_in=4, **vector) == [("StreamalertInputSilent", "resolved")]
    fired = d.changes[0]
    assert fired.labels == {
        "alertname": "StreamalertInputSilent",
        "severity": "critical",
        "instance": "host-a:8080",
        "source": "vector",
    }
    assert d.changes[1].labels == fired.labels
    assert d.changes[1].ends_ms == d.clock.now_ms()


def test_input_silent_is_not_evaluated_on_a_standby_or_a_kafka_consumer_without_partitions() -> None:
    """A standby (no source) or a Kafka member with no partitions assigned expects no input: nothing fires,
    and an alert firing when the process became a standby resolves."""
    d = Driver(settings(input_silent={"for": "1s"}))
    assert d.at(0, source="kafka", lanes=()) == []
    assert d.at(5 * S, source="kafka", lanes=()) == []
    assert d.at(6 * S, source="kafka", lanes=("logs/0",)) == []
    assert d.at(7 * S, source="kafka", lanes=("logs/0",)) == [("StreamalertInputSilent", "firing")]
    assert d.changes[0].labels["source"] == "kafka"
    assert "logs/0" in d.changes[0].annotations["summary"]
    assert d.at(8 * S, source="kafka", lanes=None) == [("StreamalertInputSilent", "resolved")]
    assert d.at(20 * S, source="kafka", lanes=None) == []


def test_store_down_fires_after_its_bound_and_resolves_when_the_store_answers() -> None:
    """An unreachable store fires StreamalertStoreDown only after `for`; a short blip fires nothing."""
    d = Driver(settings(store_down={"for": "1m"}))
    assert d.at(0, store_error="TimeoutError") == []
    assert d.at(30 * S) == []  # answered again before the bound: the count starts over
    assert d.at(40 * S, store_error="ConnectionError") == []
    assert d.at(99 * S, store_error="ConnectionError") == []
    assert d.at(100 * S, store_error="ConnectionError") == [("StreamalertStoreDown", "firing")]
    assert "ConnectionError" in d.changes[0].annotations["summary"]
    assert d.at(101 * S) == [("StreamalertStoreDown", "resolved")]


def test_consumer_lag_fires_per_partition_above_the_threshold_for_the_bound() -> None:
    """StreamalertConsumerLag fires per topic/partition held above `threshold` for `for`, and resolves."""
    d = Driver(settings(consumer_lag={"for": "10s", "threshold": 100}))
    lag = {("logs", "0"): 500.0, ("logs", "1"): 100.0}  # partition 1 is at the bound, not above it
    assert d.at(0, consumer_lag=lag) == []
    assert d.at(10 * S, consumer_lag=lag) == [("StreamalertConsumerLag", "firing")]
    assert (d.changes[0].labels["topic"], d.changes[0].labels["partition"], d.changes[0].value) == ("logs", "0", 500)
    assert d.at(11 * S, consumer_lag={("logs", "0"): 50.0}) == [("StreamalertConsumerLag", "resolved")]


@pytest.mark.parametrize(
    ("field", "section", "alertname", "label"),
    [
        ("dead_letters", "notifications_dead_lettered", "StreamalertNotificationsDeadLettered", "sink"),
        ("series_dropped", "series_dropped", "StreamalertSeriesDropped", "rule"),
        ("malformed", "input_malformed", "StreamalertInputMalformed", "source"),
        ("late", "input_late", "StreamalertInputLate", "source"),
    ],
)
def test_counted_alerts_fire_above_the_threshold_in_the_window_and_resolve_when_it_slides_past(
    field: str, section: str, alertname: str, label: str
) -> None:
    """More than `threshold` counted within `window` fires (labelled by sink, rule or source); once the window
    has slid past the increase, it resolves."""
    d = Driver(settings(**{section: {"window": "10s", "threshold": 2}}))
    assert d.at(0, **{field: {"x": 0.0}}) == []
    assert d.at(4 * S, **{field: {"x": 2.0}}) == []  # 2 is not more than 2
    assert d.at(5 * S, **{field: {"x": 3.0}}) == [(alertname, "firing")]
    assert d.changes[0].labels[label] == "x"
    assert d.changes[0].value == 3
    assert d.at(13 * S, **{field: {"x": 3.0}}) == []  # 3 since t=0, the newest sample at least 10 s old
    assert d.at(14 * S, **{field: {"x": 3.0}}) == [(alertname, "resolved")]  # 1 since t=4


def test_counters_born_after_start_count_from_zero() -> None:
    """A counter that first appears mid-run (its label had no sample) counts all it holds as new."""
    d = Driver(settings(series_dropped={"window": "1m"}))
    assert d.at(0) == []
    assert d.at(30 * S, series_dropped={"errors": 1.0}) == [("StreamalertSeriesDropped", "firing")]


def test_reload_failed_fires_at_once_and_resolves_with_a_good_reload() -> None:
    """config_last_reload_successful 0 fires StreamalertReloadFailed (for 0s by default); 1 resolves it."""
    d = Driver(settings())
    assert d.at(0, reload_ok=False) == [("StreamalertReloadFailed", "firing")]
    assert d.at(S, reload_ok=False) == []
    assert d.at(2 * S) == [("StreamalertReloadFailed", "resolved")]


def test_watchdog_fires_at_the_first_step_and_never_resolves() -> None:
    """Watchdog (off by default) is firing from the first sample on, with severity none."""
    assert Driver(settings()).at(0) == []
    d = Driver(settings(watchdog={"enabled": True}))
    assert d.at(0) == [("Watchdog", "firing")]
    assert d.at(3600 * S) == []
    assert d.changes[0].labels["severity"] == "none"


def test_labels_are_overridable_globally_and_per_alert_and_a_disabled_alert_resolves() -> None:
    """`labels` (all alerts) and `<alert>.labels` override the defaults; the resolve carries the labels the
    alert fired with; disabling a firing alert (a reload) resolves it."""
    d = Driver(settings(labels={"team": "sre"}, reload_failed={"labels": {"severity": "critical"}}))
    d.at(0, reload_ok=False)
    assert d.changes[0].labels == {
        "alertname": "StreamalertReloadFailed",
        "severity": "critical",
        "instance": "host-a:8080",
        "team": "sre",
    }
    d.config = settings(reload_failed={"enabled": False})
    assert d.at(S, reload_ok=False) == [("StreamalertReloadFailed", "resolved")]
    assert d.changes[1].labels == d.changes[0].labels
    d.config = settings(enabled=False, watchdog={"enabled": True})
    assert d.at(2 * S, reload_ok=False) == []


def _config(tmp: Path, hook: str) -> AppConfig:
    (tmp / "rules.yaml").write_text("rules: []\n")
    (tmp / "streamalert.yaml").write_text(
        f"""
rules: rules.yaml
sources: {{vector: {{auth: none}}}}
route:
  receiver: main
  routes:
    - matchers: ['alertname="Watchdog"']
      receiver: deadman
      repeat_interval: 1m
receivers:
  - name: main
    min_severity: warning
    webhook_configs: [{{url: "{hook}/hooks/T0KEN-in-the-url", send_resolved: false}}]
  - name: deadman
    webhook_configs: [{{url: "{hook}/hooks/T0KEN-in-the-url"}}]
notify: {{retry_initial: 10ms, retry_max: 50ms, max_attempts: 5}}
"""
    )
    return load_config(tmp / "streamalert.yaml")


def test_route_picks_receivers_with_the_route_tree_and_their_filters(tmp_path: Path) -> None:
    """Watchdog goes to the `deadman` child route; other self alerts to the root receiver, except below its
    min_severity; a resolve skips a sink with send_resolved false."""
    config = _config(tmp_path, "http://127.0.0.1:9")
    root, notifier = build_route(config.route), Notifier(config)  # type: ignore[arg-type]
    d = Driver(settings(watchdog={"enabled": True}, input_malformed={"threshold": 0, "labels": {"severity": "info"}}))
    d.at(0, reload_ok=False, malformed={"vector": 1.0})
    picked = {c.labels["alertname"]: direct.route(c.alert(), root, notifier, 0) for c in d.changes}
    assert [n.receiver for _, n in picked["Watchdog"]] == ["deadman"]
    assert [n.receiver for _, n in picked["StreamalertReloadFailed"]] == ["main"]
    assert picked["StreamalertInputMalformed"] == []  # info is below main's min_severity
    d.at(S)
    resolved = [c for c in d.changes if c.status == "resolved"]
    assert resolved
    assert all(direct.route(c.alert(), root, notifier, S) == [] for c in resolved)


async def test_every_self_alert_reaches_a_webhook_without_a_store_and_despite_a_failed_attempt(
    tmp_path: Path,
) -> None:
    """All nine self alerts, routed and sent through Outbound (the Sender's retries, a private attempt
    counter, no outbox), arrive at a local webhook receiver; the first attempt's 500 is retried."""
    async with serve(Vendor(webhook_format)) as hook:
        hook.fail(500)
        config = _config(tmp_path, hook.url)
        sections: dict[str, Any] = {name: {"threshold": 0} for name in ("input_malformed", "input_late")}
        held = {name: {"for": "1s"} for name in ("input_silent", "store_down", "consumer_lag")}
        d = Driver(settings(watchdog={"enabled": True}, **held, **sections))
        readings: dict[str, Any] = {
            "lanes": ("/vector",),
            "store_error": "TimeoutError",
            "consumer_lag": {("logs", "0"): 10_001.0},
            "dead_letters": {"webhook": 1.0},
            "series_dropped": {"errors": 1.0},
            "malformed": {"vector": 1.0},
            "late": {"vector": 1.0},
            "reload_ok": False,
        }
        d.at(0, **readings)
        d.at(S, **readings)
        assert len(d.changes) == 9
        outbound = direct.Outbound(Metrics())
        sinks = build_sinks(config)
        for change in d.changes:
            for _, notification in direct.route(change.alert(), build_route(config.route), Notifier(config), 0):  # type: ignore[arg-type]
                outbound.send(notification, sinks[(notification.receiver, notification.sink)], config)
        await outbound.idle()
        await outbound.close()
    names = {a["labels"]["alertname"] for r in hook.accepted for a in r.body["alerts"]}
    assert names == set(selfmon.SEVERITY)
    assert [r.answered for r in hook.requests].count(500) == 1
    assert all(not r.problems for r in hook.requests)


async def test_sample_reads_the_metrics_and_the_store() -> None:
    """`sample` reads the counters by label, the reload gauge and the source's lanes; a Redis that accepts the
    connection but never answers (as a stopped one) is reported down once the ping's time is up."""
    metrics = Metrics()
    metrics.events_in.labels("vector").inc(7)
    metrics.events_malformed.labels("vector").inc(2)
    metrics.series_dropped.labels("errors").inc(3)
    metrics.notifications.labels("webhook", "dead").inc()
    metrics.notifications.labels("webhook", "sent").inc(5)
    metrics.consumer_lag.labels(topic="logs", partition="1").set(42)
    metrics.config_reload_ok.set(0)
    config = AppConfig.model_validate({"rules": "r.yaml", "sources": {"vector": {"auth": "none"}}})
    clock = ManualClock(5)
    found = await selfmon.sample(config, MemoryStore(), metrics, clock, lambda: (object(), None), 1.0)
    assert (found.now_ms, found.source, found.lanes, found.lines_in) == (5, "vector", ("/vector",), 7)
    assert found.malformed == {"vector": 2}
    assert found.late == {}
    assert found.series_dropped == {"errors": 3}
    assert found.dead_letters == {"webhook": 1}
    assert found.consumer_lag == {("logs", "1"): 42}
    assert not found.reload_ok
    assert found.store_error is None

    silent = await asyncio.start_server(lambda reader, writer: None, "127.0.0.1", 0)  # takes no command
    port = silent.sockets[0].getsockname()[1]
    store = open_store(f"redis://127.0.0.1:{port}/0")
    try:
        stuck = await selfmon.sample(config, store, metrics, clock, lambda: (None, None), 0.2)
    finally:
        silent.close()
        await store.close()
    assert stuck.store_error == "TimeoutError"
    assert stuck.lanes is None


async def _eventually(condition: Callable[[], bool], deadline_s: float = 10) -> None:
    watch = Stopwatch()
    while not condition():
        assert watch.elapsed() < deadline_s, "condition not reached in time"
        await asyncio.sleep(0.01)  # poll with a deadline


async def test_the_runner_sends_the_watchdog_once_then_again_after_its_route_repeat_interval(tmp_path: Path) -> None:
    """`run` sends the Watchdog at its first sample, not again while the (manual) clock stands still, and
    again once the clock is past the `deadman` route's repeat_interval (1m)."""
    async with serve(Vendor(webhook_format)) as hook:
        config = _config(tmp_path, hook.url)
        config.self_monitoring = settings(interval="20ms", watchdog={"enabled": True})
        sinks = build_sinks(config)
        clock = ManualClock(1_700_000_000_000)
        samples = [0]

        def probe() -> tuple[object | None, str | None]:
            samples[0] += 1
            return None, None

        def watchdogs() -> int:
            return sum(a["labels"]["alertname"] == "Watchdog" for r in hook.accepted for a in r.body["alerts"])

        metrics = Metrics()
        metrics.config_reload_ok.set(1)  # as the Reloader does at start
        task = asyncio.create_task(selfmon.run(lambda: (config, sinks), MemoryStore(), metrics, clock, probe))
        try:
            await _eventually(lambda: watchdogs() == 1)
            seen = samples[0]
            await _eventually(lambda: samples[0] >= seen + 5)
            assert watchdogs() == 1
            clock.advance(60_000)
            await _eventually(lambda: samples[0] >= seen + 10)
            assert watchdogs() == 1  # at the interval exactly: not yet
            clock.advance(1)
            await _eventually(lambda: watchdogs() == 2)
            assert [r.body["receiver"] for r in hook.accepted] == ["deadman", "deadman"]
        finally:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


@pytest.mark.parametrize(
    ("section", "named"),
    [
        ("store_down: {for: soon}", "self_monitoring.store_down.for"),
        ("store_down: {threshold: 3}", "self_monitoring.store_down.threshold"),
        ("input_late: {window: 0s}", "self_monitoring.input_late.window"),
        ("labels: {bad-name: x}", "self_monitoring.labels"),
    ],
)
def test_a_bad_self_monitoring_key_is_refused_naming_it(tmp_path: Path, section: str, named: str) -> None:
    """A bad bound, a key an alert does not have, a zero window or a bad label name: an error with its path."""
    (tmp_path / "c.yaml").write_text(
        f"rules: r.yaml\nsources: {{vector: {{auth: none}}}}\nself_monitoring:\n  {section}\n"
    )
    with pytest.raises(ConfigError, match=named.replace(".", r"\.")):
        load_config(tmp_path / "c.yaml")
