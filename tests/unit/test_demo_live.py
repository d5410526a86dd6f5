"""`make demo-live`'s config as shipped: `streamalert run --config config/demo-live.yaml` on a fresh machine
(no variables, secrets, Redis or Kafka) takes a Vector post and prints the transition and its notification."""

from __future__ import annotations

import asyncio
import signal
import subprocess
from pathlib import Path

import aiohttp
import orjson

from streamalert.clock import WallClock
from streamalert.decode import format_ms
from streamalert.testing import free_port
from tests.unit.cli_process import ROOT, clean_env, console_script

LINE = {
    "app": "crm",
    "level": "error",
    "error_type": "rate_limiter_backend_error",
    "policy": "fail_open",
    "message": "Error reserving rate limit token",
}


def start(folder: Path, port: int) -> subprocess.Popen[bytes]:
    """`streamalert run --config config/demo-live.yaml` from `folder`, listening on `port`."""
    return subprocess.Popen(
        [*console_script(), "run", "--config", str(ROOT / "config" / "demo-live.yaml")],
        cwd=folder,
        env=clean_env(STREAMALERT_LISTEN=f"127.0.0.1:{port}"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def test_demo_live_runs_as_shipped(tmp_path: Path) -> None:
    """The README's live demo: one error line posted without a token gives a firing transition and a
    stdout notification; SIGTERM ends it with 0."""
    port = free_port()
    proc = start(tmp_path, port)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(600):  # poll with a deadline (30 s): start-up on a loaded machine
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                try:
                    async with session.get(f"http://127.0.0.1:{port}/readyz") as response:
                        if response.status == 200:
                            break
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
            else:
                raise AssertionError("demo-live not ready within 30 s")
            body = orjson.dumps({**LINE, "time": format_ms(WallClock().now_ms())}) + b"\n"
            async with session.post(f"http://127.0.0.1:{port}/vector", data=body) as response:
                assert response.status == 200
        assert proc.stdout is not None
        # blocking reads: the service prints both within lateness + max_delay (3 s); the test has a timeout
        first, second = (orjson.loads(proc.stdout.readline()) for _ in range(2))
        transition, notification = (first, second) if "rule" in first else (second, first)
        assert transition["rule"] == "mailer_rate_limiter_redis_error"
        assert transition["state"] == "firing"
        assert notification["sink"] == "stdout/0"
        assert notification["status"] == "firing"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
