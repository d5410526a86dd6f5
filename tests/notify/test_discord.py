"""The discord sink against a fake Discord execute-webhook endpoint that checks Discord's documented limits."""

from __future__ import annotations

import asyncio
import dataclasses
import pathlib
import re
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr, ValidationError

from streamalert.notify.model import ZERO_TIME, Alert, Notification, fingerprint
from streamalert.notify.sinks.base import DeliveryError, Sink
from streamalert.notify.sinks.discord import COLORS, KIND, RESOLVED_COLOR, DiscordConfig, DiscordSink
from tests.notify.vendor import Vendor, serve

SECRET_PATH = "/api/webhooks/123456789012345678/discord-secret-token-XYZ"

# --- the vendor's format ------------------------------------------------------------------------------------

_TOP_KEYS = {
    "content",
    "username",
    "avatar_url",
    "tts",
    "embeds",
    "allowed_mentions",
    "components",
    "flags",
    "thread_name",
    "applied_tags",
    "attachments",
    "poll",
}
# webhook embeds: `type`, `provider` and `video` are not accepted
_EMBED_KEYS = {"title", "description", "url", "timestamp", "color", "footer", "image", "thumbnail", "author", "fields"}
_PATH = re.compile(r"^/api/webhooks/\d+/[A-Za-z0-9_-]+$")


def _string(where: str, value: Any, max_len: int, *, required: bool = False) -> list[str]:
    if value is None and not required:
        return []
    if not isinstance(value, str) or len(value) > max_len or (required and not value.strip()):
        return [f"{where}: must be a {'non-empty ' if required else ''}string of at most {max_len} characters"]
    return []


def validate(path: str, headers: dict[str, str], body: Any) -> list[str]:
    """Problems of an execute-webhook request against Discord's documented format and limits."""
    problems: list[str] = []
    if not _PATH.match(path):
        problems.append(f"path: not /api/webhooks/<id>/<token>: {path}")
    if not headers.get("content-type", "").startswith("application/json"):
        problems.append("content-type: not application/json")
    if not isinstance(body, dict):
        return [*problems, "body: not a JSON object"]
    unknown = set(body) - _TOP_KEYS
    if unknown:
        problems.append(f"body: unknown keys {sorted(unknown)}")
    content, embeds = body.get("content"), body.get("embeds")
    if not content and not embeds:
        problems.append("body: content or embeds required")
    problems += _string("content", content, 2000)
    problems += _string("username", body.get("username"), 80)
    mentions = body.get("allowed_mentions")
    if mentions is not None and (not isinstance(mentions, dict) or not isinstance(mentions.get("parse", []), list)):
        problems.append("allowed_mentions: must be an object with a parse list")
    if embeds is None:
        return problems
    if not isinstance(embeds, list) or len(embeds) > 10:
        return [*problems, "embeds: at most 10"]
    total = 0
    for i, embed in enumerate(embeds):
        where = f"embeds[{i}]"
        if not isinstance(embed, dict):
            problems.append(f"{where}: not an object")
            continue
        unknown = set(embed) - _EMBED_KEYS
        if unknown:
            problems.append(f"{where}: unknown keys {sorted(unknown)}")
        problems += _string(f"{where}.title", embed.get("title"), 256)
        problems += _string(f"{where}.description", embed.get("description"), 4096)
        problems += _string(f"{where}.url", embed.get("url"), 2048)
        colour = embed.get("color")
        if colour is not None and (
            not isinstance(colour, int) or isinstance(colour, bool) or not 0 <= colour <= 0xFFFFFF
        ):
            problems.append(f"{where}.color: must be an integer 0..0xFFFFFF")
        if "timestamp" in embed:
            try:
                datetime.fromisoformat(embed["timestamp"])
            except (TypeError, ValueError):
                problems.append(f"{where}.timestamp: not ISO 8601")
        total += len(embed.get("title") or "") + len(embed.get("description") or "")
        footer = embed.get("footer")
        if footer is not None:
            problems += _string(f"{where}.footer.text", footer.get("text"), 2048, required=True)
            total += len(footer.get("text") or "")
        author = embed.get("author")
        if author is not None:
            problems += _string(f"{where}.author.name", author.get("name"), 256, required=True)
            total += len(author.get("name") or "")
        fields = embed.get("fields", [])
        if not isinstance(fields, list) or len(fields) > 25:
            problems.append(f"{where}.fields: at most 25")
            continue
        for j, field in enumerate(fields):
            problems += _string(f"{where}.fields[{j}].name", field.get("name"), 256, required=True)
            problems += _string(f"{where}.fields[{j}].value", field.get("value"), 1024, required=True)
            if "inline" in field and not isinstance(field["inline"], bool):
                problems.append(f"{where}.fields[{j}].inline: not a boolean")
            total += len(field.get("name") or "") + len(field.get("value") or "")
    if total > 6000:
        problems.append(f"embeds: {total} characters in all, more than 6000")
    return problems


def conformance_validator(path: str, headers: dict[str, str], body: Any) -> list[str]:
    return validate(path, headers, body)


def conformance_sink(base_url: str, tmp_path: pathlib.Path) -> Sink:
    url_file = tmp_path / "discord_webhook_url"
    url_file.write_text(base_url + SECRET_PATH + "\n", encoding="utf-8")
    return KIND.build(DiscordConfig(webhook_url_file=url_file))


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
        id="delivery-0002",
        receiver="team-a",
        sink="discord/0",
        group_key='{}:{alertname="HighLatency"}',
        group_labels=group if group is not None else {"alertname": "HighLatency", "env": "prod"},
        alerts=alerts,
        at="2024-05-01T12:00:30Z",
    )


RUNBOOK = "https://runbooks.example/high-latency"


def firing() -> Notification:
    return make_notification(
        make_alert(
            labels={"service": "a<b>&c", "env": "prod"},
            annotations={"summary": "p99 is *high* @everyone", "runbook_url": RUNBOOK},
        ),
        make_alert(severity="warning", labels={"service": "api"}, value=7),
    )


def fields_of(embed: dict[str, Any]) -> dict[str, str]:
    return {f["name"]: f["value"] for f in embed["fields"]}


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def vendor() -> AsyncIterator[Vendor]:
    async with serve(Vendor(validate)) as running:
        yield running


def sink_for(vendor: Vendor, **config: Any) -> DiscordSink:
    return DiscordSink(DiscordConfig(webhook_url=SecretStr(vendor.url + SECRET_PATH), **config))


async def send(sink: Sink, notification: Notification, http: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(10):
        await sink.send(notification, http)


# --- tests ----------------------------------------------------------------------------------------------------


async def test_firing_message(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    await send(sink_for(vendor, username="streamalert"), firing(), http)
    [request] = vendor.accepted
    assert request.problems == []
    assert request.path == SECRET_PATH
    body = request.body
    assert body["username"] == "streamalert"
    assert body["content"] == "🔴 **\\[FIRING:2\\] HighLatency \\(prod\\)**"
    assert body["allowed_mentions"] == {"parse": []}
    first, second = body["embeds"]
    assert first["title"] == "\\[FIRING\\] HighLatency"
    assert first["color"] == COLORS["critical"] == 0xD32F2F
    assert first["url"] == RUNBOOK
    assert first["timestamp"] == "2024-05-01T12:00:00Z"
    assert first["description"] == "p99 is \\*high\\* \\@everyone"
    fields = fields_of(first)
    assert fields["Severity"] == "critical"
    assert fields["Value"] == "0.93"
    assert fields["Runbook"] == f"[Runbook]({RUNBOOK})"
    assert fields["Labels"] == "env=prod, service=a\\<b\\>&c"
    assert second["color"] == COLORS["warning"]
    assert fields_of(second)["Value"] == "7"
    assert "Runbook" not in fields_of(second)


async def test_resolved_message(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    notification = make_notification(
        make_alert(status="resolved", labels={"service": "a<b>&c"}, annotations={"runbook_url": RUNBOOK})
    )
    await send(sink_for(vendor), notification, http)
    [request] = vendor.accepted
    assert request.problems == []
    body = request.body
    assert body["content"].startswith("✅ **\\[RESOLVED:1\\] HighLatency")
    [embed] = body["embeds"]
    assert embed["title"] == "\\[RESOLVED\\] HighLatency"
    assert embed["color"] == RESOLVED_COLOR == 0x388E3C
    assert fields_of(embed)["Labels"] == "service=a\\<b\\>&c"
    assert "username" not in body


@pytest.mark.parametrize(
    ("severity", "colour"),
    [("critical", 0xD32F2F), ("error", 0xF57C00), ("warning", 0xFBC02D), ("info", 0x1976D2), ("odd", 0xFBC02D)],
)
async def test_colour_by_severity(vendor: Vendor, http: aiohttp.ClientSession, severity: str, colour: int) -> None:
    await send(sink_for(vendor), make_notification(make_alert(severity=severity)), http)
    assert vendor.accepted[0].body["embeds"][0]["color"] == colour


async def test_limits_hold_for_huge_notifications(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    big = "x*<_" * 2500  # 10 kB, all of it escaped
    alerts = [
        make_alert(
            f"Alert{i}" + "n" * 300,
            labels={"pod": f"pod-{i}", "detail": big},
            annotations={"summary": big, "description": big, "runbook_url": RUNBOOK + "/" + "r" * 3000},
        )
        for i in range(200)
    ]
    notification = make_notification(*alerts, group={"alertname": "HighLatency", "env": "p(r)od" * 500})
    await send(sink_for(vendor), notification, http)
    [request] = vendor.accepted
    assert request.problems == []
    body = request.body
    assert len(body["embeds"]) == 10
    assert len(body["content"]) <= 2000
    assert body["content"].endswith("and 190 more alerts")


async def test_one_huge_alert_uses_the_room_it_has(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    big = "y" * 10_000
    notification = make_notification(make_alert(labels={"detail": big}, annotations={"summary": big}))
    await send(sink_for(vendor), notification, http)
    [request] = vendor.accepted
    assert request.problems == []
    [embed] = request.body["embeds"]
    assert len(embed["description"]) == 4096
    assert embed["description"].endswith("…")
    assert len(fields_of(embed)["Labels"]) == 1024


async def test_rate_limit_reads_retry_after_from_the_body(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    vendor.fail(429, body={"message": "You are being rate limited.", "retry_after": 1.5, "global": False})
    with pytest.raises(DeliveryError) as caught:
        await send(sink_for(vendor), firing(), http)
    assert caught.value.retryable is True
    assert caught.value.retry_after == 1.5
    assert "discord-secret-token" not in str(caught.value)
    await send(sink_for(vendor), firing(), http)
    assert len(vendor.accepted) == 1


async def test_rate_limit_reads_the_retry_after_header(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    vendor.fail(429, retry_after=4)
    with pytest.raises(DeliveryError) as caught:
        await send(sink_for(vendor), firing(), http)
    assert (caught.value.retryable, caught.value.retry_after) == (True, 4.0)


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (502, True), (400, False), (401, False)])
async def test_http_errors_are_classified(
    vendor: Vendor, http: aiohttp.ClientSession, status: int, retryable: bool
) -> None:
    vendor.fail(status, body={"message": "Invalid Form Body", "code": 50035})
    with pytest.raises(DeliveryError) as caught:
        await send(sink_for(vendor), firing(), http)
    assert caught.value.retryable is retryable
    assert caught.value.status == status
    assert "discord-secret-token" not in str(caught.value)
    assert "/api/webhooks" not in str(caught.value)


async def test_connection_failure_is_retryable_and_hides_the_url(http: aiohttp.ClientSession) -> None:
    async with serve(Vendor(validate)) as stopped:
        sink = sink_for(stopped)
    with pytest.raises(DeliveryError) as caught:
        await send(sink, firing(), http)
    assert caught.value.retryable is True
    assert "discord-secret-token" not in str(caught.value)
    assert "127.0.0.1" not in str(caught.value)


async def test_delivery_header(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    await send(sink_for(vendor), firing(), http)
    assert vendor.requests[0].headers["x-streamalert-delivery"] == "delivery-0002"


async def test_truncated_alerts_count_in_and_more(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    notification = dataclasses.replace(make_notification(make_alert()), truncated_alerts=3)
    await send(sink_for(vendor), notification, http)
    assert vendor.accepted[0].body["content"].endswith("and 3 more alerts")


async def test_webhook_url_from_file(vendor: Vendor, http: aiohttp.ClientSession, tmp_path: pathlib.Path) -> None:
    await send(conformance_sink(vendor.url, tmp_path), firing(), http)
    [request] = vendor.accepted
    assert request.path == SECRET_PATH


def test_config_needs_exactly_one_url(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValidationError, match="exactly one of webhook_url and webhook_url_file"):
        DiscordConfig()
    with pytest.raises(ValidationError, match="exactly one"):
        DiscordConfig(webhook_url=SecretStr("https://discord.example/x"), webhook_url_file=tmp_path / "f")
    with pytest.raises(ValueError, match="cannot read"):
        DiscordSink(DiscordConfig(webhook_url_file=tmp_path / "missing"))
    with pytest.raises(ValueError, match="webhook_url: must be an absolute http") as caught:
        DiscordSink(DiscordConfig(webhook_url=SecretStr("discord.example/api/webhooks/1/secret-x")))
    assert "secret-x" not in str(caught.value)


def test_validator_catches_bad_payloads() -> None:
    headers = {"content-type": "application/json"}
    assert validate(SECRET_PATH, headers, {"content": "hi"}) == []
    bad: list[dict[str, Any]] = [
        {},
        {"content": "x" * 2001},
        {"embeds": [{"title": "t"}] * 11},
        {"embeds": [{"title": "t" * 257}]},
        {"embeds": [{"description": "d" * 4097}]},
        {"embeds": [{"fields": [{"name": "n", "value": "v"}] * 26}]},
        {"embeds": [{"fields": [{"name": "n", "value": "v" * 1025}]}]},
        {"embeds": [{"fields": [{"name": "", "value": "v"}]}]},
        {"embeds": [{"description": "d" * 4000}, {"description": "d" * 2001}]},
        {"embeds": [{"color": "red"}]},
        {"embeds": [{"type": "video"}]},
        {"content": "x", "colour": 1},
    ]
    for body in bad:
        assert validate(SECRET_PATH, headers, body), body
