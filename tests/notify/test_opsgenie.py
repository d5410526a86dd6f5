"""The opsgenie sink against a fake Alert API v2 that checks requests against Opsgenie's documented schema
(https://docs.opsgenie.com/docs/alert-api: create alert, close alert, field limits, GenieKey auth)."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import aiohttp
import pydantic
import pytest

from streamalert.config.notify import NotifyConfig
from streamalert.notify.model import ZERO_TIME, Alert, Notification, fingerprint
from streamalert.notify.sinks import build_sinks, registry
from streamalert.notify.sinks.base import DeliveryError, Sink
from streamalert.notify.sinks.opsgenie import OpsgenieConfig, OpsgenieSink, alias
from tests.notify.vendor import Fault, Vendor, serve

API_KEY = "eb243592-faa2-4ba2-a551-1afdf565c889"  # the shape of a real integration key
OG_OK = {"result": "Request will be processed", "took": 0.302, "requestId": "43a29c5c-3dbf-4fa4-9c26-f4f71023e120"}
CREATE_PATH = "/v2/alerts"
CLOSE_PATH = re.compile(r"^/v2/alerts/(?P<alias>[^/]+)/close$")
CREATE_FIELDS = {
    "message", "alias", "description", "responders", "visibleTo", "actions", "tags", "details", "entity",
    "source", "priority", "user", "note",
}  # fmt: skip
CLOSE_FIELDS = {"user", "source", "note"}
RESPONDER_TYPES = {"team", "user", "escalation", "schedule"}
PRIORITIES = {"P1", "P2", "P3", "P4", "P5"}
LIMITS = {"message": 130, "alias": 512, "description": 15000, "entity": 512, "source": 100, "user": 100, "note": 25000}


# ---- the documented schema -----------------------------------------------------------------------------


def conformance_validator(path: str, headers: dict[str, str], body: Any) -> list[str]:
    """Problems of one request against Opsgenie's Alert API v2 (create or close by alias)."""
    problems: list[str] = []
    auth = headers.get("authorization", "")
    if not auth.startswith("GenieKey ") or not auth.removeprefix("GenieKey ").strip():
        problems.append("Authorization: must be 'GenieKey <api key>'")
    if not headers.get("content-type", "").startswith("application/json"):
        problems.append("Content-Type must be application/json")
    if not isinstance(body, dict):
        return [*problems, "body must be a JSON object"]
    if path == CREATE_PATH:
        return problems + _create_problems(body)
    if CLOSE_PATH.match(path):
        problems += [f"close: unknown field {k!r}" for k in sorted(set(body) - CLOSE_FIELDS)]
        problems += _length_problems(body, CLOSE_FIELDS)
        return problems
    return [*problems, f"path {path!r}: not an Alert API v2 create or close"]


def _length_problems(body: dict[str, Any], names: set[str]) -> list[str]:
    problems = []
    for name in sorted(names & set(body) & set(LIMITS)):
        if not isinstance(body[name], str) or len(body[name]) > LIMITS[name]:
            problems.append(f"{name}: a string of at most {LIMITS[name]} characters")
    return problems


def _create_problems(body: dict[str, Any]) -> list[str]:
    problems = [f"unknown field {k!r}" for k in sorted(set(body) - CREATE_FIELDS)]
    if not isinstance(body.get("message"), str) or not body["message"]:
        problems.append("message: required")
    problems += _length_problems(body, CREATE_FIELDS)
    if "priority" in body and body["priority"] not in PRIORITIES:
        problems.append("priority: one of P1..P5")
    responders = body.get("responders", [])
    if not isinstance(responders, list) or len(responders) > 50:
        problems.append("responders: a list of at most 50")
    else:
        for index, r in enumerate(responders):
            ids = [k for k in ("id", "name", "username") if isinstance(r, dict) and r.get(k)]
            if not isinstance(r, dict) or r.get("type") not in RESPONDER_TYPES or len(ids) != 1:
                problems.append(f"responders.{index}: a type ({sorted(RESPONDER_TYPES)}) and one of id/name/username")
            elif r.get("username") and r["type"] != "user":
                problems.append(f"responders.{index}: username is for users")
    tags = body.get("tags", [])
    if not isinstance(tags, list) or len(tags) > 20 or not all(isinstance(t, str) and len(t) <= 50 for t in tags):
        problems.append("tags: at most 20 strings of at most 50 characters")
    details = body.get("details", {})
    if not isinstance(details, dict) or not all(isinstance(v, str) for v in details.values()):
        problems.append("details: an object of strings")
    elif sum(len(k) + len(v) for k, v in details.items()) > 8000:
        problems.append("details: at most 8000 characters")
    return problems


def conformance_sink(base_url: str, tmp_path: pathlib.Path) -> Sink:
    key_file = tmp_path / "opsgenie_api_key"
    key_file.write_text(API_KEY + "\n", encoding="utf-8")
    return OpsgenieSink(OpsgenieConfig.model_validate({"api_key_file": key_file, "api_url": base_url + "/"}))


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


def make_notification(*alerts: Alert, id: str = "delivery-1") -> Notification:
    return Notification(
        id=id,
        receiver="oncall",
        sink="opsgenie/0",
        group_key='{}:{alertname="HighErrorRate"}',
        group_labels={"alertname": "HighErrorRate"},
        alerts=alerts,
        at="2024-05-01T10:00:30Z",
        external_url="https://alerts.example",
    )


def make_sink(vendor: Vendor, **config: Any) -> OpsgenieSink:
    return OpsgenieSink(OpsgenieConfig.model_validate({"api_key": API_KEY, "api_url": vendor.url, **config}))


def og_vendor() -> Vendor:
    return Vendor(conformance_validator, ok_body=OG_OK)


# ---- tests ---------------------------------------------------------------------------------------------


def test_registered() -> None:
    """Receivers configure it as opsgenie_configs."""
    assert registry()["opsgenie"].config is OpsgenieConfig


async def test_create_then_close_by_the_same_alias() -> None:
    """A firing alert is created with a fingerprint alias; its resolve closes that alias."""
    firing = make_alert(service="api", severity="critical")
    resolved = make_alert("resolved", service="api", severity="critical")
    async with serve(og_vendor()) as vendor, aiohttp.ClientSession() as http:
        sink = make_sink(vendor)
        await sink.send(make_notification(firing, id="d-1"), http)
        await sink.send(make_notification(resolved, id="d-2"), http)
    create, close = vendor.requests
    assert [r.problems for r in vendor.requests] == [[], []]
    assert create.path == CREATE_PATH
    assert create.body["alias"] == f"streamalert-{firing.fingerprint}" == alias(resolved)
    match = CLOSE_PATH.match(close.path)
    assert match is not None
    assert match["alias"] == create.body["alias"]
    assert close.query == {"identifierType": "alias"}
    assert close.body == {"source": "streamalert", "note": "Resolved"}
    assert create.headers["authorization"] == f"GenieKey {API_KEY}"
    assert [r.headers["x-streamalert-delivery"] for r in vendor.requests] == ["d-1", "d-2"]


async def test_create_body_shape() -> None:
    """Message, description, priority, responders (teams expanded), tags, details and entity as documented."""
    alert = make_alert(
        annotations={"summary": "error rate above 5%", "runbook_url": "https://runbooks.example/errors"},
        service="api",
        severity="error",
    )
    config = {
        "source": "prod-eu",
        "entity": "api",
        "tags": "prod, api",  # Alertmanager's comma-separated form
        "details": {"team": "payments"},
        "responders": [
            {"name": "payments", "type": "team"},
            {"name": "sre,dba", "type": "teams"},
            {"username": "ana@example.com", "type": "user"},
            {"id": "4513b7ea-3b91-438f-b7e4-e3e54af9147c", "type": "escalation"},
        ],
    }
    async with serve(og_vendor()) as vendor, aiohttp.ClientSession() as http:
        await make_sink(vendor, **config).send(make_notification(alert), http)
    (request,) = vendor.requests
    assert request.problems == []
    assert request.body == {
        "message": "HighErrorRate: error rate above 5%",
        "alias": f"streamalert-{alert.fingerprint}",
        "description": "error rate above 5%\nValue: 0.07\nLabels: service=api\n"
        "Runbook: https://runbooks.example/errors\nSource: https://alerts.example",
        "priority": "P2",
        "source": "prod-eu",
        "entity": "api",
        "tags": ["prod", "api"],
        "details": {"team": "payments", "alertname": "HighErrorRate", "service": "api", "severity": "error"},
        "responders": [
            {"name": "payments", "type": "team"},
            {"name": "sre", "type": "team"},
            {"name": "dba", "type": "team"},
            {"username": "ana@example.com", "type": "user"},
            {"id": "4513b7ea-3b91-438f-b7e4-e3e54af9147c", "type": "escalation"},
        ],
    }


@pytest.mark.parametrize(
    ("severity", "config", "expected"),
    [
        ("critical", {}, "P1"),
        ("error", {}, "P2"),
        ("warning", {}, "P3"),
        ("info", {}, "P5"),
        ("high", {}, "P2"),  # an alias of error
        (None, {}, "P3"),  # no severity: warning
        ("warning", {"priorities": {"warning": "P2"}}, "P2"),
        ("critical", {"priorities": {"warning": "P2"}}, "P1"),  # a partial map keeps the other defaults
        ("info", {"priority": "P4"}, "P4"),
    ],
)
async def test_priority_from_severity(severity: str | None, config: dict[str, Any], expected: str) -> None:
    """The priority comes from the severity level through the (configurable) map."""
    alert = make_alert(severity=severity) if severity is not None else make_alert()
    async with serve(og_vendor()) as vendor, aiohttp.ClientSession() as http:
        await make_sink(vendor, **config).send(make_notification(alert), http)
    (request,) = vendor.requests
    assert request.problems == []
    assert request.body["priority"] == expected


async def test_texts_are_cut_to_the_documented_limits() -> None:
    """An overlong summary and huge labels still make a request Opsgenie accepts."""
    alert = make_alert(annotations={"summary": "x" * 20000}, blob="y" * 7990, pod="p1")
    async with serve(og_vendor()) as vendor, aiohttp.ClientSession() as http:
        await make_sink(vendor).send(make_notification(alert), http)
    (request,) = vendor.requests
    assert request.problems == []
    assert len(request.body["message"]) == 130
    assert request.body["message"].endswith("…")
    assert len(request.body["description"]) == 15000
    assert request.body["details"]["pod"] == "p1"  # small labels kept, the one that does not fit left out
    assert "blob" not in request.body["details"]


async def test_retry_skips_requests_already_accepted() -> None:
    """A retry of a notification does not create again the alerts Opsgenie accepted."""
    alerts = (make_alert(pod="a"), make_alert("resolved", pod="b"), make_alert(pod="c"))
    notification = make_notification(*alerts)
    async with serve(og_vendor()) as vendor, aiohttp.ClientSession() as http:
        sink = make_sink(vendor)
        vendor.faults.append(Fault(202, {}, OG_OK))
        vendor.fail(503)
        with pytest.raises(DeliveryError):
            await sink.send(notification, http)
        await sink.send(notification, http)
    assert [r.path.rsplit("/", 1)[-1] for r in vendor.requests] == ["alerts", "close", "close", "alerts"]
    assert [r.answered for r in vendor.requests] == [202, 503, 200, 200]


async def test_eu_api_url_and_a_rejected_key() -> None:
    """A 422 (Opsgenie's answer to a bad request) is not retried, and the key never shows in the error."""
    async with serve(og_vendor()) as vendor, aiohttp.ClientSession() as http:
        vendor.fail(422, body={"message": f"Key format is not valid {API_KEY}", "took": 0.001, "requestId": "r"})
        with pytest.raises(DeliveryError) as caught:
            await make_sink(vendor).send(make_notification(make_alert()), http)
    assert (caught.value.retryable, caught.value.status) == (False, 422)
    assert API_KEY not in str(caught.value)
    assert str(caught.value).startswith("opsgenie: HTTP 422: Key format is not valid ***")
    eu = OpsgenieConfig.model_validate({"api_key": API_KEY, "api_url": "https://api.eu.opsgenie.com"})
    assert eu.api_url == "https://api.eu.opsgenie.com/"


def test_config_errors(tmp_path: pathlib.Path) -> None:
    """Bad settings are refused with the key named and without the key's value."""
    cases: list[tuple[dict[str, Any], str]] = [
        ({}, "exactly one of api_key and api_key_file"),
        ({"api_key": API_KEY, "priorities": {"urgent": "P1"}}, "'urgent' is not a severity level"),
        ({"api_key": API_KEY, "priorities": {"critical": "P0"}}, "'P0' is not one of P1"),
        ({"api_key": API_KEY, "priority": "P1", "priorities": {"info": "P5"}}, "at most one of priority and"),
        ({"api_key": API_KEY, "responders": [{"type": "team"}]}, "exactly one of id, name and username"),
        ({"api_key": API_KEY, "responders": [{"name": "x", "type": "squad"}]}, "Input should be"),
        ({"api_key": API_KEY, "tags": ["t"] * 21}, "at most 20 tags"),
        ({"api_key": API_KEY, "api_url": "https://user:pw@api.opsgenie.com/"}, "set only one way"),
        ({"api_key": API_KEY, "api_url": "https://api.opsgenie.com/?x=1"}, "cannot have a query"),
        ({"api_key": "two words"}, "api_key: contains a space"),
        ({"api_key": API_KEY, "visible_to": []}, "Extra inputs are not permitted"),
    ]
    for values, message in cases:
        with pytest.raises(pydantic.ValidationError) as caught:
            OpsgenieConfig.model_validate(values)
        text = str(caught.value.errors(include_input=False))
        assert message in text, (values, text)
        assert API_KEY not in text


def test_key_from_a_file_read_when_built(tmp_path: pathlib.Path) -> None:
    """api_key_file is read when the sink is built: a missing file fails the start naming receiver and key."""
    config = NotifyConfig.model_validate(
        {
            "route": {"receiver": "ops"},
            "receivers": [{"name": "ops", "opsgenie_configs": [{"api_key_file": str(tmp_path / "missing")}]}],
        }
    )
    with pytest.raises(ValueError, match=r"receivers: ops: opsgenie_configs.0: api_key_file: cannot read"):
        build_sinks(config)
