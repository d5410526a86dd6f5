"""The telegram sink against a fake Bot API that checks `sendMessage`'s documented format (HTML parse mode)."""

from __future__ import annotations

import asyncio
import dataclasses
import html
import pathlib
import re
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from pydantic import SecretStr, ValidationError

from streamalert.notify.model import ZERO_TIME, Alert, Notification, fingerprint
from streamalert.notify.sinks.base import DeliveryError, Sink
from streamalert.notify.sinks.telegram import KIND, TelegramConfig, TelegramSink
from tests.notify.vendor import Vendor, serve

TOKEN = "123456:telegram-secret-token-XYZ"
OK = {"ok": True, "result": {"message_id": 1}}

# --- the vendor's format ------------------------------------------------------------------------------------

_KEYS = {
    "business_connection_id",
    "chat_id",
    "message_thread_id",
    "text",
    "parse_mode",
    "entities",
    "link_preview_options",
    "disable_web_page_preview",
    "disable_notification",
    "protect_content",
    "message_effect_id",
    "reply_parameters",
    "reply_markup",
}
_PATH = re.compile(r"^/bot\d+:[A-Za-z0-9_-]+/sendMessage$")
_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "code", "pre", "a", "tg-spoiler", "blockquote"}
_TAG = re.compile(r'<(/?)([a-z-]+)((?:\s+[a-z-]+="[^"<>]*")*)\s*>')
_ENTITY = re.compile(r"&(?:lt|gt|amp|quot|#\d+|#x[0-9a-fA-F]+);")


def _utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def html_problems(text: str) -> list[str]:
    """Telegram's HTML: only supported tags, properly nested, `<a>` with an href; every other `<`, `>` and `&`
    escaped (named entities lt, gt, amp, quot or numeric ones)."""
    problems: list[str] = []
    stack: list[str] = []
    plain: list[str] = []
    pos = 0
    for match in _TAG.finditer(text):
        plain.append(text[pos : match.start()])
        pos = match.end()
        closing, name, attributes = match.group(1), match.group(2), match.group(3)
        if name not in _TAGS:
            problems.append(f"text: unsupported tag <{name}>")
        elif closing:
            if not stack or stack.pop() != name:
                problems.append(f"text: </{name}> does not close the open tag")
        else:
            if name == "a" and 'href="' not in attributes:
                problems.append("text: <a> without href")
            stack.append(name)
    plain.append(text[pos:])
    if stack:
        problems.append(f"text: unclosed tags {stack}")
    outside = "".join(plain)
    if "<" in outside or ">" in outside:
        problems.append("text: unescaped < or > outside a supported tag")
    if "&" in _ENTITY.sub("", outside):
        problems.append("text: unescaped & (not an entity)")
    parsed = html.unescape(outside)
    if not parsed.strip():
        problems.append("text: empty after entity parsing")
    if _utf16_len(parsed) > 4096:
        problems.append(f"text: {_utf16_len(parsed)} characters after entity parsing, more than 4096")
    return problems


def validate(path: str, headers: dict[str, str], body: Any) -> list[str]:
    """Problems of a `sendMessage` request against the Bot API's documented parameters."""
    problems: list[str] = []
    if not _PATH.match(path):
        problems.append(f"path: not /bot<token>/sendMessage: {path}")
    if not headers.get("content-type", "").startswith("application/json"):
        problems.append("content-type: not application/json")
    if not isinstance(body, dict):
        return [*problems, "body: not a JSON object"]
    unknown = set(body) - _KEYS
    if unknown:
        problems.append(f"body: unknown parameters {sorted(unknown)}")
    chat_id = body.get("chat_id")
    if isinstance(chat_id, bool) or not isinstance(chat_id, int | str) or chat_id == "":
        problems.append("chat_id: must be an integer or a @channel string")
    text = body.get("text")
    if not isinstance(text, str) or not text:
        return [*problems, "text: required, a non-empty string"]
    if body.get("parse_mode") != "HTML":
        problems.append("parse_mode: this receiver expects HTML")
    else:
        problems += html_problems(text)
    for key in ("disable_notification", "disable_web_page_preview", "protect_content"):
        if key in body and not isinstance(body[key], bool):
            problems.append(f"{key}: not a boolean")
    if "message_thread_id" in body and (
        not isinstance(body["message_thread_id"], int) or isinstance(body["message_thread_id"], bool)
    ):
        problems.append("message_thread_id: not an integer")
    preview = body.get("link_preview_options")
    if preview is not None and (
        not isinstance(preview, dict) or not isinstance(preview.get("is_disabled", False), bool)
    ):
        problems.append("link_preview_options: not a LinkPreviewOptions object")
    return problems


def conformance_validator(path: str, headers: dict[str, str], body: Any) -> list[str]:
    return validate(path, headers, body)


def conformance_sink(base_url: str, tmp_path: pathlib.Path) -> Sink:
    token_file = tmp_path / "telegram_bot_token"
    token_file.write_text(TOKEN + "\n", encoding="utf-8")
    return KIND.build(TelegramConfig(bot_token_file=token_file, chat_ids=[-1001234567890], api_url=base_url))


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


def make_notification(*alerts: Alert, group: dict[str, str] | None = None, id: str = "delivery-0003") -> Notification:
    return Notification(
        id=id,
        receiver="team-a",
        sink="telegram/0",
        group_key='{}:{alertname="HighLatency"}',
        group_labels=group if group is not None else {"alertname": "HighLatency", "env": "prod"},
        alerts=alerts,
        at="2024-05-01T12:00:30Z",
    )


RUNBOOK = 'https://runbooks.example/high-latency?a=1&b="2"'


def firing() -> Notification:
    return make_notification(
        make_alert(
            labels={"service": "a<b>&c", "env": "prod"},
            annotations={"summary": "p99 > 900ms & <rising>", "runbook_url": RUNBOOK},
        ),
        make_alert(severity="warning", labels={"service": "api", "env": "prod"}, value=7),
    )


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def vendor() -> AsyncIterator[Vendor]:
    async with serve(Vendor(validate, ok_body=OK)) as running:
        yield running


def sink_for(vendor: Vendor, chat_ids: list[int | str] | None = None, **config: Any) -> TelegramSink:
    return TelegramSink(
        TelegramConfig(
            bot_token=SecretStr(TOKEN), chat_ids=chat_ids or [-1001234567890], api_url=vendor.url + "/", **config
        )
    )


async def send(sink: Sink, notification: Notification, http: aiohttp.ClientSession) -> None:
    async with asyncio.timeout(10):
        await sink.send(notification, http)


# --- tests ----------------------------------------------------------------------------------------------------


async def test_firing_message(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    await send(sink_for(vendor, disable_notification=True, message_thread_id=42), firing(), http)
    [request] = vendor.accepted
    assert request.problems == []
    assert request.path == f"/bot{TOKEN}/sendMessage"
    body = request.body
    assert body["chat_id"] == -1001234567890
    assert body["parse_mode"] == "HTML"
    assert body["disable_notification"] is True
    assert body["message_thread_id"] == 42
    assert body["link_preview_options"] == {"is_disabled": True}
    text = body["text"]
    assert text.startswith("🔴 <b>[FIRING:2] HighLatency (prod)</b>\n\n🔴 <b>HighLatency</b> — critical\n")
    assert "Value: <code>0.93</code>" in text
    assert "p99 &gt; 900ms &amp; &lt;rising&gt;" in text
    assert "Labels: <code>service=a&lt;b&gt;&amp;c, env=prod</code>" in text
    assert '<a href="https://runbooks.example/high-latency?a=1&amp;b=&quot;2&quot;">Runbook</a>' in text
    assert "🟡 <b>HighLatency</b> — warning\nValue: <code>7</code>" in text
    assert "a<b>&c" not in text


async def test_resolved_message(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    notification = make_notification(make_alert(status="resolved", labels={"service": "a<b>&c"}))
    await send(sink_for(vendor), notification, http)
    [request] = vendor.accepted
    assert request.problems == []
    text = request.body["text"]
    assert text.startswith("✅ <b>[RESOLVED:1] HighLatency (prod)</b>\n\n✅ <b>HighLatency</b> — RESOLVED\n")
    assert "service=a&lt;b&gt;&amp;c" in text
    assert request.body["disable_notification"] is False
    assert "message_thread_id" not in request.body


async def test_limits_hold_for_huge_notifications(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    big = "😀<&>" * 2500  # 10 kB, astral characters (two UTF-16 units each) and characters to escape
    alerts = [
        make_alert(
            f"Alert{i}" + "n" * 300,
            labels={"pod": f"pod-{i}", "detail": big},
            annotations={"summary": big, "runbook_url": "https://r.example/" + "r" * 3000},
        )
        for i in range(200)
    ]
    notification = make_notification(*alerts, group={"alertname": "HighLatency", "env": "p<r>od" * 100})
    await send(sink_for(vendor), notification, http)
    [request] = vendor.accepted
    assert request.problems == []
    text = request.body["text"]
    assert _utf16_len(text) <= 4096
    assert re.search(r"<i>and 19\d more</i>$", text)
    assert text.count("<b>Alert") >= 5  # long annotations shrink so that several alerts show
    assert "pod-0" in text  # the label that sets the alert apart comes before the long common-looking ones


async def test_one_huge_alert_is_cut_not_dropped(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    notification = make_notification(make_alert(annotations={"summary": "&" * 10_000}))
    await send(sink_for(vendor), notification, http)
    [request] = vendor.accepted
    assert request.problems == []
    assert "&amp;&amp;…" in request.body["text"]
    assert "more</i>" not in request.body["text"]


async def test_one_request_per_chat_in_order(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    await send(sink_for(vendor, chat_ids=[1, "@alerts", -100]), firing(), http)
    assert [r.body["chat_id"] for r in vendor.accepted] == [1, "@alerts", -100]
    assert all(r.problems == [] for r in vendor.requests)
    assert {r.headers["x-streamalert-delivery"] for r in vendor.requests} == {"delivery-0003"}


async def test_a_retry_skips_chats_already_reached(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    sink = sink_for(vendor, chat_ids=[1, 2, 3])
    notification = firing()
    vendor.fail(200, body=OK)  # chat 1 gets it
    vendor.fail(502)  # chat 2 fails: chat 3 is not tried
    with pytest.raises(DeliveryError) as caught:
        await send(sink, notification, http)
    assert caught.value.retryable is True
    assert str(caught.value) == "telegram: HTTP 502: ok (chat 2 of 3)"  # the stand-in answers "ok"
    assert [(r.body["chat_id"], r.answered) for r in vendor.requests] == [(1, 200), (2, 502)]
    # the retry of the same notification sends to chats 2 and 3 only
    await send(sink, notification, http)
    assert [(r.body["chat_id"], r.answered) for r in vendor.requests[2:]] == [(2, 200), (3, 200)]
    # a notification that went through completely is not remembered: sending it again sends it again
    await send(sink, notification, http)
    assert [r.body["chat_id"] for r in vendor.requests[4:]] == [1, 2, 3]
    assert all(r.problems == [] for r in vendor.requests)


async def test_a_retry_after_a_timeout_resumes_where_it_stopped(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    sink = sink_for(vendor, chat_ids=[1, 2, 3])
    notification = firing()
    vendor.fail(200, body=OK)
    vendor.hang()  # chat 2 never answers: the caller's timeout cancels the send
    with pytest.raises(TimeoutError):
        async with asyncio.timeout(0.3):
            await sink.send(notification, http)
    await send(sink, notification, http)
    assert [r.body["chat_id"] for r in vendor.requests] == [1, 2, 2, 3]


async def test_ok_false_in_a_200_answer_raises(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    vendor.fail(200, body={"ok": False, "error_code": 400, "description": "Bad Request: chat not found"})
    with pytest.raises(DeliveryError) as caught:
        await send(sink_for(vendor), firing(), http)
    assert caught.value.retryable is False
    assert caught.value.status == 400
    assert str(caught.value) == "telegram: API error 400: Bad Request: chat not found"  # Telegram's description
    vendor.fail(200, body={"ok": False, "error_code": 400, "description": f"chat -1001234567890 bot{TOKEN} gone"})
    with pytest.raises(DeliveryError) as caught:
        await send(sink_for(vendor), firing(), http)
    assert str(caught.value) == "telegram: API error 400: chat *** *** gone"  # chat id and token taken out
    vendor.fail(200, body={"ok": False, "error_code": 429, "parameters": {"retry_after": 9}})
    with pytest.raises(DeliveryError) as caught:
        await send(sink_for(vendor), firing(), http)
    assert (caught.value.retryable, caught.value.retry_after) == (True, 9.0)
    assert TOKEN not in str(caught.value)


async def test_rate_limit_reads_retry_after_from_parameters(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    vendor.fail(
        429,
        body={"ok": False, "error_code": 429, "description": "Too Many Requests", "parameters": {"retry_after": 3}},
    )
    with pytest.raises(DeliveryError) as caught:
        await send(sink_for(vendor), firing(), http)
    assert caught.value.retryable is True
    assert caught.value.retry_after == 3.0
    assert "telegram-secret-token" not in str(caught.value)
    await send(sink_for(vendor), firing(), http)
    assert len(vendor.accepted) == 1


async def test_rate_limit_reads_the_retry_after_header(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    vendor.fail(429, retry_after=5)
    with pytest.raises(DeliveryError) as caught:
        await send(sink_for(vendor), firing(), http)
    assert (caught.value.retryable, caught.value.retry_after) == (True, 5.0)


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (502, True), (400, False), (403, False)])
async def test_http_errors_are_classified(
    vendor: Vendor, http: aiohttp.ClientSession, status: int, retryable: bool
) -> None:
    vendor.fail(status, body={"ok": False, "error_code": status, "description": "nope"})
    with pytest.raises(DeliveryError) as caught:
        await send(sink_for(vendor), firing(), http)
    assert caught.value.retryable is retryable
    assert caught.value.status == status
    assert "telegram-secret-token" not in str(caught.value)
    assert "123456" not in str(caught.value)


async def test_connection_failure_is_retryable_and_hides_the_token(http: aiohttp.ClientSession) -> None:
    async with serve(Vendor(validate)) as stopped:
        sink = sink_for(stopped)
    with pytest.raises(DeliveryError) as caught:
        await send(sink, firing(), http)
    assert caught.value.retryable is True
    assert "telegram-secret-token" not in str(caught.value)


async def test_delivery_header(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    await send(sink_for(vendor), firing(), http)
    assert vendor.requests[0].headers["x-streamalert-delivery"] == "delivery-0003"


async def test_truncated_alerts_count_in_and_more(vendor: Vendor, http: aiohttp.ClientSession) -> None:
    notification = dataclasses.replace(make_notification(make_alert()), truncated_alerts=4)
    await send(sink_for(vendor), notification, http)
    assert vendor.accepted[0].body["text"].endswith("\n\n<i>and 4 more</i>")


async def test_bot_token_from_file(vendor: Vendor, http: aiohttp.ClientSession, tmp_path: pathlib.Path) -> None:
    await send(conformance_sink(vendor.url, tmp_path), firing(), http)
    [request] = vendor.accepted
    assert request.path == f"/bot{TOKEN}/sendMessage"


async def test_a_plain_ok_answer_counts_as_delivered(http: aiohttp.ClientSession, tmp_path: pathlib.Path) -> None:
    async with serve(Vendor(validate)) as plain:  # answers "ok" as text/plain, like a proxy might
        await send(conformance_sink(plain.url, tmp_path), firing(), http)
        assert len(plain.accepted) == 1


def test_config_checks(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValidationError, match="exactly one of bot_token and bot_token_file"):
        TelegramConfig(chat_ids=[1])
    with pytest.raises(ValidationError, match="exactly one"):
        TelegramConfig(bot_token=SecretStr(TOKEN), bot_token_file=tmp_path / "t", chat_ids=[1])
    with pytest.raises(ValidationError, match="chat_ids"):
        TelegramConfig(bot_token=SecretStr(TOKEN), chat_ids=[])
    with pytest.raises(ValidationError, match="chat_ids"):
        TelegramConfig(bot_token=SecretStr(TOKEN))  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="api_url"):
        TelegramConfig(bot_token=SecretStr(TOKEN), chat_ids=[1], api_url="api.telegram.org")
    with pytest.raises(ValueError, match="cannot read"):
        TelegramSink(TelegramConfig(bot_token_file=tmp_path / "missing", chat_ids=[1]))
    with pytest.raises(ValueError, match="not a bot token") as caught:
        TelegramSink(TelegramConfig(bot_token=SecretStr("12/secret-x"), chat_ids=[1]))
    assert "secret-x" not in str(caught.value)
    config = TelegramConfig(bot_token=SecretStr(TOKEN), chat_ids=[1, "@alerts"])
    assert config.chat_ids == [1, "@alerts"]
    assert "telegram-secret-token" not in repr(config)


def test_validator_catches_bad_payloads() -> None:
    headers = {"content-type": "application/json"}
    path = f"/bot{TOKEN}/sendMessage"
    good = {"chat_id": 1, "text": '<b>x</b> &amp; <a href="https://e.example">y</a>', "parse_mode": "HTML"}
    assert validate(path, headers, good) == []
    bad: list[dict[str, Any]] = [
        {"chat_id": 1, "text": "x"},
        {"chat_id": 1, "text": "a < b", "parse_mode": "HTML"},
        {"chat_id": 1, "text": "a & b", "parse_mode": "HTML"},
        {"chat_id": 1, "text": "<div>x</div>", "parse_mode": "HTML"},
        {"chat_id": 1, "text": "<b>x<i>y</b></i>", "parse_mode": "HTML"},
        {"chat_id": 1, "text": "<b>x", "parse_mode": "HTML"},
        {"chat_id": 1, "text": "<a>x</a>", "parse_mode": "HTML"},
        {"chat_id": 1, "text": "x" * 4097, "parse_mode": "HTML"},
        {"chat_id": 1, "text": "", "parse_mode": "HTML"},
        {"text": "x", "parse_mode": "HTML"},
        {"chat_id": 1, "text": "x", "parse_mode": "HTML", "colour": "red"},
    ]
    for body in bad:
        assert validate(path, headers, body), body
    assert validate("/bot/sendMessage", headers, good)
