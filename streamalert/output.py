"""Render transitions for people (table) and programs (JSON lines)."""

from __future__ import annotations

from typing import IO

import orjson

from streamalert.decode import format_ms
from streamalert.model import Transition
from streamalert.rules.template import format_value


def transition_json(t: Transition) -> bytes:
    """One transition as a JSON object with a fixed key order: at, rule, state, labels, value, annotations."""
    return orjson.dumps(
        {
            "at": format_ms(t.at_ms),
            "rule": t.rule,
            "state": t.state.value,
            "labels": dict(t.labels),
            "value": t.value,
            "annotations": dict(t.annotations),
        }
    )


class JsonLinesWriter:
    def __init__(self, out: IO[bytes]) -> None:
        self._out = out

    def write(self, transitions: list[Transition]) -> None:
        for t in transitions:
            self._out.write(transition_json(t) + b"\n")

    def close(self) -> None:
        self._out.flush()


class TableWriter:
    """A fixed-width table; rows stream as they are decided."""

    HEADER = ("AT (UTC)", "STATE", "RULE", "VALUE", "LABELS", "SUMMARY")

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._header_done = False

    def write(self, transitions: list[Transition]) -> None:
        if not self._header_done:
            self._row(self.HEADER)
            self._header_done = True
        for t in transitions:
            labels = ",".join(f"{k}={v}" for k, v in t.labels)
            summary = dict(t.annotations).get("summary", "")
            self._row((format_ms(t.at_ms), t.state.value, t.rule, format_value(t.value), labels, summary))

    def _row(self, cells: tuple[str, ...]) -> None:
        widths = (24, 8, 34, 9, 40)
        line = "  ".join(c.ljust(w) for c, w in zip(cells, widths, strict=False))
        line += "  " + cells[-1]
        self._out.write(line.rstrip().encode() + b"\n")

    def close(self) -> None:
        if not self._header_done:
            self._out.write(b"(no transitions)\n")
        self._out.flush()
