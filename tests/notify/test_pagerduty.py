"""The pagerduty sink against a fake Events API v2 that checks bodies against PagerDuty's documented format."""

from __future__ import annotations

import pathlib
import socket
import subprocess
import sys
from datetime import datetime
from typing import Any

import aiohttp
import pydantic
import pytest

from streamalert.notify.model import ZERO_TIME, Alert, Notification, fingerprint
from streamalert.notify.sinks import registry
from streamalert.notify.sinks.base import DeliveryError, Sink
from streamalert.notify.sinks.pagerduty import PagerdutyConfig, PagerdutySink, dedup_key
from tests.notify.vendor import Fault, Vendor, serve

ROUTING_KEY = "R0123456789abcdef0123456789abcde"  # 32 characters, like a real integration key
PATH = "/v2/enqueue"
PD_OK = {"status": "success", "message": "Event processed", "dedup_key": "from-pagerduty"}
ACTIONS = {"trigger", "acknowledge", "resolve"}
PD_SEVERITIES = {"critical", "error", "warning", "info"}
TOP_LEVEL = {"routing_key", "event_action", "dedup_key", "payload", "images", "links", "client", "client_url"}
PAYLOAD_FIELDS = {"summary", "source", "severity", "timestamp", "component", "group", "class", "custom_details"}


# ---- the documented format -----------------------------------------------------------------------------


def conformance_validator(path: str, headers: dict[str, str], body: Any) -> list[str]:
    """Problems of one request against PagerDuty Events API v2 (alert events)."""
    problems: list[str] = []
    if path != PATH:
        problems.append(f"path {path!r}: alert events go to {PATH}")
    if not headers.get("content-type", "").startswith("application/json"):
        problems.append("Content-Type must be application/json")
    if not isinstance(body, dict):
        return [*problems, "body must be a JSON object"]
    problems += [f"unknown field {k!r}" for k in sorted(set(body) - TOP_LEVEL)]
    key = body.get("routing_key")
    if not isinstance(key, str) or len(key) != 32:
        problems.append("routing_key: must be the 32-character integration key")
    action = body.get("event_action")
    if action not in ACTIONS:
        problems.append(f"event_action: must be one of {sorted(ACTIONS)}")
    dedup = body.get("dedup_key")
    if dedup is not None and (not isinstance(dedup, str) or not 0 < len(dedup) <= 255):
        problems.append("dedup_key: a string of 1 to 255 characters")
    if action in {"acknowledge", "resolve"} and dedup is None:
        problems.append(f"dedup_key: required for {action}")
    if action == "trigger":
        problems += _payload_problems(body.get("payload"))
    for name in ("client", "client_url"):
        if name in body and not isinstance(body[name], str):
            problems.append(f"{name}: must be a string")
    links = body.get("links", [])
    if not isinstance(links, list) or not all(isinstance(x, dict) and isinstance(x.get("href"), str) for x in links):
        problems.append("links: a list of objects with an href")
    images = body.get("images", [])
    if not isinstance(images, list) or not all(
        isinstance(x, dict) and isinstance(x.get("src"), str) and x["src"].startswith("https://") for x in images
    ):
        problems.append("images: a list of objects with an https src")
    return problems


def _payload_problems(payload: Any) -> list[str]:
    if not isinstance(payload, dict):
        return ["payload: required for trigger"]
    problems = [f"payload: unknown field {k!r}" for k in sorted(set(payload) - PAYLOAD_FIELDS)]
    summary = payload.get("summary")
    if not isinstance(summary, str) or not 0 < len(summary) <= 1024:
        problems.append("payload.summary: a string of 1 to 1024 characters")
    if not isinstance(payload.get("source"), str) or not payload["source"]:
        problems.append("payload.source: required")
    if payload.get("severity") not in PD_SEVERITIES:
        problems.append(f"payload.severity: must be one of {sorted(PD_SEVERITIES)}")
    if "timestamp" in payload:
        try:
            datetime.fromisoformat(payload["timestamp"])
        except (TypeError, ValueError):
            problems.append("payload.timestamp: must be ISO 8601")
    for name in ("component", "group", "class"):
        if name in payload and not isinstance(payload[name], str):
            problems.append(f"payload.{name}: must be a string")
    if "custom_details" in payload and not isinstance(payload["custom_details"], dict):
        problems.append("payload.custom_details: must be an object")
    return problems


def conformance_sink(base_url: str, tmp_path: pathlib.Path) -> Sink:
    key_file = tmp_path / "pagerduty_routing_key"
    key_file.write_text(ROUTING_KEY + "\n", encoding="utf-8")
    return PagerdutySink(PagerdutyConfig.model_validate({"routing_key_file": key_file, "url": base_url + PATH}))


# ---- helpers -------------------------------------------------------------------------------------------


def make_alert(status: str = "firing", annotations: dict[str, str] | None = None, **labels: str) -> Alert:
    labels = {"alertname": "HighErrorRate", **labels}
    return Alert(
        fingerprint=fingerprint(labels),
        status="firing" if status == "firing" else "resolved",
        labels=labels,
        annotations=annotations if annotations is not None else {"summary": "error rate above 5%"},
        starts_at="2024-05-01T10:00:00Z",
        ends_at=ZERO_TIME if status == "firing" else "2024-05-01T10:05:00Z",
        value=0.07,
    )


def make_notification(*alerts: Alert, id: str = "delivery-1", external_url: str = "") -> Notification:
    return Notification(
        id=id,
        receiver="oncall",
        sink="pagerduty/0",
        group_key='{}:{alertname="HighErrorRate"}',
        group_labels={"alertname": "HighErrorRate"},
        alerts=alerts,
        at="2024-05-01T10:00:30Z",
        external_url=external_url,
    )


def make_sink(vendor: Vendor, **config: Any) -> PagerdutySink:
    values: dict[str, Any] = {"routing_key": ROUTING_KEY, "url": vendor.url + PATH, **config}
    return PagerdutySink(PagerdutyConfig.model_validate(values))


def pd_vendor() -> Vendor:
    return Vendor(conformance_validator, ok_body=PD_OK)


# ---- tests ---------------------------------------------------------------------------------------------


def test_registered() -> None:
    assert registry()["pagerduty"].config is PagerdutyConfig


async def test_trigger_then_resolve_share_the_dedup_key(tmp_path: pathlib.Path) -> None:
    firing = make_alert(service="api", severity="critical")
    resolved = make_alert("resolved", service="api", severity="critical")
    async with serve(pd_vendor()) as vendor, aiohttp.ClientSession() as http:
        sink = conformance_sink(vendor.url, tmp_path)
        await sink.send(make_notification(firing, id="d-1"), http)
        await sink.send(make_notification(resolved, id="d-2"), http)
    trigger, resolve = vendor.requests
    assert [r.problems for r in vendor.requests] == [[], []]
    assert [r.answered for r in vendor.requests] == [200, 200]
    assert trigger.body["event_action"] == "trigger"
    assert resolve.body == {
        "routing_key": ROUTING_KEY,
        "event_action": "resolve",
        "dedup_key": trigger.body["dedup_key"],
    }
    assert trigger.body["dedup_key"] == f"streamalert-{firing.fingerprint}"
    assert trigger.headers["x-streamalert-delivery"] == "d-1"
    assert resolve.headers["x-streamalert-delivery"] == "d-2"


async def test_trigger_event_shape() -> None:
    alert = make_alert(
        annotations={"summary": "error rate above 5%", "runbook_url": "https://runbooks.example/errors"},
        service="api",
        severity="error",
    )
    async with serve(pd_vendor()) as vendor, aiohttp.ClientSession() as http:
        sink = make_sink(vendor, source="prod-eu", component="api", group="web", **{"class": "errors"})
        await sink.send(make_notification(alert, external_url="https://alerts.example"), http)
    (request,) = vendor.requests
    assert request.problems == []
    assert request.body == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": f"streamalert-{alert.fingerprint}",
        "client": "streamalert",
        "client_url": "https://alerts.example",
        "links": [{"href": "https://runbooks.example/errors", "text": "Runbook"}],
        "payload": {
            "summary": "HighErrorRate: error rate above 5%",
            "source": "prod-eu",
            "severity": "error",
            "timestamp": "2024-05-01T10:00:00Z",
            "component": "api",
            "group": "web",
            "class": "errors",
            "custom_details": {
                "labels": alert.labels,
                "annotations": alert.annotations,
                "value": 0.07,
                "receiver": "oncall",
                "group_labels": {"alertname": "HighErrorRate"},
            },
        },
    }


async def test_one_event_per_alert_in_order() -> None:
    alerts = (make_alert(pod="a"), make_alert("resolved", pod="b"), make_alert(pod="c"))
    async with serve(pd_vendor()) as vendor, aiohttp.ClientSession() as http:
        await make_sink(vendor).send(make_notification(*alerts), http)
    assert [r.body["event_action"] for r in vendor.requests] == ["trigger", "resolve", "trigger"]
    assert [r.body["dedup_key"] for r in vendor.requests] == [dedup_key(a) for a in alerts]
    assert all(r.problems == [] for r in vendor.requests)


def test_dedup_key_is_stable_across_processes() -> None:
    labels = {"alertname": "HighErrorRate", "service": "api", "severity": "critical"}
    here = dedup_key(make_alert(service="api", severity="critical"))
    script = (
        "from streamalert.notify.model import Alert, fingerprint\n"
        "from streamalert.notify.sinks.pagerduty import dedup_key\n"
        "labels = {'severity': 'critical', 'service': 'api', 'alertname': 'HighErrorRate'}\n"  # other order
        "print(dedup_key(Alert(fingerprint(labels), 'resolved', labels, {}, '', '')))\n"
    )
    there = subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        capture_output=True,
        text=True,
        cwd=pathlib.Path(__file__).parents[2],
    ).stdout.strip()
    assert there == here == f"streamalert-{fingerprint(labels)}"
    assert dedup_key(make_alert(service="web")) != here


def test_overlong_fingerprint_still_fits() -> None:
    alert = Alert("f" * 400, "firing", {"alertname": "X"}, {}, "2024-05-01T10:00:00Z", ZERO_TIME)
    key = dedup_key(alert)
    assert len(key) <= 255
    assert key.startswith("streamalert-")
    assert key == dedup_key(alert)


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("critical", "critical"),
        ("error", "error"),
        ("warning", "warning"),
        ("info", "info"),
        ("CRITICAL", "critical"),
        ("page", "warning"),
        (None, "warning"),
    ],
)
async def test_severity_mapping(label: str | None, expected: str) -> None:
    alert = make_alert(severity=label) if label is not None else make_alert()
    async with serve(pd_vendor()) as vendor, aiohttp.ClientSession() as http:
        await make_sink(vendor).send(make_notification(alert), http)
    (request,) = vendor.requests
    assert request.problems == []
    assert request.body["payload"]["severity"] == expected


async def test_long_summary_is_cut_to_1024_characters() -> None:
    alert = make_alert(annotations={"summary": "x" * 5000, "runbook_url": "javascript:alert(1)"})
    async with serve(pd_vendor()) as vendor, aiohttp.ClientSession() as http:
        await make_sink(vendor).send(make_notification(alert), http)
    (request,) = vendor.requests
    assert request.problems == []
    summary = request.body["payload"]["summary"]
    assert len(summary) == 1024
    assert summary.startswith("HighErrorRate: xxx")
    assert summary.endswith("…")
    assert "links" not in request.body  # only http(s) runbooks become links


async def test_summary_without_annotations_names_the_labels() -> None:
    alert = make_alert(annotations={}, service="api", severity="info")
    async with serve(pd_vendor()) as vendor, aiohttp.ClientSession() as http:
        await make_sink(vendor).send(make_notification(alert), http)
    assert vendor.requests[0].body["payload"]["summary"] == "HighErrorRate: firing (service=api)"


async def test_send_resolved_false_skips_resolved_alerts() -> None:
    async with serve(pd_vendor()) as vendor, aiohttp.ClientSession() as http:
        sink = make_sink(vendor, send_resolved=False)
        await sink.send(make_notification(make_alert(pod="a"), make_alert("resolved", pod="b")), http)
        await sink.send(make_notification(make_alert("resolved", pod="c"), id="d-2"), http)
    assert [r.body["event_action"] for r in vendor.requests] == ["trigger"]


async def test_rate_limited_is_retryable_with_retry_after() -> None:
    async with serve(pd_vendor()) as vendor, aiohttp.ClientSession() as http:
        vendor.fail(429, retry_after=7, body={"status": "throttle event", "message": "Requests for this service"})
        with pytest.raises(DeliveryError) as caught:
            await make_sink(vendor).send(make_notification(make_alert()), http)
    error = caught.value
    assert (error.retryable, error.retry_after, error.status) == (True, 7.0, 429)
    assert ROUTING_KEY not in str(error)
    assert "pagerduty" in str(error)


async def test_server_error_is_retryable() -> None:
    async with serve(pd_vendor()) as vendor, aiohttp.ClientSession() as http:
        vendor.fail(500)
        with pytest.raises(DeliveryError) as caught:
            await make_sink(vendor).send(make_notification(make_alert()), http)
    assert (caught.value.retryable, caught.value.status) == (True, 500)
    assert ROUTING_KEY not in str(caught.value)


async def test_invalid_event_is_not_retryable() -> None:
    bad_key = "short-key"  # PagerDuty answers 400 invalid event
    async with serve(pd_vendor()) as vendor, aiohttp.ClientSession() as http:
        sink = make_sink(vendor, routing_key=bad_key)
        with pytest.raises(DeliveryError) as caught:
            await sink.send(make_notification(make_alert()), http)
    assert (caught.value.retryable, caught.value.status) == (False, 400)
    assert vendor.requests[0].problems == ["routing_key: must be the 32-character integration key"]
    assert bad_key not in str(caught.value)
    assert bad_key not in repr(sink.config)


async def test_connection_failure_is_retryable_and_names_no_secret() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with aiohttp.ClientSession() as http:
        sink = PagerdutySink(
            PagerdutyConfig.model_validate({"routing_key": ROUTING_KEY, "url": f"http://127.0.0.1:{port}{PATH}"})
        )
        with pytest.raises(DeliveryError) as caught:
            await sink.send(make_notification(make_alert()), http)
    assert caught.value.retryable
    assert ROUTING_KEY not in str(caught.value)
    assert str(port) not in str(caught.value)


async def test_retry_skips_events_already_accepted() -> None:
    alerts = (make_alert(pod="a"), make_alert(pod="b"), make_alert(pod="c"))
    notification = make_notification(*alerts)
    async with serve(pd_vendor()) as vendor, aiohttp.ClientSession() as http:
        sink = make_sink(vendor)
        vendor.faults.append(Fault(202, {}, PD_OK))  # first event accepted
        vendor.fail(503)  # second refused
        with pytest.raises(DeliveryError):
            await sink.send(notification, http)
        await sink.send(notification, http)  # the retry
    sent = [r.body["dedup_key"] for r in vendor.requests]
    assert sent == [dedup_key(alerts[0]), dedup_key(alerts[1]), dedup_key(alerts[1]), dedup_key(alerts[2])]
    assert [r.answered for r in vendor.requests] == [202, 503, 200, 200]


def test_config_needs_exactly_one_routing_key(tmp_path: pathlib.Path) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(ROUTING_KEY, encoding="utf-8")
    with pytest.raises(pydantic.ValidationError, match="exactly one of routing_key and routing_key_file"):
        PagerdutyConfig.model_validate({})
    with pytest.raises(pydantic.ValidationError) as caught:
        PagerdutyConfig.model_validate({"routing_key": ROUTING_KEY, "routing_key_file": key_file})
    assert ROUTING_KEY not in str(caught.value.errors(include_input=False))  # as the config loader reports it
    with pytest.raises(pydantic.ValidationError, match="extra"):
        PagerdutyConfig.model_validate({"routing_key": ROUTING_KEY, "severity": "critical"})
    config = PagerdutyConfig.model_validate({"routing_key_file": key_file, "class": "cpu"})
    assert config.class_ == "cpu"
    assert config.url == "https://events.pagerduty.com/v2/enqueue"


def test_unreadable_routing_key_file(tmp_path: pathlib.Path) -> None:
    config = PagerdutyConfig.model_validate({"routing_key_file": tmp_path / "missing"})
    with pytest.raises(ValueError, match="routing_key_file: cannot read"):
        PagerdutySink(config)


# ---- options: severity map, priority, details, images, links -------------------------------------------


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("page", "critical"),  # a label value of the map
        ("PAGE", "critical"),  # case aside
        ("warning", "error"),  # a level of the map
        ("warn", "error"),  # an alias of a mapped level
        ("info", "info"),  # not in the map: its level
    ],
)
async def test_severity_map(label: str, expected: str) -> None:
    """severity_map sends the PD-CEF severity it names for the alert's severity label, else the level's."""
    async with serve(pd_vendor()) as vendor, aiohttp.ClientSession() as http:
        sink = make_sink(vendor, severity_map={"page": "critical", "warning": "error"})
        await sink.send(make_notification(make_alert(severity=label)), http)
    (request,) = vendor.requests
    assert request.problems == []
    assert request.body["payload"]["severity"] == expected


async def test_priority_details_images_and_links() -> None:
    """priorities put a priority in custom_details (for an orchestration rule); details, images and links
    are sent as configured, the runbook first among the links; resolve events stay bare."""
    config = {
        "priorities": {"critical": "P1", "warning": "P3"},
        "details": {"team": "payments", "dashboard": "https://grafana.example/d/api"},
        "images": [{"src": "https://grafana.example/render/api.png", "href": "https://grafana.example/d/api"}],
        "links": [{"href": "https://grafana.example/d/api", "text": "Dashboard"}],
    }
    critical = make_alert(
        annotations={"summary": "down", "runbook_url": "https://runbooks.example/api"}, severity="critical"
    )
    info = make_alert(severity="info", pod="b")
    async with serve(pd_vendor()) as vendor, aiohttp.ClientSession() as http:
        sink = make_sink(vendor, **config)
        await sink.send(make_notification(critical, info, make_alert("resolved", pod="c")), http)
    first, second, resolve = vendor.requests
    assert [r.problems for r in vendor.requests] == [[], [], []]
    details = first.body["payload"]["custom_details"]
    assert details["priority"] == "P1"
    assert details["team"] == "payments"
    assert details["labels"] == critical.labels
    assert "priority" not in second.body["payload"]["custom_details"]  # info has no priority in the map
    assert first.body["links"] == [
        {"href": "https://runbooks.example/api", "text": "Runbook"},
        {"href": "https://grafana.example/d/api", "text": "Dashboard"},
    ]
    assert first.body["images"] == config["images"]
    assert second.body["links"] == [{"href": "https://grafana.example/d/api", "text": "Dashboard"}]
    assert set(resolve.body) == {"routing_key", "event_action", "dedup_key"}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"severity_map": {"page": "P1"}}, "'P1' is not a PagerDuty severity"),
        ({"priorities": {"urgent": "P1"}}, "'urgent' is not a severity level"),
        ({"details": {"labels": "x"}}, "'labels' is a custom_details field of its own"),
        ({"images": [{"src": "http://grafana.example/a.png"}]}, "must be an https:// URL"),
        ({"links": [{"href": "javascript:alert(1)"}]}, "must be an http:// or https:// URL"),
        ({"links": [{"href": "https://x.example", "title": "x"}]}, "Extra inputs"),
    ],
)
def test_option_errors(values: dict[str, Any], message: str) -> None:
    """Bad options are refused at config time with the reason."""
    with pytest.raises(pydantic.ValidationError) as caught:
        PagerdutyConfig.model_validate({"routing_key": ROUTING_KEY, **values})
    assert message in str(caught.value.errors(include_input=False))
