"""Frozen, slotted value types that travel the hot path: log events and alert transitions."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Fields = dict[str, Any]


@dataclass(frozen=True, slots=True)
class LogEvent:
    """One decoded log record: its event time, its fields and the raw line it came from."""

    time_ms: int
    fields: Fields
    raw: bytes
    timed: bool = True  # False when the record had no usable time and took the newest seen


class AlertState(StrEnum):
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True)
class Transition:
    """One state change of one alert series, at an exact event time."""

    at_ms: int
    rule: str
    state: AlertState
    labels: tuple[tuple[str, str], ...]
    value: float | int
    annotations: tuple[tuple[str, str], ...]

    @property
    def at_iso(self) -> str:
        from streamalert.decode import format_ms  # noqa: PLC0415 (model stays import-free on the hot path)

        return format_ms(self.at_ms)

    def labels_dict(self) -> dict[str, str]:
        return dict(self.labels)

    def annotations_dict(self) -> dict[str, str]:
        return dict(self.annotations)
