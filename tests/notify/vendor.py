"""A local stand-in for a vendor's HTTP API (Slack, PagerDuty, Telegram, Discord, webhooks).

It records every request, checks each body with the vendor's validator (a function returning the list of
problems with the payload against the vendor's documented format; problems answer 400 like the vendor would),
and answers from a script of faults: `fail(429, retry_after=1)`, `fail(500)`, `fail(502, text="<html>...")` (a
body that is not JSON), `hang()` (no answer until the client gives up). Requests are recorded whether or not
they were answered with an error.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

Validator = Callable[[str, dict[str, str], Any], list[str]]  # (path, headers, decoded body) -> problems


@dataclass
class Request:
    path: str
    headers: dict[str, str]
    body: Any
    problems: list[str]
    answered: int  # the status we answered
    query: dict[str, str] = field(default_factory=dict)


@dataclass
class Fault:
    status: int = 500
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    hang: bool = False
    text: str | None = None  # answered as is (text/html), instead of `body` as JSON


class Vendor:
    """One fake vendor on 127.0.0.1; `url` is its base URL once started."""

    def __init__(self, validator: Validator, ok_body: Any = None) -> None:
        self.validator = validator
        self.ok_body = ok_body
        self.requests: list[Request] = []
        self.faults: list[Fault] = []
        self.url = ""
        self._release = asyncio.Event()

    def fail(
        self,
        status: int,
        *,
        retry_after: float | None = None,
        body: Any = None,
        text: str | None = None,
        times: int = 1,
    ) -> None:
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else {}
        self.faults.extend(Fault(status, headers, body, text=text) for _ in range(times))

    def hang(self, times: int = 1) -> None:
        self.faults.extend(Fault(hang=True) for _ in range(times))

    @property
    def accepted(self) -> list[Request]:
        return [r for r in self.requests if 200 <= r.answered < 300]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body: Any = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = raw.decode("utf-8", "replace")
        headers = {k.lower(): v for k, v in request.headers.items()}
        problems = self.validator(request.path, headers, body)
        fault = self.faults.pop(0) if self.faults else None
        query = dict(request.query)
        if fault is not None and fault.hang:
            self.requests.append(Request(request.path, headers, body, problems, 0, query))
            await self._release.wait()  # until the test ends; the client times out first
            return web.Response(status=504)
        if fault is not None:
            status, answer_headers, answer = fault.status, fault.headers, fault.body
        elif problems:
            status, answer_headers, answer = 400, {}, {"error": problems}
        else:
            status, answer_headers, answer = 200, {}, self.ok_body
        self.requests.append(Request(request.path, headers, body, problems, status, query))
        if fault is not None and fault.text is not None:
            return web.Response(status=status, text=fault.text, content_type="text/html", headers=answer_headers)
        data = orjson.dumps(answer) if answer is not None else b"ok"
        content_type = "application/json" if answer is not None else "text/plain"
        return web.Response(status=status, body=data, headers={"Content-Type": content_type, **answer_headers})


@asynccontextmanager
async def serve(vendor: Vendor, tls: ssl.SSLContext | None = None) -> AsyncIterator[Vendor]:
    """Run `vendor` on a free port of 127.0.0.1 (HTTPS with `tls`)."""
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", vendor._handle)
    runner = web.AppRunner(app, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=tls)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    vendor.url = f"{'https' if tls is not None else 'http'}://127.0.0.1:{port}"
    try:
        yield vendor
    finally:
        vendor._release.set()
        await runner.cleanup()
