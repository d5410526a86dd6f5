"""The notification HTTP API, mounted on the service's listener:

- `GET /api/silences`: silences in force or scheduled (config ones included, marked `"source": "config"`).
- `POST /api/silences`: create one from `{"matchers": [...], "startsAt"?, "endsAt", "createdBy", "comment"}`;
  answers 201 `{"id": ...}`. `DELETE /api/silences/{id}` expires it at once (config silences cannot be).
- `GET /api/alerts?state=firing|resolved&severity=&limit=`: the last transitions, oldest first.
- `GET /api/notifications?limit=`: the last delivered notifications.

Every route needs `Authorization: Bearer <notify.api_token>`; without a configured token the API answers 403.
Silences live in the state store, so every replica serves the same ones and they outlive restarts.
"""

from __future__ import annotations

import hmac

import orjson
from aiohttp import web

from streamalert.clock import Clock
from streamalert.decode import format_ms
from streamalert.notify.history import recent_notifications, recent_transitions
from streamalert.notify.silences import Silence, SilenceError, parse_silence
from streamalert.state.base import Store

MAX_LIMIT = 10_000


def routes(
    store: Store, clock: Clock, token: str | None, config_silences: list[Silence], behind_ms: int = 0
) -> list[web.RouteDef]:
    """`behind_ms`: how far notification time (event time: the engine's horizon) runs behind the wall clock,
    `lateness + max_delay`. A new silence starts that much before now by default, so it also covers the
    alerts being flushed right now; listing keeps silences until they have ended in that time too."""

    def authorized(request: web.Request) -> None:
        check_bearer(request, token)

    async def list_silences(request: web.Request) -> web.Response:
        authorized(request)
        now = clock.now_ms() - behind_ms
        stored = [orjson.loads(raw) for raw in await store.silences(now)]
        listed = [{**s.to_dict(), "source": "config"} for s in config_silences if s.ends_ms > now]
        listed += [{**s, "source": "api"} for s in stored]
        return _json(sorted(listed, key=lambda s: (s["startsAt"], s["id"])))

    async def create_silence(request: web.Request) -> web.Response:
        authorized(request)
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise _error(web.HTTPBadRequest, "the body must be a JSON object") from None
        if isinstance(body, dict):
            body.pop("id", None)  # ids are ours
            if body.get("startsAt") is None:
                body["startsAt"] = format_ms(clock.now_ms() - behind_ms)
        try:
            silence = parse_silence(body, now_ms=clock.now_ms())
        except SilenceError as exc:
            raise _error(web.HTTPBadRequest, str(exc)) from None
        await store.put_silence(silence.id, silence.to_json())
        return _json({"id": silence.id}, status=201)

    async def delete_silence(request: web.Request) -> web.Response:
        authorized(request)
        silence_id = request.match_info["id"]
        if any(s.id == silence_id for s in config_silences):
            raise _error(web.HTTPConflict, "a silence from the config file: remove it there")
        if not await store.delete_silence(silence_id):
            raise _error(web.HTTPNotFound, f"no silence {silence_id!r}")
        return web.Response(status=204)

    async def alerts(request: web.Request) -> web.Response:
        authorized(request)
        state = request.query.get("state") or None
        if state not in (None, "firing", "resolved"):
            raise _error(web.HTTPBadRequest, "state: firing or resolved")
        severity = request.query.get("severity") or None
        return _json(await recent_transitions(store, state, severity, _limit_of(request, 100)))

    async def notifications(request: web.Request) -> web.Response:
        authorized(request)
        return _json(await recent_notifications(store, _limit_of(request, 100)))

    return [
        web.get("/api/silences", list_silences),
        web.post("/api/silences", create_silence),
        web.delete("/api/silences/{id}", delete_silence),
        web.get("/api/alerts", alerts),
        web.get("/api/notifications", notifications),
    ]


def check_bearer(request: web.Request, token: str | None) -> None:
    """Raise 403 when no token is configured, 401 unless the request carries `Authorization: Bearer <token>`."""
    if token is None:
        raise _error(web.HTTPForbidden, "the API is disabled: set notify.api_token")
    given = request.headers.get("Authorization", "")
    # aiohttp gives header bytes that are not UTF-8 as lone surrogates: compare the bytes as sent (a
    # plain encode() would raise, and the client would get a 500 instead of a 401).
    if not hmac.compare_digest(given.encode("utf-8", "surrogateescape"), f"Bearer {token}".encode()):
        error = _error(web.HTTPUnauthorized, "missing or wrong bearer token")
        error.headers["WWW-Authenticate"] = 'Bearer realm="streamalert"'
        raise error


def _limit_of(request: web.Request, default: int) -> int:
    try:
        value = int(request.query.get("limit", default))
    except ValueError:
        raise _error(web.HTTPBadRequest, "limit: must be an integer") from None
    if not 0 < value <= MAX_LIMIT:
        raise _error(web.HTTPBadRequest, f"limit: must be 1..{MAX_LIMIT}")
    return value


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    return kind(text=orjson.dumps({"error": message}).decode(), content_type="application/json")
