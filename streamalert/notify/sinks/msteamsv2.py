"""msteamsv2: Microsoft Teams through a Power Automate workflow webhook ("When a Teams webhook request is
received"), one Adaptive Card per notification, in the message shape Alertmanager 0.28's msteamsv2_configs send.

The workflow URL carries its signature (`sig=`) and is a secret: `webhook_url` / `webhook_url_file`, never
echoed. The card (Adaptive Card 1.4, full width) holds:

- a heading: `Notification.title()`, coloured `attention` while firing and `good` once resolved;
- one container per alert, firing alerts first and the most severe first: name and status, severity and value,
  the `summary` (or `description`) annotation, the labels as a FactSet and a runbook link (http and https
  only); at most `MAX_ALERTS`, then "and N more" (counting `truncated_alerts` too);
- the receiver and, if set, a link to the external URL.

The `title` and `text` templates are Alertmanager's msteamsv2 `title` and `text`: the heading, and one TextBlock
in place of the alert containers (the template's Markdown as written, cut to fit the size limit; an empty one
keeps the containers).

User text is escaped for the card's Markdown subset (no link or emphasis can be injected) and cut per field;
the whole message stays under `MAX_CARD_BYTES` (Teams refuses messages over 28 KB): alerts are dropped from the
end, into "and N more", until it fits.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

import orjson
from pydantic import SecretStr, model_validator

from streamalert.notify.model import Alert, Notification
from streamalert.notify.sinks.base import SinkConfig, SinkKind, post_json
from streamalert.notify.sinks.endpoint import scrub
from streamalert.notify.sinks.text import (
    DELIVERY_HEADER,
    check_webhook_url,
    is_http_url,
    ordered_alerts,
    webhook_url,
)

if TYPE_CHECKING:
    import aiohttp

CARD_CONTENT_TYPE = "application/vnd.microsoft.card.adaptive"
CARD_SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
CARD_VERSION = "1.4"
MAX_CARD_BYTES = 24 * 1024  # the JSON sent; Teams' limit is 28 KB, the rest is room for what the flow adds
MAX_ALERTS = 20
MAX_FACTS = 30  # labels shown per alert
_TITLE_MAX = 300
_NAME_MAX = 200
_SUMMARY_MAX = 1500
_FACT_TITLE_MAX = 100
_FACT_VALUE_MAX = 300
_URL_MAX = 2000
_ELLIPSIS = "…"
# the card's Markdown is a CommonMark subset (bold, italic, lists, links); CommonMark's backslash escapes undo it
_MARKDOWN = re.compile(r"([\\*_\[\]])")  # emphasis and links: anywhere in a line
_LINE_START = re.compile(r"^(\s*)([-+#>]|\d+[.)])")  # a list item, heading or quote: only at a line's start

SEVERITY_COLOR = {"critical": "attention", "error": "attention", "warning": "warning", "info": "accent"}


class Msteamsv2Config(SinkConfig):
    TEMPLATES: ClassVar[tuple[str, ...]] = ("title", "text")  # the heading; text replaces the alert containers
    webhook_url: SecretStr | None = None  # the workflow's HTTP POST URL
    webhook_url_file: Path | None = None

    @model_validator(mode="after")
    def _one_url(self) -> Self:
        check_webhook_url(self.webhook_url, self.webhook_url_file)
        return self


def escape(text: str) -> str:
    """User text as literal text in a TextBlock: the characters of the card's Markdown subset (emphasis,
    links; lists at a line's start) backslash-escaped."""
    return _LINE_START.sub(r"\1\\\2", _MARKDOWN.sub(r"\\\1", text))


def _cut(text: str, limit: int) -> str:
    """Cut raw text to `limit` characters (before escaping, so an escape is never split)."""
    return text if len(text) <= limit else text[: limit - 1] + _ELLIPSIS


def _text(raw: str, limit: int) -> str:
    return escape(_cut(" ".join(raw.split()), limit))


def _value(value: float | int) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _link(url: str, label: str) -> str | None:
    """`[label](url)` for an http(s) URL; None otherwise (or when it would need escaping)."""
    url = url.strip()
    if not is_http_url(url) or len(url) > _URL_MAX or any(c in url for c in "()<>"):
        return None
    return f"[{label}]({url})"


def alert_container(alert: Alert) -> dict[str, Any]:
    resolved = alert.status == "resolved"
    status = "RESOLVED" if resolved else "FIRING"
    items: list[dict[str, Any]] = [
        {
            "type": "TextBlock",
            "text": f"**{_text(alert.name or '(unnamed)', _NAME_MAX)}** · {status}",
            "wrap": True,
            "color": "good" if resolved else SEVERITY_COLOR[alert.level],
        }
    ]
    facts = []
    if alert.severity:
        facts.append(f"Severity: {_text(alert.severity, 50)}")
    facts.append(f"Value: {_value(alert.value)}")
    items.append({"type": "TextBlock", "text": " · ".join(facts), "wrap": True, "isSubtle": True, "spacing": "None"})
    summary = alert.annotations.get("summary") or alert.annotations.get("description")
    if summary:
        items.append({"type": "TextBlock", "text": _text(summary, _SUMMARY_MAX), "wrap": True})
    labels = sorted((k, v) for k, v in alert.labels.items() if k not in {"alertname", "severity"})
    if labels:
        items.append(
            {
                "type": "FactSet",
                "facts": [
                    {"title": _text(k, _FACT_TITLE_MAX), "value": _text(v, _FACT_VALUE_MAX)}
                    for k, v in labels[:MAX_FACTS]
                ],
            }
        )
    runbook = _link(alert.annotations.get("runbook_url", ""), "Runbook")
    if runbook is not None:
        items.append({"type": "TextBlock", "text": runbook, "wrap": True})
    return {"type": "Container", "separator": True, "spacing": "Medium", "items": items}


def _message(body: list[dict[str, Any]]) -> dict[str, Any]:
    card: dict[str, Any] = {"$schema": CARD_SCHEMA, "type": "AdaptiveCard", "version": CARD_VERSION, "body": body}
    card["msteams"] = {"width": "Full"}
    return {
        "type": "message",
        "attachments": [{"contentType": CARD_CONTENT_TYPE, "contentUrl": None, "content": card}],
    }


def render(notification: Notification) -> dict[str, Any]:
    """The workflow webhook's body: one message with one Adaptive Card, at most MAX_CARD_BYTES of JSON."""
    resolved = notification.status == "resolved"
    heading = {
        "type": "TextBlock",
        "text": _text(notification.title(), _TITLE_MAX),
        "weight": "Bolder",
        "size": "Medium",
        "style": "heading",
        "wrap": True,
        "color": "good" if resolved else "attention",
    }
    footer_parts = [f"Receiver: {_text(notification.receiver, 200)}"]
    external = _link(notification.external_url, "StreamAlert")
    if external is not None:
        footer_parts.append(external)
    footer = {"type": "TextBlock", "text": " · ".join(footer_parts), "wrap": True, "isSubtle": True, "size": "Small"}
    templated = notification.template("text")
    if templated:
        return _with_text(heading, templated, notification.truncated_alerts, footer)
    alerts = ordered_alerts(notification)
    containers = [alert_container(a) for a in alerts[:MAX_ALERTS]]
    while True:
        hidden = len(alerts) - len(containers) + notification.truncated_alerts
        body = [heading, *containers]
        if hidden > 0:
            body.append({"type": "TextBlock", "text": f"_and {hidden} more_", "wrap": True})
        body.append(footer)
        message = _message(body)
        if not containers or len(orjson.dumps(message)) <= MAX_CARD_BYTES:
            return message
        containers.pop()


def _with_text(heading: dict[str, Any], text: str, truncated: int, footer: dict[str, Any]) -> dict[str, Any]:
    """The card with the `text` template's output (Markdown, as written: the template author's) as its body, cut
    to the longest prefix whose JSON keeps the message within MAX_CARD_BYTES."""
    more = [{"type": "TextBlock", "text": f"_and {truncated} more_", "wrap": True}] if truncated > 0 else []
    block = {"type": "TextBlock", "text": "", "wrap": True}
    message = _message([heading, block, *more, footer])
    room = MAX_CARD_BYTES - len(orjson.dumps(message))

    def fits(limit: int) -> bool:
        return len(orjson.dumps(_cut(text, limit))) - 2 <= room  # the text's JSON string, without its quotes

    low, high = 1, len(text)  # bisect: the longest cut that fits (the JSON of a character is 1 to 6 bytes)
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    block["text"] = _cut(text, low)
    return message


class Msteamsv2Sink:
    def __init__(self, config: Msteamsv2Config) -> None:
        self.config = config
        self._target = webhook_url(config.webhook_url, config.webhook_url_file)

    def render(self, notification: Notification) -> dict[str, Any]:
        return render(notification)

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        await post_json(
            http,
            self._target,
            self.render(notification),
            what="msteamsv2",
            headers={DELIVERY_HEADER: notification.id},
        )

    def redact(self, text: str) -> str:
        return scrub(text, self._target.hidden)


KIND = SinkKind("msteamsv2", Msteamsv2Config, Msteamsv2Sink)
