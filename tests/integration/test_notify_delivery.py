"""Durable delivery through `streamalert run`: the sinks are down, the process is killed -9 with the outbox
full, and after the restart every notification is delivered exactly once (PagerDuty by dedup_key and event,
the webhook by delivery id), a trigger always before its resolve. Stand-ins for PagerDuty and a webhook
receiver run in the test; Redis is real.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import redis

from streamalert.clock import WallClock
from streamalert.decode import format_ms
from streamalert.state import keys
from streamalert.testing import free_port
from tests.notify.test_pagerduty import conformance_validator as pagerduty_format
from tests.notify.test_webhook import conformance_validator as webhook_format
from tests.notify.vendor import Vendor, serve

pytestmark = pytest.mark.redis

HOSTS = [f"db-{i}" for i in range(4)]
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 characters, as PagerDuty's integration keys
RULES = """
rules:
  - name: db_errors
    match: {level: error}
    window: 2s
    condition: count >= 1
    group_by: [host]
    labels: {severity: critical, team: db}
    annotations: {summary: "database errors on {{ host }}"}
"""


def config(tmp: Path, port: int, redis_url: str, namespace: str, pd_url: str, hook_url: str) -> Path:
    (tmp / "rules.yaml").write_text(RULES)
    path = tmp / "streamalert.yaml"
    path.write_text(
        f"""
rules: rules.yaml
state: "{redis_url}?namespace={namespace}"
lateness: 0s
max_delay: 0s
lease_ttl: 1s
http: {{listen: "127.0.0.1:{port}"}}
sources:
  vector: {{auth: none}}
route:
  receiver: oncall
  group_by: [alertname, host]
  group_wait: 0s
  group_interval: 1s
  repeat_interval: 1d
receivers:
  - name: oncall
    pagerduty_configs:
      - routing_key: "${{PD_KEY}}"
        url: "{pd_url}/v2/enqueue"
        timeout: 2s
    webhook_configs:
      - url: "{hook_url}/hooks/T0KEN-in-the-url"
        timeout: 2s
notify:
  max_attempts: 10000
  retry_initial: 20ms
  retry_max: 200ms
  tick: 100ms
"""
    )
    return path


class Run:
    def __init__(self, config: Path, port: int, log: Path) -> None:
        self.url = f"http://127.0.0.1:{port}"
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "streamalert", "run", "--config", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=log.open("ab"),
            env={**os.environ, "PD_KEY": ROUTING_KEY},
        )

    async def ready(self) -> None:
        async with asyncio.timeout(20), aiohttp.ClientSession() as session:
            while True:
                assert self.proc.poll() is None, self.log.read_text()
                try:
                    async with session.get(f"{self.url}/readyz") as response:
                        if response.status == 200:
                            return
                except aiohttp.ClientConnectionError:
                    pass
                await asyncio.sleep(0.05)  # polling interval, bounded by the deadline above

    async def post(self, lines: list[dict[str, Any]]) -> None:
        body = b"\n".join(orjson.dumps(line) for line in lines)
        async with aiohttp.ClientSession() as session, session.post(f"{self.url}/vector", data=body) as response:
            assert response.status == 200


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()


async def until(check: Any, seconds: float, what: str) -> None:
    try:
        async with asyncio.timeout(seconds):
            while not check():  # noqa: ASYNC110 (polls another process's state: nothing to wait on here)
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_sink_outage_and_kill_9_lose_nothing_and_send_nothing_twice(
    tmp_path: Path, redis_url: str, runs: list[Run]
) -> None:
    client = redis.Redis.from_url(redis_url)
    namespace = f"notify-{os.getpid()}-{free_port()}"
    outbox_key = keys.outbox(namespace)
    pd = Vendor(pagerduty_format, ok_body={"status": "success", "message": "Event processed"})
    hook = Vendor(webhook_format)
    pd.fail(503, times=10**6)  # both sinks down until told otherwise
    hook.fail(500, times=10**6)
    async with serve(pd), serve(hook):
        port = free_port()
        path = config(tmp_path, port, redis_url, namespace, pd.url, hook.url)
        log = tmp_path / "run.log"
        runs.append(Run(path, port, log))
        await runs[0].ready()
        now = WallClock().now_ms()
        await runs[0].post(
            [{"timestamp": format_ms(now), "level": "error", "host": h, "message": "deadlock"} for h in HOSTS]
        )
        # each host fires, then resolves 2 s later: 2 notifications per host, to each of the 2 sinks
        await until(lambda: client.xlen(outbox_key) >= 4 * len(HOSTS), 30, "the outbox to hold every notification")
        await until(lambda: len(pd.requests) >= 3 and len(hook.requests) >= 3, 10, "failed delivery attempts")
        assert pd.accepted == []
        assert hook.accepted == []
        runs[0].proc.send_signal(signal.SIGKILL)
        runs[0].proc.wait()

        runs.append(Run(path, port, log))
        await runs[1].ready()
        # the sinks come back only once the restarted process is retrying: a request the killed process had
        # in flight is answered while they are still down (an accepted one would count as a repeat)
        seen = (len(pd.requests), len(hook.requests))
        await until(lambda: len(pd.requests) > seen[0] and len(hook.requests) > seen[1], 10, "retries after restart")
        pd.faults.clear()
        hook.faults.clear()
        hook.fail(500, times=3)  # still flaky for a moment
        await until(
            lambda: len(pd.accepted) >= 2 * len(HOSTS) and len(hook.accepted) >= 2 * len(HOSTS),
            30,
            "every notification to be delivered after the restart",
        )
        await until(lambda: client.xlen(outbox_key) == 0, 10, "the outbox to drain")
        exposition = ""

        async def scrape() -> bool:  # the outbox gauge is refreshed at every sender tick (100 ms here)
            nonlocal exposition
            async with aiohttp.ClientSession() as session, session.get(f"{runs[1].url}/metrics") as response:
                exposition = await response.text()
            return "streamalert_outbox_depth 0.0" in exposition

        async with asyncio.timeout(10):
            while not await scrape():  # noqa: ASYNC110 (another process's state: nothing to wait on)
                await asyncio.sleep(0.1)  # polling interval, bounded by the deadline

    # PagerDuty: per alert one trigger then one resolve with the same dedup_key, nothing twice
    events = [(r.body["dedup_key"], r.body["event_action"]) for r in pd.accepted]
    assert Counter(events) == Counter({(k, a): 1 for k, _ in events for a in ("trigger", "resolve")})
    assert len({k for k, _ in events}) == len(HOSTS)
    for key in {k for k, _ in events}:
        assert [a for k, a in events if k == key] == ["trigger", "resolve"]
    assert all(r.problems == [] for r in pd.accepted)
    # webhook: every delivery id once; the firing message before the resolved one of each group
    ids = [r.headers["x-streamalert-delivery"] for r in hook.accepted]
    assert len(ids) == len(set(ids)) == 2 * len(HOSTS)
    statuses = {h: [r.body["status"] for r in hook.accepted if r.body["groupLabels"]["host"] == h] for h in HOSTS}
    assert statuses == {h: ["firing", "resolved"] for h in HOSTS}
    assert client.xlen(keys.notifications(namespace)) == 4 * len(HOSTS)
    assert client.xlen(keys.dead_letters(namespace)) == 0
    # the restarted process's metrics: its deliveries, the failed attempts before them, an empty outbox
    assert f'streamalert_notifications_total{{sink="pagerduty",status="sent"}} {2 * len(HOSTS)}.0' in exposition
    assert f'streamalert_notifications_total{{sink="webhook",status="sent"}} {2 * len(HOSTS)}.0' in exposition
    assert 'streamalert_notifications_total{sink="webhook",status="failed"}' in exposition
    assert 'streamalert_notification_send_seconds_count{sink="pagerduty"}' in exposition
    logs = log.read_text()
    assert ROUTING_KEY not in logs
    assert "T0KEN-in-the-url" not in logs
