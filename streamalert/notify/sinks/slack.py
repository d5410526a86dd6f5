"""slack: a Slack incoming webhook (`POST <webhook_url>`), one message per notification.

The message is Block Kit `blocks` plus a plain `text` fallback (what notifications and old clients show):

- a `header` block: a status emoji and `Notification.title()`, e.g. `:red_circle: [FIRING:2] HighLatency (prod)`
  (`:white_check_mark:` when resolved), at most 150 characters;
- one `section` per alert (mrkdwn), firing alerts first and the most severe first: status and name, severity,
  value, the `summary` (or `description`) annotation, the labels, and a `<url|Runbook>` link from the
  `runbook_url` annotation (http and https URLs only); at most `MAX_ALERTS` sections, then one "and N more"
  (counting `truncated_alerts` too); summaries and labels are shortened when many alerts share the message;
- a `context` block: receiver and, if set, a link to the external URL.

Slack treats `&`, `<` and `>` as control characters in every text object, so every user-provided text (labels,
annotations, group labels in the title) is escaped as `&amp;`, `&lt;`, `&gt;`; our own `<url|text>` links are
the only unescaped `<`. Texts are cut to Slack's limits (50 blocks, 3000 characters per section, 150 per header)
with an ellipsis, never inside an entity or a link. `channel`, `username` and `icon_emoji` are sent when set
(legacy webhooks honour them; webhooks of Slack apps ignore them).
"""

from __future__ import annotations

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

MAX_BLOCKS = 50
SECTION_TEXT_MAX = 3000
HEADER_TEXT_MAX = 150
FALLBACK_TEXT_MAX = 3000
MAX_ALERTS = 20  # sections of alerts; with header, "and N more" and context: 23 blocks, under MAX_BLOCKS

SEVERITY_EMOJI = {
    "critical": ":red_circle:",
    "error": ":large_orange_circle:",
    "warning": ":large_yellow_circle:",
    "info": ":large_blue_circle:",
}
RESOLVED_EMOJI = ":white_check_mark:"

# per-part caps inside one alert's section: their sum (with the fixed text) stays under SECTION_TEXT_MAX
_NAME_MAX = 200
_SEVERITY_MAX = 50
_SUMMARY_MAX = 1200
_LABELS_MAX = 1000
_ALL_SECTIONS_ROOM = 12000  # summaries and labels shrink when many alerts share a message
_URL_MAX = 400
_ELLIPSIS = "…"


class SlackConfig(SinkConfig):
    TEMPLATES: ClassVar[tuple[str, ...]] = ("title", "text")  # text (mrkdwn) replaces the alert sections
    webhook_url: SecretStr | None = None
    webhook_url_file: Path | None = None
    channel: str | None = None
    username: str | None = None
    icon_emoji: str | None = None

    @model_validator(mode="after")
    def _one_url(self) -> Self:
        check_webhook_url(self.webhook_url, self.webhook_url_file)
        return self


def escape(text: str) -> str:
    """Slack's escaping of control characters in text objects."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def truncate(text: str, limit: int) -> str:
    """Cut escaped mrkdwn to `limit` characters, ending with an ellipsis when cut. Never ends inside an entity
    (`&amp;`) or one of our links (`<url|text>`): in escaped text every `&` starts an entity and every `<` a link."""
    if len(text) <= limit:
        return text
    cut = text[: max(limit - len(_ELLIPSIS), 0)]
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    lt = cut.rfind("<")
    if lt != -1 and ">" not in cut[lt:]:
        cut = cut[:lt]
    return cut + _ELLIPSIS


def _text(raw: str, limit: int) -> str:
    return truncate(escape(raw), limit)


def _link(url: str, label: str) -> str | None:
    """`<url|label>` for an http(s) URL short enough to show; None otherwise."""
    url = url.strip()
    if not is_http_url(url):
        return None
    target = escape(url).replace("|", "%7C")
    if len(target) > _URL_MAX:
        return None
    return f"<{target}|{label}>"


def _format_value(value: float | int) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def alert_section(alert: Alert, common: dict[str, str], room: int = SECTION_TEXT_MAX) -> dict[str, Any]:
    """One alert's section; `room` (characters) scales the summary and labels down when many alerts share the
    message, so that it stays readable."""
    resolved = alert.status == "resolved"
    emoji = RESOLVED_EMOJI if resolved else SEVERITY_EMOJI[alert.level]
    name = _text(alert.name or "(unnamed)", _NAME_MAX)
    lines = [f"{emoji} *{name}*" + (" — RESOLVED" if resolved else "")]
    facts = []
    if alert.severity:
        facts.append(f"*Severity:* {_text(alert.severity, _SEVERITY_MAX)}")
    facts.append(f"*Value:* {_format_value(alert.value)}")
    lines.append("   ".join(facts))
    summary = alert.annotations.get("summary") or alert.annotations.get("description")
    if summary:
        lines.append(_text(summary, min(_SUMMARY_MAX, room * 2 // 5)))
    labels = labels_line(alert, common)
    if labels:
        lines.append(f"*Labels:* {_text(labels, min(_LABELS_MAX, room // 3))}")
    runbook = _link(alert.annotations.get("runbook_url", ""), "Runbook")
    if runbook is not None:
        lines.append(runbook)
    return {"type": "section", "text": {"type": "mrkdwn", "text": truncate("\n".join(lines), SECTION_TEXT_MAX)}}


def render(notification: Notification, config: SlackConfig) -> dict[str, Any]:
    """The incoming-webhook payload for one notification."""
    resolved = notification.status == "resolved"
    alerts = ordered_alerts(notification)
    if resolved:
        emoji = RESOLVED_EMOJI
    else:
        top = max((severity_rank(a.labels) for a in notification.firing), default=1)
        emoji = SEVERITY_EMOJI[SEVERITIES[top]]
    title = f"{emoji} {escape(notification.title())}"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": truncate(title, HEADER_TEXT_MAX), "emoji": True}}
    ]
    shown = alerts[:MAX_ALERTS]
    common = notification.common_labels
    room = max(600, min(SECTION_TEXT_MAX, _ALL_SECTIONS_ROOM // max(len(shown), 1)))
    text = notification.template("text")
    if text is not None:  # the template says everything about the alerts
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": truncate(text or " ", SECTION_TEXT_MAX)}})
        shown = alerts
    else:
        blocks.extend(alert_section(a, common, room) for a in shown)
    hidden = len(alerts) - len(shown) + notification.truncated_alerts
    if hidden > 0:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"_and {hidden} more_"}})
    context = [f"Receiver: {_text(notification.receiver, 200)}"]
    external = _link(notification.external_url, "StreamAlert")
    if external is not None:
        context.append(external)
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": " · ".join(context)}]})
    fallback = title
    if notification.firing and notification.resolved:
        fallback += f" ({len(notification.resolved)} resolved)"
    summary = notification.common_annotations.get("summary")
    if text:
        fallback = text
    elif summary:
        fallback += f": {escape(summary)}"
    payload: dict[str, Any] = {"text": truncate(fallback, FALLBACK_TEXT_MAX), "blocks": blocks[:MAX_BLOCKS]}
    for key in ("channel", "username", "icon_emoji"):
        value = getattr(config, key)
        if value:
            payload[key] = value
    return payload


class SlackSink:
    def __init__(self, config: SlackConfig) -> None:
        self.config = config
        self._target = webhook_url(config.webhook_url, config.webhook_url_file)

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        await post_json(
            http,
            self._target,
            render(notification, self.config),
            what="slack",
            headers={DELIVERY_HEADER: notification.id},
        )

    def redact(self, text: str) -> str:
        return scrub(text, self._target.hidden)


KIND = SinkKind("slack", SlackConfig, SlackSink)
