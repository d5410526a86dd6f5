"""The alertmanager sink against a real Alertmanager (started by the tests on a free port), and against the
vendor stand-in for the answers a real one does not give on demand (429, 500)."""

from __future__ import annotations

import asyncio
import pathlib
import re
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from pydantic import ValidationError

from streamalert.clock import ManualClock, WallClock
from streamalert.notify.model import ZERO_TIME, Alert, Notification, fingerprint
from streamalert.notify.sinks import registry
from streamalert.notify.sinks.alertmanager import AlertmanagerConfig, AlertmanagerSink
from streamalert.notify.sinks.base import DeliveryError, Sink
from tests.notify.alertmanager_support import alertmanager_server, webhook_config
from tests.notify.vendor import Vendor, serve

ALERTS_PATH = "/api/v2/alerts"
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d+)?([Zz]|[+-]\d{2}:\d{2})")
POSTABLE_KEYS = frozenset({"labels", "annotations", "startsAt", "endsAt", "generatorURL"})
EXTERNAL_URL = "http://streamalert.example:8080"
TOKEN = "am-token-123"


# ---- for the shared sink conformance test ----


def conformance_sink(base_url: str, tmp_path: pathlib.Path) -> Sink:
    """An alertmanager sink posting to `base_url` (the stand-in), with a bearer token read from a file."""
    token_file = tmp_path / "alertmanager-token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    return AlertmanagerSink(AlertmanagerConfig(url=base_url, bearer_token_file=token_file))


def conformance_validator(path: str, headers: dict[str, str], body: Any) -> list[str]:
    """Problems of a request against Alertmanager's API v2 `POST /api/v2/alerts` (postableAlerts): a JSON list
    of alerts, each with a non-empty labels map of string to string with valid label names, an optional
    annotations map of the same kind, optional RFC 3339 startsAt/endsAt (end not before start) and an optional
    generatorURL string; nothing else."""
    problems: list[str] = []
    if not path.endswith(ALERTS_PATH):
        problems.append(f"path {path!r} is not .../api/v2/alerts")
    if not headers.get("content-type", "").startswith("application/json"):
        problems.append("Content-Type is not application/json")
    if not isinstance(body, list):
        return [*problems, "body is not a JSON list of alerts"]
    if not body:
        problems.append("empty list of alerts")
    for index, item in enumerate(body):
        where = f"alerts[{index}]"
        if not isinstance(item, dict):
            problems.append(f"{where} is not an object")
            continue
        problems.extend(f"{where}: unknown field {key!r}" for key in sorted(set(item) - POSTABLE_KEYS))
        labels = item.get("labels")
        problems.extend(_label_set_problems(labels, f"{where}.labels"))
        if isinstance(labels, dict) and not any(value for value in labels.values()):
            problems.append(f"{where}.labels: no label with a value (Alertmanager drops empty ones)")
        if "annotations" in item:
            problems.extend(_label_set_problems(item["annotations"], f"{where}.annotations"))
        times: dict[str, datetime] = {}
        for key in ("startsAt", "endsAt"):
            if key in item:
                moment = _rfc3339(item[key])
                if moment is None:
                    problems.append(f"{where}.{key}: {item[key]!r} is not an RFC 3339 time")
                else:
                    times[key] = moment
        if "startsAt" in times and "endsAt" in times and times["endsAt"] < times["startsAt"]:
            problems.append(f"{where}: endsAt before startsAt")
        if "generatorURL" in item and not (isinstance(item["generatorURL"], str) and item["generatorURL"]):
            problems.append(f"{where}.generatorURL is not a non-empty string")
    return problems


def _label_set_problems(value: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where} is not a map"]
    if where.endswith(".labels") and not value:
        return [f"{where} is empty"]
    problems = []
    for name, text in value.items():
        if not LABEL_NAME.fullmatch(name):
            problems.append(f"{where}: {name!r} is not a valid label name")
        if not isinstance(text, str):
            problems.append(f"{where}.{name} is not a string")
    return problems


def _rfc3339(value: Any) -> datetime | None:
    if not isinstance(value, str) or not RFC3339.fullmatch(value):
        return None
    return parse_time(value)


# ---- helpers ----


def parse_time(text: str) -> datetime:
    """RFC 3339 as Alertmanager writes it (Go may write up to 9 fractional digits; Python reads 6)."""
    text = re.sub(r"(\.\d{6})\d+", r"\1", text.replace("z", "Z"))
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def wall_now() -> datetime:
    return datetime.fromtimestamp(WallClock().now_ms() / 1000, UTC)


def make_alert(name: str, instance: str, starts_at: datetime, ends_at: datetime | None = None) -> Alert:
    labels = {"alertname": name, "severity": "critical", "instance": instance, "team": "payments"}
    return Alert(
        fingerprint=fingerprint(labels),
        status="resolved" if ends_at is not None else "firing",
        labels=labels,
        annotations={"summary": f"{name} on {instance}", "runbook_url": "https://runbooks.example/x"},
        starts_at=rfc3339(starts_at),
        ends_at=rfc3339(ends_at) if ends_at is not None else ZERO_TIME,
        value=3,
    )


def make_notification(alerts: list[Alert], delivery: str = "d-1", external_url: str = EXTERNAL_URL) -> Notification:
    return Notification(
        id=delivery,
        receiver="am",
        sink="alertmanager/0",
        group_key='{}:{alertname="HighErrorRate"}',
        group_labels={"alertname": alerts[0].name},
        alerts=tuple(alerts),
        at=rfc3339(wall_now()),
        external_url=external_url,
    )


async def eventually(check: Callable[[], Any], what: str, within_s: float = 10.0) -> Any:
    """Poll an async `check` until it returns something truthy, with a deadline; return that."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        result = await check()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"not within {within_s:g} s: {what}")
        await asyncio.sleep(0.02)


async def am_alerts(http: aiohttp.ClientSession, base: str, name: str) -> list[dict[str, Any]]:
    """Alertmanager's alerts named `name` (GET /api/v2/alerts lists only the ones not yet ended)."""
    async with http.get(f"{base}{ALERTS_PATH}", params={"filter": f'alertname="{name}"'}) as response:
        assert response.status == 200, await response.text()
        alerts: list[dict[str, Any]] = await response.json()
        return alerts


def by_instance(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {a["labels"]["instance"]: a for a in alerts}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as session:
        yield session


@pytest.fixture
def alertmanager() -> Iterator[str]:
    with alertmanager_server() as url:
        yield url


# ---- against a real Alertmanager ----


async def test_firing_then_resolved_in_alertmanager(http: aiohttp.ClientSession) -> None:
    """Firing alerts show in Alertmanager as sent and active; the resolved ones end at our ends_at, which
    Alertmanager's own resolved notification (to a webhook the test serves) carries."""
    async with serve(Vendor(lambda path, headers, body: [])) as hook:
        with alertmanager_server(webhook_config(f"{hook.url}/hook")) as base:
            sink = AlertmanagerSink(AlertmanagerConfig(url=base))
            starts = wall_now().replace(microsecond=123_000) - timedelta(minutes=10)
            firing = [make_alert("HighErrorRate", "api-1", starts), make_alert("HighErrorRate", "api-2", starts)]
            await sink.send(make_notification(firing, "d-firing"), http)

            async def both_active() -> dict[str, dict[str, Any]]:
                seen = by_instance(await am_alerts(http, base, "HighErrorRate"))
                active = len(seen) == 2 and all(a["status"]["state"] == "active" for a in seen.values())
                return seen if active else {}

            seen = await eventually(both_active, "both alerts active in Alertmanager")
            now = wall_now()
            for alert in firing:
                got = seen[alert.labels["instance"]]
                assert got["labels"] == alert.labels
                assert got["annotations"] == alert.annotations
                assert parse_time(got["startsAt"]) == parse_time(alert.starts_at)
                assert got["generatorURL"] == EXTERNAL_URL
                # no endsAt sent: Alertmanager sets its resolve_timeout (5m by default) ahead
                assert parse_time(got["endsAt"]) > now

            async def notified(status: str) -> list[dict[str, Any]]:
                """The alerts in `status` of Alertmanager's webhook notifications so far (one group per alert)."""
                return [
                    a
                    for r in hook.requests
                    if r.path == "/hook"
                    for a in r.body["alerts"]
                    if a["status"] == status and a["labels"].get("alertname") == "HighErrorRate"
                ]

            async def both_firing_notified() -> bool:
                return len({a["labels"]["instance"] for a in await notified("firing")}) == 2

            # Alertmanager sends a resolved notification only for alerts it notified as firing
            await eventually(both_firing_notified, "Alertmanager's firing notifications")

            ends = wall_now().replace(microsecond=456_000) - timedelta(seconds=1)
            resolved = [make_alert("HighErrorRate", a.labels["instance"], starts, ends) for a in firing]
            await sink.send(make_notification(resolved, "d-resolved"), http)

            async def both_resolved_notified() -> dict[str, dict[str, Any]]:
                got = by_instance(await notified("resolved"))
                return got if len(got) == 2 else {}

            notes = await eventually(both_resolved_notified, "Alertmanager's resolved notifications")
            for alert in resolved:
                note = notes[alert.labels["instance"]]
                assert note["labels"] == alert.labels
                assert parse_time(note["startsAt"]) == parse_time(alert.starts_at)
                assert parse_time(note["endsAt"]) == parse_time(alert.ends_at)

            async def none_listed() -> bool:
                return not await am_alerts(http, base, "HighErrorRate")

            # an ended alert is no longer listed (the API filters alerts whose endsAt has passed)
            await eventually(none_listed, "resolved alerts gone from GET /api/v2/alerts")


async def test_expire_after_sets_endsat_of_firing_alerts(alertmanager: str, http: aiohttp.ClientSession) -> None:
    clock = ManualClock(WallClock().now_ms())
    sink = AlertmanagerSink(AlertmanagerConfig(url=alertmanager + "/", expire_after="2h"), clock=clock)
    alert = make_alert("DiskFull", "db-1", wall_now() - timedelta(minutes=1))
    await sink.send(make_notification([alert]), http)

    async def listed() -> list[dict[str, Any]]:
        return await am_alerts(http, alertmanager, "DiskFull")

    (got,) = await eventually(listed, "the alert in Alertmanager")
    expected = datetime.fromtimestamp(clock.now_ms() / 1000, UTC) + timedelta(hours=2)
    assert parse_time(got["endsAt"]) == expected
    assert got["status"]["state"] == "active"


async def test_invalid_label_name_is_a_permanent_error(alertmanager: str, http: aiohttp.ClientSession) -> None:
    sink = AlertmanagerSink(AlertmanagerConfig(url=alertmanager))
    bad = make_alert("BadLabels", "api-1", wall_now() - timedelta(minutes=1))
    bad = Alert(**{**_fields(bad), "labels": {**bad.labels, "bad-name": "x"}})
    with pytest.raises(DeliveryError) as caught:
        await sink.send(make_notification([bad]), http)
    assert caught.value.status == 400
    assert not caught.value.retryable
    assert str(caught.value) == 'alertmanager: HTTP 400: invalid label set: invalid name "bad-name"'


def _fields(alert: Alert) -> dict[str, Any]:
    return {name: getattr(alert, name) for name in Alert.__slots__}


# ---- against the stand-in ----


async def test_retryable_answers_and_request_shape(tmp_path: pathlib.Path, http: aiohttp.ClientSession) -> None:
    async with serve(Vendor(conformance_validator)) as vendor:
        vendor.fail(429, retry_after=1)
        vendor.fail(500)
        sink = conformance_sink(vendor.url + "/prefix/", tmp_path)
        starts = wall_now() - timedelta(minutes=5)
        notification = make_notification(
            [make_alert("A", "x", starts), make_alert("A", "y", starts, starts + timedelta(minutes=1))], "d-42"
        )
        with pytest.raises(DeliveryError) as throttled:
            await sink.send(notification, http)
        assert throttled.value.retryable
        assert throttled.value.retry_after == 1
        assert throttled.value.status == 429
        with pytest.raises(DeliveryError) as failed:
            await sink.send(notification, http)
        assert failed.value.retryable
        assert failed.value.status == 500
        await sink.send(notification, http)

        assert [r.answered for r in vendor.requests] == [429, 500, 200]
        request = vendor.accepted[0]
        assert request.problems == []
        assert request.path == "/prefix/api/v2/alerts"
        assert request.headers["x-streamalert-delivery"] == "d-42"
        assert request.headers["authorization"] == f"Bearer {TOKEN}"
        firing, resolved = request.body
        assert firing == {
            "labels": notification.alerts[0].labels,
            "annotations": notification.alerts[0].annotations,
            "startsAt": notification.alerts[0].starts_at,
            "generatorURL": EXTERNAL_URL,
        }
        assert resolved["endsAt"] == notification.alerts[1].ends_at


def test_payload_without_external_url_or_resolved_alerts() -> None:
    starts = wall_now() - timedelta(minutes=5)
    alerts = [make_alert("A", "x", starts), make_alert("A", "y", starts, starts + timedelta(minutes=1))]
    sink = AlertmanagerSink(AlertmanagerConfig(url="http://am:9093", send_resolved=False))
    (only,) = sink.payload(make_notification(alerts, external_url=""))
    assert only["labels"]["instance"] == "x"
    assert "endsAt" not in only
    assert "generatorURL" not in only
    assert sink.payload(make_notification(alerts[1:])) == []


def test_config_checks(tmp_path: pathlib.Path) -> None:
    kind = registry()["alertmanager"]
    assert kind.config is AlertmanagerConfig
    token_file = tmp_path / "t"
    token_file.write_text("secret\n", encoding="utf-8")
    with pytest.raises(ValidationError, match="at most one of bearer_token"):
        AlertmanagerConfig(url="http://am:9093", bearer_token="a", bearer_token_file=token_file)  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="base URL"):
        AlertmanagerConfig(url="am:9093")
    with pytest.raises(ValidationError, match="invalid duration"):
        AlertmanagerConfig(url="http://am:9093", expire_after="soon")
    with pytest.raises(ValidationError, match="extra"):
        AlertmanagerConfig.model_validate({"url": "http://am:9093", "urls": ["http://b:9093"]})
    sink = kind.build(kind.config.model_validate({"url": "http://am:9093", "bearer_token": "s3cr3t-value"}))
    assert isinstance(sink, AlertmanagerSink)
    assert "s3cr3t-value" not in repr(sink.config)
