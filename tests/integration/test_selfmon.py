"""Self-monitoring through `streamalert run`: the Watchdog arrives at start, a silent input and a stopped
Redis are reported to a local webhook receiver, the latter while Redis is still stopped (the direct send
path needs no store)."""

from __future__ import annotations

import asyncio
import os
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import orjson
import pytest

from streamalert.clock import Stopwatch, WallClock
from streamalert.decode import format_ms
from streamalert.testing import free_port
from tests.integration.kafka_support import Receiver, create_topic, notify_config, produce, start_run, write_config
from tests.integration.test_kafka import poll, stop
from tests.notify.test_webhook import PATH
from tests.notify.test_webhook import conformance_validator as webhook_format
from tests.notify.vendor import Vendor, serve

from .test_run import Service
from .test_run_store_outage import RedisProcess


def _extra(hook: str, self_monitoring: str) -> str:
    return f"""
route:
  receiver: hook
  group_wait: 0s
receivers:
  - name: hook
    webhook_configs: [{{url: "{hook}{PATH}", timeout: 2s}}]
notify: {{retry_initial: 20ms, retry_max: 200ms}}
self_monitoring:
  interval: 200ms
{self_monitoring}
"""


def _alerts(vendor: Vendor, name: str) -> list[dict[str, Any]]:
    """Every alert of that name the receiver accepted, in arrival order."""
    return [a for r in vendor.accepted for a in r.body["alerts"] if a["labels"]["alertname"] == name]


async def _until(vendor: Vendor, name: str, status: str, deadline_s: float = 15) -> dict[str, Any]:
    watch = Stopwatch()
    while watch.elapsed() < deadline_s:  # poll with a deadline
        found = [a for a in _alerts(vendor, name) if a["status"] == status]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {status} {name} within {deadline_s} s: {[r.body for r in vendor.requests]}")


def _stop(service: Service) -> None:
    if service.proc.poll() is None:
        service.proc.kill()
        service.proc.wait()


async def test_watchdog_at_start_and_a_silent_input_reported_then_resolved_by_a_line(tmp_path: Path) -> None:
    """Watchdog reaches the webhook at start (once: repeat_interval is hours away); nothing posted for the
    1.5 s bound fires StreamalertInputSilent (source=vector, the process's instance); a posted line
    resolves it."""
    async with serve(Vendor(webhook_format)) as hook:
        extra = _extra(hook.url, "  watchdog: {enabled: true}\n  input_silent: {for: 1500ms}")
        service = Service(tmp_path, "memory://", extra=extra)
        try:
            await service.wait_ready()
            watchdog = await _until(hook, "Watchdog", "firing")
            assert watchdog["labels"]["severity"] == "none"
            assert watchdog["labels"]["instance"].endswith(f":{service.port}")
            silent = await _until(hook, "StreamalertInputSilent", "firing")
            assert silent["labels"]["source"] == "vector"
            assert silent["labels"]["severity"] == "critical"
            assert _alerts(hook, "StreamalertInputSilent") == [silent]  # once, not at every sample
            line = {"timestamp": format_ms(WallClock().now_ms()), "level": "info"}
            assert await service.post([line]) == 200
            resolved = await _until(hook, "StreamalertInputSilent", "resolved")
            assert resolved["fingerprint"] == silent["fingerprint"]
            assert len(_alerts(hook, "Watchdog")) == 1
            assert all(not r.problems for r in hook.requests)
            assert service.stop() == 0
        finally:
            _stop(service)


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


@pytest.mark.redis
async def test_store_down_reaches_the_webhook_while_redis_is_stopped(tmp_path: Path, redis_proc: RedisProcess) -> None:
    """Redis SIGSTOPped: StreamalertStoreDown (bound 1 s) reaches the webhook while Redis is still stopped;
    after SIGCONT its resolve follows."""
    assert redis_proc.proc is not None
    async with serve(Vendor(webhook_format)) as hook:
        state = f"redis://127.0.0.1:{redis_proc.port}/0?namespace=selfmon&socket_timeout=1&socket_connect_timeout=1"
        extra = "lease_ttl: 1s\n" + _extra(hook.url, "  store_down: {for: 1s}")
        service = Service(tmp_path / "svc", state, extra=extra)
        try:
            await service.wait_ready()
            os.kill(redis_proc.proc.pid, signal.SIGSTOP)
            down = await _until(hook, "StreamalertStoreDown", "firing")
            assert down["labels"]["severity"] == "critical"
            assert "store unreachable" in down["annotations"]["summary"]
            assert _alerts(hook, "StreamalertStoreDown") == [down]  # nothing resolved it while stopped
            os.kill(redis_proc.proc.pid, signal.SIGCONT)
            resolved = await _until(hook, "StreamalertStoreDown", "resolved", deadline_s=30)
            assert resolved["fingerprint"] == down["fingerprint"]
            assert service.stop() == 0
        finally:
            os.kill(redis_proc.proc.pid, signal.SIGCONT)
            _stop(service)


async def test_a_refused_reload_is_reported_and_a_good_one_resolves_it(tmp_path: Path) -> None:
    """SIGHUP with a broken rule file fires StreamalertReloadFailed at the webhook; SIGHUP after the file is
    mended resolves it."""
    async with serve(Vendor(webhook_format)) as hook:
        service = Service(tmp_path, "memory://", extra=_extra(hook.url, "  reload_failed: {for: 0s}"))
        try:
            await service.wait_ready()
            good = (tmp_path / "rules.yaml").read_text()
            (tmp_path / "rules.yaml").write_text(good.replace("window: 1m", "window: often", 1))
            service.proc.send_signal(signal.SIGHUP)
            failed = await _until(hook, "StreamalertReloadFailed", "firing")
            assert failed["labels"]["severity"] == "warning"
            (tmp_path / "rules.yaml").write_text(good)
            service.proc.send_signal(signal.SIGHUP)
            resolved = await _until(hook, "StreamalertReloadFailed", "resolved")
            assert resolved["fingerprint"] == failed["fingerprint"]
            assert service.stop() == 0
        finally:
            _stop(service)


def test_a_kafka_consumer_with_partitions_and_no_records_is_reported_silent(
    tmp_path: Path, kafka_bootstrap: str
) -> None:
    """`streamalert run` on Kafka: with its two partitions assigned and no record for the 1.5 s bound,
    StreamalertInputSilent (source=kafka, naming the partitions) reaches the webhook; a record resolves it."""
    topic = create_topic(kafka_bootstrap, partitions=2)
    receiver = Receiver()
    self_monitoring = "self_monitoring:\n  interval: 200ms\n  input_silent: {for: 1500ms}\n"
    routes = notify_config(receiver.url).replace("group_wait: 30s", "group_wait: 0s")
    config = write_config(tmp_path, kafka_bootstrap, topic, "memory://", free_port(), extra=routes + self_monitoring)
    proc = start_run(config, tmp_path / "out.jsonl", tmp_path / "err.log")

    def silent(status: str) -> list[dict[str, Any]]:
        alerts = [a for _, body in receiver.received for a in cast(list[dict[str, Any]], body["alerts"])]
        return [a for a in alerts if a["labels"]["alertname"] == "StreamalertInputSilent" and a["status"] == status]

    try:
        poll(lambda: bool(silent("firing")), 30, "StreamalertInputSilent firing", proc)
        fired = silent("firing")[0]
        assert fired["labels"]["source"] == "kafka"
        assert f"{topic}/0, {topic}/1" in fired["annotations"]["summary"]
        line = orjson.dumps({"timestamp": format_ms(WallClock().now_ms()), "level": "info"})
        produce(kafka_bootstrap, topic, [line], partition=1)
        poll(lambda: bool(silent("resolved")), 30, "StreamalertInputSilent resolved", proc)
        assert len(silent("firing")) == 1
        assert stop(proc) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        receiver.close()
