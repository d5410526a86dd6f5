"""Timeline helpers: log lines at offsets such as "0s" or "9.999s", expected transitions at offsets."""

from __future__ import annotations

import json
from typing import Any

from streamalert.decode import format_ms
from streamalert.durations import parse_duration
from streamalert.state.base import Store
from streamalert.testing import replay_lines, rules_from_yaml

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z


def at(offset: str) -> int:
    """Epoch ms of an offset from T0: '90s', '1m30s', '9999ms', or seconds with a fraction '9.999s'."""
    if offset.endswith("s") and not offset.endswith("ms") and "." in offset:
        return T0 + round(float(offset[:-1]) * 1000)
    return T0 + parse_duration(offset)


def iso(offset: str) -> str:
    return format_ms(at(offset))


def line(offset: str | None, **fields: Any) -> bytes:
    """A structlog-style JSON line stamped at an offset (None: no timestamp at all)."""
    record: dict[str, Any] = {}
    if offset is not None:
        record["timestamp"] = iso(offset)
    record.update(fields)
    return json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()  # any int, any depth


def expect(
    offset: str, rule: str, state: str, value: float, **labels: str
) -> tuple[str, str, str, float, dict[str, str]]:
    return (iso(offset), rule, state, value, labels)


async def run_timeline(
    rules_yaml: str, lines: list[bytes], store: Store, lateness: str = "30s", until: str | None = None
) -> list[tuple[str, str, str, float, dict[str, str]]]:
    """Replay lines through the production pipeline; (at, rule, state, value, labels) per transition."""
    rules = rules_from_yaml(rules_yaml)
    sink, _ = await replay_lines(
        rules,
        lines,
        store,
        lateness_ms=parse_duration(lateness),
        until_ms=None if until is None else at(until),
        batch_lines=3,  # small batches: checkpoints and horizons fall between every few lines
    )
    return [(t.at_iso, t.rule, t.state.value, float(t.value), dict(t.labels)) for t in sink.transitions]
