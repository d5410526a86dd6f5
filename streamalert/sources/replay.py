"""Replay source: saved NDJSON log files, plain or gzip, read in batches of lines."""

from __future__ import annotations

import gzip
import sys
import zlib
from collections.abc import AsyncIterator, Collection, Iterable, Mapping, Sequence
from io import BufferedReader, FileIO
from pathlib import Path

from streamalert.sources import Batch
from streamalert.sources.formats import LineFormat

GZIP_MAGIC = b"\x1f\x8b"
DEFAULT_BATCH_LINES = 4096


class ReplaySource:
    """Lines of one or more files, in order; `position` counts compressed bytes read, for progress."""

    def __init__(
        self, paths: Sequence[str | Path], batch_lines: int = DEFAULT_BATCH_LINES, line_format: LineFormat | None = None
    ) -> None:
        self.paths = [Path(p) for p in paths]
        # logfmt/text/auto input (`--input-format`); a line without its own time takes the newest event time
        self._format = line_format if line_format is not None and line_format.kind != "json" else None
        self.batch_lines = batch_lines
        for path in self.paths:
            if path.is_dir():
                raise IsADirectoryError(f"{path} is a folder; give the log files in it")
        self.total_bytes = sum(_size(p) for p in self.paths)
        self.problems: list[str] = []  # files that ended early (a truncated or corrupt gzip), for the summary

    async def batches(self) -> AsyncIterator[Batch]:
        done_bytes = 0
        for path in self.paths:
            with _open_path(path) as raw:
                lines: list[bytes] = []
                count = 0
                try:
                    for line in _open(raw):
                        lines.append(line.rstrip(b"\r\n"))
                        if len(lines) >= self.batch_lines:
                            count += len(lines)
                            yield Batch(self._converted(lines), done_bytes + (raw.tell() if raw.seekable() else 0))
                            lines = []
                except (EOFError, OSError, zlib.error) as exc:  # gzip.BadGzipFile is an OSError
                    self.problems.append(f"{path}: unreadable after {count + len(lines)} lines ({exc})")
                if lines:
                    yield Batch(self._converted(lines), done_bytes + (raw.tell() if raw.seekable() else 0))
            done_bytes += _size(path)

    name = "replay"

    def _converted(self, lines: list[bytes]) -> list[bytes]:
        return lines if self._format is None else self._format.convert(lines)

    async def ack(self, batch: Batch) -> None:
        return None  # files need no acknowledgement

    def lagging(self) -> Collection[str]:
        return ("",)  # saved logs run on their own time: the wall clock means nothing to them

    def resume(self, meta: Mapping[str, int]) -> None:
        return None  # replay starts at the top of its files (`--resume` restores state, not a file position)


def _open(raw: BufferedReader) -> Iterable[bytes]:
    if raw.peek(2)[:2] == GZIP_MAGIC:  # peek, not seek: standard input and pipes work too
        return gzip.GzipFile(fileobj=raw)
    return raw


def _open_path(path: Path) -> BufferedReader:
    if str(path) == "-":
        return BufferedReader(FileIO(sys.stdin.fileno(), "rb", closefd=False))
    return path.open("rb")


def _size(path: Path) -> int:
    if str(path) == "-":
        return 0
    size = path.stat().st_size  # raises a clear OSError for a missing file before anything runs
    return size if path.is_file() else 0
