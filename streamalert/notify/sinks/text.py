"""What sinks share when they turn a notification into a message: the delivery-id header (every sink), and
for the chat sinks (Slack, Discord, Telegram) the order alerts are shown in, the labels line, link checks
and the webhook URL secret."""

from __future__ import annotations

from pathlib import Path

from pydantic import SecretStr

from streamalert.notify.model import Alert, Notification, severity_rank
from streamalert.notify.sinks.base import one_secret, secret
from streamalert.notify.sinks.endpoint import Target, http_target

DELIVERY_HEADER = "X-Streamalert-Delivery"  # the notification's delivery id: receivers may deduplicate by it


def ordered_alerts(notification: Notification) -> list[Alert]:
    """Firing alerts first, the most severe first; then resolved ones; otherwise in notification order."""
    return sorted(
        notification.alerts,
        key=lambda a: (a.status != "firing", -severity_rank(a.labels) if a.status == "firing" else 0),
    )


def labels_line(alert: Alert, common: dict[str, str]) -> str:
    """`k=v, ...` without alertname and severity; the labels that set the alert apart from the others in the
    notification come first (they survive truncation), then the common ones, each group sorted by name."""
    items = sorted(
        ((k, v) for k, v in alert.labels.items() if k not in {"alertname", "severity"}),
        key=lambda kv: (common.get(kv[0]) == kv[1], kv[0]),
    )
    return ", ".join(f"{k}={v}" for k, v in items)


def is_http_url(url: str) -> bool:
    """An http(s) URL without whitespace: safe to render as a link."""
    return url.lower().startswith(("https://", "http://")) and not any(c.isspace() for c in url)


def check_webhook_url(value: SecretStr | None, file: Path | None) -> None:
    """Config check of a chat sink: exactly one of `webhook_url` and `webhook_url_file`, and an inline URL that
    the HTTP client will take (a file is checked when the sink is built)."""
    one_secret(value, file, "webhook_url")
    if value is not None:
        http_target(value.get_secret_value(), "webhook_url")


def webhook_url(value: SecretStr | None, file: Path | None) -> Target:
    """The `webhook_url` / `webhook_url_file` secret, which must be an http(s) URL (never echoed); its
    `user:password@`, if any, becomes basic auth."""
    return http_target(secret(value, file, "webhook_url"), "webhook_url" if value is not None else "webhook_url_file")
