"""Live mode rides out a Redis outage: no input taken, not ready, nothing lost, nothing counted twice."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest
import redis

from streamalert.clock import WallClock
from streamalert.decode import format_ms
from streamalert.testing import free_port

from .test_run import Service


class RedisProcess:
    """A redis-server with an append-only file, so a restart on the same port keeps its data."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server missing: run scripts/ensure-packages"
        self.proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port)
        for _ in range(500):  # poll with a deadline
            try:
                client.ping()
                return
            except redis.ConnectionError:
                threading.Event().wait(0.01)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        assert self.proc is not None
        self.proc.terminate()
        self.proc.wait(timeout=10)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[RedisProcess]:
    server = RedisProcess(tmp_path)
    server.start()
    yield server
    if server.proc is not None and server.proc.poll() is None:
        server.stop()


async def _ready(session: aiohttp.ClientSession, url: str) -> int:
    async with session.get(f"{url}/readyz") as response:
        return response.status


async def _until(predicate_status: int, session: aiohttp.ClientSession, url: str) -> None:
    for _ in range(400):  # poll with a 20 s deadline
        if await _ready(session, url) == predicate_status:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"/readyz never answered {predicate_status}")


async def test_redis_outage_holds_input_and_resumes_without_loss(tmp_path: Path, store: RedisProcess) -> None:
    """With Redis down the next commit fails: /readyz turns 503 and a posted batch waits (no 200); when Redis
    is back the batch is committed, answered 200, and both errors count exactly once."""
    service = Service(tmp_path / "svc", f"redis://127.0.0.1:{store.port}/0?namespace=outage")
    try:
        await service.wait_ready()
        now = WallClock().now_ms()
        assert await service.post([{"timestamp": format_ms(now), "level": "error"}]) == 200
        store.stop()
        async with aiohttp.ClientSession() as session:
            await _until(503, session, service.url)  # the next tick's commit failed
            pending = asyncio.create_task(service.post([{"timestamp": format_ms(now + 1), "level": "error"}]))
            # Not a wait for a state: a window in which a wrong early answer would show. It must still wait.
            await asyncio.sleep(1.0)
            assert not pending.done()
            store.start()
            assert await asyncio.wait_for(pending, timeout=30) == 200
            await _until(200, session, service.url)
        transition = service.read_transition()
        assert (transition["rule"], transition["state"], transition["value"]) == ("errors", "firing", 2)
        assert service.stop() == 0
    finally:
        if service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait()
