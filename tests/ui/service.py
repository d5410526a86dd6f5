"""A running `streamalert run` for the amtool and browser tests: a child process with memory state, Vector's
HTTP source (no auth) and one receiver posting Alertmanager webhooks to a local stand-in, with the API token
set. Notification time runs 1 s behind the wall clock (max_delay: with 0 s, a line stamped now could be late
by the time a loaded machine has posted it) and groups flush at once, so an event posted now is notified
about a second later.

Rules: `db_errors` (critical, 10 min window: stays firing for the test) and `db_slow` (warning, a 1 s window:
fires and resolves), both by host, with a runbook link and a summary.
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from streamalert.clock import WallClock
from streamalert.decode import format_ms
from streamalert.testing import free_port
from tests.notify.vendor import Vendor, serve

TOKEN = "ui-t0ken-SECRET-4711"
RULES = """
rules:
  - name: db_errors
    match: {level: error}
    window: 10m
    condition: count >= 1
    group_by: [host]
    labels: {severity: critical, team: db}
    annotations:
      summary: "database errors on {{ host }}"
      runbook_url: "https://runbooks.example.com/db_errors"
  - name: db_slow
    match: {level: slow}
    window: 1s
    condition: count >= 1
    group_by: [host]
    labels: {severity: warning, team: db}
    annotations:
      summary: "<b>slow</b> queries on {{ host }}"
      runbook_url: "javascript:alert(1)"
"""


def _config(tmp: Path, port: int, hook_url: str) -> Path:
    (tmp / "rules.yaml").write_text(RULES)
    path = tmp / "streamalert.yaml"
    path.write_text(
        f"""
rules: rules.yaml
state: "memory://"
lateness: 0s
max_delay: 1s
http: {{listen: "127.0.0.1:{port}"}}
sources:
  vector: {{auth: none}}
route:
  receiver: team
  group_by: [alertname, host]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1d
receivers:
  - name: team
    webhook_configs:
      - url: "{hook_url}/hook"
        timeout: 2s
notify:
  api_token: "{TOKEN}"
  tick: 100ms
"""
    )
    return path


@dataclass
class Service:
    url: str
    hook: Vendor
    proc: subprocess.Popen[bytes]
    log: Path

    async def post(self, lines: list[dict[str, Any]]) -> None:
        """Events stamped now, to the Vector source."""
        now = format_ms(WallClock().now_ms())
        body = b"\n".join(orjson.dumps({"timestamp": now, **line}) for line in lines)
        async with aiohttp.ClientSession() as session, session.post(f"{self.url}/vector", data=body) as response:
            assert response.status == 200, await response.text()

    def notified_hosts(self) -> list[tuple[str, str]]:
        """(host, status) of every alert in every webhook the receiver accepted, in order."""
        return [
            (alert["labels"].get("host", ""), alert["status"])
            for request in self.hook.accepted
            for alert in request.body["alerts"]
        ]

    async def api(self, path: str) -> Any:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        async with aiohttp.ClientSession() as session, session.get(self.url + path, headers=headers) as response:
            assert response.status == 200, await response.text()
            return await response.json()


async def until(check: Callable[[], Any], seconds: float, what: str) -> None:
    """Poll `check` (sync or async) until it is truthy, failing after `seconds`."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                result = check()
                if asyncio.iscoroutine(result):
                    result = await result
                if result:
                    return
                await asyncio.sleep(0.05)  # polling interval, bounded by the deadline
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


def _start(config: Path, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "streamalert", "run", "--config", str(config)], stdout=subprocess.DEVNULL, stderr=err
        )


@asynccontextmanager
async def running(tmp: Path) -> AsyncIterator[Service]:
    hook = Vendor(lambda _path, _headers, _body: [])
    async with serve(hook):
        port = free_port()
        log = tmp / "run.log"
        proc = _start(_config(tmp, port, hook.url), log)
        service = Service(f"http://127.0.0.1:{port}", hook, proc, log)
        try:

            async def ready() -> bool:
                assert proc.poll() is None, log.read_text()
                try:
                    async with aiohttp.ClientSession() as session, session.get(f"{service.url}/readyz") as response:
                        return response.status == 200
                except aiohttp.ClientConnectionError:
                    return False

            await until(ready, 20, "streamalert to be ready")
            yield service
        finally:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        assert TOKEN not in log.read_text()  # the token never reaches the log
