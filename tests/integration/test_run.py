"""`streamalert run` as a process: Vector posts go through the engine to stdout; SIGTERM exits 0."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import aiohttp
import orjson
import pytest

from streamalert.clock import WallClock
from streamalert.decode import format_ms
from streamalert.telemetry.memory import allocator
from streamalert.testing import free_port

RULES = """
rules:
  - name: errors
    match: {level: error}
    window: 1m
    condition: count >= 2
    labels: {severity: critical}
  - name: beat_down
    match: {container: celery_beat}
    absent_for: 1s
    group_by: [container]
    expect: [{container: celery_beat}]
"""


class Service:
    """A `streamalert run` subprocess with its stdout read line by line."""

    def __init__(self, tmp: Path, state: str, extra: str = "") -> None:
        tmp.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        (tmp / "rules.yaml").write_text(RULES)
        (tmp / "streamalert.yaml").write_text(
            f"""
rules: rules.yaml
state: "{state}"
lateness: 2s
max_delay: 0s
http: {{listen: "127.0.0.1:{self.port}"}}
sources:
  vector: {{token: "${{TEST_TOKEN}}"}}
{extra}
"""
        )
        env = {**os.environ, "TEST_TOKEN": "s3cret-token"}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamalert", "run", "--config", str(tmp / "streamalert.yaml")],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
        )
        self.url = f"http://127.0.0.1:{self.port}"

    async def wait_ready(self, deadline_s: float = 15.0) -> None:
        async with aiohttp.ClientSession() as session:
            for _ in range(int(deadline_s * 20)):  # poll with a deadline
                if self.proc.poll() is not None:
                    raise AssertionError(f"exited early: {self.proc.stderr.read().decode()}")  # type: ignore[union-attr]
                try:
                    async with session.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)
        raise AssertionError("service not ready in time")

    async def post(self, lines: Sequence[Mapping[str, object]], token: str = "s3cret-token") -> int:
        body = b"\n".join(orjson.dumps(line) for line in lines) + b"\n"
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{self.url}/vector", data=body, headers={"Authorization": f"Bearer {token}"}) as response,
        ):
            return response.status

    def read_transition(self) -> dict[str, object]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()  # blocks until the service prints one (the test has a timeout)
        assert line, f"stdout closed: {self.proc.stderr.read().decode()}"  # type: ignore[union-attr]
        result: dict[str, object] = orjson.loads(line)
        return result

    def stop(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=20)


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path, "memory://")
    yield svc
    if svc.proc.poll() is None:
        svc.proc.kill()
        svc.proc.wait()


async def test_vector_post_becomes_a_transition_and_sigterm_exits_zero(service: Service) -> None:
    """Two errors posted as Vector NDJSON fire the rule on stdout; the absence rule fires on the wall clock
    with no input; SIGTERM ends the process with exit code 0 and nothing secret in its logs."""
    await service.wait_ready()
    now = WallClock().now_ms()
    beat = {"timestamp": format_ms(now), "container": "celery_beat", "message": "beat: tick"}
    assert await service.post([beat]) == 200
    errors = [{"timestamp": format_ms(now + i), "level": "error", "event": "boom"} for i in range(2)]
    assert await service.post(errors, token="wrong") == 401
    assert await service.post(errors) == 200
    seen = {}
    for _ in range(2):  # the error rule at once; the absence rule about 1 s later, with no input at all
        transition = service.read_transition()
        seen[transition["rule"]] = transition
    assert seen["errors"]["state"] == "firing"
    assert seen["errors"]["value"] == 2
    assert seen["beat_down"]["state"] == "firing"
    async with aiohttp.ClientSession() as session, session.get(f"{service.url}/metrics") as response:
        exposition = await response.text()
    assert 'streamalert_http_requests_total{code="401",source="vector"} 1.0' in exposition
    assert 'streamalert_transitions_total{rule="errors",state="firing"} 1.0' in exposition
    assert service.stop() == 0
    assert service.proc.stderr is not None
    logs = service.proc.stderr.read().decode()
    assert "s3cret-token" not in logs
    assert '"event": "stopped"' in logs or '"event":"stopped"' in logs
    (started,) = [orjson.loads(line) for line in logs.splitlines() if '"started"' in line]
    assert started["allocator"] == allocator()  # the service inherits this process's PYTHONMALLOC and preload
