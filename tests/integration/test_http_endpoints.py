"""The operational HTTP endpoints over real loopback HTTP, the metric exposition under promtool, and JSON logs."""

from __future__ import annotations

import io
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

import aiohttp
import orjson
import pytest
import structlog
from aiohttp import web

from streamalert.http import build_app, parse_listen, start_server
from streamalert.telemetry.logging import configure, get_logger
from streamalert.telemetry.metrics import Metrics
from streamalert.testing import free_port

METRIC_NAMES = [
    "streamalert_events_in_total",
    "streamalert_events_matched_total",
    "streamalert_events_malformed_total",
    "streamalert_events_late_total",
    "streamalert_events_untimed_total",
    "streamalert_events_clamped_total",
    "streamalert_processing_lag_seconds",
    "streamalert_batch_lines",
    "streamalert_store_commit_seconds",
    "streamalert_transitions_total",
    "streamalert_consumer_lag",
    "streamalert_http_requests_total",
    "streamalert_ready",
    "streamalert_series",
    "streamalert_store_retries_total",
]


@dataclass
class Readiness:
    """A readiness check the test flips by hand."""

    ready: bool = True
    checks: dict[str, str] = field(default_factory=lambda: {"store": "ok", "sources": "assigned"})

    async def __call__(self) -> tuple[bool, dict[str, str]]:
        return self.ready, dict(self.checks)


@dataclass
class Served:
    base: str
    metrics: Metrics
    readiness: Readiness
    session: aiohttp.ClientSession


async def _echo(_request: web.Request) -> web.Response:
    return web.json_response({"echo": True})


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    metrics = Metrics()
    readiness = Readiness()
    app = build_app(metrics, readiness, routes=[web.post("/v1/ingest", _echo)])
    port = free_port()
    runner = await start_server(app, "127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as session:
            yield Served(f"http://127.0.0.1:{port}", metrics, readiness, session)
    finally:
        await runner.cleanup()


def _fill(metrics: Metrics) -> None:
    metrics.events_in.labels(source="vector").inc(10)
    metrics.events_matched.labels(source="vector").inc(3)
    metrics.events_malformed.labels(source="kafka").inc()
    metrics.events_late.labels(source="kafka").inc(2)
    metrics.events_untimed.labels(source="kafka").inc()
    metrics.events_clamped.labels(source="vector").inc()
    metrics.processing_lag.observe(0.2)
    metrics.batch_size.observe(500)
    metrics.store_latency.observe(0.003)
    metrics.transitions.labels(rule="mailer_celery_beat_down", state="firing").inc()
    metrics.consumer_lag.labels(topic="logs", partition="0").set(42)
    metrics.http_requests.labels(source="vector", code="200").inc()
    metrics.ready.set(1)
    metrics.series.set(7)
    metrics.store_retries.inc()


async def test_healthz_answers_ok(served: Served) -> None:
    """/healthz answers 200 with a JSON status, whatever readiness says."""
    served.readiness.ready = False
    async with served.session.get(served.base + "/healthz") as resp:
        assert resp.status == 200
        assert resp.content_type == "application/json"
        assert await resp.json() == {"status": "ok"}


async def test_readyz_follows_readiness(served: Served) -> None:
    """/readyz answers 200 while ready and 503 with the failing checks when not."""
    async with served.session.get(served.base + "/readyz") as resp:
        assert resp.status == 200
        assert await resp.json() == {"ready": True, "checks": {"store": "ok", "sources": "assigned"}}
    served.readiness.ready = False
    served.readiness.checks = {"store": "unreachable: ConnectionError", "sources": "assigned"}
    async with served.session.get(served.base + "/readyz") as resp:
        assert resp.status == 503
        assert await resp.json() == {
            "ready": False,
            "checks": {"store": "unreachable: ConnectionError", "sources": "assigned"},
        }


async def test_metrics_exposition_and_extra_routes(served: Served) -> None:
    """/metrics serves every metric with its labels in the text format; extra routes are mounted."""
    _fill(served.metrics)
    async with served.session.get(served.base + "/metrics") as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == served.metrics.render()[1]
        assert resp.content_type == "text/plain"
        text = await resp.text()
    for name in METRIC_NAMES:
        assert f"# HELP {name} " in text, name
    assert 'streamalert_events_in_total{source="vector"} 10.0' in text
    assert 'streamalert_transitions_total{rule="mailer_celery_beat_down",state="firing"} 1.0' in text
    assert 'streamalert_consumer_lag{partition="0",topic="logs"} 42.0' in text
    assert 'streamalert_batch_lines_bucket{le="1024.0"} 1.0' in text
    assert "streamalert_ready 1.0" in text
    async with served.session.post(served.base + "/v1/ingest", data=b"{}") as resp:
        assert resp.status == 200
        assert await resp.json() == {"echo": True}


def test_promtool_accepts_exposition() -> None:
    """`promtool check metrics` finds no problem in the exposition, filled or empty."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("promtool not found: run scripts/ensure-packages (installs Debian's prometheus package)")
    empty = Metrics()
    filled = Metrics()
    _fill(filled)
    for metrics in (empty, filled):
        body, _ = metrics.render()
        done = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True, timeout=60, check=False)
        output = (done.stdout + done.stderr).decode(errors="replace")
        assert done.returncode == 0, output
        assert output.strip() == "", output


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("[::1]:8080", ("::1", 8080)),
        (":8080", ("0.0.0.0", 8080)),
        ("localhost:9", ("localhost", 9)),
        ("0.0.0.0:65535", ("0.0.0.0", 65535)),
        ("8080", None),
        ("127.0.0.1", None),
        ("127.0.0.1:", None),
        ("127.0.0.1:http", None),
        ("127.0.0.1:0", None),
        ("127.0.0.1:65536", None),
        ("::1:8080", None),
        ("[::1:8080", None),
        ("[]:8080", None),
        ("", None),
    ],
)
def test_parse_listen(text: str, expected: tuple[str, int] | None) -> None:
    """parse_listen splits HOST:PORT, [IPv6]:PORT and :PORT, and names the text it refuses."""
    if expected is not None:
        assert parse_listen(text) == expected
        return
    with pytest.raises(ValueError, match="listen address") as info:
        parse_listen(text)
    assert repr(text) in str(info.value)


@pytest.fixture
def log_stream() -> Iterator[io.StringIO]:
    stream = io.StringIO()
    configure("info", stream)
    try:
        yield stream
    finally:
        structlog.reset_defaults()


def test_logs_are_json_lines_without_secrets(log_stream: io.StringIO) -> None:
    """configure() writes one JSON object per line with event, level, timestamp, logger; secrets are ***."""
    log = get_logger("streamalert.test")
    log.debug("below_level_dropped")
    log.info(
        "store_connected",
        token="abc",
        password="x",
        url="redis://127.0.0.1:6379/0",
        headers={"Authorization": "Bearer abc"},
    )
    lines = log_stream.getvalue().splitlines()
    assert len(lines) == 1, lines
    record = orjson.loads(lines[0])
    assert record["event"] == "store_connected"
    assert record["level"] == "info"
    assert record["logger"] == "streamalert.test"
    assert record["timestamp"].endswith("Z")
    assert record["token"] == "***"
    assert record["password"] == "***"
    assert record["headers"] == {"Authorization": "***"}
    assert record["url"] == "redis://127.0.0.1:6379/0"
    assert "abc" not in lines[0]
    structlog.get_logger("streamalert.plain").warning("plain_logger", secret="s")
    plain = orjson.loads(log_stream.getvalue().splitlines()[1])
    assert (plain["logger"], plain["level"], plain["secret"]) == ("streamalert.plain", "warning", "***")
