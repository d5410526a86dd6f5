"""The apprise sink through the real apprise library, with its json:// and form:// targets posting to a local
aiohttp server that checks Apprise's documented payloads (JSON: version, title, message, attachments, type;
form: the same fields form-encoded)."""

from __future__ import annotations

import logging
import pathlib
import subprocess
import sys
from typing import Any

import aiohttp
import pydantic
import pytest

from streamalert.config.notify import NotifyConfig
from streamalert.notify.model import ZERO_TIME, Alert, Notification, fingerprint
from streamalert.notify.sinks import build_sinks, registry
from streamalert.notify.sinks.apprise_sink import AppriseConfig, AppriseSink, body
from streamalert.notify.sinks.base import DeliveryError, Sink
from tests.notify.vendor import Vendor, serve

TOKEN = "tk_9f8e7d6c5b4a39281706"  # a service token in the URL's path: the secret
PATH = f"/hooks/{TOKEN}"
TYPES = {"info", "success", "warning", "failure"}
FIELDS = {"version", "title", "message", "attachments", "type"}


# ---- the documented payload ------------------------------------------------------------------------------


def conformance_validator(path: str, headers: dict[str, str], body: Any) -> list[str]:
    """Problems of one json:// request against Apprise's JSON payload (version 1.0)."""
    problems: list[str] = []
    if path != PATH:
        problems.append(f"path {path!r}: not the configured path")
    if not headers.get("content-type", "").startswith("application/json"):
        problems.append("Content-Type must be application/json")
    if not isinstance(body, dict):
        return [*problems, "body must be a JSON object"]
    problems += [f"unknown field {k!r}" for k in sorted(set(body) - FIELDS)]
    problems += [f"missing field {k!r}" for k in sorted(FIELDS - set(body))]
    if body.get("version") != "1.0":
        problems.append("version: '1.0'")
    for name in ("title", "message"):
        if not isinstance(body.get(name), str) or not body[name]:
            problems.append(f"{name}: a non-empty string")
    if body.get("attachments") != []:
        problems.append("attachments: none sent")
    if body.get("type") not in TYPES:
        problems.append(f"type: one of {sorted(TYPES)}")
    return problems


def json_url(base_url: str) -> str:
    return base_url.replace("http://", "json://", 1) + PATH


def conformance_sink(base_url: str, tmp_path: pathlib.Path) -> Sink:
    url_file = tmp_path / "apprise_url"
    url_file.write_text(json_url(base_url) + "\n", encoding="utf-8")
    return AppriseSink(AppriseConfig.model_validate({"url_file": url_file}))


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


def make_notification(*alerts: Alert) -> Notification:
    return Notification(
        id="delivery-1",
        receiver="oncall",
        sink="apprise/0",
        group_key='{}:{alertname="HighErrorRate"}',
        group_labels={"alertname": "HighErrorRate"},
        alerts=alerts,
        at="2024-05-01T10:00:30Z",
        external_url="https://alerts.example",
    )


def make_sink(url: str) -> AppriseSink:
    return AppriseSink(AppriseConfig.model_validate({"url": url}))


# ---- tests ---------------------------------------------------------------------------------------------


def test_registered() -> None:
    """Receivers configure it as apprise_configs."""
    assert registry()["apprise"].config is AppriseConfig


async def test_json_target_gets_title_body_and_type() -> None:
    """json://: Apprise's JSON payload with our title, the alerts as text, the type from the severity."""
    alert = make_alert(
        annotations={"summary": "error rate above 5%", "runbook_url": "https://runbooks.example/errors"},
        service="api",
        severity="critical",
    )
    async with serve(Vendor(conformance_validator)) as vendor, aiohttp.ClientSession() as http:
        await make_sink(json_url(vendor.url)).send(make_notification(alert), http)
    (request,) = vendor.requests
    assert request.problems == []
    assert request.headers["x-streamalert-delivery"] == "delivery-1"
    assert request.body["title"] == "[FIRING:1] HighErrorRate"
    assert request.body["type"] == "failure"
    assert request.body["message"] == (
        "[FIRING] HighErrorRate (critical) value=0.07\nerror rate above 5%\nservice=api\n"
        "Runbook: https://runbooks.example/errors\n\nhttps://alerts.example"
    )


@pytest.mark.parametrize(
    ("alert", "expected"),
    [
        (make_alert(severity="warning"), "warning"),
        (make_alert(severity="info"), "info"),
        (make_alert("resolved", severity="critical"), "success"),
    ],
)
async def test_type_follows_status_and_severity(alert: Alert, expected: str) -> None:
    """Warning and info alerts map to Apprise's warning and info; a resolved notification to success."""
    async with serve(Vendor(conformance_validator)) as vendor, aiohttp.ClientSession() as http:
        await make_sink(json_url(vendor.url)).send(make_notification(alert), http)
    assert vendor.requests[0].body["type"] == expected


async def test_form_target() -> None:
    """form://: the same message form-encoded (another Apprise plugin, same sink)."""
    seen: list[dict[str, str]] = []

    def validator(path: str, headers: dict[str, str], raw: Any) -> list[str]:
        from urllib.parse import parse_qsl  # noqa: PLC0415

        seen.append(dict(parse_qsl(raw)))
        ok = headers.get("content-type", "").startswith("application/x-www-form-urlencoded")
        return [] if ok else ["Content-Type must be form-encoded"]

    async with serve(Vendor(validator)) as vendor, aiohttp.ClientSession() as http:
        url = vendor.url.replace("http://", "form://", 1) + PATH
        await make_sink(url).send(make_notification(make_alert(severity="info")), http)
    assert vendor.requests[0].problems == []
    assert seen[0]["title"] == "[FIRING:1] HighErrorRate"
    assert seen[0]["type"] == "info"
    assert seen[0]["message"].startswith("[FIRING] HighErrorRate (info)")


@pytest.mark.parametrize(("status", "retryable"), [(400, False), (404, False), (429, True), (503, True)])
async def test_status_read_from_apprise(status: int, retryable: bool) -> None:
    """The service's HTTP status, which Apprise only logs, decides the retry; the answer is quoted scrubbed."""
    async with serve(Vendor(conformance_validator)) as vendor, aiohttp.ClientSession() as http:
        vendor.fail(status, body={"message": f"no such hook {TOKEN}"})
        with pytest.raises(DeliveryError) as caught:
            await make_sink(json_url(vendor.url)).send(make_notification(make_alert()), http)
    error = caught.value
    assert (error.status, error.retryable) == (status, retryable)
    assert str(error) == f"apprise: HTTP {status}: no such hook ***"


class Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(f"{record.name} {record.getMessage()}")


async def test_apprise_logs_stay_out_of_the_service_log() -> None:
    """Apprise's own records name the host and path: none reaches the root logger (the service's log)."""
    root = Collect()
    logging.getLogger().addHandler(root)
    try:
        async with serve(Vendor(conformance_validator)) as vendor, aiohttp.ClientSession() as http:
            vendor.fail(500)
            with pytest.raises(DeliveryError):
                await make_sink(json_url(vendor.url)).send(make_notification(make_alert()), http)
    finally:
        logging.getLogger().removeHandler(root)
    assert not [line for line in root.lines if line.startswith("apprise")], root.lines
    assert not [line for line in root.lines if TOKEN in line], root.lines


def test_body_is_bounded() -> None:
    """Many alerts: at most 20 paragraphs, then "and N more"."""
    text = body(make_notification(*(make_alert(pod=f"p{i}") for i in range(25))))
    assert text.count("[FIRING]") == 20
    assert "and 5 more" in text


def test_config_errors(tmp_path: pathlib.Path) -> None:
    """A URL that is not an Apprise URL or that Apprise does not know is refused, never echoed."""
    with pytest.raises(pydantic.ValidationError, match="exactly one of url and url_file"):
        AppriseConfig.model_validate({})
    with pytest.raises(pydantic.ValidationError) as caught:
        AppriseConfig.model_validate({"url": f"not a url {TOKEN}"})
    assert TOKEN not in str(caught.value.errors(include_input=False))
    config = NotifyConfig.model_validate(
        {"route": {"receiver": "ops"}, "receivers": [{"name": "ops", "apprise_configs": [{"url": f"nope://{TOKEN}"}]}]}
    )
    with pytest.raises(ValueError, match=r"apprise_configs.0: url: Apprise cannot use this URL") as refused:
        build_sinks(config)
    assert TOKEN not in str(refused.value)


def test_loading_a_config_does_not_import_apprise() -> None:
    """Apprise (a few hundred ms to import) is imported when an apprise sink is built, not before."""
    script = (
        "import sys\n"
        "from streamalert.config.notify import NotifyConfig\n"
        "NotifyConfig.model_validate({'route': {'receiver': 'a'}, 'receivers': [{'name': 'a', "
        "'apprise_configs': [{'url': 'json://localhost/x'}]}]})\n"
        "print('apprise' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        check=True,
        capture_output=True,
        text=True,
        cwd=pathlib.Path(__file__).parents[2],
    ).stdout.strip()
    assert out == "False"
