"""Durations as written in rule files ("500ms", "30s", "5m", "1h30m", "1d") to integer milliseconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w)")
_WHOLE = re.compile(r"(?:\d+(?:ms|s|m|h|d|w))+")


def parse_duration(text: str) -> int:
    """Parse a Prometheus-style duration into milliseconds; raise ValueError naming the text."""
    cleaned = text.strip()
    if cleaned == "0":
        return 0
    if not _WHOLE.fullmatch(cleaned):
        raise ValueError(f"invalid duration {text!r}: use e.g. 500ms, 30s, 5m, 1h30m, 1d")
    return sum(int(n) * _UNITS[u] for n, u in _PART.findall(cleaned))


def format_duration(ms: int) -> str:
    """The shortest exact spelling of a duration, e.g. 90000 -> '1m30s'."""
    if ms == 0:
        return "0s"
    out = []
    for unit in ("d", "h", "m", "s", "ms"):
        size = _UNITS[unit]
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(out)
