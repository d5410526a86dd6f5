"""The web UI's pages and forms, server-rendered with Jinja2 (autoescaped), no JavaScript, no external assets.

- `/`: firing alerts (labels, value, annotations, runbook link, silenced/inhibited status, a "silence" link
  pre-filling the form with the alert's labels) and the recently resolved ones.
- `/silences`: silences in force or scheduled, an "expire" button each; `/silences/new`: the form.
- `/rules`: the rules with their live series count (on the writer; "-" on a standby) and last transition.
- `/notifications`: recent deliveries with their status, the dead letters with "requeue" buttons.
- `/login`, `/logout`: see ui/auth.py. Without a session every page redirects to `/login`; POSTs need the
  session's CSRF token too (403 otherwise). Without notify.api_token the UI answers 403, like the API.

Forms keep what was typed when refused (the error is shown above it); nothing is lost on a bad input.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import jinja2
import orjson
from aiohttp import web

from streamalert.decode import format_ms
from streamalert.durations import format_duration, parse_duration
from streamalert.notify.history import recent_notifications, recent_transitions
from streamalert.notify.silences import SilenceError
from streamalert.notify.view import NotifyView, SilenceFromConfig, SilenceNotFound, silence_error_text
from streamalert.rules.template import format_value
from streamalert.ui.auth import LOGIN_COOKIE, SESSION_COOKIE, SESSION_S, Sessions, set_cookie

LIST_LIMIT = 100  # rows of history each page shows
RULE_SCAN = 2_000  # transitions read to find each rule's last one
HEADERS = {
    # no scripts, no frames, forms only to us; the pages hold alert data: not cached, no referrer leaked
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@dataclass(frozen=True, slots=True)
class RuleRow:
    name: str
    kind: str
    series: int | None  # None: not known here (a standby replica)


RuleStats = Callable[[], Sequence[RuleRow]]
Handler = Callable[[web.Request, str], Awaitable[web.StreamResponse]]

_env = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=True,
    undefined=jinja2.StrictUndefined,
)


def safe_link(url: str) -> str | None:
    """A runbook link only when it is http(s): a `javascript:` annotation must not become a clickable link."""
    return url if urlsplit(url.strip()).scheme in ("http", "https") else None


_env.filters["link"] = safe_link
_env.filters["value"] = format_value


def routes(view: NotifyView, token: str | None, rules: RuleStats | None = None) -> list[web.RouteDef]:
    ui = _Ui(view, Sessions(token, view.clock), rules)
    return [
        web.get("/", ui.page(ui.alerts)),
        web.get("/login", ui.login_form),
        web.post("/login", ui.login),
        web.post("/logout", ui.form(ui.logout)),
        web.get("/silences", ui.page(ui.silences)),
        web.get("/silences/new", ui.page(ui.new_silence)),
        web.post("/silences", ui.form(ui.create_silence)),
        web.post("/silences/{id}/expire", ui.form(ui.expire_silence)),
        web.get("/rules", ui.page(ui.rules)),
        web.get("/notifications", ui.page(ui.notifications)),
        web.post("/notifications/requeue", ui.form(ui.requeue)),
    ]


class _Ui:
    def __init__(self, view: NotifyView, sessions: Sessions, rules: RuleStats | None) -> None:
        self.view = view
        self.sessions = sessions
        self.rule_stats = rules

    # ---- access ---------------------------------------------------------------------------------------------

    def _disabled(self) -> web.Response:
        return _render("disabled.html", status=403)

    def page(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            if self.sessions.token is None:
                return self._disabled()
            nonce = self.sessions.nonce(request)
            if nonce is None:
                return _redirect("/login")
            return await handler(request, self.sessions.csrf(nonce))

        return run

    def form(self, handler: Handler) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        async def run(request: web.Request) -> web.StreamResponse:
            if self.sessions.token is None:
                return self._disabled()
            nonce = self.sessions.nonce(request)
            if nonce is None:
                return _redirect("/login")
            posted = await request.post()
            if not self.sessions.csrf_ok(nonce, str(posted.get("csrf", ""))):
                return _render("message.html", status=403, message="The form expired or came from elsewhere.")
            return await handler(request, self.sessions.csrf(nonce))

        return run

    async def login_form(self, request: web.Request, error: str = "", status: int = 200) -> web.StreamResponse:
        if self.sessions.token is None:
            return self._disabled()
        double = request.cookies.get(LOGIN_COOKIE) or Sessions.random()
        response = _render("login.html", status=status, csrf=double, error=error)
        set_cookie(response, request, LOGIN_COOKIE, double, max_age=3600)
        return response

    async def login(self, request: web.Request) -> web.StreamResponse:
        if self.sessions.token is None:
            return self._disabled()
        posted = await request.post()
        double = request.cookies.get(LOGIN_COOKIE, "")
        if not double or not Sessions.same(double, str(posted.get("csrf", ""))):
            return await self.login_form(request, "The form expired: log in again.", status=403)
        if not self.sessions.token_matches(str(posted.get("token", ""))):
            return await self.login_form(request, "Wrong token.", status=401)
        response = _redirect("/")
        set_cookie(response, request, SESSION_COOKIE, self.sessions.new_session(), max_age=SESSION_S)
        response.del_cookie(LOGIN_COOKIE, path="/")
        return response

    async def logout(self, _request: web.Request, _csrf: str) -> web.StreamResponse:
        response = _redirect("/login")
        response.del_cookie(SESSION_COOKIE, path="/")
        return response

    # ---- pages ----------------------------------------------------------------------------------------------

    async def alerts(self, _request: web.Request, csrf: str) -> web.StreamResponse:
        firing = [a for a in await self.view.alerts() if a.firing]
        resolved = await recent_transitions(self.view.store, "resolved", None, LIST_LIMIT)
        rows = [{**asdict(a), "since": format_ms(a.starts_ms), "silence": _silence_link(a.labels)} for a in firing]
        return _render("alerts.html", csrf=csrf, nav="alerts", firing=rows, resolved=resolved[::-1])

    async def silences(self, _request: web.Request, csrf: str) -> web.StreamResponse:
        now = self.view.now_ms()
        listed = [
            {
                "id": item.silence.id,
                "source": item.source,
                "matchers": [str(m) for m in item.silence.matchers],
                "starts": format_ms(item.silence.starts_ms),
                "ends": format_ms(item.silence.ends_ms),
                "state": "active" if item.silence.active(now) else "pending",
                "created_by": item.silence.created_by,
                "comment": item.silence.comment,
            }
            for item in await self.view.silences()
        ]
        return _render("silences.html", csrf=csrf, nav="silences", silences=listed)

    async def new_silence(self, request: web.Request, csrf: str) -> web.StreamResponse:
        fields = {
            "matchers": "\n".join(request.query.getall("matcher", [])),
            "duration": "2h",
            "created_by": "",
            "comment": "",
        }
        return _render("silence_form.html", csrf=csrf, nav="silences", form=fields, error="")

    async def create_silence(self, request: web.Request, csrf: str) -> web.StreamResponse:
        posted = await request.post()
        fields = {name: str(posted.get(name, "")) for name in ("matchers", "duration", "created_by", "comment")}
        try:
            duration = parse_duration(fields["duration"])
            if duration <= 0:
                raise ValueError("must be more than 0")
            body = {
                "matchers": [line.strip() for line in fields["matchers"].splitlines() if line.strip()],
                "endsAt": format_ms(self.view.clock.now_ms() + duration),
                "createdBy": fields["created_by"],
                "comment": fields["comment"],
            }
            await self.view.create_silence(body)
        except SilenceError as exc:
            return _render("silence_form.html", 400, csrf=csrf, nav="silences", form=fields, error=str(exc))
        except ValueError as exc:
            error = f"duration: {exc}"
            return _render("silence_form.html", 400, csrf=csrf, nav="silences", form=fields, error=error)
        return _redirect("/silences")

    async def expire_silence(self, request: web.Request, _csrf: str) -> web.StreamResponse:
        try:
            await self.view.expire_silence(request.match_info["id"])
        except (SilenceNotFound, SilenceFromConfig) as exc:
            return _render("message.html", status=409, message=silence_error_text(exc))
        return _redirect("/silences")

    async def rules(self, _request: web.Request, csrf: str) -> web.StreamResponse:
        last: dict[str, Any] = {}
        for raw in await self.view.store.transitions(RULE_SCAN):
            item = orjson.loads(raw)
            last[item["rule"]] = item
        stats = list(self.rule_stats()) if self.rule_stats is not None else []
        rows = [{"rule": r, "last": last.get(r.name)} for r in stats]
        return _render("rules.html", csrf=csrf, nav="rules", rows=rows)

    async def notifications(self, _request: web.Request, csrf: str) -> web.StreamResponse:
        sent = (await recent_notifications(self.view.store, LIST_LIMIT))[::-1]
        dead = [
            {"entry": entry_id, **orjson.loads(raw)} for entry_id, raw in await self.view.store.dead_letters(LIST_LIMIT)
        ]
        return _render("notifications.html", csrf=csrf, nav="notifications", sent=sent, dead=dead)

    async def requeue(self, request: web.Request, _csrf: str) -> web.StreamResponse:
        posted = await request.post()
        entry = str(posted.get("entry", ""))
        await self.view.store.requeue([entry] if entry else None)
        return _redirect("/notifications")


def _silence_link(labels: dict[str, str]) -> str:
    """The new-silence form pre-filled with one equality matcher per label of the alert."""
    matchers = [f'{name}="{_quote(value)}"' for name, value in sorted(labels.items())]
    return "/silences/new?" + urlencode([("matcher", m) for m in matchers])


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={**HEADERS, "Location": location})


def _render(template: str, status: int = 200, **context: Any) -> web.Response:
    body = _env.get_template(template).render(format_duration=format_duration, **context)
    return web.Response(text=body, status=status, content_type="text/html", headers=HEADERS)
