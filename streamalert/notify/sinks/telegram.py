"""telegram: the Bot API's `sendMessage` (`POST {api_url}/bot<token>/sendMessage`), one message per chat.

The text is HTML (`parse_mode: "HTML"`): a status emoji and `Notification.title()` in bold (✅ and
`[RESOLVED:n]` when resolved), then one paragraph per alert, firing alerts first and the most severe first:
emoji, name in bold and severity (or RESOLVED), the value in `<code>`, the `summary` (or `description`)
annotation, the labels in `<code>` and an `<a href>` Runbook link from an http(s) `runbook_url` annotation;
then "and N more" for alerts that did not fit. Only tags Telegram supports are used (`<b>`, `<i>`, `<code>`,
`<a href>`) and every user-provided text is escaped (`&amp;`, `&lt;`, `&gt;`, and `&quot;` inside `href`). The
text stays within Telegram's 4096 characters: the raw HTML is counted (in UTF-16 code units, as Telegram
counts), which bounds the parsed text; long parts are cut with an ellipsis, alerts that do not fit are counted
in "and N more". Link previews are disabled.

Several chats: requests go one chat at a time, in `chat_ids` order; the first failure raises `DeliveryError`
(the chats after it are not tried) and the sender retries the whole notification. Telegram has no idempotency
key, so a retry could post twice to the chats that already got the message: to avoid that, the sink remembers
(in memory, for the last `_REMEMBERED` failed notifications) which chats a failed notification reached, and a
retry of the same notification id sends only to the others. This holds for a send cancelled by the sender's
per-attempt timeout too (the chat whose request was cut off is tried again: it may have got the message). After
a restart, or once forgotten, a retry sends to every chat again (duplicates are possible then). A notification
that fully succeeds is not remembered, so sending it again sends it again. The per-attempt timeout covers all
the chats of one attempt; with many chats, retries make progress because reached chats are skipped.

Errors: HTTP errors come from `post_json` (429 with `parameters.retry_after`, 5xx: retryable; other 4xx: not);
an HTTP 200 answer with `"ok": false` raises too, classified by its `error_code` the same way, naming
Telegram's `description`. The bot token is part of the URL and never appears in an error or log message, nor do
the chat ids (a chat is named by its place in `chat_ids`). An `api_url` with `user:password@` (a Bot API
server behind a proxy) is sent with basic auth.
"""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self

from pydantic import Field, SecretStr, field_validator, model_validator

from streamalert.notify.model import SEVERITIES, Alert, Notification, severity_rank
from streamalert.notify.sinks.base import DeliveryError, SinkConfig, SinkKind, one_secret, post_json, secret
from streamalert.notify.sinks.endpoint import http_target, scrub
from streamalert.notify.sinks.text import DELIVERY_HEADER, is_http_url, labels_line, ordered_alerts

if TYPE_CHECKING:
    import aiohttp

TEXT_MAX = 4096
SEVERITY_EMOJI = {"critical": "🔴", "error": "🟠", "warning": "🟡", "info": "🔵"}
RESOLVED_EMOJI = "✅"
_ELLIPSIS = "…"
_TITLE_MAX = 250
_NAME_MAX = 200
_SEVERITY_MAX = 40
_SUMMARY_MAX = 1500
_LABELS_MAX = 1000
_URL_MAX = 500
_MORE_RESERVE = 60  # room kept for the "and N more" line
_REMEMBERED = 1024
_ROOM_SHARES = 8  # with many alerts, summaries and labels shrink so that about this many fit


class TelegramConfig(SinkConfig):
    TEMPLATES: ClassVar[tuple[str, ...]] = ("title", "text")  # text: the whole message, Telegram's HTML
    bot_token: SecretStr | None = None
    bot_token_file: Path | None = None
    chat_ids: list[int | str] = Field(min_length=1)
    api_url: str = "https://api.telegram.org"
    disable_notification: bool = False
    message_thread_id: int | None = None

    @model_validator(mode="after")
    def _one_token(self) -> Self:
        one_secret(self.bot_token, self.bot_token_file, "bot_token")
        return self

    @field_validator("chat_ids")
    @classmethod
    def _chat_ids(cls, value: list[int | str]) -> list[int | str]:
        if any(isinstance(c, str) and not c.strip() for c in value):
            raise ValueError("chat_ids: empty chat id")
        return value

    @field_validator("api_url")
    @classmethod
    def _api_url(cls, value: str) -> str:
        http_target(value, "", query=False)
        return value.rstrip("/")


def escape(text: str) -> str:
    """Telegram HTML escaping of text: `&`, `<`, `>` (the only characters it requires escaped)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def utf16_len(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def truncate(text: str, limit: int) -> str:
    """Cut escaped text to `limit` UTF-16 code units, ending with an ellipsis when cut, never inside an
    entity (in escaped text every `&` starts one)."""
    if utf16_len(text) <= limit:
        return text
    room = limit - utf16_len(_ELLIPSIS)
    used = 0
    cut = text
    for index, char in enumerate(text):
        used += 2 if ord(char) > 0xFFFF else 1
        if used > room:
            cut = text[:index]
            break
    amp = cut.rfind("&")
    if amp != -1 and ";" not in cut[amp:]:
        cut = cut[:amp]
    return cut + _ELLIPSIS


def _text(raw: str, limit: int) -> str:
    return truncate(escape(raw), limit)


def _link(url: str, label: str) -> str | None:
    url = url.strip()
    if not is_http_url(url):
        return None
    href = escape(url).replace('"', "&quot;")
    if len(href) > _URL_MAX:
        return None
    return f'<a href="{href}">{label}</a>'


def alert_paragraph(alert: Alert, common: dict[str, str], room: int = TEXT_MAX) -> str:
    """One alert's paragraph; `room` (characters) scales the summary and labels down when many alerts share the
    message, so that more of them fit."""
    resolved = alert.status == "resolved"
    emoji = RESOLVED_EMOJI if resolved else SEVERITY_EMOJI[alert.level]
    head = f"{emoji} <b>{_text(alert.name or '(unnamed)', _NAME_MAX)}</b>"
    if resolved:
        head += " — RESOLVED"
    elif alert.severity:
        head += f" — {_text(alert.severity, _SEVERITY_MAX)}"
    value = f"{alert.value:g}" if isinstance(alert.value, float) else str(alert.value)
    lines = [head, f"Value: <code>{_text(value, 40)}</code>"]
    summary = alert.annotations.get("summary") or alert.annotations.get("description")
    if summary:
        lines.append(_text(summary, min(_SUMMARY_MAX, room * 2 // 5)))
    labels = labels_line(alert, common)
    if labels:
        lines.append(f"Labels: <code>{_text(labels, min(_LABELS_MAX, room // 4))}</code>")
    runbook = _link(alert.annotations.get("runbook_url", ""), "Runbook")
    if runbook is not None:
        lines.append(runbook)
    return "\n".join(lines)


def render(notification: Notification) -> str:
    """The message text (HTML) for one notification, at most TEXT_MAX UTF-16 code units."""
    templated = notification.template("text")
    if templated is not None:
        return truncate(templated, TEXT_MAX)  # the author's HTML, as written
    if notification.status == "resolved":
        emoji = RESOLVED_EMOJI
    else:
        top = max((severity_rank(a.labels) for a in notification.firing), default=1)
        emoji = SEVERITY_EMOJI[SEVERITIES[top]]
    text = f"{emoji} <b>{_text(notification.title(), _TITLE_MAX)}</b>"
    alerts = ordered_alerts(notification)
    common = notification.common_labels
    room = max(400, (TEXT_MAX - utf16_len(text) - _MORE_RESERVE) // max(min(len(alerts), _ROOM_SHARES), 1))
    shown = 0
    for alert in alerts:
        paragraph = "\n\n" + alert_paragraph(alert, common, room)
        if utf16_len(text) + utf16_len(paragraph) > TEXT_MAX - _MORE_RESERVE:
            break
        text += paragraph
        shown += 1
    hidden = len(alerts) - shown + notification.truncated_alerts
    if hidden > 0:
        text += f"\n\n<i>and {hidden} more</i>"
    return text


class TelegramSink:
    def __init__(self, config: TelegramConfig) -> None:
        self.config = config
        token = secret(config.bot_token, config.bot_token_file, "bot_token")
        if not token or any(c.isspace() or c in "/?#" for c in token):
            raise ValueError("bot_token: not a bot token")
        self._target = http_target(f"{config.api_url}/bot{token}/sendMessage", "api_url")
        # never in an error: the token and its secret half (`<bot id>:<secret>`), and the chat ids (those longer
        # than a few characters: hiding "12" would hide it in "HTTP 412")
        chats = (str(c) for c in config.chat_ids if len(str(c)) > 3)
        self._hidden = (*self._target.hidden, token, token.partition(":")[2], *chats)
        # notification id -> indexes of chats that got it, for notifications whose last send failed
        self._reached: OrderedDict[str, set[int]] = OrderedDict()

    def _payload(self, chat_id: int | str, text: str) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "chat_id": chat_id,
            "text": text,
            "parse_mode": "HTML",
            "disable_notification": self.config.disable_notification,
            "link_preview_options": {"is_disabled": True},
        }
        if self.config.message_thread_id is not None:
            payload["message_thread_id"] = self.config.message_thread_id
        return payload

    async def send(self, notification: Notification, http: aiohttp.ClientSession) -> None:
        text = render(notification)
        chats = self.config.chat_ids
        reached = self._reached.pop(notification.id, set())
        try:
            for index, chat_id in enumerate(chats):
                if index not in reached:
                    await self._send_one(http, chat_id, text, notification.id, f" (chat {index + 1} of {len(chats)})")
                    reached.add(index)
        except BaseException:  # a DeliveryError, or the sender's timeout cancelling us: a retry resumes here
            self._remember(notification.id, reached)
            raise

    async def _send_one(
        self, http: aiohttp.ClientSession, chat_id: int | str, text: str, delivery_id: str, where: str
    ) -> None:
        try:
            answer = await post_json(
                http,
                self._target,
                self._payload(chat_id, text),
                what="telegram",
                headers={DELIVERY_HEADER: delivery_id},
                hidden=self._hidden,
            )
            _check_answer(answer, self._hidden)
        except DeliveryError as exc:
            where = where if len(self.config.chat_ids) > 1 else ""
            raise DeliveryError(
                f"{exc}{where}", retryable=exc.retryable, retry_after=exc.retry_after, status=exc.status
            ) from exc

    def redact(self, text: str) -> str:
        return scrub(text, self._hidden)

    def _remember(self, notification_id: str, reached: set[int]) -> None:
        if not reached:
            return
        self._reached[notification_id] = reached
        while len(self._reached) > _REMEMBERED:
            self._reached.popitem(last=False)


def _check_answer(answer: Any, hidden: tuple[str, ...]) -> None:
    """Raise for a 2xx answer saying `"ok": false` (anything else in a 2xx answer counts as delivered)."""
    if not isinstance(answer, dict) or answer.get("ok") is not False:
        return
    code = answer.get("error_code")
    code = code if isinstance(code, int) and not isinstance(code, bool) else None
    parameters = answer.get("parameters")
    retry_after = parameters.get("retry_after") if isinstance(parameters, dict) else None
    if not isinstance(retry_after, int | float) or isinstance(retry_after, bool) or retry_after < 0:
        retry_after = None
    retryable = code is None or code == 429 or code >= 500
    description = answer.get("description")
    said = f": {scrub(description, hidden)}" if isinstance(description, str) and description else ""
    raise DeliveryError(
        f"telegram: API error {code if code is not None else '(no code)'}{said}",
        retryable=retryable,
        retry_after=float(retry_after) if retry_after is not None else None,
        status=code,
    )


KIND = SinkKind("telegram", TelegramConfig, TelegramSink)
