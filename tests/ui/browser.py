"""Headless Chromium (Debian's `chromium`) driven over the Chrome DevTools Protocol, on one websocket with
aiohttp: the browser tests load pages, fill and submit forms and read cookies as a user's browser would.

Each `page()` opens in its own browser context, so it starts with no cookies (an unauthenticated browser).
Navigation waits for the page's load event; a form submitted by a click waits for the page it leads to.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import shutil
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import orjson

LOAD_S = 20  # a generous bound: a page that does not load in this time is stuck, not slow


class CdpError(RuntimeError):
    pass


class Page:
    def __init__(self, browser: Browser, session_id: str) -> None:
        self.browser = browser
        self.session_id = session_id
        self.events: asyncio.Queue[str] = asyncio.Queue()

    async def call(self, method: str, **params: Any) -> Any:
        return await self.browser.call(method, session_id=self.session_id, **params)

    async def _loaded(self, action: Any) -> None:
        while not self.events.empty():
            self.events.get_nowait()
        await action
        async with asyncio.timeout(LOAD_S):
            while await self.events.get() != "Page.loadEventFired":
                pass

    async def goto(self, url: str) -> None:
        await self._loaded(self.call("Page.navigate", url=url))

    async def click(self, selector: str) -> None:
        """Click an element that submits a form or follows a link, and wait for the next page."""
        script = f"document.querySelector({orjson.dumps(selector).decode()}).click()"
        await self._loaded(self.evaluate(script))

    async def fill(self, selector: str, value: str) -> None:
        element = f"document.querySelector({orjson.dumps(selector).decode()})"
        await self.evaluate(f"{element}.value = {orjson.dumps(value).decode()}")

    async def evaluate(self, expression: str) -> Any:
        answer = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        if "exceptionDetails" in answer:
            raise CdpError(f"{expression}: {answer['exceptionDetails']}")
        return answer["result"].get("value")

    async def path(self) -> str:
        return str(await self.evaluate("location.pathname"))

    async def html(self) -> str:
        return str(await self.evaluate("document.documentElement.outerHTML"))

    async def texts(self, selector: str) -> list[str]:
        """The visible text of every element matching `selector`, whitespace collapsed."""
        script = f"[...document.querySelectorAll({orjson.dumps(selector).decode()})].map(e => e.innerText)"
        return [" ".join(text.split()) for text in await self.evaluate(script)]

    async def cookies(self) -> list[dict[str, Any]]:
        answer = await self.call("Network.getCookies")
        return list(answer["cookies"])


class Browser:
    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.session = session
        self.ws = ws
        self.ids = itertools.count(1)
        self.waiting: dict[int, asyncio.Future[Any]] = {}
        self.pages: dict[str, Page] = {}
        self.reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for message in self.ws:
            data = orjson.loads(message.data)
            if "id" in data:
                future = self.waiting.pop(data["id"], None)
                if future is not None and not future.done():
                    if "error" in data:
                        future.set_exception(CdpError(str(data["error"])))
                    else:
                        future.set_result(data.get("result", {}))
            elif data.get("sessionId") in self.pages:
                self.pages[data["sessionId"]].events.put_nowait(data["method"])
        for future in self.waiting.values():
            if not future.done():
                future.set_exception(CdpError("the browser closed the connection"))

    async def call(self, method: str, session_id: str | None = None, **params: Any) -> Any:
        message_id = next(self.ids)
        message: dict[str, Any] = {"id": message_id, "method": method, "params": params}
        if session_id is not None:
            message["sessionId"] = session_id
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiting[message_id] = future
        await self.ws.send_str(orjson.dumps(message).decode())  # CDP takes text frames only
        async with asyncio.timeout(LOAD_S):
            return await future

    async def page(self) -> Page:
        """A new tab in a new browser context: no cookies, no history."""
        context = await self.call("Target.createBrowserContext")
        target = await self.call("Target.createTarget", url="about:blank", browserContextId=context["browserContextId"])
        attached = await self.call("Target.attachToTarget", targetId=target["targetId"], flatten=True)
        page = Page(self, attached["sessionId"])
        self.pages[page.session_id] = page
        await page.call("Page.enable")
        await page.call("Network.enable")
        return page


def chromium_binary() -> str:
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found is not None:
            return found
    raise RuntimeError("chromium not found: install Debian's chromium package (scripts/ensure-packages)")


@asynccontextmanager
async def launch(profile: Path) -> AsyncIterator[Browser]:
    """Start headless Chromium with a fresh profile in `profile`; it is stopped on exit."""
    proc = _start(profile)
    try:
        active = profile / "DevToolsActivePort"
        async with asyncio.timeout(LOAD_S):
            while not (active.exists() and len(active.read_text().splitlines()) >= 2):
                if proc.poll() is not None:
                    raise RuntimeError(f"chromium exited with {proc.returncode}")
                await asyncio.sleep(0.05)  # polling interval, bounded by the deadline
        port, path = active.read_text().splitlines()[:2]
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(f"ws://127.0.0.1:{port}{path}", max_msg_size=0)
            browser = Browser(session, ws)
            try:
                yield browser
            finally:
                with contextlib.suppress(CdpError, TimeoutError, ConnectionError):
                    await browser.call("Browser.close")
                await ws.close()
                browser.reader.cancel()
    finally:
        if proc.poll() is None:
            proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _start(profile: Path) -> subprocess.Popen[bytes]:
    args = [
        chromium_binary(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--no-default-browser-check",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
    ]
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
