"""The webhook sink against a fake receiver that checks bodies against Alertmanager's webhook payload v4."""

from __future__ import annotations

import pathlib
import re
import socket
from typing import Any

import aiohttp
import pydantic
import pytest

from streamalert.notify.model import ZERO_TIME, Alert, Notification, fingerprint
from streamalert.notify.sinks import registry
from streamalert.notify.sinks.base import DeliveryError, Sink
from streamalert.notify.sinks.webhook import WebhookConfig, WebhookSink
from tests.notify.vendor import Vendor, serve

PATH = "/hooks/T0KEN-in-the-url"  # webhook URLs often carry a secret: it must not leak into errors
TOKEN = "bearer-s3cret-token"
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)")
STATUSES = {"firing", "resolved"}
TOP_LEVEL: dict[str, type] = {
    "version": str,
    "groupKey": str,
    "truncatedAlerts": int,
    "status": str,
    "receiver": str,
    "groupLabels": dict,
    "commonLabels": dict,
    "commonAnnotations": dict,
    "externalURL": str,
    "alerts": list,
}
ALERT_FIELDS: dict[str, type] = {
    "status": str,
    "labels": dict,
    "annotations": dict,
    "startsAt": str,
    "endsAt": str,
    "generatorURL": str,
    "fingerprint": str,
}


# ---- the documented format -----------------------------------------------------------------------------


def _string_map(value: Any) -> bool:
    return isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items())


def conformance_validator(path: str, headers: dict[str, str], body: Any) -> list[str]:
    """Problems of one request against Alertmanager's webhook payload, version 4."""
    problems: list[str] = []
    if path != PATH:
        problems.append(f"path {path!r}: expected {PATH!r}")
    if not headers.get("content-type", "").startswith("application/json"):
        problems.append("Content-Type must be application/json")
    if not isinstance(body, dict):
        return [*problems, "body must be a JSON object"]
    for key, kind in TOP_LEVEL.items():
        if key not in body:
            problems.append(f"{key}: missing")
        elif not isinstance(body[key], kind) or isinstance(body[key], bool):
            problems.append(f"{key}: must be a {kind.__name__}")
    if problems:
        return problems
    if body["version"] != "4":
        problems.append('version: must be "4"')
    if body["truncatedAlerts"] < 0:
        problems.append("truncatedAlerts: must not be negative")
    if body["status"] not in STATUSES:
        problems.append("status: firing or resolved")
    for key in ("groupLabels", "commonLabels", "commonAnnotations"):
        if not _string_map(body[key]):
            problems.append(f"{key}: must map strings to strings")
    if not body["alerts"]:
        problems.append("alerts: must not be empty")
    for i, alert in enumerate(body["alerts"]):
        problems += [f"alerts[{i}].{p}" for p in _alert_problems(alert)]
    statuses = {a.get("status") for a in body["alerts"] if isinstance(a, dict)}
    if body["status"] != ("firing" if "firing" in statuses else "resolved"):
        problems.append("status: firing exactly when one of the alerts is firing")
    return problems


def _alert_problems(alert: Any) -> list[str]:
    if not isinstance(alert, dict):
        return ["must be an object"]
    problems = [
        f"{k}: missing or not a {t.__name__}" for k, t in ALERT_FIELDS.items() if not isinstance(alert.get(k), t)
    ]
    if problems:
        return problems
    if alert["status"] not in STATUSES:
        problems.append("status: firing or resolved")
    for key in ("labels", "annotations"):
        if not _string_map(alert[key]):
            problems.append(f"{key}: must map strings to strings")
    for key in ("startsAt", "endsAt"):
        if not RFC3339.fullmatch(alert[key]):
            problems.append(f"{key}: must be RFC 3339")
    if alert["status"] == "firing" and alert["endsAt"] != ZERO_TIME:
        problems.append("endsAt: the zero time while firing")
    return problems


def conformance_sink(base_url: str, tmp_path: pathlib.Path) -> Sink:
    url_file = tmp_path / "webhook_url"
    url_file.write_text(base_url + PATH + "\n", encoding="utf-8")
    return WebhookSink(WebhookConfig.model_validate({"url_file": url_file}))


# ---- helpers -------------------------------------------------------------------------------------------


def make_alert(status: str = "firing", **labels: str) -> Alert:
    labels = {"alertname": "DiskFull", "severity": "warning", **labels}
    return Alert(
        fingerprint=fingerprint(labels),
        status="firing" if status == "firing" else "resolved",
        labels=labels,
        annotations={"summary": f"disk full on {labels.get('host', '?')}"},
        starts_at="2024-05-01T10:00:00Z",
        ends_at=ZERO_TIME if status == "firing" else "2024-05-01T10:05:00Z",
        value=97,
    )


def make_notification(*alerts: Alert, id: str = "delivery-1", truncated: int = 0) -> Notification:
    return Notification(
        id=id,
        receiver="team-storage",
        sink="webhook/0",
        group_key='{}:{alertname="DiskFull"}',
        group_labels={"alertname": "DiskFull"},
        alerts=alerts,
        at="2024-05-01T10:00:30Z",
        external_url="https://streamalert.example",
        truncated_alerts=truncated,
    )


def make_sink(vendor: Vendor, **config: Any) -> WebhookSink:
    return WebhookSink(WebhookConfig.model_validate({"url": vendor.url + PATH, **config}))


# ---- tests ---------------------------------------------------------------------------------------------


def test_registered() -> None:
    assert registry()["webhook"].config is WebhookConfig


async def test_posts_the_alertmanager_payload_unchanged(tmp_path: pathlib.Path) -> None:
    notification = make_notification(make_alert(host="a"), make_alert("resolved", host="b"))
    async with serve(Vendor(conformance_validator)) as vendor, aiohttp.ClientSession() as http:
        await conformance_sink(vendor.url, tmp_path).send(notification, http)
    (request,) = vendor.requests
    assert request.problems == []
    assert request.answered == 200
    assert request.body == notification.webhook_payload()
    assert request.body["version"] == "4"
    assert request.headers["x-streamalert-delivery"] == "delivery-1"
    assert "authorization" not in request.headers


async def test_bearer_token(tmp_path: pathlib.Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    async with serve(Vendor(conformance_validator)) as vendor, aiohttp.ClientSession() as http:
        await make_sink(vendor, bearer_token=TOKEN).send(make_notification(make_alert()), http)
        await make_sink(vendor, bearer_token_file=token_file).send(make_notification(make_alert()), http)
    assert [r.headers["authorization"] for r in vendor.requests] == [f"Bearer {TOKEN}"] * 2


async def test_max_alerts_truncates_like_alertmanager() -> None:
    alerts = (
        make_alert("resolved", host="r1"),
        make_alert(host="f1"),
        make_alert("resolved", host="r2"),
        make_alert(host="f2"),
        make_alert(host="f3"),
    )
    async with serve(Vendor(conformance_validator)) as vendor, aiohttp.ClientSession() as http:
        await make_sink(vendor, max_alerts=2).send(make_notification(*alerts, truncated=1), http)
        await make_sink(vendor, max_alerts=5).send(make_notification(*alerts), http)
        await make_sink(vendor, max_alerts=0).send(make_notification(*alerts), http)
    truncated, exact, unlimited = (r.body for r in vendor.requests)
    assert all(r.problems == [] for r in vendor.requests)
    assert [a["labels"]["host"] for a in truncated["alerts"]] == ["f1", "f2"]  # firing ones kept first
    assert truncated["truncatedAlerts"] == 1 + 3
    assert truncated["status"] == "firing"
    assert exact == unlimited == make_notification(*alerts).webhook_payload()
    assert exact["truncatedAlerts"] == 0


async def test_send_resolved_false_drops_resolved_alerts() -> None:
    async with serve(Vendor(conformance_validator)) as vendor, aiohttp.ClientSession() as http:
        sink = make_sink(vendor, send_resolved=False)
        await sink.send(make_notification(make_alert(host="a"), make_alert("resolved", host="b")), http)
        await sink.send(make_notification(make_alert("resolved", host="c"), id="d-2"), http)
    (request,) = vendor.requests
    assert request.problems == []
    assert [a["labels"]["host"] for a in request.body["alerts"]] == ["a"]


@pytest.mark.parametrize(
    ("status", "retryable"), [(429, True), (500, True), (503, True), (400, False), (404, False), (410, False)]
)
async def test_errors_are_classified_and_name_no_secret(status: int, retryable: bool) -> None:
    """Each status is classified for the sender; the error names it and what the answer says, with the
    secrets the answer repeats (the URL's path, the bearer token, the server's address) taken out."""
    async with serve(Vendor(conformance_validator)) as vendor, aiohttp.ClientSession() as http:
        said = f"hook {PATH} refused: token {TOKEN} unknown at {vendor.url}"
        vendor.fail(status, retry_after=3 if status == 429 else None, body={"message": said})
        with pytest.raises(DeliveryError) as caught:
            await make_sink(vendor, bearer_token=TOKEN).send(make_notification(make_alert()), http)
    error = caught.value
    assert (error.retryable, error.status) == (retryable, status)
    assert error.retry_after == (3.0 if status == 429 else None)
    assert str(error) == f"webhook: HTTP {status}: hook *** refused: token *** unknown at <url>"
    for secret in (PATH, "T0KEN", TOKEN, vendor.url):
        assert secret not in str(error)


async def test_connection_failure_is_retryable_and_names_no_url() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    async with aiohttp.ClientSession() as http:
        sink = WebhookSink(WebhookConfig.model_validate({"url": f"http://127.0.0.1:{port}{PATH}"}))
        with pytest.raises(DeliveryError) as caught:
            await sink.send(make_notification(make_alert()), http)
    assert caught.value.retryable
    assert "T0KEN" not in str(caught.value)
    assert str(port) not in str(caught.value)


def test_config_checks(tmp_path: pathlib.Path) -> None:
    url_file = tmp_path / "url"
    url_file.write_text("https://hooks.example/T0KEN", encoding="utf-8")
    with pytest.raises(pydantic.ValidationError, match="exactly one of url and url_file"):
        WebhookConfig.model_validate({})
    with pytest.raises(pydantic.ValidationError, match="exactly one of url and url_file"):
        WebhookConfig.model_validate({"url": "https://hooks.example/T0KEN", "url_file": url_file})
    with pytest.raises(pydantic.ValidationError, match="http") as caught:
        WebhookConfig.model_validate({"url": "ftp://hooks.example/T0KEN"})
    assert "T0KEN" not in str(caught.value.errors(include_input=False))  # as the config loader reports it
    with pytest.raises(pydantic.ValidationError, match="at most one of bearer_token"):
        WebhookConfig.model_validate({"url_file": url_file, "bearer_token": TOKEN, "bearer_token_file": url_file})
    with pytest.raises(pydantic.ValidationError, match="greater than or equal to 0"):
        WebhookConfig.model_validate({"url_file": url_file, "max_alerts": -1})
    config = WebhookConfig.model_validate({"url": "https://hooks.example/T0KEN", "bearer_token": TOKEN})
    assert "T0KEN" not in repr(config)
    assert TOKEN not in repr(config)


def test_url_file_is_checked_when_built(tmp_path: pathlib.Path) -> None:
    url_file = tmp_path / "url"
    for content, problem in (
        ("not a url with T0KEN", "url_file: the URL contains a space"),
        ("ftp://hooks.example/T0KEN", "url_file: must be an absolute http"),
        ("https://hooks.example:99999/T0KEN", "url_file: not a valid URL"),
    ):
        url_file.write_text(content, encoding="utf-8")
        with pytest.raises(ValueError, match=problem) as caught:
            WebhookSink(WebhookConfig.model_validate({"url_file": url_file}))
        assert "T0KEN" not in str(caught.value)
    with pytest.raises(ValueError, match="url_file: cannot read"):
        WebhookSink(WebhookConfig.model_validate({"url_file": tmp_path / "missing"}))
