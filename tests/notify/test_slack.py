"""The slack sink against a fake Slack incoming webhook that checks Slack's documented message format."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr, ValidationError

from streamalert.notify.model import ZERO_TIME, Alert, Notification, fingerprint
from streamalert.notify.sinks.base import DeliveryError, Sink
from streamalert.notify.sinks.slack import KIND, SlackConfig, SlackSink
from tests.notify.vendor import Vendor, serve

SECRET_PATH = "/services/T0000/B0000/slack-secret-token-XYZ"

# --- the vendor's format ------------------------------------------------------------------------------------

_BLOCK_TYPES = {"header", "section", "context", "divider", "actions", "image", "rich_text", "markdown"}
_TOP_KEYS = {
    "text",
    "blocks",
    "attachments",
    "channel",
    "username",
    "icon_emoji",
    "icon_url",
    "mrkdwn",
    "unfurl_links",
    "unfurl_media",
    "thread_ts",
}
_LINK = re.compile(r"<https?://[^\s<>|]+(?:\|[^<>]*)?>")
_ENTITY = re.compile(r"&(?:amp|lt|gt);")


def _escaping_problems(where: str, text: str) -> list[str]:
    """Slack's control characters: `&`, `<`, `>` only as entities or in `<url|label>` links."""
    problems = []
    rest = _LINK.sub("", text)
    if "<" in rest or ">" in rest:
        problems.append(f"{where}: unescaped < or > outside a link")
    if "&" in _ENTITY.sub("", rest):
        problems.append(f"{where}: unescaped &")
    return problems


def _text_object(where: str, obj: Any, max_len: int, types: tuple[str, ...] = ("plain_text", "mrkdwn")) -> list[str]:
    if not isinstance(obj, dict):
        return [f"{where}: not a text object"]
    problems = []
    if obj.get("type") not in types:
        problems.append(f"{where}.type: {obj.get('type')!r} not one of {types}")
    text = obj.get("text")
    if not isinstance(text, str) or not 1 <= len(text) <= max_len:
        problems.append(f"{where}.text: must be a string of 1 to {max_len} characters")
        return problems
    if "emoji" in obj and obj.get("type") != "plain_text":
        problems.append(f"{where}.emoji: only for plain_text")
    return problems + _escaping_problems(where, text)


def validate(path: str, headers: dict[str, str], body: Any) -> list[str]:
    """Problems of an incoming-webhook request against Slack's documented format (Block Kit reference)."""
    problems: list[str] = []
    if not path.startswith("/services/"):
        problems.append(f"path: not a webhook path: {path}")
    if not headers.get("content-type", "").startswith("application/json"):
        problems.append("content-type: not application/json")
    if not isinstance(body, dict):
        return [*problems, "body: not a JSON object"]
    unknown = set(body) - _TOP_KEYS
    if unknown:
        problems.append(f"body: unknown keys {sorted(unknown)}")
    text = body.get("text")
    blocks = body.get("blocks")
    if text is None and blocks is None:
        problems.append("body: text or blocks required")
    if text is not None:
        if not isinstance(text, str) or not text or len(text) > 40000:
            problems.append("text: must be a non-empty string of at most 40000 characters")
        else:
            problems += _escaping_problems("text", text)
    for key in ("channel", "username", "icon_emoji"):
        if key in body and not isinstance(body[key], str):
            problems.append(f"{key}: not a string")
    if blocks is None:
        return problems
    if not isinstance(blocks, list) or not 1 <= len(blocks) <= 50:
        return [*problems, "blocks: must be a list of 1 to 50 blocks"]
    for i, block in enumerate(blocks):
        where = f"blocks[{i}]"
        if not isinstance(block, dict) or block.get("type") not in _BLOCK_TYPES:
            problems.append(f"{where}: unknown block type")
            continue
        if "block_id" in block and (not isinstance(block["block_id"], str) or len(block["block_id"]) > 255):
            problems.append(f"{where}.block_id: at most 255 characters")
        kind = block["type"]
        if kind == "header":
            problems += _text_object(f"{where}.text", block.get("text"), 150, ("plain_text",))
        elif kind == "section":
            if "text" not in block and "fields" not in block:
                problems.append(f"{where}: text or fields required")
            if "text" in block:
                problems += _text_object(f"{where}.text", block["text"], 3000)
            fields = block.get("fields", [])
            if not isinstance(fields, list) or len(fields) > 10:
                problems.append(f"{where}.fields: at most 10")
            else:
                for j, field in enumerate(fields):
                    problems += _text_object(f"{where}.fields[{j}]", field, 2000)
        elif kind == "context":
            elements = block.get("elements")
            if not isinstance(elements, list) or not 1 <= len(elements) <= 10:
                problems.append(f"{where}.elements: 1 to 10 elements")
            else:
                for j, element in enumerate(elements):
                    problems += _text_object(f"{where}.elements[{j}]", element, 3000)
    return problems


def conformance_validator(path: str, headers: dict[str, str], body: Any) -> list[str]:
    return validate(path, headers, body)


def conformance_sink(base_url: str, tmp_path: pathlib.Path) -> Sink:
    url_file = tmp_path / "slack_webhook_url"
    url_file.write_text(base_url + SECRET_PATH + "\n", encoding="utf-8")
    return KIND.build(SlackConfig(webhook_url_file=url_file))


# --- helpers --------------------------------------------------------------------------------------------------


def make_alert(
    name: str = "HighLatency",
    *,
    severity: str = "critical",
    status: str = "firing",
    labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
    value: float = 0.93,
) -> Alert:
    all_labels = {"alertname": name, "severity": severity, **(labels or {})}
    return Alert(
        fingerprint=fingerprint(all_labels),
        status="firing" if status == "firing" else "resolved",
        labels=all_labels,
        annotations=dict(annotations or {}),
        starts_at="2024-05-01T12:00:00Z",
        ends_at=ZERO_TIME if status == "firing" else "2024-05-01T12:10:00Z",
        value=value,
    )


def make_notification(*alerts: Alert, group: dict[str, str] | None = None) -> Notification:
    return Notification(
        id="delivery-0001",
        receiver="team-a",
        sink="slack/0",
        group_key='{}:{alertname="HighLatency"}',
        group_labels=group if group is not None else {"alertname": "HighLatency", "env": "prod"},
        alerts=alerts,
        at="2024-05-01T12:00:30Z",
        external_url="https://streamalert.example/",
    )


RUNBOOK = "https://runbooks.example/high-latency?x=1&y=2"


def firing() -> Notification:
    return make_notification(
        make_alert(
            labels={"service": "a<b>&c", "env": "prod"},
            annotations={"summary": "p99 > 900ms & rising", "runbook_url": RUNBOOK},
        ),
        make_alert(severity="warning", labels={"service": "api", "env": "prod"}, value=7),
    )


def all_texts(body: dict[str, Any]) -> list[str]:
    texts = [body["text"]]
    for block in body["blocks"]:
        if "text" in block:
            texts.append(block["text"]["text"])
        texts.extend(e["text"] for e in block.get("elements", []))
    return texts


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def vendor() -> AsyncIterator[Vendor]:
    async with serve(Vendor(validate)) as running:
        yield running


def sink_for(vendor: Vendor, **config: Any) -> SlackSink:
    return SlackSink(SlackConfig(webhook_url=SecretStr(vendor.url + SECRET_PATH), **config))


async def send(sink: Sink, notification: Notification, http: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(10):
        await sink.send(notification, http)


# --- tests ----------------------------------------------------------------------------------------------------


async def test_firing_message(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    notification = firing()
    await send(sink_for(vendor, channel="#alerts", username="streamalert", icon_emoji=":bell:"), notification, http)
    [request] = vendor.accepted
    assert request.problems == []
    assert request.path == SECRET_PATH
    body = request.body
    assert body["channel"] == "#alerts"
    assert body["username"] == "streamalert"
    assert body["icon_emoji"] == ":bell:"
    header = body["blocks"][0]
    assert header["type"] == "header"
    assert header["text"]["text"] == ":red_circle: [FIRING:2] HighLatency (prod)"
    first, second = body["blocks"][1], body["blocks"][2]
    assert first["type"] == "section"
    text = first["text"]["text"]
    assert "*HighLatency*" in text
    assert "*Severity:* critical" in text
    assert "*Value:* 0.93" in text
    assert "p99 &gt; 900ms &amp; rising" in text
    assert "service=a&lt;b&gt;&amp;c" in text
    assert "<https://runbooks.example/high-latency?x=1&amp;y=2|Runbook>" in text
    assert "*Severity:* warning" in second["text"]["text"]
    assert "*Value:* 7" in second["text"]["text"]
    assert body["blocks"][-1]["type"] == "context"
    assert "<https://streamalert.example/|StreamAlert>" in body["blocks"][-1]["elements"][0]["text"]
    assert body["text"].startswith(":red_circle: [FIRING:2] HighLatency (prod)")
    assert not any("a<b>&c" in t for t in all_texts(body))


async def test_resolved_message(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    notification = make_notification(
        make_alert(status="resolved", labels={"service": "a<b>&c"}, annotations={"runbook_url": RUNBOOK}),
    )
    await send(sink_for(vendor), notification, http)
    [request] = vendor.accepted
    assert request.problems == []
    body = request.body
    assert body["blocks"][0]["text"]["text"] == ":white_check_mark: [RESOLVED:1] HighLatency (prod)"
    section = body["blocks"][1]["text"]["text"]
    assert section.startswith(":white_check_mark: *HighLatency* — RESOLVED")
    assert "service=a&lt;b&gt;&amp;c" in section
    assert "Runbook>" in section
    assert "channel" not in body
    assert "username" not in body


async def test_mixed_notification_marks_each_alert(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    notification = make_notification(
        make_alert(status="resolved", labels={"pod": "p1"}),
        make_alert(severity="info", labels={"pod": "p2"}),
        make_alert(severity="error", labels={"pod": "p3"}),
    )
    await send(sink_for(vendor), notification, http)
    [request] = vendor.accepted
    sections = [b["text"]["text"] for b in request.body["blocks"] if b["type"] == "section"]
    # firing first, the most severe first, then resolved
    assert sections[0].startswith(":large_orange_circle:")
    assert sections[1].startswith(":large_blue_circle:")
    assert sections[2].startswith(":white_check_mark:")
    assert request.body["blocks"][0]["text"]["text"].startswith(":large_orange_circle: [FIRING:2]")
    assert "(1 resolved)" in request.body["text"]


async def test_limits_hold_for_huge_notifications(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    big = "x<&>" * 2500  # 10 kB, all of it escaped
    alerts = [
        make_alert(
            labels={"pod": f"pod-{i}", "detail": big},
            annotations={"summary": big, "description": big, "runbook_url": RUNBOOK + "&" * 3000},
        )
        for i in range(200)
    ]
    notification = make_notification(*alerts, group={"alertname": "HighLatency", "env": "p<r>od" * 100})
    await send(sink_for(vendor), notification, http)
    [request] = vendor.accepted
    assert request.problems == []
    blocks = request.body["blocks"]
    assert len(blocks) <= 50
    assert blocks[0]["text"]["text"].endswith("…")
    assert len(blocks[0]["text"]["text"]) <= 150
    assert all(len(b["text"]["text"]) <= 3000 for b in blocks if b["type"] == "section")
    assert any("and 180 more" in b["text"]["text"] for b in blocks if b["type"] == "section")


async def test_truncated_alerts_count_in_and_more(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    notification = dataclasses.replace(make_notification(make_alert()), truncated_alerts=5)
    await send(sink_for(vendor), notification, http)
    [request] = vendor.accepted
    assert any("and 5 more" in t for t in all_texts(request.body))


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (400, False), (404, False)])
async def test_http_errors_are_classified(
    vendor: Vendor, http: aiohttp.ClientSession, status: int, retryable: bool
) -> None:
    vendor.fail(status, body={"error": "nope"})
    with pytest.raises(DeliveryError) as caught:
        await send(sink_for(vendor), firing(), http)
    assert caught.value.retryable is retryable
    assert caught.value.status == status
    assert "slack-secret-token" not in str(caught.value)
    assert "/services/" not in str(caught.value)


async def test_rate_limit_honours_retry_after(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    vendor.fail(429, retry_after=30)
    with pytest.raises(DeliveryError) as caught:
        await send(sink_for(vendor), firing(), http)
    assert caught.value.retryable is True
    assert caught.value.retry_after == 30.0
    assert "slack-secret-token" not in str(caught.value)
    await send(sink_for(vendor), firing(), http)  # the next attempt goes through
    assert len(vendor.accepted) == 1


async def test_connection_failure_is_retryable_and_hides_the_url(http: aiohttp.ClientSession) -> None:
    async with serve(Vendor(validate)) as stopped:
        sink = sink_for(stopped)
    with pytest.raises(DeliveryError) as caught:
        await send(sink, firing(), http)
    assert caught.value.retryable is True
    assert "slack-secret-token" not in str(caught.value)
    assert "127.0.0.1" not in str(caught.value)


async def test_a_hanging_vendor_is_cancelled_by_the_caller(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    vendor.hang()
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.2):
            await sink_for(vendor).send(firing(), http)


async def test_delivery_header(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    await send(sink_for(vendor), firing(), http)
    assert vendor.requests[0].headers["x-streamalert-delivery"] == "delivery-0001"


async def test_webhook_url_from_file(vendor: Vendor, http: aiohttp.ClientSession, tmp_path: pathlib.Path) -> None:
    sink = conformance_sink(vendor.url, tmp_path)
    await send(sink, firing(), http)
    [request] = vendor.accepted
    assert request.path == SECRET_PATH


def test_config_needs_exactly_one_url(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValidationError, match="exactly one of webhook_url and webhook_url_file"):
        SlackConfig()
    with pytest.raises(ValidationError, match="exactly one"):
        SlackConfig(webhook_url=SecretStr("https://hooks.slack.example/x"), webhook_url_file=tmp_path / "f")
    with pytest.raises(ValidationError):
        SlackConfig(webhook_url=SecretStr("https://hooks.slack.example/x"), colour="red")  # type: ignore[call-arg]
    with pytest.raises(ValueError, match="cannot read"):
        SlackSink(SlackConfig(webhook_url_file=tmp_path / "missing"))
    with pytest.raises(ValueError, match="webhook_url: must be an absolute http") as caught:
        SlackSink(SlackConfig(webhook_url=SecretStr("hooks.slack.example/services/secret-x")))
    assert "secret-x" not in str(caught.value)


def test_secret_not_in_config_repr() -> None:
    config = SlackConfig(webhook_url=SecretStr("https://hooks.slack.example/services/secret-x"))
    assert "secret-x" not in repr(config)
    assert "secret-x" not in str(config.model_dump())


def test_validator_catches_bad_payloads() -> None:
    good = {"text": "hi", "blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x"}}]}
    assert validate(SECRET_PATH, {"content-type": "application/json"}, good) == []
    bad: list[dict[str, Any]] = [
        {"text": "a <b> c"},
        {"text": "a & c"},
        {"blocks": [{"type": "header", "text": {"type": "plain_text", "text": "x" * 151}}]},
        {"blocks": [{"type": "header", "text": {"type": "mrkdwn", "text": "x"}}]},
        {"blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]},
        {"blocks": [{"type": "bogus"}]},
        {"blocks": [{"type": "divider"}] * 51},
        {"text": "x", "colour": "red"},
    ]
    for body in bad:
        assert validate(SECRET_PATH, {"content-type": "application/json"}, body), body
