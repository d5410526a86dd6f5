"""Composition root of `streamalert run`: config -> wired parts; HTTP listener, live pipeline, signals, shutdown."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Coroutine
from typing import IO, Any

import structlog
from aiohttp import web
from redis.exceptions import RedisError

from streamalert.clock import Clock, Stopwatch, WallClock
from streamalert.config.app import AppConfig
from streamalert.config.rules import Rule, load_rules
from streamalert.engine import Engine
from streamalert.http import Readiness, build_app, parse_listen, start_server
from streamalert.model import Transition
from streamalert.notify import api as notify_api
from streamalert.notify.notifier import Notifier
from streamalert.notify.sender import Sender, build_sinks
from streamalert.output import JsonLinesWriter
from streamalert.pipeline import Health, Notify, run_live
from streamalert.replicas import IntakeSource, Replica
from streamalert.sources.kafka import KafkaSource
from streamalert.sources.vector_http import VectorHttpSource
from streamalert.state.base import Store
from streamalert.state.lease import Lease
from streamalert.state.redis import RedisStore
from streamalert.state.stores import open_store, redact
from streamalert.telemetry.metrics import Metrics

_log = structlog.get_logger("streamalert.app")


class FlushingWriter(JsonLinesWriter):
    """JSON lines on a stream, flushed after every batch: a live consumer sees each transition at once."""

    def write(self, transitions: list[Transition]) -> None:
        super().write(transitions)
        self.close()


async def serve(config: AppConfig, clock: Clock | None = None, out: IO[bytes] | None = None) -> int:
    """Run until SIGTERM/SIGINT: stop taking input, finish and commit the batch in flight, exit 0.

    With Redis state the process first takes its namespace's writer lease (waiting as a standby while
    another process holds it); it exits 1 when it loses the lease."""
    clock = clock or WallClock()
    rules = load_rules(config.rules)
    store = open_store(config.state)
    metrics = Metrics()
    health = Health()
    engine = Engine(
        rules,
        lateness_ms=config.ms("lateness"),
        max_delay_ms=config.ms("max_delay"),
        future_skew_ms=config.ms("future_skew"),
    )
    writer = _Writer(store.lease(config.ms("lease_ttl")) if isinstance(store, RedisStore) else None)
    source, replica = _source(config, store, clock, metrics, rules)
    notify, sender, api = _notifications(config, store, clock, metrics)

    readiness = _readiness(replica, writer, health, source)

    host, port = parse_listen(config.http.listen)
    routes = source.routes() if isinstance(source, VectorHttpSource) else []
    runner = await start_server(build_app(metrics, readiness, routes, source=source.name, api=api), host, port)
    _log.info("started", listen=config.http.listen, rules=len(rules), state=redact(config.state))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    code = 0
    if replica is not None:
        replica.start(stop)
    sending: asyncio.Task[None] | None = None
    try:
        if await writer.acquire(store, stop):
            if sender is not None:  # only the writer sends: the outbox is drained by one process
                sending = asyncio.create_task(sender.run(stop))
            sink = FlushingWriter(out if out is not None else sys.stdout.buffer)
            live = run_live(engine, source, store, sink, clock, metrics, health, notify)
            code = await _run(config, live, source, stop)
    finally:
        if sending is not None:
            stop.set()
            await sending  # deliveries in flight are cancelled; they stay in the outbox for the next start
        if replica is not None and not await replica.close(config.ms("shutdown_timeout") / 1000):
            code = 1
        code = await writer.release(code)
        await runner.cleanup()
        await store.close()
    _log.info("stopped", code=code)
    return code


def _readiness(
    replica: Replica | None, writer: _Writer, health: Health, source: VectorHttpSource | KafkaSource | IntakeSource
) -> Readiness:
    """What `/readyz` checks: the store, the lease (or evaluation role), the source."""

    async def readiness() -> tuple[bool, dict[str, str]]:
        if replica is not None:  # ready to take input whether or not this process also evaluates
            lanes, fetching = replica.kafka.assigned(), replica.kafka.fetching()
            intake_health = replica.forwarder.health
            checks = {
                "store": intake_health.store_error or ("ok" if intake_health.ready else "starting"),
                "sources": _kafka_check(lanes, fetching),
                "evaluation": "running here" if writer.holding else "standby (another replica evaluates)",
            }
            return intake_health.ready and bool(lanes) and fetching, checks
        checks = {"store": health.store_error or ("ok" if health.ready else "starting")}
        if not writer.holding:
            checks["lease"] = "standby: another process writes this namespace"
            return False, checks
        if isinstance(source, KafkaSource):
            lanes, fetching = source.assigned(), source.fetching()
            checks["sources"] = _kafka_check(lanes, fetching)
            return health.ready and bool(lanes) and fetching, checks
        checks["sources"] = "listening"
        return health.ready, checks

    return readiness


def _notifications(
    config: AppConfig, store: Store, clock: Clock, metrics: Metrics
) -> tuple[Notify | None, Sender | None, list[web.RouteDef]]:
    """The notification stage, its sender and its HTTP API, when a route is configured (sinks are built
    here: a missing secret file fails the start)."""
    if config.route is None:
        return None, None, []
    sender = Sender(store, build_sinks(config), config.notify, metrics)
    notify = Notify(Notifier(config), wake=sender.wake.set, refresh_ms=config.notify.ms("tick"))
    behind = config.ms("lateness") + config.ms("max_delay")  # notification (event) time behind the wall clock
    api = notify_api.routes(store, clock, config.notify.token(), notify.notifier.config_silences, behind)
    return notify, sender, api


def _kafka_check(lanes: list[str], fetching: bool) -> str:
    return f"{len(lanes)} partitions assigned" + ("" if fetching or not lanes else ", brokers not answering")


def _source(
    config: AppConfig, store: Store, clock: Clock, metrics: Metrics, rules: list[Rule]
) -> tuple[VectorHttpSource | KafkaSource | IntakeSource, Replica | None]:
    """The source the evaluation reads, and in replicas mode this process's intake."""
    kafka = config.sources.kafka
    if kafka is not None and kafka.replicas:
        assert isinstance(store, RedisStore)  # validated by AppConfig
        intake = Engine(rules, lateness_ms=config.ms("lateness"), future_skew_ms=config.ms("future_skew"))
        replica = Replica(intake, kafka, store.client, store.namespace, clock, metrics)
        return replica.intake, replica
    if kafka is not None:
        return KafkaSource(kafka, metrics, clock=clock), None
    assert config.sources.vector is not None  # exactly one source: validated by AppConfig
    return VectorHttpSource(config.sources.vector), None


async def _run(
    config: AppConfig,
    live: Coroutine[Any, Any, None],
    source: VectorHttpSource | KafkaSource | IntakeSource,
    stop: asyncio.Event,
) -> int:
    """The live pipeline until it fails or `stop` is set; then a bounded shutdown."""
    pipeline = asyncio.create_task(live)
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({pipeline, stopping}, return_when=asyncio.FIRST_COMPLETED)
    try:
        await source.close()  # no new input; the batch in flight is finished, committed and acknowledged
        await asyncio.wait_for(pipeline, timeout=config.ms("shutdown_timeout") / 1000)
    except TimeoutError:
        _log.error("shutdown_timeout", seconds=config.ms("shutdown_timeout") / 1000)
        pipeline.cancel()
        return 1
    except Exception as exc:  # the pipeline failed on its own (a lost lease, a bug): report it, exit non-zero
        _log.error("pipeline_failed", error=f"{type(exc).__name__}: {exc}")
        return 1
    finally:
        stopping.cancel()
    return 0


class _Writer:
    """This process's right to write the namespace: a lease taken before any input, renewed until the end."""

    def __init__(self, lease: Lease | None) -> None:
        self.lease = lease
        self.holding = lease is None  # memory state: nobody else can write it
        self._keeper: asyncio.Task[None] | None = None

    async def acquire(self, store: Store, stop: asyncio.Event) -> bool:
        """Wait as a standby until the lease is ours (True) or we are told to stop (False)."""
        lease = self.lease
        if lease is None:
            return True
        logged = False
        while not stop.is_set():
            try:
                if await lease.acquire():
                    _log.info("lease_acquired", epoch=lease.epoch)
                    assert isinstance(store, RedisStore)
                    store.fence = lease.epoch
                    self.holding = True
                    self._keeper = asyncio.create_task(self._keep(lease, stop))
                    return True
                if not logged:
                    _log.info("standby", holder=await lease.holder())
                    logged = True
            except RedisError as exc:
                _log.warning("store_unavailable", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), lease.ttl_ms / 3000)
        return False

    @staticmethod
    async def _keep(lease: Lease, stop: asyncio.Event) -> None:
        """Renew at a third of the TTL; when the lease is gone, or cannot be renewed before it would expire,
        stop (a standby takes over; our commits are fenced from its state anyway)."""
        since = Stopwatch()  # since the last successful renewal
        while True:
            await asyncio.sleep(lease.ttl_ms / 3000)  # a period, not a wait for a state
            try:
                if not await lease.renew():
                    break
                since = Stopwatch()
            except RedisError as exc:
                _log.warning("lease_renewal_failed", error=type(exc).__name__)
                if since.elapsed() * 1000 >= lease.ttl_ms:
                    break
        _log.error("lease_lost", epoch=lease.epoch)
        stop.set()

    async def release(self, code: int) -> int:
        """Stop renewing; give the lease up after a clean run. Exit code 1 when the lease was lost."""
        keeper, lease = self._keeper, self.lease
        if keeper is None or lease is None:
            return code
        lost = keeper.done()  # the keeper ends on its own only when the lease is gone
        keeper.cancel()
        if lost:
            return 1
        with contextlib.suppress(RedisError):
            await lease.release()  # a standby takes over at once instead of after the TTL
        return code
