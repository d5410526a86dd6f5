"""Bodies of Vector http requests: read with limits, inflated, and split into lines a slice at a time.

A body is kept whole (after gunzip) and split lazily, about `PIECE` bytes at a time, as batches need lines:
memory stays at the body's size (3.5M tiny lines as bytes objects would take about 14 times that) and no slice
holds the event loop for more than a few milliseconds (C-speed bytes.split and msgspec on 64 KiB).

Why slices on the loop and not a worker thread: bytes.split and msgspec hold the GIL for the whole call, so
`asyncio.to_thread` does not free the loop while they run. Measured 2026-12-02 on 2 shared cores, 5 runs
each, the longest gap of a 5 ms ticker while 10 MB of `{}` lines (3.5M) were split: one split in a thread
0.23-0.47 s (a JSON array of 3.5M `{}`: 0.33-0.35 s); in 64 KiB slices on the loop, 2-5 ms (array: 7-9 ms).
zlib releases the GIL while inflating, so gunzip does run in a thread: 10 MB of log lines (1.2 MB gzip)
stalled that ticker 24-73 ms inflated on the loop, 6-30 ms in a thread.

- NDJSON: one line per non-empty line ("\\r\\n" endings accepted), as before.
- JSON array: one line per element, its raw bytes (not re-encoded). The array is decoded a piece at a time,
  cut after a `}` followed by `,{` (how Vector joins the events of a body). A cut inside a string or a nested
  value makes the piece invalid JSON (an open string or bracket), so only true element boundaries decode;
  an invalid piece is retried twice as large, up to the rest of the body. An array written with spaces
  between elements (not by Vector) has no such cut and is decoded in one call: ~0.35 s for 10 MB of `{}`.
- A body that starts with `[` but is not a valid JSON array is salvaged, not refused: from the first piece
  that cannot be decoded even when extended to the end, the rest is cut at every `},{`; a part that is not
  valid JSON is joined with the following parts (up to `_REJOIN` of them) until the whole is, so an element
  with `},{` inside a string or a nested value comes out whole. What stays invalid is one line, which the
  engine counts malformed. So a bad element costs itself, never the whole body: a 400 would make Vector
  drop every event of the batch without retrying. (Elements written with spaces, `}, {`, are not cut.)
"""

from __future__ import annotations

import zlib
from typing import Final

import msgspec
from aiohttp import StreamReader

PIECE: Final = 64 * 1024  # bytes split per slice: ~2 ms of C work even for 3-byte lines
_ARRAY_DECODER: Final = msgspec.json.Decoder(list[msgspec.Raw])
_WHITESPACE: Final = b" \t\r\n"
_JOIN: Final = b"},{"
_VALUE: Final = msgspec.json.Decoder(msgspec.Raw)  # checks that bytes are one JSON value, building nothing
_REJOIN: Final = 64  # parts of a broken array joined at most to make one valid element (bounds the work)


class Body:
    """The lines of one body, handed out in order by `take`, split only as far as needed."""

    __slots__ = ("_array", "_broken", "_data", "_end", "_joined", "_lines", "_most", "_next", "_pos", "_salvage")

    def __init__(self, data: bytes, lines_only: bool = False) -> None:
        start = len(data) - len(data.lstrip(_WHITESPACE))
        self._data = data
        # lines_only: logfmt/text input (`encoding.codec = "text"`), where a leading `[` is a log line's own
        self._array = not lines_only and data[start : start + 1] == b"["
        self._salvage = False
        self._broken: bytes | None = None  # salvage: parts not yet valid JSON, waiting for the next part
        self._joined = 0  # how many parts _broken holds
        self._lines: list[bytes] = []
        self._next = 0  # index of the next line of _lines to hand out
        self._most: int | None = None  # NDJSON: newlines + 1 in _data[_pos:_end] when first asked (see most)
        if self._array:
            end = len(data.rstrip(_WHITESPACE))
            self._pos = start + 1  # just after "[": every piece starts at an element
            self._end = end - 1 if end - 1 >= self._pos and data[end - 1 : end] == b"]" else end
        else:
            self._pos, self._end = 0, len(data)
        self._split_more()  # a small body is split at once, so its line count is known (merging whole requests)

    @property
    def exhausted(self) -> bool:
        """Every line has been handed out."""
        return self._next == len(self._lines) and self._pos >= self._end

    def known_count(self) -> int | None:
        """The lines not yet handed out, if the whole body is split; None while more is to be split."""
        return len(self._lines) - self._next if self._pos >= self._end else None

    def most(self) -> int | None:
        """At most how many lines are not yet handed out, without splitting the rest (NDJSON: its newlines + 1,
        counted at C speed); None for a JSON array not split whole (its elements are found by decoding)."""
        known = self.known_count()
        if known is not None or self._array:
            return known
        if self._most is None:  # counted once: the rest is only split from here on, never grown
            self._most = self._data.count(b"\n", self._pos, self._end) + 1
        return len(self._lines) - self._next + self._most

    def take(self, most: int) -> list[bytes]:
        """Up to `most` further lines (fewer only at the end of the body)."""
        out: list[bytes] = []
        while len(out) < most:
            if self._next == len(self._lines):
                if self._pos >= self._end:
                    break
                self._lines, self._next = [], 0
                self._split_more()
                continue
            stop = min(len(self._lines), self._next + most - len(out))
            out += self._lines[self._next : stop]
            self._next = stop
        if self._pos >= self._end and self._next == len(self._lines):
            self._data, self._lines, self._next = b"", [], 0  # done: free the body before the answer
        return out

    def _split_more(self) -> None:
        """Split the next slice of the body into _lines (possibly none: blank lines, "[]")."""
        if self._pos >= self._end:
            return
        if not self._array:
            self._lines = _ndjson(self._slice(b"\n", 0))
        elif self._salvage:
            self._lines = self._salvage_slice(self._slice(_JOIN, 1))
        else:
            self._decode_piece()

    def _slice(self, separator: bytes, keep: int) -> bytes:
        """The body from _pos to the first `separator` at least PIECE bytes on, with `keep` bytes of it; the next
        slice starts after it and one more byte (NDJSON: after the newline; salvage: at the "{" of "},{")."""
        data, pos = self._data, self._pos
        cut = data.find(separator, pos + PIECE, self._end)
        if cut < 0:
            self._pos = self._end
            return data[pos : self._end]
        self._pos = cut + keep + 1
        return data[pos : cut + keep]

    def _decode_piece(self) -> None:
        """The next elements of an array: a piece cut at `},{`, grown until it decodes, else salvage."""
        data, pos, size = self._data, self._pos, PIECE
        while True:
            cut = data.find(_JOIN, pos + size, self._end)
            stop = self._end if cut < 0 else cut + 1
            try:
                raws = _ARRAY_DECODER.decode(b"[" + data[pos:stop] + b"]")
            except msgspec.DecodeError:
                if cut < 0:  # not a valid array from here to the end: salvage the rest
                    self._salvage = True
                    self._split_more()
                    return
                size *= 2  # the cut fell inside an element: try a later one
                continue
            self._lines = [bytes(raw) for raw in raws]
            self._pos = self._end if cut < 0 else cut + 2  # the "{" after the comma
            return

    def _salvage_slice(self, text: bytes) -> list[bytes]:
        """Lines of a broken array's slice: parts cut at every `},{` (given back their braces), rejoined while
        a part alone is not valid JSON."""
        parts = text.split(_JOIN)
        last = len(parts) - 1
        out: list[bytes] = []
        broken, joined = self._broken, self._joined
        for i, cut in enumerate(parts):
            part = (b"{" if i else b"") + cut + (b"}" if i < last else b"")
            if broken is None:
                if _valid(part):
                    out.append(part)
                elif part.strip(_WHITESPACE):
                    broken, joined = part, 1
                continue
            together = broken + b"," + part
            if _valid(together):
                out.append(together)
                broken = None
            elif _valid(part):  # what came before was broken on its own: it costs itself, not this part
                out += (broken, part)
                broken = None
            elif joined >= _REJOIN:
                out.append(broken)
                broken, joined = part, 1
            else:
                broken, joined = together, joined + 1
        if broken is not None and self._pos >= self._end:
            out.append(broken)  # the end of the body: what never became valid is one (malformed) line
            broken = None
        self._broken, self._joined = broken, joined
        return out


def _valid(text: bytes) -> bool:
    try:
        _VALUE.decode(text)
    except msgspec.DecodeError:
        return False
    return True


def _ndjson(text: bytes) -> list[bytes]:
    lines = text.split(b"\n")
    if b"\r" in text:  # rare: CRLF endings; only then a Python-speed pass
        lines = [line[:-1] if line[-1:] == b"\r" else line for line in lines]
    return list(filter(None, lines))


async def read_capped(content: StreamReader, limit: int, budget: ReadBudget) -> bytes | None:
    """The whole body, or None as soon as more than `limit` bytes arrived (Content-Length is not trusted).

    The bytes held while reading are charged to `budget` (and given back when reading ends, however it
    ends); raises `OverBudget` when all the bodies being read would hold more than its limit."""
    chunks: list[bytes] = []
    size = 0
    try:
        while True:
            chunk = await content.read(limit + 1 - size)
            if not chunk:
                return b"".join(chunks)
            if size + len(chunk) > limit:
                return None
            budget.charge(len(chunk))
            size += len(chunk)
            chunks.append(chunk)
    finally:
        budget.held -= size


class OverBudget(Exception):
    """The bodies being read hold max_reading_bytes already."""


class ReadBudget:
    """Bytes held by the bodies being read, against a limit."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def charge(self, size: int) -> None:
        if self.held + size > self.limit:
            raise OverBudget
        self.held += size


def gunzip(data: bytes, limit: int) -> bytes | None:
    """Inflate gzip members (one or concatenated); None once the output passes `limit`: never inflate a bomb.

    Raises zlib.error for a corrupt or truncated stream. Runs in a worker thread (zlib releases the GIL).
    """
    out: list[bytes] = []
    size = 0
    inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
    while True:
        chunk = inflater.decompress(data, limit + 1 - size)  # max_length >= 1: 0 would mean unbounded
        size += len(chunk)
        if size > limit:
            return None
        out.append(chunk)
        if inflater.eof:
            data = inflater.unused_data
            if not data:
                return b"".join(out)
            inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)  # the next member of a concatenated gzip
        elif inflater.unconsumed_tail:
            data = inflater.unconsumed_tail
        elif chunk:
            data = b""  # all input taken but output may be pending: ask again
        else:
            raise zlib.error("gzip stream ends before its end marker")
