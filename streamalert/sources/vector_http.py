"""Vector http source: the log lines Vector's `http` sink POSTs (`encoding.codec = "json"`), answered after commit.

A request is answered 200 only once `ack` confirms the batch that carried it (its effects are committed), so
Vector's retries and end-to-end acknowledgements mean something. Everything that could make the process hold
memory without bound is refused up front: a missing or wrong bearer token (401), a body past
`max_body_bytes` as received or after gunzip (413, the inflater stops at the limit), and more unanswered
requests than `max_queued_requests` (429 with Retry-After). After `close()`, 503 with Retry-After.

The server must not inflate bodies itself: run the aiohttp server this source is mounted on with
`auto_decompress=False` (`SERVER_OPTIONS`, e.g. `web.AppRunner(app, **SERVER_OPTIONS)`), so the gzip limits
here hold on every aiohttp version. A gzip request reaching a server that inflates is answered 500 naming
the fix (Vector retries a 500, so nothing is lost while the deployment is corrected).

Bodies are split, not validated: newline-delimited JSON gives one line per non-empty line, a JSON array one
line per element (its raw bytes, not re-encoded). The engine counts malformed lines.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import zlib
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal, Self

import msgspec
import pydantic
from aiohttp import StreamReader, hdrs, web
from pydantic import ConfigDict, Field, SecretStr

from streamalert.decode import DECODE_ERRORS
from streamalert.sources import Batch

SERVER_OPTIONS: Final[dict[str, Any]] = {"auto_decompress": False}  # for the aiohttp runner/server
_GZIP: Final = frozenset({"gzip", "x-gzip"})
_IDENTITY: Final = frozenset({"", "identity"})
_ARRAY_DECODER: Final = msgspec.json.Decoder(list[msgspec.Raw])
_WHITESPACE: Final = b" \t\r\n"


class VectorHttpConfig(pydantic.BaseModel):
    """Where the source listens on the shared HTTP app, how it authenticates, and its limits."""

    model_config = ConfigDict(extra="forbid")

    path: str = "/vector"
    token: SecretStr | None = None
    auth: Literal["bearer", "none"] = "bearer"
    max_body_bytes: int = Field(default=10 * 1024 * 1024, gt=0)  # as received, and again after gunzip
    max_queued_requests: int = Field(default=64, gt=0)  # requests read or waiting for their answer
    max_batch_lines: int = Field(default=4096, gt=0)  # lines one Batch merges from several requests
    tick_ms: int = Field(default=1000, gt=0)  # an empty Batch when nothing arrived for this long
    retry_after_s: int = Field(default=1, ge=0)

    @pydantic.field_validator("path")
    @classmethod
    def _absolute_path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("must start with '/'")
        return path

    @pydantic.model_validator(mode="after")
    def _token_for_bearer(self) -> Self:
        if self.auth == "bearer" and (self.token is None or not self.token.get_secret_value()):
            raise ValueError("token: required when auth is 'bearer' (set auth: none to accept anyone)")
        return self


@dataclass(slots=True, eq=False)
class _Request:
    """One admitted POST: its lines, and the status its handler will answer."""

    lines: list[bytes]
    answer: asyncio.Future[int]
    settled: bool = False


@dataclass(frozen=True, slots=True)
class _Carried:
    """Batch.token of a non-empty batch: the requests whose lines it holds."""

    requests: tuple[_Request, ...]


class VectorHttpSource:
    """A push source: Vector sends, the pipeline pulls `batches()` and acknowledges them with `ack`."""

    name = "vector"

    def __init__(self, config: VectorHttpConfig) -> None:
        self.config = config
        self.requests: collections.Counter[int] = collections.Counter()  # answers by status code
        self.lines_received = 0  # lines of admitted requests
        self._queue: collections.deque[_Request] = collections.deque()  # admitted, not yet in a batch
        self._arrived = asyncio.Event()
        self._outstanding = 0  # requests holding a slot: being read, queued, or in a batch not yet acked
        self._position = 0
        self._closed = False
        self._handed: set[_Request] = set()  # in a batch handed out, not yet acknowledged

    def routes(self) -> list[web.RouteDef]:
        """The one route to mount on the composition root's aiohttp application."""
        return [web.post(self.config.path, self._receive)]

    async def batches(self) -> AsyncIterator[Batch]:
        """Queued requests merged up to max_batch_lines (whole requests); an empty batch after tick_ms idle."""
        tick_s = self.config.tick_ms / 1000
        limit = self.config.max_batch_lines
        while not self._closed:
            if not self._queue:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), tick_s)
                except TimeoutError:
                    yield Batch([], self._position)
                    continue
                if self._closed or not self._queue:
                    continue
            taken = [self._queue.popleft()]
            count = len(taken[0].lines)
            while self._queue and count + len(self._queue[0].lines) <= limit:
                request = self._queue.popleft()
                taken.append(request)
                count += len(request.lines)
            lines = taken[0].lines if len(taken) == 1 else [line for r in taken for line in r.lines]
            self._position += count
            self._handed.update(taken)
            yield Batch(lines, self._position, _Carried(tuple(taken)))

    async def ack(self, batch: Batch) -> None:
        """The batch is committed: answer every request it carried with 200."""
        if isinstance(batch.token, _Carried):
            for request in batch.token.requests:
                self._handed.discard(request)
                self._settle(request, 200)

    def lagging(self) -> Collection[str]:
        return ()  # a push source holds no backlog of its own: Vector holds it

    def resume(self, meta: Mapping[str, int]) -> None:
        return None  # Vector resends what was not answered 200: there is no position to restore

    async def close(self) -> None:
        """Stop taking requests: queued and new ones get 503; batches already yielded still wait for `ack`."""
        self._closed = True
        while self._queue:
            self._settle(self._queue.popleft(), 503)
        self._arrived.set()

    async def abort(self) -> None:
        """Give up everything not acknowledged (the writer lease was lost, or shutdown ran out of time): queued
        requests and those in batches handed out are answered 503, so Vector sends them again."""
        await self.close()
        for request in list(self._handed):
            self._settle(request, 503)
        self._handed.clear()

    def _settle(self, request: _Request, status: int) -> None:
        """Give a queued request its answer and free its slot (once, even if its handler is gone)."""
        if request.settled:
            return
        request.settled = True
        self._outstanding -= 1
        if not request.answer.done():  # done: the handler was cancelled (the client went away)
            request.answer.set_result(status)

    async def _receive(self, request: web.Request) -> web.Response:
        response = await self._answer(request)
        self.requests[response.status] += 1
        return response

    async def _answer(self, request: web.Request) -> web.Response:
        config = self.config
        if self._closed:
            return self._busy(503)
        if config.auth == "bearer" and not self._authorized(request.headers.get(hdrs.AUTHORIZATION, "")):
            return web.Response(
                status=401, text="missing or wrong bearer token\n", headers={hdrs.WWW_AUTHENTICATE: "Bearer"}
            )
        encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
        if encoding not in _GZIP and encoding not in _IDENTITY:
            return web.Response(status=415, text=f"unsupported Content-Encoding {encoding!r}: use gzip or none\n")
        if request.content_length is not None and request.content_length > config.max_body_bytes:
            return _too_large(config.max_body_bytes, "")
        if request.content_length == 0:
            return web.Response(status=200)
        if self._outstanding >= config.max_queued_requests:
            return self._busy(429)
        self._outstanding += 1  # taken before the body is read, so bodies in memory stay bounded too
        try:
            lines = await self._read_lines(request, encoding in _GZIP)
        except BaseException:
            self._outstanding -= 1
            raise
        if isinstance(lines, web.Response) or not lines or self._closed:
            self._outstanding -= 1
            if isinstance(lines, web.Response):
                return lines
            return self._busy(503) if lines else web.Response(status=200)
        pending = _Request(lines, asyncio.get_running_loop().create_future())
        self._queue.append(pending)  # from here the slot is freed by _settle (ack or close)
        self.lines_received += len(lines)
        self._arrived.set()
        status = await pending.answer
        return web.Response(status=200) if status == 200 else self._busy(status)

    async def _read_lines(self, request: web.Request, gzipped: bool) -> list[bytes] | web.Response:
        """The body's lines, or the refusal to answer instead."""
        limit = self.config.max_body_bytes
        if gzipped and getattr(request.content, "total_compressed_bytes", None) is not None:
            return web.Response(status=500, text="the server inflates bodies: run it with auto_decompress=False\n")
        body = await _read_capped(request.content, limit)
        if body is None:
            return _too_large(limit, "")
        if gzipped and body:
            try:
                body = _gunzip(body, limit)
            except zlib.error:
                return web.Response(status=400, text="corrupt gzip body\n")
            if body is None:
                return _too_large(limit, " after gzip decompression")
        try:
            return _split(body)
        except DECODE_ERRORS:
            return web.Response(status=400, text="body starts with '[' but is not a JSON array\n")

    def _authorized(self, header: str) -> bool:
        scheme, _, credentials = header.strip().partition(" ")
        token = self.config.token
        if token is None or scheme.lower() != "bearer":
            return False
        given = credentials.strip().encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, token.get_secret_value().encode("utf-8"))

    def _busy(self, status: int) -> web.Response:
        reason = "closing" if status == 503 else "too many requests waiting for their batch"
        return web.Response(
            status=status, text=f"{reason}; retry later\n", headers={hdrs.RETRY_AFTER: str(self.config.retry_after_s)}
        )


def _too_large(limit: int, where: str) -> web.Response:
    return web.Response(status=413, text=f"body larger than {limit} bytes{where}\n")


async def _read_capped(content: StreamReader, limit: int) -> bytes | None:
    """The whole body, or None as soon as more than `limit` bytes arrived (Content-Length is not trusted)."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await content.read(limit + 1 - size)
        if not chunk:
            return b"".join(chunks)
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)


def _gunzip(data: bytes, limit: int) -> bytes | None:
    """Inflate gzip members (one or concatenated); None once the output passes `limit`: never inflate a bomb.

    Raises zlib.error for a corrupt or truncated stream.
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


def _split(body: bytes) -> list[bytes]:
    """Lines of an NDJSON body (empty ones are framing, dropped) or the raw elements of a JSON array body."""
    if body.lstrip(_WHITESPACE)[:1] == b"[":
        return [bytes(raw) for raw in _ARRAY_DECODER.decode(body)]
    lines = body.split(b"\n")
    return [line for line in (raw[:-1] if raw[-1:] == b"\r" else raw for raw in lines) if line]
