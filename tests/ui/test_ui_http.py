"""The web UI's access rules and forms over real loopback HTTP, in process (ManualClock, memory store): what a
browser cannot be made to do wrong on purpose - forged and missing CSRF tokens, tampered and expired session
cookies, a disabled token - plus escaping, the response headers and the dead-letter requeue form."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass

import aiohttp
import orjson
import pytest

from streamalert.clock import ManualClock
from streamalert.http import build_app, start_server
from streamalert.notify.dispatch import AlertEntry, Group
from streamalert.notify.model import fingerprint
from streamalert.notify.view import NotifyView
from streamalert.state.base import Changes
from streamalert.state.memory import MemoryStore
from streamalert.telemetry.metrics import Metrics
from streamalert.testing import free_port
from streamalert.ui import web as ui_web
from streamalert.ui.auth import SESSION_S
from streamalert.ui.web import RuleRow

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z
TOKEN = "ui-http-t0ken"
EVIL = {"alertname": "Evil", "host": '<script>alert("x")</script>'}


async def _ready() -> tuple[bool, dict[str, str]]:
    return True, {}


@dataclass
class Ui:
    base: str
    store: MemoryStore
    clock: ManualClock

    def browser(self) -> aiohttp.ClientSession:
        """A client with its own cookie jar (IP hosts allowed) that does not follow redirects by itself."""
        return aiohttp.ClientSession(self.base, cookie_jar=aiohttp.CookieJar(unsafe=True))

    async def login(self, session: aiohttp.ClientSession, token: str = TOKEN) -> aiohttp.ClientResponse:
        async with session.get("/login") as page:
            csrf = _csrf(await page.text())
        async with session.post("/login", data={"token": token, "csrf": csrf}, allow_redirects=False) as answer:
            await answer.read()
            return answer

    async def csrf(self, session: aiohttp.ClientSession) -> str:
        async with session.get("/silences/new") as page:
            assert page.status == 200
            return _csrf(await page.text())


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


async def _serve(token: str | None) -> AsyncIterator[Ui]:
    store, clock = MemoryStore(), ManualClock(T0)
    entry = AlertEntry(fingerprint(EVIL), EVIL, {"runbook_url": "javascript:alert(1)"}, True, T0, None, 3)
    group = Group("r:{}", "r", "team", {}, {entry.fingerprint: entry})
    await store.commit(Changes(meta={}, groups={b"r:{}": group.dump()}), {})
    view = NotifyView(store, clock)
    app = build_app(Metrics(), _ready, api=ui_web.routes(view, token, lambda: [RuleRow("Evil", "window", 4)]))
    port = free_port()
    runner = await start_server(app, "127.0.0.1", port)
    try:
        yield Ui(f"http://127.0.0.1:{port}", store, clock)
    finally:
        await runner.cleanup()


@pytest.fixture
async def ui() -> AsyncIterator[Ui]:
    async for served in _serve(TOKEN):
        yield served


SILENCE_FORM = {"matchers": 'host="a"', "duration": "1h", "created_by": "me", "comment": ""}


async def test_login_sets_a_strict_httponly_session_cookie_without_the_token(ui: Ui) -> None:
    """The right token: 303 to / and a session cookie (HttpOnly, SameSite=Strict, Path=/) not holding it."""
    async with ui.browser() as session:
        answer = await ui.login(session)
        assert (answer.status, answer.headers["Location"]) == (303, "/")
        cookie = answer.cookies["streamalert_session"]
        assert cookie["httponly"] is True
        assert cookie["samesite"] == "Strict"
        assert cookie["path"] == "/"
        assert TOKEN not in cookie.value
        async with session.get("/rules") as page:
            assert page.status == 200
            text = await page.text()
            assert 'data-rule="Evil"' in text
            assert '<td class="series">4</td>' in text


@pytest.mark.parametrize("csrf", [None, "", "0" * 32, "other-session"])
async def test_a_post_without_the_sessions_csrf_token_is_refused(ui: Ui, csrf: str | None) -> None:
    """Missing, empty, made-up, or another session's CSRF token: 403 and no silence stored; the right one: 303."""
    async with ui.browser() as session, ui.browser() as other:
        await ui.login(session)
        await ui.login(other)
        data = dict(SILENCE_FORM)
        if csrf == "other-session":
            data["csrf"] = await ui.csrf(other)
        elif csrf is not None:
            data["csrf"] = csrf
        async with session.post("/silences", data=data, allow_redirects=False) as answer:
            assert answer.status == 403
        assert await ui.store.silences(T0) == []
        data["csrf"] = await ui.csrf(session)
        async with session.post("/silences", data=data, allow_redirects=False) as answer:
            assert (answer.status, answer.headers["Location"]) == (303, "/silences")
        assert len(await ui.store.silences(T0)) == 1


async def test_login_needs_its_double_submit_token_and_the_right_token(ui: Ui) -> None:
    """A login POST without the login cookie's token (a cross-site form) is 403; a wrong token is 401; neither
    sets a session."""
    async with ui.browser() as session:
        async with session.post("/login", data={"token": TOKEN, "csrf": "x"}, allow_redirects=False) as answer:
            assert answer.status == 403
            assert "streamalert_session" not in answer.cookies
        answer = await ui.login(session, token="nope")
        assert answer.status == 401
        assert "streamalert_session" not in answer.cookies
        async with session.get("/", allow_redirects=False) as page:
            assert (page.status, page.headers["Location"]) == (303, "/login")


async def test_tampered_expired_and_foreign_sessions_lead_to_the_login_page(ui: Ui) -> None:
    """A cookie with a changed signature, one past its 12 h, or one signed with another token: back to /login."""
    async with ui.browser() as session:
        await ui.login(session)
        good = next(c for c in session.cookie_jar if c.key == "streamalert_session").value
        issued, nonce, signature = good.split(".")
        flipped = signature[:-1] + ("1" if signature.endswith("0") else "0")
        for bad in (f"{issued}.{nonce}.{flipped}", f"{int(issued) - 5}.{nonce}.{signature}", "garbage", ""):
            headers = {"Cookie": f"streamalert_session={bad}"}
            async with (
                aiohttp.ClientSession(ui.base) as fresh,
                fresh.get("/", headers=headers, allow_redirects=False) as page,
            ):
                assert (page.status, page.headers["Location"]) == (303, "/login"), bad
        async with session.get("/", allow_redirects=False) as page:
            assert page.status == 200
        ui.clock.advance(SESSION_S * 1000)
        async with session.get("/", allow_redirects=False) as page:
            assert (page.status, page.headers["Location"]) == (303, "/login")
    async for other in _serve("another-token"):
        async with aiohttp.ClientSession(other.base) as fresh:
            headers = {"Cookie": f"streamalert_session={good}"}
            async with fresh.get("/", headers=headers, allow_redirects=False) as page:
                assert page.status == 303


@pytest.mark.parametrize("token", [None, ""])
async def test_without_a_configured_token_the_ui_is_disabled(token: str | None) -> None:
    """notify.api_token unset (or empty): every page and form answers 403 naming the setting."""
    async for ui in _serve(token):
        async with ui.browser() as session:
            for method, path in [("GET", "/"), ("GET", "/login"), ("POST", "/login"), ("POST", "/silences")]:
                async with session.request(method, path, data={"token": "", "csrf": ""}, allow_redirects=False) as page:
                    assert page.status == 403, (method, path)
                    assert "notify.api_token" in await page.text()


async def test_pages_escape_alert_data_and_send_protective_headers(ui: Ui) -> None:
    """A label holding markup is shown as text; a javascript: runbook is not a link; every page carries the
    CSP (no scripts), nosniff, no-store and no-referrer headers."""
    async with ui.browser() as session:
        await ui.login(session)
        async with session.get("/") as page:
            html = await page.text()
            assert page.headers["Content-Security-Policy"].startswith("default-src 'none'")
            assert page.headers["X-Content-Type-Options"] == "nosniff"
            assert page.headers["Cache-Control"] == "no-store"
            assert page.headers["Referrer-Policy"] == "no-referrer"
        assert "<script>" not in html
        assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in html
        assert 'href="javascript' not in html
        async with session.get("/login") as page:
            assert "default-src 'none'" in page.headers["Content-Security-Policy"]


async def test_dead_letters_are_listed_and_requeued_from_the_page(ui: Ui) -> None:
    """The notifications page lists a dead letter with its error; its requeue form moves it back to the outbox."""
    await ui.store.commit(Changes(meta={}, outbox=[orjson.dumps({"id": "n1"})]), {})
    ((entry_id, _),) = await ui.store.outbox(None, 10)
    notification = {"at": "2026-01-26T09:00:00.000Z", "receiver": "team", "sink": "slack/0", "alerts": []}
    await ui.store.outbox_dead(
        entry_id, orjson.dumps({"notification": notification, "error": "HTTP 404", "attempts": 3})
    )
    ((dead_id, _),) = await ui.store.dead_letters(10)
    async with ui.browser() as session:
        await ui.login(session)
        async with session.get("/notifications") as page:
            html = await page.text()
        assert f'data-entry="{dead_id}"' in html
        assert "HTTP 404" in html
        data = {"csrf": _csrf(html), "entry": dead_id}
        async with session.post("/notifications/requeue", data=data, allow_redirects=False) as answer:
            assert (answer.status, answer.headers["Location"]) == (303, "/notifications")
    assert await ui.store.dead_letters(10) == []
    assert [orjson.loads(raw) for _, raw in await ui.store.outbox(None, 10)] == [notification]


async def test_logout_ends_the_session_in_the_browser(ui: Ui) -> None:
    async with ui.browser() as session:
        await ui.login(session)
        csrf = await ui.csrf(session)
        async with session.post("/logout", data={"csrf": csrf}, allow_redirects=False) as answer:
            assert (answer.status, answer.headers["Location"]) == (303, "/login")
        async with session.get("/", allow_redirects=False) as page:
            assert page.status == 303
