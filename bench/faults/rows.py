"""The fault rows. Each starts its own redis-server (and Tansu broker for Kafka rows) and `streamalert run`, offers
tracked load, applies one fault, waits for the transitions `streamalert replay` of the delivered lines gives, and
measures (harness.py says how lost and double are counted exactly)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from bench.faults.harness import (
    VECTOR_SOURCE,
    Broker,
    RedisServer,
    kafka_source,
    pause,
    poll,
    replay,
    tally,
    write_config,
)
from bench.faults.load import KafkaLoad, VectorLoad, write_lines
from bench.faults.observe import LogTail, Probe, Service, running
from bench.faults.result import Result
from bench.faults.sinks import PAGE_RULES, FaultyHook, expected_notifications, notification_tally, notify_config
from streamalert.clock import Stopwatch, WallClock
from streamalert.testing import free_port

WINDOW_MS = 2000  # TRACK_RULES' window: every series resolves this long after its line
LATENESS = "2s"
CATCH_UP_S = 90  # after the load ends, how long the expected transitions may take to appear


@dataclass
class Env:
    """What a fault can act on."""

    folder: Path
    service: Service
    redis: RedisServer
    load: KafkaLoad | VectorLoad
    broker: Broker | None = None
    topic: str = ""
    partitions: int = 0
    namespace: str = ""
    memory: bool = False  # memory state: transitions are read from stdout, not from the Redis log
    after: Callable[[Result], None] | None = None  # more checks once the transitions are tallied
    kept_mb: float | None = None  # set by a fault that measures the memory kept after its load has gone
    wrong: list[str] = field(default_factory=list)  # what the fault found wrong beyond the suite's own checks


Fault = Callable[[Env], str]  # applies the fault while the load runs; returns a note


def create_topic(bootstrap: str, name: str, partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(name, num_partitions=partitions, replication_factor=1)]).values():
        future.result(timeout=30)


class StdoutTail:
    """The transitions a memory-state service printed (complete: these rows never kill it)."""

    def __init__(self, out: Path) -> None:
        self.out, self.lines, self.gap = out, list[bytes](), False

    def __enter__(self) -> StdoutTail:
        return self

    def __exit__(self, *_: object) -> None:
        self.read()

    def read(self) -> None:
        self.lines = self.out.read_bytes().splitlines() if self.out.exists() else []


def _finish(result: Result, env: Env, tail: LogTail | StdoutTail) -> None:
    """Catch-up, replay, tally: fills `result` from what the service wrote."""
    load = env.load
    last_ms = WallClock().now_ms()
    lines_file = write_lines(env.folder / "delivered.jsonl", load.delivered)
    rules = env.folder / "rules"
    expected = replay(lines_file, rules, LATENESS, last_ms + WINDOW_MS + 1000)
    caught = Stopwatch()

    def complete() -> bool:
        if isinstance(tail, StdoutTail):
            tail.read()
        return len(tail.lines) >= len(expected)

    if poll(complete, CATCH_UP_S, 0.2):
        result.catchup_s = caught.elapsed()
    else:
        result.notes.append(f"only {len(tail.lines):,} of {len(expected):,} transitions after {CATCH_UP_S} s")
    pause(0.5)  # a transition beyond replay's (a double count) may follow the last expected one
    tail.read()
    counted = tally(tail.lines, expected)
    result.tracked, result.lost, result.double, result.differ = (
        counted.tracked,
        counted.lost,
        counted.double,
        counted.differ,
    )
    if counted.lost_examples:
        result.notes.append(f"lost e.g. {', '.join(counted.lost_examples)}")
    if tail.gap:
        result.notes.append("the transition log was trimmed before it was read: counts are not exact")
        result.lost = result.double = None
    # every line accepted, per second of load; applied: the tracked share of them, scaled to all lines
    result.offered_rate = load.accepted / max(load.seconds, 1e-9)
    share = load.accepted / max(len(load.delivered), 1)
    result.applied_rate = counted.applied * share / max(load.seconds + (result.catchup_s or CATCH_UP_S), 1e-9)


@contextlib.contextmanager
def _measured(result: Result, env: Env) -> Iterator[None]:
    """Runs the row body with the service watched, probed and its log tailed; then tallies and stops."""
    watch = Stopwatch()
    service = env.service
    with running(service) as watcher:
        ready = Stopwatch()
        if not service.wait_ready(120):
            result.notes.append("not ready within 120 s")
        result.notes.append(f"ready {ready.elapsed():.1f} s after start")
        tail = StdoutTail(service.out) if env.memory else LogTail(env.redis.url, env.namespace)
        with Probe(service.port, env.folder) as probe, tail:
            yield
            result.kept_mb = env.kept_mb
            result.wrong += env.wrong
            _finish(result, env, tail)
            late = service.metric(f'streamalert_events_late_total{{source="{service.source}"}}')
            result.late = None if late is None else int(late)
            if env.after is not None:
                env.after(result)
            watcher.read_lag()
        result.stall_s = probe.longest
        result.lag_gauge_s = watcher.lag_max
        if probe.result.get("timed_out"):
            result.notes.append(f"{probe.result['timed_out']:.0f} /healthz requests unanswered within 10 s")
        service.stop()
    result.exits = len(service.exits)
    result.stop_codes = service.stop_codes
    result.peak_rss_mb = service.peak_rss_kb / 1024
    for code in service.exits:
        result.notes.append(f"exit {code.code}: …{code.stderr_tail[-300:]!r}")
    logged = service.err.read_text(errors="replace").splitlines()
    errors = [line for line in logged if '"level": "error"' in line]
    if errors:
        result.notes.append(f"{len(errors)} error logs, the first: {errors[0][:300]}")
    result.seconds = watch.elapsed()


def kafka_row(
    folder: Path,
    name: str,
    fault_name: str,
    fault: Fault,
    *,
    rate: float = 1000,
    before_s: float = 5,
    after_s: float = 5,
    partitions: int = 3,
    lease_ttl: str = "10s",
    appendonly: bool = False,
    rules_text: str = "",
) -> Result:
    folder.mkdir(parents=True, exist_ok=True)
    result = Result(name, fault_name)
    broker, redis_server = Broker(), RedisServer(folder / "redis", appendonly)
    broker.start()
    redis_server.start()
    try:
        topic, namespace, port = f"logs-{name}", f"faults-{name}", free_port()
        create_topic(broker.bootstrap, topic, partitions)
        config, _ = write_config(
            folder,
            port,
            f"{redis_server.url}?namespace={namespace}",
            kafka_source(broker.bootstrap, topic, f"group-{name}"),
            lateness=LATENESS,
            lease_ttl=lease_ttl,
            rules_text=rules_text,
        )
        service = Service(folder, config, port)
        load = KafkaLoad(broker.bootstrap, topic, partitions, name, rate)
        env = Env(folder, service, redis_server, load, broker, topic, partitions, namespace)
        with _measured(result, env):
            load.start()
            pause(before_s)
            result.notes.append(fault(env))
            pause(after_s)
            load.stop()
            if load.failed:
                result.notes.append(f"{load.failed} records the broker never acknowledged (not expected)")
    finally:
        broker.stop()
        redis_server.stop()
    return result


def vector_row(
    folder: Path,
    name: str,
    fault_name: str,
    fault: Fault,
    *,
    rate: float = 500,
    before_s: float = 3,
    after_s: float = 3,
    hook: FaultyHook | None = None,
    max_delay: str = "5s",
    state: str = "",
    rules_text: str = "",
    service_env: dict[str, str] | None = None,
    lateness: str = LATENESS,
) -> Result:
    """Tracked lines POSTed to /vector (Redis state); with `hook`, fault_page alerts notified to it;
    `service_env`: variables added to the service's environment."""
    folder.mkdir(parents=True, exist_ok=True)
    result = Result(name, fault_name)
    redis_server = RedisServer(folder / "redis")
    redis_server.start()
    try:
        namespace, port = f"faults-{name}", free_port()
        config, rules = write_config(
            folder,
            port,
            state or f"{redis_server.url}?namespace={namespace}",
            VECTOR_SOURCE,
            lateness=lateness,
            max_delay=max_delay,
            extra=notify_config(hook.url) if hook else "",
            rules_text=(PAGE_RULES if hook else "") + rules_text,
        )
        service = Service(folder, config, port, env={**os.environ, **service_env} if service_env else None)
        load = VectorLoad(port, name, rate, page_every=int(rate // 2) if hook else 0)
        env = Env(folder, service, redis_server, load, namespace=namespace, memory=state.startswith("memory"))
        if hook is not None:
            env.after = lambda result: _notifications(result, env, hook, config, rules)
        with _measured(result, env):
            load.start()
            pause(before_s)
            result.notes.append(fault(env))
            pause(after_s)
            load.stop()
            if load.refused_lines:
                result.notes.append(f"{load.refused_lines} lines never answered 200 (not expected)")
            result.notes.append(f"tracked client: slowest body accepted in {load.longest_accept_s:.1f} s")
    finally:
        redis_server.stop()
    return result


def _notifications(result: Result, env: Env, hook: FaultyHook, config: Path, rules: Path) -> None:
    """Waits (up to 120 s) for every notification `replay --notify` decides; counts lost and duplicated."""
    lines_file = write_lines(env.folder / "delivered.jsonl", env.load.delivered)
    expected = expected_notifications(lines_file, rules, config, WallClock().now_ms() + WINDOW_MS + 1000)
    poll(lambda: set(expected) <= set(hook.accepted), 120, 0.2)
    pause(1.0)  # a duplicate would follow the last expected one
    result.notes_lost, result.notes_double = notification_tally(expected, hook.accepted)
    result.notes.append(f"{len(expected)} notifications expected, {hook.attempts} delivery attempts")
