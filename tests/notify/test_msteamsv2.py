"""The msteamsv2 sink against a fake Power Automate workflow webhook that checks the message against the shape
Teams documents for workflow cards (a `message` with one Adaptive Card attachment, the card's element schema,
the 28 KB message limit)."""

from __future__ import annotations

import pathlib
import re
from typing import Any

import aiohttp
import orjson
import pydantic
import pytest

from streamalert.notify.model import ZERO_TIME, Alert, Notification, fingerprint
from streamalert.notify.sinks import registry
from streamalert.notify.sinks.base import Sink
from streamalert.notify.sinks.msteamsv2 import MAX_ALERTS, Msteamsv2Config, Msteamsv2Sink, escape, render
from tests.notify.vendor import Vendor, serve

SIG = "Xk3vQ9sLmN2pR7tUw0yZa4bC6dEf8gHi1jKl5MnOpQ"  # the workflow URL's signature: the secret
PATH = "/workflows/0b3c3e4fd6f04bd4a6e6d8f1e0a7c2b9/triggers/manual/paths/invoke"
QUERY = f"?api-version=1&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig={SIG}"
CARD_TYPE = "application/vnd.microsoft.card.adaptive"
VERSIONS = {"1.0", "1.1", "1.2", "1.3", "1.4", "1.5"}
MAX_MESSAGE_BYTES = 28 * 1024
COLORS = {"default", "dark", "light", "accent", "good", "warning", "attention"}
SIZES = {"default", "small", "medium", "large", "extralarge"}
SPACINGS = {"none", "small", "default", "medium", "large", "extralarge", "padding"}
TEXTBLOCK = {"type", "text", "wrap", "color", "size", "weight", "style", "isSubtle", "spacing", "separator"}
FACTSET = {"type", "facts", "spacing", "separator"}
CONTAINER = {"type", "items", "spacing", "separator", "style"}


# ---- the documented shape ------------------------------------------------------------------------------


def conformance_validator(path: str, headers: dict[str, str], body: Any) -> list[str]:
    """Problems of one workflow webhook request carrying an Adaptive Card."""
    problems: list[str] = []
    if path != PATH:
        problems.append(f"path {path!r}: not the workflow's trigger")
    if not headers.get("content-type", "").startswith("application/json"):
        problems.append("Content-Type must be application/json")
    if not isinstance(body, dict):
        return [*problems, "body must be a JSON object"]
    if len(orjson.dumps(body)) > MAX_MESSAGE_BYTES:
        problems.append("message larger than 28 KB")
    if body.get("type") != "message":
        problems.append("type: must be 'message'")
    attachments = body.get("attachments")
    if not isinstance(attachments, list) or len(attachments) != 1:
        return [*problems, "attachments: exactly one card"]
    (attachment,) = attachments
    if attachment.get("contentType") != CARD_TYPE:
        problems.append(f"contentType: must be {CARD_TYPE}")
    if attachment.get("contentUrl") is not None:
        problems.append("contentUrl: must be null")
    card = attachment.get("content")
    if not isinstance(card, dict) or card.get("type") != "AdaptiveCard":
        return [*problems, "content: must be an AdaptiveCard"]
    if card.get("version") not in VERSIONS:
        problems.append(f"version: one of {sorted(VERSIONS)}")
    if card.get("msteams", {}).get("width", "Full") != "Full":
        problems.append("msteams.width: 'Full' or absent")
    if not isinstance(card.get("body"), list) or not card["body"]:
        return [*problems, "body: a non-empty list of elements"]
    for index, element in enumerate(card["body"]):
        problems += _element(element, f"body.{index}")
    return problems


def _element(element: Any, where: str) -> list[str]:
    if not isinstance(element, dict):
        return [f"{where}: must be an object"]
    kind = element.get("type")
    problems = []
    if kind == "TextBlock":
        problems += [f"{where}: unknown property {k!r}" for k in sorted(set(element) - TEXTBLOCK)]
        if not isinstance(element.get("text"), str) or not element["text"]:
            problems.append(f"{where}.text: required")
        if str(element.get("color", "default")).lower() not in COLORS:
            problems.append(f"{where}.color: one of {sorted(COLORS)}")
        if str(element.get("size", "default")).lower() not in SIZES:
            problems.append(f"{where}.size: one of {sorted(SIZES)}")
    elif kind == "FactSet":
        problems += [f"{where}: unknown property {k!r}" for k in sorted(set(element) - FACTSET)]
        facts = element.get("facts")
        if not isinstance(facts, list) or not all(
            isinstance(f, dict) and isinstance(f.get("title"), str) and isinstance(f.get("value"), str) for f in facts
        ):
            problems.append(f"{where}.facts: a list of {{title, value}} strings")
    elif kind == "Container":
        problems += [f"{where}: unknown property {k!r}" for k in sorted(set(element) - CONTAINER)]
        items = element.get("items")
        if not isinstance(items, list) or not items:
            problems.append(f"{where}.items: a non-empty list")
        else:
            for index, item in enumerate(items):
                problems += _element(item, f"{where}.items.{index}")
    else:
        return [f"{where}: unsupported element type {kind!r}"]
    if str(element.get("spacing", "default")).lower() not in SPACINGS:
        problems.append(f"{where}.spacing: one of {sorted(SPACINGS)}")
    return problems


def conformance_sink(base_url: str, tmp_path: pathlib.Path) -> Sink:
    url_file = tmp_path / "teams_workflow_url"
    url_file.write_text(base_url + PATH + QUERY + "\n", encoding="utf-8")
    return Msteamsv2Sink(Msteamsv2Config.model_validate({"webhook_url_file": url_file}))


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


def make_notification(*alerts: Alert, truncated: int = 0) -> Notification:
    return Notification(
        id="delivery-1",
        receiver="oncall",
        sink="msteamsv2/0",
        group_key='{}:{alertname="HighErrorRate"}',
        group_labels={"alertname": "HighErrorRate"},
        alerts=alerts,
        at="2024-05-01T10:00:30Z",
        external_url="https://alerts.example",
        truncated_alerts=truncated,
    )


def card(message: dict[str, Any]) -> dict[str, Any]:
    content: dict[str, Any] = message["attachments"][0]["content"]
    return content


def texts(element: Any) -> list[str]:
    """Every text of a card, in order."""
    if isinstance(element, list):
        return [t for e in element for t in texts(e)]
    if element.get("type") == "TextBlock":
        return [element["text"]]
    if element.get("type") == "FactSet":
        return [f"{f['title']}={f['value']}" for f in element["facts"]]
    return texts(element.get("items", element.get("body", [])))


# ---- tests ---------------------------------------------------------------------------------------------


def test_registered() -> None:
    """Receivers configure it as msteamsv2_configs (Alertmanager 0.28's name)."""
    assert registry()["msteamsv2"].config is Msteamsv2Config


async def test_card_posted_to_the_workflow(tmp_path: pathlib.Path) -> None:
    """One message with one Adaptive Card: title, the alert's facts, runbook link, receiver, delivery id."""
    alert = make_alert(
        annotations={"summary": "error rate above 5%", "runbook_url": "https://runbooks.example/errors"},
        service="api",
        severity="critical",
    )
    async with serve(Vendor(conformance_validator)) as vendor, aiohttp.ClientSession() as http:
        await conformance_sink(vendor.url, tmp_path).send(make_notification(alert), http)
    (request,) = vendor.requests
    assert request.problems == []
    assert request.query["sig"] == SIG
    assert request.headers["x-streamalert-delivery"] == "delivery-1"
    body = card(request.body)["body"]
    assert body[0]["text"] == escape("[FIRING:1] HighErrorRate")
    assert body[0]["color"] == "attention"
    assert texts(body[1]) == [
        "**HighErrorRate** · FIRING",
        "Severity: critical · Value: 0.07",
        "error rate above 5%",
        "service=api",
        "[Runbook](https://runbooks.example/errors)",
    ]
    assert body[-1]["text"] == "Receiver: oncall · [StreamAlert](https://alerts.example)"


async def test_resolved_is_green() -> None:
    """A resolved notification's heading and alert are coloured good."""
    message = render(make_notification(make_alert("resolved", severity="critical")))
    body = card(message)["body"]
    assert body[0]["color"] == "good"
    assert body[1]["items"][0]["color"] == "good"
    assert conformance_validator(PATH, {"content-type": "application/json"}, message) == []


def test_user_text_cannot_inject_markdown() -> None:
    """Labels and annotations are shown literally: a link or emphasis in them is escaped."""
    alert = make_alert(annotations={"summary": "[click](https://evil.example) **now**"}, pod="_x_")
    body = card(render(make_notification(alert)))["body"]
    shown = texts(body)
    assert "\\[click\\](https://evil.example) \\*\\*now\\*\\*" in shown
    assert escape("- 1. # x") == "\\- 1. # x"  # a list marker only at the start
    assert "pod=\\_x\\_" in shown
    assert not any(re.search(r"(?<!\\)\]\(https://evil", t) for t in shown)  # no unescaped link
    bad = make_alert(annotations={"runbook_url": "javascript:alert(1)"})
    assert not any("Runbook" in t for t in texts(card(render(make_notification(bad)))["body"]))


def test_card_size_is_bounded() -> None:
    """Many large alerts: the message stays under Teams' 28 KB, the rest counted in "and N more"."""
    alerts = [make_alert(annotations={"summary": "s" * 5000}, pod=f"p{i}", blob="b" * 2000) for i in range(60)]
    message = render(make_notification(*alerts, truncated=5))
    size = len(orjson.dumps(message))
    assert size <= MAX_MESSAGE_BYTES
    assert conformance_validator(PATH, {"content-type": "application/json"}, message) == []
    body = card(message)["body"]
    shown = sum(1 for e in body if e["type"] == "Container")
    assert 0 < shown < MAX_ALERTS
    assert body[-2]["text"] == f"_and {60 - shown + 5} more_"


def test_config_needs_one_url(tmp_path: pathlib.Path) -> None:
    """Exactly one of webhook_url and webhook_url_file; an inline URL is checked and never echoed; a template
    field the sink does not read is refused."""
    with pytest.raises(pydantic.ValidationError, match="exactly one of webhook_url and webhook_url_file"):
        Msteamsv2Config.model_validate({})
    with pytest.raises(pydantic.ValidationError) as caught:
        Msteamsv2Config.model_validate({"webhook_url": f"ftp://x.example{PATH}{QUERY}"})
    assert SIG not in str(caught.value.errors(include_input=False))
    with pytest.raises(pydantic.ValidationError, match="summary: not a template this sink uses"):
        Msteamsv2Config.model_validate({"webhook_url": f"https://x.example{PATH}{QUERY}", "summary": "{{ x }}"})
