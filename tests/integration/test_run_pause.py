"""Live mode pauses, never exits, when its store stalls or another process takes its namespace over."""

from __future__ import annotations

import asyncio
import functools
import os
import signal
from collections.abc import Callable, Iterator
from pathlib import Path

import aiohttp
import orjson
import pytest
from aiohttp import web

from streamalert.clock import ManualClock, Stopwatch, WallClock
from streamalert.decode import format_ms
from streamalert.engine import Engine
from streamalert.pipeline import Health, run_live
from streamalert.sources.vector_http import VectorHttpConfig, VectorHttpSource
from streamalert.state.redis import RedisStore
from streamalert.telemetry.metrics import Metrics
from streamalert.testing import CapturingSink, free_port, rules_from_yaml

from .test_run import Service
from .test_run_store_outage import RedisProcess

pytestmark = pytest.mark.redis
RULES_3 = "condition: count >= 3"


@pytest.fixture
def redis_proc(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        os.kill(server.proc.pid, signal.SIGCONT)
        server.stop()


def _service(tmp: Path, port: int, *, rules_threshold: int = 2, shutdown_s: int = 10) -> Service:
    state = f"redis://127.0.0.1:{port}/0?namespace=pause&socket_timeout=1&socket_connect_timeout=1"
    service = Service(tmp, state, extra=f"lease_ttl: 1s\nshutdown_timeout: {shutdown_s}s")
    if rules_threshold != 2:
        rules = (tmp / "rules.yaml").read_text().replace("count >= 2", f"count >= {rules_threshold}")
        (tmp / "rules.yaml").write_text(rules)
    return service


async def _status(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(url, timeout=aiohttp.ClientTimeout(total=2)) as response:
        return response.status


async def _until(session: aiohttp.ClientSession, url: str, status: int, deadline_s: float = 20) -> None:
    watch = Stopwatch()
    while watch.elapsed() < deadline_s:  # poll with a deadline
        try:
            if await _status(session, url) == status:
                return
        except (aiohttp.ClientError, TimeoutError):
            pass
        await asyncio.sleep(0.05)
    raise AssertionError(f"{url} never answered {status}")


def _errors(service: Service) -> dict[str, object]:
    """The next transition of the `errors` rule (the heartbeat rule fires in whichever term it falls due)."""
    for _ in range(3):
        transition = service.read_transition()
        if transition["rule"] == "errors":
            return transition
    raise AssertionError("no transition of the errors rule")


def _kill(service: Service) -> None:
    if service.proc.poll() is None:
        os.kill(service.proc.pid, signal.SIGCONT)
        service.proc.kill()
        service.proc.wait()


async def test_a_redis_pause_longer_than_the_lease_pauses_input_and_resumes(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """Redis stopped (SIGSTOP) for many lease TTLs: the process stays up, /healthz keeps answering, /readyz
    turns 503 and a posted batch waits; when Redis answers again the process takes its (still free) lease
    back, commits the batch, answers 200 and fires exactly as without the pause."""
    assert redis_proc.proc is not None
    service = _service(tmp_path / "svc", redis_proc.port)
    try:
        await service.wait_ready()
        now = WallClock().now_ms()
        assert await service.post([{"timestamp": format_ms(now), "level": "error"}]) == 200
        os.kill(redis_proc.proc.pid, signal.SIGSTOP)
        async with aiohttp.ClientSession() as session:
            pending = asyncio.create_task(service.post([{"timestamp": format_ms(now + 1), "level": "error"}]))
            await _until(session, f"{service.url}/readyz", 503)
            watch = Stopwatch()
            while watch.elapsed() < 5:  # five lease TTLs of outage, probing liveness all along
                assert await _status(session, f"{service.url}/healthz") == 200
                assert service.proc.poll() is None, "the process exited during the outage"
                await asyncio.sleep(0.2)
            assert not pending.done()
            os.kill(redis_proc.proc.pid, signal.SIGCONT)
            assert await asyncio.wait_for(pending, timeout=30) == 200
            await _until(session, f"{service.url}/readyz", 200)
        transition = _errors(service)
        assert (transition["state"], transition["value"]) == ("firing", 2)
        assert service.stop() == 0
    finally:
        _kill(service)


async def test_a_writer_taken_over_becomes_a_standby_and_later_continues_from_the_stored_state(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """The writer is paused past its lease; the standby takes over. Woken, the former writer finds the lease
    gone, stays up as a standby (503) instead of exiting, and when the new writer stops it takes over again
    with the state the other one committed: three errors across the three terms fire `count >= 3`."""
    first = _service(tmp_path / "a", redis_proc.port, rules_threshold=3)
    second: Service | None = None
    try:
        await first.wait_ready()
        second = _service(tmp_path / "b", redis_proc.port, rules_threshold=3)
        now = WallClock().now_ms()
        assert await first.post([{"timestamp": format_ms(now), "level": "error"}]) == 200
        os.kill(first.proc.pid, signal.SIGSTOP)
        await second.wait_ready(deadline_s=20)  # took the lease over
        # each line stamped when it is sent: lateness is 2 s behind the wall clock
        assert await second.post([{"timestamp": format_ms(WallClock().now_ms()), "level": "error"}]) == 200
        os.kill(first.proc.pid, signal.SIGCONT)
        async with aiohttp.ClientSession() as session:
            await _until(session, f"{first.url}/readyz", 503)
            assert first.proc.poll() is None, "the former writer exited instead of standing by"
            async with session.post(
                f"{first.url}/vector", data=b"{}\n", headers={"Authorization": "Bearer s3cret-token"}
            ) as response:
                assert response.status == 503  # a standby takes no input: Vector retries elsewhere
        assert second.stop() == 0
        await first.wait_ready(deadline_s=20)  # the lease was released: the former writer takes over
        assert await first.post([{"timestamp": format_ms(WallClock().now_ms()), "level": "error"}]) == 200
        transition = _errors(first)
        assert (transition["state"], transition["value"]) == ("firing", 3)
        assert first.stop() == 0
    finally:
        _kill(first)
        if second is not None:
            _kill(second)


async def test_shutdown_during_a_redis_pause_ends_within_the_shutdown_timeout(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """SIGTERM while Redis does not answer: the waiting request is answered 503 (not 200: nothing was
    committed) and the process exits within shutdown_timeout (plus start-up slack), exit code 1."""
    assert redis_proc.proc is not None
    service = _service(tmp_path / "svc", redis_proc.port, shutdown_s=3)
    try:
        await service.wait_ready()
        now = WallClock().now_ms()
        os.kill(redis_proc.proc.pid, signal.SIGSTOP)
        pending = asyncio.create_task(service.post([{"timestamp": format_ms(now), "level": "error"}]))
        async with aiohttp.ClientSession() as session:
            await _until(session, f"{service.url}/readyz", 503)
        watch = Stopwatch()
        service.proc.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(service.proc.wait, 30)
        assert watch.elapsed() < 3 + 2, f"shutdown took {watch.elapsed():.1f} s"
        assert code == 1
        assert await asyncio.wait_for(pending, timeout=10) == 503
    finally:
        _kill(service)


async def test_a_batch_of_fifty_thousand_new_series_is_answered_and_the_process_stays_responsive(
    tmp_path: Path, redis_proc: RedisProcess
) -> None:
    """One POST of 50,000 lines, each starting a series of its own (Redis state, 1 s lease): it is answered
    200, /healthz answers all along (never held for a second), the lease is kept and the process stays up."""
    service = _service(tmp_path / "svc", redis_proc.port)
    (tmp_path / "svc" / "rules.yaml").write_text(
        "rules:\n  - name: per_user\n    match: {event: login}\n    window: 1m\n"
        "    condition: count >= 2\n    group_by: [user_id]\n"
    )
    try:
        await service.wait_ready()
        now = WallClock().now_ms()
        # 50 lines a millisecond over one second of event time, as a busy app would log them; stamped 5 s
        # ahead (within future_skew) so that a loaded machine posting them slowly does not make them late
        # (max_delay 0, lateness 2 s): this test is about responsiveness, not lateness
        lines = [
            {"timestamp": format_ms(now + 5_000 + i // 50), "event": "login", "user_id": f"u{i}"} for i in range(50_000)
        ]
        async with aiohttp.ClientSession() as session:
            posting = asyncio.create_task(service.post(lines))
            longest = 0.0
            while not posting.done():
                watch = Stopwatch()
                assert await _status(session, f"{service.url}/healthz") == 200
                longest = max(longest, watch.elapsed())
                assert service.proc.poll() is None, "the process exited"
                await asyncio.sleep(0.05)
            assert await posting == 200
            assert longest < 1.0, f"/healthz waited {longest:.2f} s"
            watch = Stopwatch()
            exposition = ""
            while watch.elapsed() < 30:  # the series start once their instants are processed (lateness 2 s)
                async with session.get(f"{service.url}/metrics") as response:
                    exposition = await response.text()
                if "streamalert_series 50000.0" in exposition:
                    break
                assert await _status(session, f"{service.url}/healthz") == 200
                await asyncio.sleep(0.1)
        assert "streamalert_series 50000.0" in exposition
        assert "streamalert_lease_lost_total 0.0" in exposition
        assert service.stop() == 0
    finally:
        _kill(service)


async def test_series_beyond_the_cap_are_dropped_counted_and_logged_once(tmp_path: Path) -> None:
    """With max_series_per_rule 10, twenty new groups start ten series: the other ten are counted in
    streamalert_series_dropped_total{rule} and logged once (not once per event); the process stays up."""
    service = Service(tmp_path / "svc", "memory://", extra="max_series_per_rule: 10")
    (tmp_path / "svc" / "rules.yaml").write_text(
        "rules:\n  - name: per_user\n    match: {event: login}\n    window: 1m\n"
        "    condition: count >= 2\n    group_by: [user_id]\n"
    )
    try:
        await service.wait_ready()
        now = WallClock().now_ms()
        lines = [{"timestamp": format_ms(now), "event": "login", "user_id": f"u{i}"} for i in range(20)]
        assert await service.post(lines[:15]) == 200
        assert await service.post(lines[15:]) == 200
        async with aiohttp.ClientSession() as session:
            await _until(session, f"{service.url}/readyz", 200)
            watch = Stopwatch()
            exposition = ""
            while watch.elapsed() < 20:  # the drop is counted once the instant is processed (lateness 2 s)
                async with session.get(f"{service.url}/metrics") as response:
                    exposition = await response.text()
                if 'streamalert_series_dropped_total{rule="per_user"} 10.0' in exposition:
                    break
                await asyncio.sleep(0.1)
        assert 'streamalert_series_dropped_total{rule="per_user"} 10.0' in exposition
        assert "streamalert_series 10.0" in exposition
        assert service.stop() == 0
        assert service.proc.stderr is not None
        logs = service.proc.stderr.read().decode()
        assert logs.count('"series_dropped"') == 1
    finally:
        _kill(service)


async def test_queued_lines_are_judged_as_of_their_arrival_not_when_a_stalled_pipeline_takes_them(
    redis_proc: RedisProcess,
) -> None:
    """Three one-line bodies arrive 1 s apart while the store is stalled on the first one's commit; the
    wall clock then moves on a minute before the store answers. The second body's batch must not move the
    clock to that minute: the third body's line, delivered on time, would then be late."""
    t0 = 1_769_418_000_000
    clock, metrics = ManualClock(t0), Metrics()
    source = VectorHttpSource(VectorHttpConfig(auth="none", max_batch_lines=1, tick_ms=50), metrics, clock)
    app = web.Application()
    app.add_routes(source.routes())
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    url = f"redis://127.0.0.1:{redis_proc.port}/0?namespace=arrival&socket_timeout=1&socket_connect_timeout=1"
    store = RedisStore.from_url(url)
    rules = "rules:\n  - {name: errors, match: {level: error}, window: 1h, condition: count >= 3}\n"
    engine = Engine(rules_from_yaml(rules), lateness_ms=1_000, max_delay_ms=2_000)
    live = asyncio.create_task(run_live(engine, source, store, CapturingSink(), clock, metrics, Health()))
    assert redis_proc.proc is not None
    async with aiohttp.ClientSession() as session:

        async def post(at_ms: int) -> int:
            body = orjson.dumps({"timestamp": format_ms(at_ms), "level": "error"})
            async with session.post(f"http://127.0.0.1:{port}/vector", data=body) as response:
                return response.status

        async def until(predicate: Callable[[], bool], what: str) -> None:
            watch = Stopwatch()
            while not predicate():  # poll with a deadline
                assert watch.elapsed() < 20, f"timed out waiting for {what}"
                await asyncio.sleep(0.02)

        try:
            await until(lambda: engine.horizon_ms > 0, "the first tick")
            os.kill(redis_proc.proc.pid, signal.SIGSTOP)
            posts = [asyncio.create_task(post(t0))]
            # taken, its commit stalling, or queued behind a tick's stalled commit: either way it waits
            await until(lambda: source.queued == 1, "the first body arrived")
            for k in (1, 2):
                clock.set(t0 + 1_000 * k)
                posts.append(asyncio.create_task(post(t0 + 1_000 * k)))
                await until(functools.partial(lambda n: source.queued == n, k + 1), f"body {k + 1} queued")
            clock.set(t0 + 62_000)  # the store answers only a minute later
            os.kill(redis_proc.proc.pid, signal.SIGCONT)
            assert await asyncio.wait_for(asyncio.gather(*posts), 30) == [200, 200, 200]
        finally:
            os.kill(redis_proc.proc.pid, signal.SIGCONT)
            await source.close()
            await asyncio.wait_for(live, 30)
            await store.close()
            await runner.cleanup()
    assert (engine.stats.matched, engine.stats.late) == (3, 0)
