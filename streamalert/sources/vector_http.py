"""Vector http source: the log lines Vector's `http` sink POSTs (`encoding.codec = "json"`), answered after commit.

A request is answered 200 only once `ack` confirms the batch that carried its last line (its effects are
committed), so Vector's retries and end-to-end acknowledgements mean something. Everything that could make
the process hold memory or a slot without bound is refused up front or timed out:

- a missing or wrong bearer token, or an Authorization header that is not even UTF-8: 401;
- a body past `max_body_bytes` as received or after gunzip: 413 (the inflater stops at the limit);
- a body that has not fully arrived within `body_timeout_s` of the start of reading: 408, connection closed;
- more than `max_reading_requests` bodies being read at once, or more than `max_reading_bytes` held by them:
  429 with Retry-After. A body being read holds no queue slot, so clients that send slowly (or send one
  byte and go silent) cannot take the slots of those that have sent everything;
- more requests whose body has arrived and that wait for their answer than `max_queued_requests`: 429.

Memory is bounded by `max_reading_bytes` for bodies being read plus `max_queued_requests` x
`max_body_bytes` for bodies read, as their bytes (they are split into lines lazily: see vector_body.py).
`saturated()` says when either kind of slot is all taken (for `/readyz`); the gauge
`streamalert_ingest_requests{state="reading"|"queued"}` shows both.

`batches()` never yields more than `max_batch_lines` lines: whole requests queued are merged up to it (a
request joins a batch only if it fits whole: NDJSON bodies by their newline count, JSON arrays once split,
i.e. within 64 KiB), and a larger request is spread over consecutive batches; it is answered when the batch
with its last line is acknowledged (the pipeline acknowledges batches in order). After `close()`: new
requests, and queued ones not started, get 503 with Retry-After; a request already partly handed out keeps
being handed out until its last line (its first lines may already be committed: answering 503 would have
Vector send them again and count them twice), and `batches()` ends after it. Batches already yielded still
wait for `ack`. (A crash after some of a request's batches were committed makes Vector send the whole request
again, so those lines count twice: the same window as a crash between a commit and its answer, now as long as
the request takes.)

The server must not inflate bodies itself: run the aiohttp server this source is mounted on with
`auto_decompress=False` (`SERVER_OPTIONS`, e.g. `web.AppRunner(app, **SERVER_OPTIONS)`), so the gzip limits
here hold on every aiohttp version. A gzip request reaching a server that inflates is answered 500 naming
the fix (Vector retries a 500, so nothing is lost while the deployment is corrected).

Bodies are split, not validated (vector_body.py): NDJSON gives one line per non-empty line, a JSON array one
line per element (its raw bytes, not re-encoded), and a body starting with `[` that is not a valid array is
salvaged element by element, never refused. The engine counts malformed lines.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import re
import zlib
from collections.abc import AsyncIterator, Collection, Mapping
from dataclasses import dataclass
from typing import Any, Final

from aiohttp import hdrs, web

from streamalert.clock import Clock, WallClock
from streamalert.sources import Batch
from streamalert.sources.formats import live_format
from streamalert.sources.vector_body import Body, OverBudget, ReadBudget, gunzip, read_capped
from streamalert.sources.vector_config import VectorHttpConfig as VectorHttpConfig  # noqa: PLC0414 (re-exported)
from streamalert.telemetry.metrics import Metrics

SERVER_OPTIONS: Final[dict[str, Any]] = {"auto_decompress": False}  # for the aiohttp runner/server
_GZIP: Final = frozenset({"gzip", "x-gzip"})
_IDENTITY: Final = frozenset({"", "identity"})
_SHOWN: Final = 32  # characters of a refused Content-Encoding echoed back


@dataclass(slots=True, eq=False)
class _Request:
    """One admitted POST: its body's lines, and the status its handler will answer."""

    body: Body
    answer: asyncio.Future[int]
    arrived_ms: int  # when its body had arrived (the source's clock)
    started: bool = False  # some of its lines are in a batch already
    settled: bool = False


@dataclass(frozen=True, slots=True)
class _Carried:
    """Batch.token of a batch holding the last line of requests: those to answer when it is acknowledged."""

    requests: tuple[_Request, ...]


_ARRAY_OF_OBJECTS: Final = re.compile(rb"[ \t\r\n]*\[[ \t\r\n]*\{")


class VectorHttpSource:
    """A push source: Vector sends, the pipeline pulls `batches()` and acknowledges them with `ack`."""

    name = "vector"

    def __init__(self, config: VectorHttpConfig, metrics: Metrics | None = None, clock: Clock | None = None) -> None:
        self.config = config
        self.requests: collections.Counter[int] = collections.Counter()  # answers by status code
        self.lines_received = 0  # lines handed out in batches
        self._queue: collections.deque[_Request] = collections.deque()  # admitted, last line not yet in a batch
        self._arrived = asyncio.Event()
        self._reading = 0  # requests whose body is being read
        self._budget = ReadBudget(config.max_reading_bytes)
        self._outstanding = 0  # requests holding a queue slot: body read, not yet answered
        self._position = 0
        self._closed = False
        self._handed: set[_Request] = set()  # whose last line is in a batch handed out, not yet acknowledged
        self._format = live_format(self.name, config.format, config.time_pattern, metrics)
        self._clock = clock or WallClock()  # when requests arrive (Batch.arrived_ms; logfmt/text lines' time)
        if metrics is not None:
            metrics.ingest_requests.labels("reading").set_function(lambda: self._reading)
            metrics.ingest_requests.labels("queued").set_function(lambda: self._outstanding)

    @property
    def reading(self) -> int:
        """Requests whose body is being read."""
        return self._reading

    @property
    def reading_bytes(self) -> int:
        """Bytes held by the bodies being read (at most max_reading_bytes)."""
        return self._budget.held

    @property
    def queued(self) -> int:
        """Requests whose body has arrived and that wait for their answer (queued or in a batch)."""
        return self._outstanding

    def waiting(self) -> bool:
        """Some request's lines are queued and not yet handed out in a batch."""
        return bool(self._queue)

    def saturated(self) -> str | None:
        """Why the next request would be answered 429 whatever it is, or None (for `/readyz`)."""
        config = self.config
        if self._outstanding >= config.max_queued_requests:
            return f"{self._outstanding} requests waiting for their batch (max_queued_requests)"
        if self._reading >= config.max_reading_requests:
            return f"{self._reading} request bodies being read (max_reading_requests)"
        return None

    def routes(self) -> list[web.RouteDef]:
        """The one route to mount on the composition root's aiohttp application."""
        return [web.post(self.config.path, self._receive)]

    async def batches(self) -> AsyncIterator[Batch]:
        """Batches of at most max_batch_lines lines (whole requests merged, large ones spread over several);
        an empty batch after tick_ms idle. Ends after `close()`, once a request partly handed out is complete."""
        tick_s = self.config.tick_ms / 1000
        while not self._closed or (self._queue and self._queue[0].started):
            if not self._queue:
                self._arrived.clear()
                try:
                    await asyncio.wait_for(self._arrived.wait(), tick_s)
                except TimeoutError:
                    yield Batch([], self._position)
                    continue
                continue  # closed meanwhile, or the request arrived: check again
            # One turn of the loop between batches: even with a store whose commit never waits, a large
            # request is processed batch by batch without holding the loop (health checks, the lease).
            await asyncio.sleep(0)
            if self._queue:
                # made by a call, so this frame holds no reference to its lines while it waits: the last batch
                # of a flood would otherwise live on, and keep the memory it sits in from being given back
                yield self._next_batch()

    def _next_batch(self) -> Batch:
        lines, done, arrived = self._fill(self.config.max_batch_lines)
        self.lines_received += len(lines)
        self._position += len(lines)
        self._handed.update(done)
        if self._format is not None:
            lines = self._format.convert(lines, arrived)
        return Batch(lines, self._position, _Carried(tuple(done)) if done else None, arrived_ms=arrived)

    def _fill(self, limit: int) -> tuple[list[bytes], list[_Request], int]:
        """The next batch's lines, the requests whose last line it holds (taken off the queue), and when the
        earliest of the requests it took lines from arrived."""
        lines: list[bytes] = []
        done: list[_Request] = []
        queue = self._queue
        arrived = queue[0].arrived_ms
        while queue and len(lines) < limit:
            request = queue[0]
            room = limit - len(lines)
            if lines and not request.started:
                count = request.body.most()  # a request not yet started joins only if it fits whole
                if count is None or count > room:
                    break
            request.started = True
            arrived = min(arrived, request.arrived_ms)
            lines += request.body.take(room)
            if not request.body.exhausted:
                # A large request takes turns with those queued behind it: a 10 MB body does not hold the
                # small requests back until their lines are late (it is answered when its last line is).
                queue.rotate(-1)
                break
            done.append(queue.popleft())
        return lines, done, arrived

    async def ack(self, batch: Batch) -> None:
        """The batch is committed: answer every request whose last line it carried with 200."""
        if isinstance(batch.token, _Carried):
            for request in batch.token.requests:
                self._handed.discard(request)
                self._settle(request, 200)

    def lagging(self) -> Collection[str]:
        return ()  # a push source holds no backlog of its own: Vector holds it

    def resume(self, meta: Mapping[str, int]) -> None:
        return None  # Vector resends what was not answered 200: there is no position to restore

    async def close(self) -> None:
        """Stop taking requests: new ones and queued ones not started get 503; a request partly handed out is
        handed out to its end; batches already yielded still wait for `ack`."""
        self._closed = True
        started = [request for request in self._queue if request.started]
        for request in self._queue:
            if not request.started:
                self._settle(request, 503)
        self._queue = collections.deque(started)
        self._arrived.set()

    async def abort(self) -> None:
        """Give up everything not acknowledged (the writer lease was lost, or shutdown ran out of time): queued
        requests and those in batches handed out are answered 503, so Vector sends them again."""
        await self.close()
        while self._queue:  # a request partly handed out, too: what of it was committed may come again
            self._settle(self._queue.popleft(), 503)
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
            return self._busy(503, "closing")
        if config.auth == "bearer" and not self._authorized(request.headers.get(hdrs.AUTHORIZATION, "")):
            return web.Response(
                status=401, text="missing or wrong bearer token\n", headers={hdrs.WWW_AUTHENTICATE: "Bearer"}
            )
        encoding = request.headers.get(hdrs.CONTENT_ENCODING, "").strip().lower()
        if encoding not in _GZIP and encoding not in _IDENTITY:
            shown = ascii(encoding[:_SHOWN])  # the header may hold any bytes: echo a short, escaped part
            return web.Response(status=415, text=f"unsupported Content-Encoding {shown}: use gzip or none\n")
        gzipped = encoding in _GZIP
        if gzipped and getattr(request.content, "total_compressed_bytes", None) is not None:
            return web.Response(status=500, text="the server inflates bodies: run it with auto_decompress=False\n")
        if request.content_length is not None and request.content_length > config.max_body_bytes:
            return _too_large(config.max_body_bytes, "")
        if request.content_length == 0:
            return web.Response(status=200)
        data = await self._read(request)
        if isinstance(data, web.Response):
            return data
        arrived = self._clock.now_ms()
        if self._closed:
            return self._busy(503, "closing")
        if self._outstanding >= config.max_queued_requests:
            return self._busy(429, "too many requests waiting for their batch")
        self._outstanding += 1  # taken once the body has arrived: slow senders hold no queue slot
        try:
            body = await self._parse(data, gzipped)
        except BaseException:
            self._outstanding -= 1
            raise
        if isinstance(body, web.Response) or body.exhausted or self._closed:
            self._outstanding -= 1
            if isinstance(body, web.Response):
                return body
            return self._busy(503, "closing") if self._closed else web.Response(status=200)
        pending = _Request(body, asyncio.get_running_loop().create_future(), arrived)
        self._queue.append(pending)  # from here the slot is freed by _settle (ack or close)
        self._arrived.set()
        status = await pending.answer
        return web.Response(status=200) if status == 200 else self._busy(status, "closing")

    async def _read(self, request: web.Request) -> bytes | web.Response:
        """The body as received, or the refusal to answer instead (413, 408, 429)."""
        config = self.config
        if self._reading >= config.max_reading_requests:
            return self._busy(429, "too many request bodies being read")
        self._reading += 1
        try:
            async with asyncio.timeout(config.body_timeout_s):
                data = await read_capped(request.content, config.max_body_bytes, self._budget)
        except TimeoutError:
            late = web.Response(status=408, text=f"body not received within {config.body_timeout_s:g} s\n")
            late.force_close()
            await late.prepare(request)
            await late.write_eof()
            if request.transport is not None:  # closed once the answer is flushed: aiohttp would otherwise
                request.transport.close()  # linger up to 10 s reading the rest of a body that is not coming
            return late
        except OverBudget:
            return self._busy(429, "too many request bytes being read")
        finally:
            self._reading -= 1
        return _too_large(config.max_body_bytes, "") if data is None else data

    async def _parse(self, data: bytes, gzipped: bool) -> Body | web.Response:
        """The body's lines (split lazily), or the refusal to answer instead."""
        limit = self.config.max_body_bytes
        if gzipped and data:
            try:
                inflated = await asyncio.to_thread(gunzip, data, limit)  # zlib lets the loop run meanwhile
            except zlib.error:
                return web.Response(status=400, text="corrupt gzip body\n")
            if inflated is None:
                return _too_large(limit, " after gzip decompression")
            data = inflated
        return Body(data, self._lines_only(data))

    def _lines_only(self, data: bytes) -> bool:
        """Whether the body is lines whatever its first byte: logfmt or text input; in auto, unless it opens a
        JSON array of objects (`[{`, Vector's json codec) rather than a line such as `[2026-01-26 09:00:00,123: ...`."""
        kind = self.config.format
        if kind == "json":
            return False
        return kind != "auto" or _ARRAY_OF_OBJECTS.match(data) is None

    def _authorized(self, header: str) -> bool:
        scheme, _, credentials = header.strip().partition(" ")
        token = self.config.token
        if token is None or scheme.lower() != "bearer":
            return False
        # aiohttp gives header bytes that are not UTF-8 as lone surrogates: compare the bytes as sent.
        given = credentials.strip().encode("utf-8", "surrogateescape")
        return hmac.compare_digest(given, token.get_secret_value().encode("utf-8"))

    def _busy(self, status: int, reason: str) -> web.Response:
        return web.Response(
            status=status, text=f"{reason}; retry later\n", headers={hdrs.RETRY_AFTER: str(self.config.retry_after_s)}
        )


def _too_large(limit: int, where: str) -> web.Response:
    return web.Response(status=413, text=f"body larger than {limit} bytes{where}\n")
