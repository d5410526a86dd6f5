"""streamalert's own logs: one JSON object per line through structlog.

Every line carries `event` (a stable snake_case name such as `batch_committed`), `level`, `timestamp`
(ISO 8601, UTC) and `logger`, plus the fields the call site binds. Values of keys that look like
credentials (`token`, `password`, `secret`, `authorization`, ...) are replaced by `***` before rendering,
at any depth of nested mappings.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any, TextIO, cast

import structlog
from structlog.typing import EventDict, FilteringBoundLogger, WrappedLogger

REDACTED = "***"
DEFAULT_NAME = "streamalert"
# Key names (case-insensitive, anywhere in the name: `api_token`, `DB_PASSWORD`, `Authorization`).
SECRET_KEY = re.compile(r"token|password|passwd|secret|authorization|api_?key|credential", re.IGNORECASE)

LEVELS: Mapping[str, int] = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "warn": logging.WARNING,
    "error": logging.ERROR,
    "critical": logging.CRITICAL,
}


def _redact_value(value: object) -> object:
    if isinstance(value, Mapping):
        return {
            k: REDACTED if isinstance(k, str) and SECRET_KEY.search(k) else _redact_value(v) for k, v in value.items()
        }
    return value


def redact_secrets(_logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: replace the values of credential-like keys by `***`."""
    for key in list(event_dict):
        if key != "event" and SECRET_KEY.search(key):
            event_dict[key] = REDACTED
        else:
            event_dict[key] = _redact_value(event_dict[key])
    return event_dict


class _NamedWriteLogger(structlog.WriteLogger):
    """structlog's JSON-line writer, remembering the name it was asked for (`structlog.get_logger(name)`)."""

    def __init__(self, file: TextIO, name: str) -> None:
        super().__init__(file)
        self.name = name


def add_logger_name(logger: WrappedLogger, _method: str, event_dict: EventDict) -> EventDict:
    """structlog processor: `logger` is the name given to `structlog.get_logger(name)` / `get_logger(name)`."""
    event_dict.setdefault("logger", getattr(logger, "name", None) or DEFAULT_NAME)
    return event_dict


def configure(level: str = "info", stream: TextIO | None = None) -> None:
    """Send every structlog logger to `stream` (default: standard error) as JSON lines, from `level` up.

    Raises ValueError naming the level when it is not one of debug, info, warning, error, critical.
    """
    number = LEVELS.get(level.lower())
    if number is None:
        raise ValueError(f"unknown log level {level!r} (use debug, info, warning, error or critical)")

    def factory(*args: Any) -> _NamedWriteLogger:
        out = stream if stream is not None else sys.stderr  # looked up when a logger is made, not once
        return _NamedWriteLogger(out, str(args[0]) if args else DEFAULT_NAME)

    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
            structlog.processors.format_exc_info,
            redact_secrets,
            structlog.processors.JSONRenderer(sort_keys=False),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(number),
        logger_factory=factory,
        context_class=dict,
        cache_logger_on_first_use=False,
    )


def get_logger(name: str, **bound: Any) -> FilteringBoundLogger:
    """A logger whose lines carry `logger=name` and the given fields."""
    return cast(FilteringBoundLogger, structlog.get_logger(name, **bound))
