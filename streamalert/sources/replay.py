"""Replay source: saved NDJSON log files, plain or gzip, read in batches of lines."""

from __future__ import annotations

import gzip
from collections.abc import AsyncIterator, Iterable, Sequence
from pathlib import Path
from typing import BinaryIO

from streamalert.sources import Batch

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_BATCH_LINES = 4096


class ReplaySource:
    """Lines of one or more files, in order; `position` counts compressed bytes read, for progress."""

    def __init__(self, paths: Sequence[str | Path], batch_lines: int = DEFAULT_BATCH_LINES) -> None:
        self.paths = [Path(p) for p in paths]
        self.batch_lines = batch_lines
        self.total_bytes = sum(p.stat().st_size for p in self.paths)
        self.lines_read = 0

    async def batches(self) -> AsyncIterator[Batch]:
        done_bytes = 0
        for path in self.paths:
            with path.open("rb") as raw:
                stream = _open(raw)
                lines: list[bytes] = []
                for line in stream:
                    lines.append(line.rstrip(b"\r\n"))
                    if len(lines) >= self.batch_lines:
                        self.lines_read += len(lines)
                        yield Batch(lines, done_bytes + raw.tell())
                        lines = []
                if lines:
                    self.lines_read += len(lines)
                    yield Batch(lines, done_bytes + raw.tell())
            done_bytes += path.stat().st_size

    async def ack(self, batch: Batch) -> None:
        return None  # files need no acknowledgement


def _open(raw: BinaryIO) -> Iterable[bytes]:
    head = raw.read(2)
    raw.seek(0)
    if head == GZIP_MAGIC:
        return gzip.GzipFile(fileobj=raw)
    return raw
