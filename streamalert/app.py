"""Composition root of `streamalert run`: config -> wired parts; HTTP listener, live pipeline, signals, shutdown."""

from __future__ import annotations

import asyncio
import signal
import sys
from typing import IO

import structlog

from streamalert.clock import Clock, WallClock
from streamalert.config.app import AppConfig
from streamalert.config.rules import load_rules
from streamalert.engine import Engine
from streamalert.http import build_app, parse_listen, start_server
from streamalert.model import Transition
from streamalert.output import JsonLinesWriter
from streamalert.pipeline import Health, run_live
from streamalert.sources.kafka import KafkaSource
from streamalert.sources.vector_http import VectorHttpSource
from streamalert.state.stores import open_store, redact
from streamalert.telemetry.metrics import Metrics

_log = structlog.get_logger("streamalert.app")


class FlushingWriter(JsonLinesWriter):
    """JSON lines on a stream, flushed after every batch: a live consumer sees each transition at once."""

    def write(self, transitions: list[Transition]) -> None:
        super().write(transitions)
        self.close()


async def serve(config: AppConfig, clock: Clock | None = None, out: IO[bytes] | None = None) -> int:
    """Run until SIGTERM/SIGINT: stop taking input, finish and commit the batch in flight, exit 0."""
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
    source: VectorHttpSource | KafkaSource
    if config.sources.kafka is not None:
        source = KafkaSource(config.sources.kafka, metrics)
    else:
        assert config.sources.vector is not None  # exactly one source: validated by AppConfig
        source = VectorHttpSource(config.sources.vector)

    async def readiness() -> tuple[bool, dict[str, str]]:
        store_check = health.store_error or ("ok" if health.ready else "starting")
        if isinstance(source, KafkaSource):
            lanes = source.assigned()
            sources_ok, sources_check = bool(lanes), f"{len(lanes)} partitions assigned"
        else:
            sources_ok, sources_check = True, "listening"
        return health.ready and sources_ok, {"store": store_check, "sources": sources_check}

    host, port = parse_listen(config.http.listen)
    routes = source.routes() if isinstance(source, VectorHttpSource) else []
    runner = await start_server(build_app(metrics, readiness, routes, source=source.name), host, port)
    _log.info("started", listen=config.http.listen, rules=len(rules), state=redact(config.state))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    sink = FlushingWriter(out if out is not None else sys.stdout.buffer)
    pipeline = asyncio.create_task(run_live(engine, source, store, sink, clock, metrics, health))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({pipeline, stopping}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    try:
        await source.close()  # no new input; the batch in flight is finished, committed and acknowledged
        await asyncio.wait_for(pipeline, timeout=config.ms("shutdown_timeout") / 1000)
    except TimeoutError:
        _log.error("shutdown_timeout", seconds=config.ms("shutdown_timeout") / 1000)
        pipeline.cancel()
        code = 1
    except Exception as exc:  # the pipeline failed on its own: report it, exit non-zero
        _log.error("pipeline_failed", error=f"{type(exc).__name__}: {exc}")
        code = 1
    finally:
        stopping.cancel()
        await runner.cleanup()
        await store.close()
    _log.info("stopped", code=code)
    return code
