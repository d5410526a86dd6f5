"""Render transitions for people (table) and programs (JSON lines)."""

from __future__ import annotations

from typing import IO

import orjson

from streamalert.decode import format_ms
from streamalert.model import Transition
from streamalert.rules.template import format_value


def transition_json(t: Transition, provisional: bool = False) -> bytes:
    """One transition as a JSON object with a fixed key order: at, rule, state, labels, value, annotations;
    a provisional one (decided only by the end of a replay's input) ends with `"provisional": true`."""
    record: dict[str, object] = {
        "at": format_ms(t.at_ms),
        "rule": t.rule,
        "state": t.state.value,
        "labels": dict(t.labels),
        "value": t.value,
        "annotations": dict(t.annotations),
    }
    if provisional:
        record["provisional"] = True
    return orjson.dumps(record)


class JsonLinesWriter:
    def __init__(self, out: IO[bytes]) -> None:
        self._out = out

    def write(self, transitions: list[Transition]) -> None:
        for t in transitions:
            self._out.write(transition_json(t) + b"\n")

    def write_provisional(self, transitions: list[Transition]) -> None:
        for t in transitions:
            self._out.write(transition_json(t, provisional=True) + b"\n")

    def close(self) -> None:
        self._out.flush()


class TableWriter:
    """A table for people: rows are collected and printed, aligned, when the run ends."""

    HEADER = ("AT (UTC)", "STATE", "RULE", "VALUE", "LABELS", "SUMMARY")

    def __init__(self, out: IO[bytes]) -> None:
        self._out = out
        self._rows: list[tuple[str, ...]] = [self.HEADER]

    def write(self, transitions: list[Transition]) -> None:
        self._add(transitions, provisional=False)

    def write_provisional(self, transitions: list[Transition]) -> None:
        self._add(transitions, provisional=True)

    def _add(self, transitions: list[Transition], provisional: bool) -> None:
        for t in transitions:
            labels = ",".join(f"{k}={v}" for k, v in t.labels)
            summary = dict(t.annotations).get("summary", "")
            state = f"{t.state.value} (provisional)" if provisional else t.state.value
            self._rows.append((format_ms(t.at_ms), state, t.rule, format_value(t.value), labels, summary))

    def close(self) -> None:
        if len(self._rows) == 1:
            self._out.write(b"(no transitions)\n")
        else:
            widths = [max(len(row[c]) for row in self._rows) for c in range(len(self.HEADER) - 1)]
            for row in self._rows:
                cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)] + [row[-1]]
                self._out.write("  ".join(cells).rstrip().encode() + b"\n")
        self._out.flush()
