"""discord: Discord's execute-webhook endpoint (`POST <webhook_url>`), one message per notification.

The message has a `content` line (a status emoji and `Notification.title()` in bold, plus "and N more alerts"
when not all fit) and one embed per alert, at most 10, firing alerts first and the most severe first. An embed
has the alert's status and name as `title` (linked to the runbook through `url` when the `runbook_url`
annotation is an http(s) URL), the `summary` and `description` annotations as `description`, fields
Severity, Value, Labels and Runbook (a `[Runbook](url)` link), `timestamp` (when the alert started) and a
`color` by severity: critical red, error orange, warning yellow, info blue (unknown: warning), resolved green.

Discord's limits hold by construction: content ≤ 2000 characters, ≤ 10 embeds, title ≤ 256, description
≤ 4096, ≤ 25 fields with name ≤ 256 and value ≤ 1024, and at most 6000 characters over all embeds (each embed
gets an equal share of that budget; long annotations are cut with an ellipsis). Discord markdown characters in
user-provided text are backslash-escaped, and `allowed_mentions` is empty so that a label like `@everyone`
pings nobody.

A 429 answer carries `retry_after` (seconds) in its JSON body and a Retry-After header; `post_json` turns either
into `DeliveryError.retry_after`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import SecretStr, model_validator

from streamalert.notify.model import SEVERITIES, Alert, Notification, severity_rank
from streamalert.notify.sinks.base import SinkConfig, SinkKind, post_json
from streamalert.notify.sinks.endpoint import scrub
from streamalert.notify.sinks.text import (
    DELIVERY_HEADER,
    check_webhook_url,
    is_http_url,
    labels_line,
    ordered_alerts,
    webhook_url,
)

if TYPE_CHECKING:
    import aiohttp

CONTENT_MAX = 2000
MAX_EMBEDS = 10
TITLE_MAX = 256
DESCRIPTION_MAX = 4096
MAX_FIELDS = 25
FIELD_NAME_MAX = 256
FIELD_VALUE_MAX = 1024
EMBEDS_TOTAL_MAX = 6000
_TOTAL_BUDGET = EMBEDS_TOTAL_MAX - 100  # a margin for how Discord counts characters

COLORS = {
    "critical": 0xD32F2F,  # red
    "error": 0xF57C00,  # orange
    "warning": 0xFBC02D,  # yellow
    "info": 0x1976D2,  # blue
}
RESOLVED_COLOR = 0x388E3C  # green
SEVERITY_EMOJI = {"critical": "🔴", "error": "🟠", "warning": "🟡", "info": "🔵"}
RESOLVED_EMOJI = "✅"
_ELLIPSIS = "…"
_MARKDOWN = re.compile(r"([\\*_~`|<>\[\]()#@])")


class DiscordConfig(SinkConfig):
    TEMPLATES: ClassVar[tuple[str, ...]] = ("title", "text")  # text replaces the content line
    webhook_url: SecretStr | None = None
    webhook_url_file: Path | None = None
    username: str | None = None

    @model_validator(mode="after")
    def _one_url(self) -> Self:
        check_webhook_url(self.webhook_url, self.webhook_url_file)
        return self


def escape(text: str) -> str:
    """Backslash-escape Discord markdown (and mention syntax) so user text shows as written."""
    return _MARKDOWN.sub(r"\\\1", text)


def truncate(text: str, limit: int) -> str:
    """Cut escaped text to `limit` characters, ending with an ellipsis when cut, never after a lone escape."""
    if len(text) <= limit:
        return text
    if limit <= len(_ELLIPSIS):
        return _ELLIPSIS[:limit]
    cut = text[: limit - len(_ELLIPSIS)]
    trailing = len(cut) - len(cut.rstrip("\\"))
    if trailing % 2:
        cut = cut[:-1]
    return cut + _ELLIPSIS


def _text(raw: str, limit: int) -> str:
    return truncate(escape(raw), limit)


def _http_url(url: str) -> str | None:
    url = url.strip()
    if is_http_url(url) and len(url) <= 512:
        return url
    return None


def color(alert: Alert) -> int:
    if alert.status == "resolved":
        return RESOLVED_COLOR
    return COLORS[alert.level]


def embed_chars(embed: dict[str, Any]) -> int:
    """Characters Discord counts toward the 6000 limit: title, description, field names and values, footer
    text and author name."""
    total = len(embed.get("title", "")) + len(embed.get("description", ""))
    total += sum(len(f["name"]) + len(f["value"]) for f in embed.get("fields", []))
    total += len(embed.get("footer", {}).get("text", "")) + len(embed.get("author", {}).get("name", ""))
    return total


def alert_embed(alert: Alert, budget: int, common: dict[str, str]) -> dict[str, Any]:
    """One alert's embed, counting at most `budget` characters (at least ~150 are needed for the fixed parts)."""
    resolved = alert.status == "resolved"
    status = "RESOLVED" if resolved else "FIRING"
    title = _text(f"[{status}] {alert.name or '(unnamed)'}", min(TITLE_MAX, 120, max(budget // 4, 40)))
    fields: list[dict[str, Any]] = []
    if alert.severity:
        fields.append({"name": "Severity", "value": _text(alert.severity, 40), "inline": True})
    value = f"{alert.value:g}" if isinstance(alert.value, float) else str(alert.value)
    fields.append({"name": "Value", "value": _text(value, 40), "inline": True})
    embed: dict[str, Any] = {"title": title, "color": color(alert), "timestamp": alert.starts_at}
    runbook = _http_url(alert.annotations.get("runbook_url", ""))
    if runbook is not None:
        embed["url"] = runbook
    used = len(title) + sum(len(f["name"]) + len(f["value"]) for f in fields)
    if runbook is not None and used + len(runbook) + 20 <= budget // 2:
        fields.append({"name": "Runbook", "value": f"[Runbook]({runbook})", "inline": True})
        used += len("Runbook") + len(fields[-1]["value"])
    remaining = budget - used
    labels = labels_line(alert, common)
    if labels and remaining > 40:
        value_max = min(FIELD_VALUE_MAX, (remaining - len("Labels")) // 3)
        fields.append({"name": "Labels", "value": _text(labels, value_max), "inline": False})
        remaining -= len("Labels") + len(fields[-1]["value"])
    text = "\n".join(t for t in (alert.annotations.get("summary"), alert.annotations.get("description")) if t)
    if text and remaining > 10:
        embed["description"] = _text(text, min(DESCRIPTION_MAX, remaining))
    embed["fields"] = fields[:MAX_FIELDS]
    return embed


def render(notification: Notification, config: DiscordConfig) -> dict[str, Any]:
    """The execute-webhook payload for one notification."""
    alerts = ordered_alerts(notification)
    if notification.status == "resolved":
        emoji = RESOLVED_EMOJI
    else:
        top = max((severity_rank(a.labels) for a in notification.firing), default=1)
        emoji = SEVERITY_EMOJI[SEVERITIES[top]]
    shown = alerts[:MAX_EMBEDS]
    common = notification.common_labels
    budget = _TOTAL_BUDGET // max(len(shown), 1)
    embeds = [alert_embed(a, budget, common) for a in shown]
    hidden = len(alerts) - len(shown) + notification.truncated_alerts
    more = f"\nand {hidden} more alert{'s' if hidden != 1 else ''}" if hidden > 0 else ""
    content = f"{emoji} **{_text(notification.title(), CONTENT_MAX - len(more) - 10)}**{more}"
    text = notification.template("text")
    if text is not None:
        content = truncate(text, CONTENT_MAX)  # the author's markdown, as written
    payload: dict[str, Any] = {"content": content, "embeds": embeds, "allowed_mentions": {"parse": []}}
    if config.username:
        payload["username"] = config.username[:80]
    return payload


class DiscordSink:
    def __init__(self, config: DiscordConfig) -> None:
        self.config = config
        self._target = webhook_url(config.webhook_url, config.webhook_url_file)

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        await post_json(
            http,
            self._target,
            render(notification, self.config),
            what="discord",
            headers={DELIVERY_HEADER: notification.id},
        )

    def redact(self, text: str) -> str:
        return scrub(text, self._target.hidden)


KIND = SinkKind("discord", DiscordConfig, DiscordSink)
