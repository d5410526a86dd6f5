"""Composition root of `streamalert run`: config -> wired parts; HTTP listener, live pipeline, signals, shutdown.

The process serves HTTP (`/healthz`, `/readyz`, `/metrics`, the API, Vector's ingest route) from start to
exit. Input is taken in terms: a term starts when this process holds its namespace's writer lease (always,
with memory state) and builds a fresh engine, source and notifier from the stored state; it ends when the
process is told to stop, or when Redis says another process took the namespace over. Then the term's input
is given up uncommitted (Vector is answered 503 and retries, Kafka partitions go back to the group) and the
process waits as a standby for the lease again: losing the lease never ends the process. A store outage,
however long, only pauses a term (see `pipeline.retry_store`).
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import IO

import structlog
from aiohttp import hdrs, web
from redis.exceptions import RedisError

from streamalert import selfmon
from streamalert.clock import Clock, Stopwatch, WallClock
from streamalert.config.app import AppConfig
from streamalert.config.rules import Rule, load_rules
from streamalert.engine import Engine
from streamalert.http import Readiness, build_app, parse_listen, start_server
from streamalert.model import Transition
from streamalert.notify.notifier import Notifier
from streamalert.notify.sender import Sender, build_sinks
from streamalert.output import JsonLinesWriter
from streamalert.pipeline import Health, Notify, run_live
from streamalert.reload import ConfigSync, Loader, Reloader, Setup, retired, watch
from streamalert.replicas import IntakeSource, Replica
from streamalert.sources.kafka import KafkaSource
from streamalert.sources.vector_http import VectorHttpSource
from streamalert.state.base import Store
from streamalert.state.lease import Lease, LeaseLost
from streamalert.state.redis import RedisStore
from streamalert.state.stores import open_store, redact
from streamalert.telemetry.loop import watch_loop
from streamalert.telemetry.memory import allocator, give_back, thaw
from streamalert.telemetry.metrics import Metrics
from streamalert.ui.mount import notify_routes
from streamalert.ui.web import RuleRow

_log = structlog.get_logger("streamalert.app")
Source = VectorHttpSource | KafkaSource | IntakeSource


class FlushingWriter(JsonLinesWriter):
    """JSON lines on a stream, flushed after every batch: a live consumer sees each transition at once."""

    def write(self, transitions: list[Transition]) -> None:
        super().write(transitions)
        self.close()


class _Stop(asyncio.Event):
    """The process is asked to stop (a signal, or intake ended): remembers when, so that every step of the
    shutdown shares one `shutdown_timeout`."""

    def __init__(self) -> None:
        super().__init__()
        self.watch: Stopwatch | None = None

    def set(self) -> None:
        if self.watch is None:
            self.watch = Stopwatch()
        super().set()

    def left(self, budget_s: float) -> float:
        """Seconds of the shutdown budget left (a little at least, so that quick steps still run)."""
        spent = 0.0 if self.watch is None else self.watch.elapsed()
        return max(0.05, budget_s - spent)


@dataclass(slots=True)
class _Term:
    """What the HTTP side sees of the current term (None between terms: standby)."""

    source: Source | None = None
    health: Health = field(default_factory=Health)
    engine: Engine | None = None  # the term's engine, while this process is the writer


async def _memory_ready() -> str:
    """Make what the live loop's give-backs use for good (ctypes, the loop's thread pool) before input comes:
    made at a flood's first compaction, it would sit in arenas the flood filled (README "State", Memory after a
    flood). Returns the allocator's name, for the start-up log."""
    await asyncio.to_thread(give_back)
    return allocator()


async def serve(
    config: AppConfig, clock: Clock | None = None, out: IO[bytes] | None = None, loader: Loader | None = None
) -> int:
    """Run until SIGTERM/SIGINT: stop taking input, finish and commit the batch in flight, exit 0 (1 when the
    shutdown outlives `shutdown_timeout` or the pipeline failed). SIGHUP and `POST /-/reload` reload the
    configuration through `loader` (see streamalert.reload).

    With Redis state the process first takes its namespace's writer lease (waiting as a standby while
    another process holds it); when another process takes it over, it goes back to standby."""
    clock = clock or WallClock()
    store = open_store(config.state)
    metrics = Metrics()
    writer = _Writer(store.lease(config.ms("lease_ttl")) if isinstance(store, RedisStore) else None, metrics)
    # a missing secret file fails the start
    setup = Setup(config, load_rules(config.rules), build_sinks(config) if config.route is not None else None)
    replica = _replica(setup, store, clock, metrics)
    reloader = Reloader(setup, loader, metrics, clock)
    sync = _sync(reloader, store, replica)
    term = _Term()
    runner = await _listen(config, store, clock, metrics, reloader, replica, writer, term, sync)
    watcher = asyncio.create_task(watch_loop(metrics))
    current = lambda: (reloader.current.config, reloader.current.sinks)  # noqa: E731
    probe = lambda: (replica.kafka if replica else term.source, term.health.store_error)  # noqa: E731
    monitors = [asyncio.create_task(selfmon.run(current, store, metrics, clock, probe))]
    _log.info(
        "started",
        listen=config.http.listen,
        rules=len(setup.rules),
        state=redact(config.state),
        allocator=await _memory_ready(),
    )
    stop = _Stop()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reloader.reload)
    if replica is not None:
        replica.start(stop)
    monitors += _reloading(config, reloader, sync, stop)
    sink = FlushingWriter(out if out is not None else sys.stdout.buffer)
    code = 0
    retire: list[Transition] = []
    try:
        while not stop.is_set():
            if not await writer.acquire(store, stop):
                break
            reloader.take()  # a reload accepted while standing by applies to this term
            setup = reloader.current
            outcome, engine = await _run_term(
                setup, store, clock, metrics, writer, replica, sink, term, stop, reloader, retire
            )
            retire = []
            thaw()  # what the ended term's engine left in frozen reference cycles is collected again
            if outcome == _RELOADED:
                new = reloader.take()
                if new is not None:  # alerts of rules the new file changes or removes resolve explicitly
                    retire = retired(engine, new.rules, engine.horizon_ms - 1)
                continue
            if outcome is None:
                writer.stand_by(store)  # taken over: wait for the lease again, never exit
                continue
            code = outcome
            break
    finally:
        stop.set()
        code = await _shut_down(config, code, writer, replica, runner, store, watcher, stop, monitors)
    _log.info("stopped", code=code)
    return code


async def _listen(
    config: AppConfig,
    store: Store,
    clock: Clock,
    metrics: Metrics,
    reloader: Reloader,
    replica: Replica | None,
    writer: _Writer,
    term: _Term,
    sync: ConfigSync | None,
) -> web.AppRunner:
    """The HTTP listener, up for the life of the process: operations, the API, reload and Vector's ingest."""
    ingest = _Ingest(config.sources.vector.path, term) if config.sources.vector is not None else None
    api: list[web.RouteDef] = [reloader.route()]
    api += notify_routes(config, store, clock, lambda: _rule_rows(reloader, term))

    host, port = parse_listen(config.http.listen)
    routes = [ingest.route()] if ingest is not None else []
    source_name = "vector" if ingest is not None else ("intake" if replica is not None else "kafka")
    app = build_app(metrics, _readiness(replica, writer, term, sync), routes, source=source_name, api=api)
    runner = await start_server(app, host, port)
    return runner


def _rule_rows(reloader: Reloader, term: _Term) -> list[RuleRow]:
    """The web UI's rules page: the rules in force and, on the writer, each one's live series."""
    engine = term.engine
    counts = engine.series_per_rule() if engine is not None else None
    rules = engine.rules if engine is not None else reloader.current.rules
    return [RuleRow(r.name, r.kind, counts[i] if counts is not None else None) for i, r in enumerate(rules)]


_RELOADED = -1  # a term's outcome: it ended for a reload


async def _run_term(
    setup: Setup,
    store: Store,
    clock: Clock,
    metrics: Metrics,
    writer: _Writer,
    replica: Replica | None,
    sink: FlushingWriter,
    term: _Term,
    stop: _Stop,
    reloader: Reloader,
    retire: list[Transition],
) -> tuple[int | None, Engine]:
    """One term as the namespace's writer, from the stored state. Returns the exit code after `stop` (0, or
    1 when the shutdown timed out or the pipeline failed), _RELOADED after a reload was accepted, or None
    when the lease was lost; and the term's engine."""
    config, rules, sinks = setup.config, setup.rules, setup.sinks
    engine = Engine(
        rules,
        lateness_ms=config.ms("lateness"),
        max_delay_ms=config.ms("max_delay"),
        future_skew_ms=config.ms("future_skew"),
        max_series_per_rule=config.max_series_per_rule,
        max_series=config.max_series,
    )
    source = _source(setup, clock, metrics, replica, lambda: reloader.latest.digest)
    health = Health()
    term.source, term.health, term.engine = source, health, engine
    notify: Notify | None = None
    sending: asyncio.Task[None] | None = None
    term_over = asyncio.Event()  # ends this term's sender
    if config.route is not None and sinks is not None:
        sender = Sender(store, sinks, config.notify, metrics)
        notify = Notify(Notifier(config), wake=sender.wake.set, refresh_ms=config.notify.ms("tick"))
        sending = asyncio.create_task(sender.run(term_over))  # only the writer sends: one process drains the outbox
    # Vector's requests are answered from the commit: it may run while the next batch is taken in
    # and a queued request is taken in before a long advance ends
    vector = source if isinstance(source, VectorHttpSource) else None
    live = run_live(
        engine,
        source,
        store,
        sink,
        clock,
        metrics,
        health,
        notify,
        initial=retire,
        overlap=vector is not None,
        waiting=vector.waiting if vector is not None else None,
    )
    pipeline = asyncio.create_task(live)
    waits = {
        pipeline,
        asyncio.ensure_future(stop.wait()),
        asyncio.ensure_future(writer.lost.wait()),
        asyncio.ensure_future(reloader.requested.wait()),
    }
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        if writer.lost.is_set() or _raised(pipeline, LeaseLost):
            await _give_up(source, pipeline)
            return None, engine
        if pipeline.done():
            return _failed(pipeline), engine
        ending = _RELOADED if not stop.is_set() else 0
        budget = config.ms("shutdown_timeout") / 1000
        try:
            await source.close()  # no new input; the batch in flight is finished, committed and acknowledged
            await asyncio.wait_for(asyncio.shield(pipeline), timeout=stop.left(budget) if ending == 0 else budget)
        except TimeoutError:
            _log.error("shutdown_timeout", seconds=budget)
            await _give_up(source, pipeline)
            return (1 if ending == 0 else None), engine
        except LeaseLost:
            return (0 if ending == 0 else None), engine  # taken over while finishing: the successor goes on
        except Exception:
            return _failed(pipeline), engine
        if ending == _RELOADED:
            _log.info("config_reloaded", rules=len(reloader.pending.rules) if reloader.pending else 0)
        return ending, engine
    finally:
        for waiter in waits:
            if waiter is not pipeline:
                waiter.cancel()
        term.source, term.health, term.engine = None, Health(), None
        term_over.set()
        if sending is not None:
            await sending  # deliveries in flight are cancelled; they stay in the outbox for the next holder


def _raised(task: asyncio.Task[None], kind: type[BaseException]) -> bool:
    return task.done() and not task.cancelled() and isinstance(task.exception(), kind)


def _failed(pipeline: asyncio.Task[None]) -> int:
    """The pipeline ended on its own: a bug or a source that failed. Reported, exit non-zero."""
    error = pipeline.exception() if pipeline.done() and not pipeline.cancelled() else None
    _log.error("pipeline_failed", error=f"{type(error).__name__}: {error}" if error else "ended")
    return 1


async def _give_up(source: Source, pipeline: asyncio.Task[None]) -> None:
    """End a term without committing what is in flight: the input is taken again from the stored state by
    whoever holds the lease next (Vector retries what was answered 503; Kafka redelivers from the stored
    offsets)."""
    pipeline.cancel()
    with contextlib.suppress(BaseException):
        await pipeline
    if isinstance(source, VectorHttpSource):
        await source.abort()
    else:
        await source.close()


async def _shut_down(
    config: AppConfig,
    code: int,
    writer: _Writer,
    replica: Replica | None,
    runner: web.AppRunner,
    store: Store,
    watcher: asyncio.Task[None],
    stop: _Stop,
    monitors: list[asyncio.Task[None]],
) -> int:
    """Stop intake, give the lease up, close the listener and the store: all within `shutdown_timeout`
    (a store that does not answer cannot hold the exit up). Returns the exit code."""
    budget = config.ms("shutdown_timeout") / 1000
    for monitor in monitors:  # self-monitoring (and config sync) end first: a closing store is not an outage
        monitor.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await monitor

    def left() -> float:
        return stop.left(budget)

    steps: list[tuple[str, Callable[[], Awaitable[object]]]] = []
    if replica is not None:
        steps.append(("intake", lambda: replica.close(left())))
    steps += [
        ("lease", writer.release),
        ("listener", runner.cleanup),
        ("store", store.close),
    ]
    for name, step in steps:
        try:
            result = await asyncio.wait_for(step(), left())
        except TimeoutError:
            _log.error("shutdown_timeout", step=name, seconds=budget)
            code = 1
            continue
        except (RedisError, OSError) as exc:
            _log.warning("shutdown_step_failed", step=name, error=type(exc).__name__)
            continue
        if result is False:
            code = 1
    watcher.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await watcher
    return code


class _Ingest:
    """Vector's ingest route, mounted once: it hands each request to the current term's source, and answers
    503 (Vector retries) while this process is a standby or between terms."""

    def __init__(self, path: str, term: _Term) -> None:
        self.path, self.term = path, term

    def route(self) -> web.RouteDef:
        return web.post(self.path, self._receive)

    async def _receive(self, request: web.Request) -> web.StreamResponse:
        source = self.term.source
        if not isinstance(source, VectorHttpSource):
            return web.Response(
                status=503,
                text="standby: another process writes this namespace; retry later\n",
                headers={hdrs.RETRY_AFTER: "1"},
            )
        handler = source.routes()[0].handler
        return await handler(request)


def _readiness(replica: Replica | None, writer: _Writer, term: _Term, sync: ConfigSync | None) -> Readiness:
    """What `/readyz` checks: the store, the lease (or evaluation role), the source."""

    async def readiness() -> tuple[bool, dict[str, str]]:
        if replica is not None:  # ready to take input whether or not this process also evaluates
            lanes, fetching = replica.kafka.assigned(), replica.kafka.fetching()
            intake_health = replica.forwarder.health
            checks = {
                "store": intake_health.store_error or ("ok" if intake_health.ready else "starting"),
                "sources": _kafka_check(lanes, fetching, replica.kafka.problems()),
                "evaluation": "running here" if writer.holding else "standby (another replica evaluates)",
            }
            if sync is not None:  # reported, not failed: a ConfigMap update reaches pods at different times
                checks["config"] = sync.describe()
            return intake_health.ready and bool(lanes) and fetching, checks
        health, source = term.health, term.source
        checks = {"store": health.store_error or ("ok" if health.ready else "starting")}
        if not writer.holding or source is None:
            checks["lease"] = "standby: another process writes this namespace"
            return False, checks
        if isinstance(source, KafkaSource):
            lanes, fetching = source.assigned(), source.fetching()
            checks["sources"] = _kafka_check(lanes, fetching, source.problems())
            return health.ready and bool(lanes) and fetching, checks
        assert isinstance(source, VectorHttpSource | IntakeSource)
        busy = source.saturated() if isinstance(source, VectorHttpSource) else None
        checks["sources"] = busy or "listening"
        return health.ready and busy is None, checks

    return readiness


def _kafka_check(lanes: list[str], fetching: bool, problems: list[str]) -> str:
    if problems:  # partitions stopped by offset_out_of_range: fail
        return f"{len(lanes)} partitions assigned, not read: " + "; ".join(problems)
    return f"{len(lanes)} partitions assigned" + ("" if fetching or not lanes else ", brokers not answering")


def _replica(setup: Setup, store: Store, clock: Clock, metrics: Metrics) -> Replica | None:
    """In replicas mode, this process's intake (it runs whether or not the process holds the lease)."""
    kafka = setup.config.sources.kafka
    if kafka is None or not kafka.replicas:
        return None
    assert isinstance(store, RedisStore)  # validated by AppConfig
    intake = _intake(setup.config, setup.rules)
    return Replica(intake, kafka, store.client, store.namespace, clock, metrics, setup.digest)


def _intake(config: AppConfig, rules: list[Rule]) -> Engine:
    """Replicas mode's intake-only engine for a configuration."""
    return Engine(rules, lateness_ms=config.ms("lateness"), future_skew_ms=config.ms("future_skew"))


def _reloading(config: AppConfig, reloader: Reloader, sync: ConfigSync | None, stop: _Stop) -> list[asyncio.Task[None]]:
    """Background parts of reload: the watched rules (`reload.watch`), and replicas' agreement on the config."""
    tasks = []
    if config.reload.watch and reloader.loader is not None:
        tasks.append(asyncio.create_task(watch(reloader, config.rules, config.reload.debounce, stop)))
    if sync is not None:
        tasks.append(asyncio.create_task(sync.run(stop)))
    return tasks


def _sync(reloader: Reloader, store: Store, replica: Replica | None) -> ConfigSync | None:
    """In replicas mode, the agreement on the configuration in force (streamalert.reload.ConfigSync)."""
    if replica is None:
        return None
    assert isinstance(store, RedisStore)
    switch = lambda setup: replica.forwarder.switch(_intake(setup.config, setup.rules), setup.digest)  # noqa: E731
    return ConfigSync(reloader, store.client, store.namespace, switch)


def _source(
    setup: Setup, clock: Clock, metrics: Metrics, replica: Replica | None, upcoming: Callable[[], str]
) -> Source:
    """A fresh source for one term: the one the evaluation reads."""
    config = setup.config
    if replica is not None:
        return replica.evaluation(setup.digest, upcoming)
    kafka = config.sources.kafka
    if kafka is not None:
        return KafkaSource(kafka, metrics, clock=clock)
    assert config.sources.vector is not None  # exactly one source: validated by AppConfig
    return VectorHttpSource(config.sources.vector, metrics, clock)


class _Writer:
    """This process's right to write the namespace: a lease taken before any input and renewed until the
    end. It is lost only when Redis says another process holds it (`lost` is set then)."""

    def __init__(self, lease: Lease | None, metrics: Metrics) -> None:
        self.lease = lease
        self.metrics = metrics
        self.holding = lease is None  # memory state: nobody else can write it
        self.lost = asyncio.Event()
        self._keeper: asyncio.Task[None] | None = None

    async def acquire(self, store: Store, stop: asyncio.Event) -> bool:
        """Wait as a standby until the lease is ours (True) or we are told to stop (False)."""
        lease = self.lease
        if lease is None or (self._keeper is not None and not self.lost.is_set()):
            return True  # memory state, or still holding it (a term ended for a reload)
        logged = False
        while not stop.is_set():
            try:
                if await lease.acquire():
                    _log.info("lease_acquired", epoch=lease.epoch)
                    assert isinstance(store, RedisStore)
                    store.hold(lease)
                    self.holding = True
                    self.lost.clear()
                    self.metrics.lease_held.set(1)
                    self._keeper = asyncio.create_task(self._keep(lease))
                    return True
                if not logged:
                    _log.info("standby", holder=await lease.holder())
                    logged = True
            except RedisError as exc:
                _log.warning("store_unavailable", error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), lease.ttl_ms / 3000)
        return False

    async def _keep(self, lease: Lease) -> None:
        """Renew at a third of the TTL. Redis being unreachable loses nothing: the renewal that gets through
        takes the lease back if nobody took it over meanwhile (our commits are fenced on the epoch anyway).
        Only Redis saying that another process has it ends the lease."""
        while True:
            await asyncio.sleep(self.lease_period(lease))  # a period, not a wait for a state
            try:
                if not await lease.renew():
                    break
            except RedisError as exc:
                _log.warning("lease_renewal_failed", error=type(exc).__name__)
        _log.error("lease_lost", epoch=lease.epoch, holder="another process")
        self.metrics.lease_lost.inc()
        self.lost.set()

    @staticmethod
    def lease_period(lease: Lease) -> float:
        return lease.ttl_ms / 3000

    def stand_by(self, store: Store) -> None:
        """After a take-over: stop renewing and fencing; the next `acquire` waits for the lease again."""
        if self._keeper is not None:
            self._keeper.cancel()
            self._keeper = None
        self.holding = self.lease is None
        self.metrics.lease_held.set(0)
        if isinstance(store, RedisStore):
            store.hold(None)
        _log.info("standby_after_take_over")

    async def release(self) -> None:
        """Stop renewing; give the lease up so a standby takes over at once (unless it was lost)."""
        keeper, lease = self._keeper, self.lease
        if keeper is None or lease is None:
            return
        keeper.cancel()
        self._keeper = None
        self.metrics.lease_held.set(0)
        if not self.lost.is_set():
            await lease.release()
