"""Frozen, slotted value types that leave the engine: alert transitions."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

Fields = dict[str, Any]


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
