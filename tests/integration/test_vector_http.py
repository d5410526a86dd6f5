"""The Vector http source over real loopback HTTP: an aiohttp server on a free port, the test plays the pipeline."""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import struct
import tracemalloc
import zlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import aiohttp
import pydantic
import pytest
from aiohttp import web
from multidict import CIMultiDictProxy

from streamalert.decode import decode_line, event_time_ms
from streamalert.sources import Batch
from streamalert.sources.vector_body import PIECE
from streamalert.sources.vector_http import SERVER_OPTIONS, VectorHttpConfig, VectorHttpSource
from streamalert.testing import free_port

TOKEN = "s3cret-token-for-tests"
MiB = 1024 * 1024


class Reply(NamedTuple):
    status: int
    headers: CIMultiDictProxy[str]
    text: str


@dataclass
class Harness:
    """A source mounted on a real server, a client session, and a consumer task standing in for the pipeline."""

    source: VectorHttpSource
    url: str
    session: aiohttp.ClientSession
    auto_ack: bool
    lines: list[bytes] = field(default_factory=list)
    held: asyncio.Queue[Batch] = field(default_factory=asyncio.Queue)  # batches waiting for the test's ack
    released: asyncio.Event = field(default_factory=asyncio.Event)
    ticks: list[float] = field(default_factory=list)

    async def consume(self) -> None:
        loop = asyncio.get_running_loop()
        async for batch in self.source.batches():
            if not batch.lines:
                self.ticks.append(loop.time())
                await self.source.ack(batch)
                continue
            self.lines.extend(batch.lines)
            if self.auto_ack:
                await self.source.ack(batch)
            else:  # hold it like a pipeline committing: the next batch is pulled only after the ack
                await self.held.put(batch)
                await self.released.wait()
                self.released.clear()

    async def ack(self, batch: Batch) -> None:
        await self.source.ack(batch)
        self.released.set()

    async def next_batch(self) -> Batch:
        return await asyncio.wait_for(self.held.get(), 5)

    async def post(self, body: Any, *, token: str | None = TOKEN, headers: dict[str, str] | None = None) -> Reply:
        sent = {"Content-Type": "application/x-ndjson"}
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        sent.update(headers or {})
        async with self.session.post(self.url, data=body, headers=sent) as response:
            return Reply(response.status, response.headers, await response.text())


@contextlib.asynccontextmanager
async def serve(
    auto_ack: bool = True, server: dict[str, Any] = SERVER_OPTIONS, **settings: Any
) -> AsyncIterator[Harness]:
    settings.setdefault("token", TOKEN)
    source = VectorHttpSource(VectorHttpConfig(**settings))
    app = web.Application()
    app.add_routes(source.routes())
    runner = web.AppRunner(app, shutdown_timeout=2, **server)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    async with aiohttp.ClientSession() as session:
        harness = Harness(source, f"http://127.0.0.1:{port}{source.config.path}", session, auto_ack)
        consumer = asyncio.create_task(harness.consume())
        try:
            yield harness
        finally:
            await source.close()
            harness.released.set()
            await asyncio.wait_for(consumer, 5)  # batches() ends after close()
            await runner.cleanup()


async def eventually(predicate: Callable[[], bool], within: float = 5.0) -> None:
    """Poll a condition with a deadline (no fixed sleep stands in for a state)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():
        if loop.time() > deadline:
            raise AssertionError(f"condition not met within {within} s")
        await asyncio.sleep(0.005)


def gzip_bomb(gib: int = 1) -> bytes:
    """A valid gzip stream of `gib` GiB of zeros (about 1 MB), built without compressing a GiB.

    After a full flush the deflater starts afresh, so every further MiB of zeros compresses to the same
    bytes: compress two, repeat the second, and write the trailer (CRC-32 and size) for the whole stream.
    """
    mib = bytes(MiB)
    deflater = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    first = deflater.compress(mib) + deflater.flush(zlib.Z_FULL_FLUSH)
    repeat = deflater.compress(mib) + deflater.flush(zlib.Z_FULL_FLUSH)
    end = deflater.flush()
    count = gib * 1024
    crc = 0
    for _ in range(count):
        crc = zlib.crc32(mib, crc)
    return first + repeat * (count - 1) + end[:-8] + struct.pack("<II", crc, (count * MiB) & 0xFFFFFFFF)


async def test_ndjson_body_lines_arrive_exactly() -> None:
    """NDJSON bodies (trailing newline, CRLF, blank lines) give exactly their non-empty lines, answered 200."""
    async with serve() as h:
        assert (await h.post(b'{"a":1}\n{"b":2}\n')).status == 200
        assert (await h.post(b'{"c":3}\r\n\r\n{"d":"x y"}\r\n')).status == 200
        assert (await h.post(b'{"e":5}\n\n  \nnot json')).status == 200
        assert h.lines == [b'{"a":1}', b'{"b":2}', b'{"c":3}', b'{"d":"x y"}', b'{"e":5}', b"  ", b"not json"]
        assert h.source.lines_received == 7
        assert h.source.requests == {200: 3}


async def test_json_array_body_gives_each_element_raw() -> None:
    """A JSON array body gives each element's bytes as sent (no re-encoding); a truncated one is salvaged."""
    async with serve() as h:
        body = b' [ {"a": 1} ,{"b":[1, 2],"u":"\\u00e9"},\n{"c":{"d":null}}, 7 ]\n'
        assert (await h.post(body, headers={"Content-Type": "application/json"})).status == 200
        assert h.lines == [b'{"a": 1}', b'{"b":[1, 2],"u":"\\u00e9"}', b'{"c":{"d":null}}', b"7"]
        assert (await h.post(b'[{"a":1},{"b":')).status == 200  # the whole element kept, the rest malformed
        assert (await h.post(b"[]")).status == 200
        assert h.lines[4:] == [b'{"a":1}', b'{"b":']
        assert h.source.lines_received == 6


async def test_gzip_ndjson_body_is_inflated() -> None:
    """A gzip NDJSON body is inflated (also two concatenated members); corrupt gzip is 400, brotli 415."""
    async with serve() as h:
        body = gzip.compress(b'{"a":1}\n{"b":2}\n')
        assert (await h.post(body, headers={"Content-Encoding": "gzip"})).status == 200
        two = gzip.compress(b'{"c":3}\n') + gzip.compress(b'{"d":4}')
        assert (await h.post(two, headers={"Content-Encoding": "gzip"})).status == 200
        assert h.lines == [b'{"a":1}', b'{"b":2}', b'{"c":3}', b'{"d":4}']
        assert (await h.post(b'{"e":5}', headers={"Content-Encoding": "identity"})).status == 200
        assert (await h.post(body[:-12], headers={"Content-Encoding": "gzip"})).status == 400  # truncated
        assert (await h.post(b"not gzip at all", headers={"Content-Encoding": "gzip"})).status == 400
        assert (await h.post(body, headers={"Content-Encoding": "br"})).status == 415
        assert h.source.lines_received == 5


async def test_a_server_that_inflates_bodies_itself_is_reported() -> None:
    """Mounted on a server left with aiohttp's auto_decompress, gzip is refused with a 500 naming the fix."""
    async with serve(server={}) as h:
        reply = await h.post(gzip.compress(b'{"a":1}'), headers={"Content-Encoding": "gzip"})
        assert reply.status == 500
        assert "auto_decompress=False" in reply.text
        assert (await h.post(b'{"b":2}')).status == 200
        assert h.lines == [b'{"b":2}']


async def test_bearer_token_is_required_unless_auth_none() -> None:
    """No token or a wrong one is 401 with WWW-Authenticate: Bearer; the right one is 200; auth none needs none."""
    async with serve() as h:
        missing = await h.post(b'{"a":1}', token=None)
        assert missing.status == 401
        assert missing.headers["WWW-Authenticate"] == "Bearer"
        wrong = await h.post(b'{"a":1}', token=TOKEN + "x")
        assert (wrong.status, wrong.headers["WWW-Authenticate"]) == (401, "Bearer")
        assert (await h.post(b'{"a":1}', token=None, headers={"Authorization": f"Basic {TOKEN}"})).status == 401
        assert (await h.post(b'{"a":1}', token="")).status == 401
        assert h.lines == []
        assert (await h.post(b'{"ok":1}')).status == 200
        assert h.lines == [b'{"ok":1}']
        assert h.source.requests == {401: 4, 200: 1}
    async with serve(auth="none", token=None) as h:
        assert (await h.post(b'{"open":1}', token=None)).status == 200
        assert h.lines == [b'{"open":1}']


async def test_config_requires_token_for_bearer_and_hides_it() -> None:
    """auth bearer without a token is refused naming `token`; unknown keys and limits that cannot work are
    refused; reprs hide the token."""
    with pytest.raises(pydantic.ValidationError, match="token"):
        VectorHttpConfig()
    with pytest.raises(pydantic.ValidationError, match="token"):
        VectorHttpConfig.model_validate({"token": ""})
    with pytest.raises(pydantic.ValidationError, match="extra"):
        VectorHttpConfig.model_validate({"token": TOKEN, "max_body": 1})
    with pytest.raises(pydantic.ValidationError, match="max_reading_bytes: must be at least max_body_bytes"):
        VectorHttpConfig.model_validate({"token": TOKEN, "max_body_bytes": 2048, "max_reading_bytes": 1024})
    with pytest.raises(pydantic.ValidationError, match="body_timeout_s"):
        VectorHttpConfig.model_validate({"token": TOKEN, "body_timeout_s": 0})
    config = VectorHttpConfig.model_validate({"token": TOKEN})
    source = VectorHttpSource(config)
    shown = repr(config) + str(config) + repr(source) + repr(vars(source)) + config.model_dump_json()
    assert TOKEN not in shown
    assert VectorHttpConfig(auth="none").token is None


async def test_oversize_body_is_413_by_length_and_by_bytes_read() -> None:
    """A Content-Length over the limit is 413, so is a chunked body that grows past it; the limit itself is 200."""
    async with serve(max_body_bytes=1024) as h:
        assert (await h.post(b"x" * 1025)).status == 413

        async def chunked() -> AsyncIterator[bytes]:
            for _ in range(64):
                yield b'{"k":"' + b"v" * 500 + b'"}\n'

        assert (await h.post(chunked())).status == 413
        assert h.source.lines_received == 0
        exact = b'{"k":"' + b"v" * (1024 - 8) + b'"}'
        assert len(exact) == 1024
        assert (await h.post(exact)).status == 200
        assert h.lines == [exact]


async def test_gzip_bomb_is_refused_without_inflating_it() -> None:
    """1 GiB of zeros in a 1 MB gzip body is 413 at once, holding only about the limit in memory."""
    bomb = gzip_bomb()
    assert len(bomb) < 2 * MiB
    async with serve(max_body_bytes=2 * MiB) as h:
        loop = asyncio.get_running_loop()
        tracemalloc.start()
        try:
            started = loop.time()
            reply = await h.post(bomb, headers={"Content-Encoding": "gzip"})
            elapsed = loop.time() - started
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        assert reply.status == 413
        assert elapsed < 2.0  # inflating the whole GiB takes several seconds
        assert peak < 32 * MiB  # client and server copies of the 1 MB body plus 2 MiB of output, not 1 GiB
        assert h.lines == []
        assert h.source.requests == {413: 1}


async def test_saturation_answers_429_then_503_after_close() -> None:
    """With 2 request slots taken, a 3rd request is 429 with Retry-After; after close() queued and new get 503."""
    async with serve(auto_ack=False, max_queued_requests=2, retry_after_s=7, tick_ms=60_000) as h:
        first = asyncio.create_task(h.post(b'{"n":1}'))
        carried = await h.next_batch()  # in the pipeline, not yet committed
        assert carried.lines == [b'{"n":1}']
        second = asyncio.create_task(h.post(b'{"n":2}'))
        await eventually(lambda: h.source.queued == 2)  # queued behind the held batch
        assert "max_queued_requests" in (h.source.saturated() or "")  # for /readyz
        third = await h.post(b'{"n":3}')
        assert third.status == 429
        assert third.headers["Retry-After"] == "7"
        assert not first.done()
        assert not second.done()

        await h.source.close()
        queued = await asyncio.wait_for(second, 5)
        assert (queued.status, queued.headers["Retry-After"]) == (503, "7")
        late = await h.post(b'{"n":4}')
        assert (late.status, late.headers["Retry-After"]) == (503, "7")
        assert not first.done()  # a batch handed to the pipeline is never answered 503
        await h.ack(carried)
        assert (await asyncio.wait_for(first, 5)).status == 200
        assert h.source.requests == {429: 1, 503: 2, 200: 1}


async def test_request_is_answered_only_after_ack() -> None:
    """The HTTP answer (and the request's slot) waits for ack of the batch that carried it, then is 200."""
    async with serve(auto_ack=False, max_queued_requests=1, tick_ms=60_000) as h:
        request = asyncio.create_task(h.post(b'{"a":1}\n{"a":2}'))
        batch = await h.next_batch()
        assert batch.lines == [b'{"a":1}', b'{"a":2}']
        done, _ = await asyncio.wait({request}, timeout=0.2)  # asserting an absence needs a bounded wait
        assert not done
        assert (await h.post(b'{"a":3}')).status == 429  # the unacked request still holds the only slot
        await h.ack(batch)
        assert (await asyncio.wait_for(request, 5)).status == 200
        again = asyncio.create_task(h.post(b'{"a":4}'))
        await h.ack(await h.next_batch())
        assert (await asyncio.wait_for(again, 5)).status == 200
        assert h.lines == [b'{"a":1}', b'{"a":2}', b'{"a":4}']


async def test_queued_requests_merge_up_to_max_batch_lines() -> None:
    """Requests queued behind a held batch are merged whole into batches of at most max_batch_lines."""
    async with serve(auto_ack=False, max_batch_lines=4, tick_ms=60_000) as h:
        posts = [asyncio.create_task(h.post(b'{"r":0}'))]
        held = await h.next_batch()
        for body in [b'{"r":1}\n{"r":1}', b'{"r":2}\n{"r":2}', b'{"r":3}']:
            posts.append(asyncio.create_task(h.post(body)))
            await eventually(lambda: h.source.queued == len(posts))  # queued one after the other
        await h.ack(held)
        merged = await h.next_batch()
        assert merged.lines == [b'{"r":1}', b'{"r":1}', b'{"r":2}', b'{"r":2}']
        await h.ack(merged)
        last = await h.next_batch()
        assert last.lines == [b'{"r":3}']
        assert last.position == 6
        await h.ack(last)
        assert [(await asyncio.wait_for(p, 5)).status for p in posts] == [200, 200, 200, 200]


async def test_queued_bodies_larger_than_a_split_piece_merge_whole_when_they_fit() -> None:
    """NDJSON bodies past one split piece (64 KiB), not yet split, still join a batch whole when their newline
    count says they fit; a JSON array that large (its element count unknown until decoded) starts its own."""
    async with serve(auto_ack=False, max_batch_lines=1000, tick_ms=60_000) as h:
        posts = [asyncio.create_task(h.post(b'{"r":0}'))]
        held = await h.next_batch()
        pad = "x" * 200
        bodies = [[b'{"r":%d,"p":"%s","i":%d}' % (r, pad.encode(), i) for i in range(400)] for r in (1, 2, 3)]
        sent = [b"\n".join(bodies[0]), b"\n".join(bodies[1]) + b"\n", b"[" + b",".join(bodies[2]) + b"]"]
        assert all(len(body) > PIECE for body in sent)
        for body in sent:
            posts.append(asyncio.create_task(h.post(body)))
            await eventually(lambda: h.source.queued == len(posts))  # queued one after the other
        await h.ack(held)
        merged = await h.next_batch()
        assert merged.lines == bodies[0] + bodies[1]  # 800 lines: both whole, the array not (its count unknown)
        await h.ack(merged)
        array = await h.next_batch()
        assert array.lines == bodies[2]
        await h.ack(array)
        assert [(await asyncio.wait_for(p, 5)).status for p in posts] == [200, 200, 200, 200]


async def not_done(task: asyncio.Task[Reply]) -> bool:
    done, _ = await asyncio.wait({task}, timeout=0.2)  # asserting an absence needs a bounded wait
    return not done


async def test_large_request_is_spread_over_batches_and_answered_after_its_last() -> None:
    """A request over max_batch_lines goes out in batches of at most that many lines and is answered only when
    the batch with its last line is acked; a small request queued behind it takes its turn first instead of
    waiting for the whole large one (which then fills the room left)."""
    async with serve(auto_ack=False, max_batch_lines=4, tick_ms=60_000) as h:
        lines = [b'{"n":%d}' % i for i in range(10)]
        big = asyncio.create_task(h.post(b"\n".join(lines)))
        first = await h.next_batch()
        small = asyncio.create_task(h.post(b'{"s":1}'))
        await eventually(lambda: h.source.queued == 2)
        await h.ack(first)
        second = await h.next_batch()
        assert await not_done(big)
        await h.ack(second)
        third = await h.next_batch()
        assert [first.lines, second.lines, third.lines] == [lines[:4], lines[4:8], [b'{"s":1}', *lines[8:]]]
        assert [first.position, second.position, third.position] == [4, 8, 11]
        assert await not_done(big)
        await h.ack(third)
        assert (await asyncio.wait_for(big, 5)).status == 200
        assert (await asyncio.wait_for(small, 5)).status == 200
        assert h.source.queued == 0


async def test_close_finishes_a_request_already_partly_handed_out() -> None:
    """After close() a request partly in batches is still handed out to its last line and answered 200 (its
    first lines may be committed: a 503 would have them sent twice); one not yet started gets 503."""
    async with serve(auto_ack=False, max_batch_lines=4, tick_ms=60_000) as h:
        lines = [b'{"n":%d}' % i for i in range(10)]
        big = asyncio.create_task(h.post(b"\n".join(lines)))
        first = await h.next_batch()
        waiting = asyncio.create_task(h.post(b'{"w":1}'))
        await eventually(lambda: h.source.queued == 2)
        await h.source.close()
        assert (await asyncio.wait_for(waiting, 5)).status == 503
        await h.ack(first)
        await h.ack(await h.next_batch())
        last = await h.next_batch()
        assert last.lines == lines[8:]
        await h.ack(last)
        assert (await asyncio.wait_for(big, 5)).status == 200
        assert h.lines == lines
        assert h.source.requests == {503: 1, 200: 1}


# The bodies Vector's http sink sends with `encoding.codec = "json"`, built as its code documents them:
# - vectordotdev/vector src/sinks/http/encoder.rs (HttpEncoder::encode_input): with
#   framing.method = "newline_delimited" the events are joined by "\n" and the trailing newline is removed
#   ("for backwards-compatibility with Vector 0.20.x"); with the json codec's default framing the body is
#   "[" + events joined by "," + "]" (payload_prefix/suffix empty), no spaces or newlines.
# - src/codecs/encoding/config.rs (EncodingConfigWithFraming::build): json without framing in a message-based
#   sink such as http is CharacterDelimited(b','), i.e. the array body above.
# - src/sinks/http/config.rs: Content-Type application/x-ndjson for NDJSON, application/json for the array;
#   compression = "gzip" sets Content-Encoding: gzip.
# - Events are log events serialized compactly with keys in sorted order; the file source adds file, host,
#   message, source_type, timestamp; the docker_logs source the fields of the example output in
#   website/cue/reference/components/sources/docker_logs.cue (container_created_at, container_id,
#   container_name, host, image, label, message, source_type, stream, timestamp).
VECTOR_EVENTS = [
    # A structlog line after deploy/vector/vector.toml's remap (the app's fields, plus host).
    b'{"campaign_id":"c-1042","error_type":"rate_limiter_backend_error",'
    b'"event":"Error reserving rate limit token","host":"mailer-worker-7d9f6","level":"error",'
    b'"logger":"mailer.tasks","timestamp":"2026-01-26T09:15:12.004Z"}',
    # A docker_logs event as Vector emits it without a remap: the structlog JSON is still in `message`.
    b'{"container_created_at":"2026-01-26T08:00:03.443232Z",'
    b'"container_id":"fecc98177eca7fb75a2b2186c418bf9a0cd3a05a1169f2e2293bf8987a9d96ab",'
    b'"container_name":"celery_beat","host":"docker-host-1","image":"mailer:2026.01.3","label":{},'
    b'"message":"{\\"event\\": \\"Scheduler: Sending due task\\", \\"level\\": \\"info\\"}",'
    b'"source_type":"docker_logs","stream":"stderr","timestamp":"2026-01-26T09:15:13.120045118Z"}',
    # A file source event whose line was not JSON (the remap keeps it as Vector made it).
    b'{"file":"/var/log/app/django.log","host":"web-1","message":"Watching for file changes with StatReloader",'
    b'"source_type":"file","timestamp":"2026-01-26T09:15:14.5Z"}',
]


async def test_bodies_exactly_as_vector_sends_them() -> None:
    """Vector's newline_delimited and default json-array bodies, plain and gzip, give back each event's bytes."""
    ndjson = b"\n".join(VECTOR_EVENTS)
    array = b"[" + b",".join(VECTOR_EVENTS) + b"]"
    bodies = [(ndjson, "application/x-ndjson"), (array, "application/json")]
    async with serve() as h:
        for body, content_type in bodies:
            for compressed in (False, True):
                h.lines.clear()
                headers = {"Content-Type": content_type, "User-Agent": "Vector/0.51.0"}
                if compressed:
                    headers["Content-Encoding"] = "gzip"
                reply = await h.post(gzip.compress(body) if compressed else body, headers=headers)
                assert reply.status == 200
                assert h.lines == VECTOR_EVENTS
        for line in VECTOR_EVENTS:
            record = decode_line(line)
            assert record is not None
            assert event_time_ms(record) is not None
        assert h.source.requests == {200: 4}


async def test_empty_body_and_idle_ticks() -> None:
    """An empty body is 200 with no lines; an idle source yields empty tick batches about every tick_ms."""
    async with serve(tick_ms=50) as h:
        assert (await h.post(b"")).status == 200
        assert (await h.post(b"\n\n")).status == 200
        assert (await h.post(gzip.compress(b""), headers={"Content-Encoding": "gzip"})).status == 200
        assert h.lines == []
        assert h.source.lines_received == 0
        count = len(h.ticks)
        await eventually(lambda: len(h.ticks) >= count + 2, within=2.0)
        gap = h.ticks[count + 1] - h.ticks[count]
        assert 0.04 <= gap < 0.5
        assert not h.source.lagging()
