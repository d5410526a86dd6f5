"""Alertmanager's API v2 (the subset its tools use), so amtool, Karma and Grafana's Alertmanager data source can
talk to streamalert. Shapes follow Alertmanager's api/v2/openapi.yaml:

- `GET /api/v2/status`: cluster (`disabled`), versionInfo (`0.25.0+streamalert.<version>`: the API level, then
  ours), config.original (the route tree and receiver names only: receivers' settings can hold secrets), uptime.
- `GET /api/v2/receivers`: the receivers' names.
- `GET /api/v2/alerts?filter=&active=&silenced=&inhibited=&unprocessed=&receiver=`: the firing alerts of
  the notification groups (notify/view.py), filtered as Alertmanager does (every flag defaults to true;
  `filter` takes matchers such as `alertname="X"`, `receiver` an anchored regular expression).
- `GET /api/v2/alerts/groups` (same parameters): the groups with their matching alerts.
- `GET /api/v2/silences?filter=`, `POST /api/v2/silences` (answers `{"silenceID": ...}`; with the `id` of a
  stored silence it replaces it, an unknown id is 404 `silence not found` as in Alertmanager),
  `GET /api/v2/silence/{id}`, `DELETE /api/v2/silence/{id}` (expires it: it is gone from the lists).

Authentication is the plain API's: `Authorization: Bearer <notify.api_token>` on every route (amtool sends it
from `--http.config.file`). Errors are JSON strings, as Alertmanager's are; `POST /api/v2/alerts` is not
served (alerts come from rules).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any

import orjson
import re2
from aiohttp import web

from streamalert import __version__
from streamalert.decode import format_ms
from streamalert.notify.api import check_bearer
from streamalert.notify.model import ZERO_TIME
from streamalert.notify.routing import Matcher, MatcherError, Op, matches_all, parse_matchers
from streamalert.notify.silences import SilenceError
from streamalert.notify.view import (
    AlertView,
    GroupView,
    ListedSilence,
    NotifyView,
    SilenceFromConfig,
    SilenceNotFound,
    silence_error_text,
)

VERSION = f"0.25.0+streamalert.{__version__}"
Handler = Callable[[web.Request], Awaitable[web.Response]]
_FLAGS = ("active", "silenced", "inhibited", "unprocessed")


def routes(
    view: NotifyView, token: str | None, receivers: Sequence[str] = (), config_text: str = ""
) -> list[web.RouteDef]:
    started = format_ms(view.clock.now_ms())

    def guarded(handler: Handler) -> Handler:
        async def run(request: web.Request) -> web.Response:
            check_bearer(request, token)
            return await handler(request)

        return run

    async def status(_request: web.Request) -> web.Response:
        return _json(
            {
                "cluster": {"name": "streamalert", "status": "disabled", "peers": []},
                "versionInfo": {
                    "version": VERSION,
                    "revision": "",
                    "branch": "",
                    "buildUser": "",
                    "buildDate": "",
                    "goVersion": "",
                },
                "config": {"original": config_text},
                "uptime": started,
            }
        )

    async def list_receivers(_request: web.Request) -> web.Response:
        return _json([{"name": name} for name in receivers])

    async def alerts(request: web.Request) -> web.Response:
        keep = _alert_filter(request)
        return _json([_alert(a) for a in await view.alerts() if keep(a)])

    async def groups(request: web.Request) -> web.Response:
        keep = _alert_filter(request)
        out = []
        for group in await view.groups():
            shown = [_alert(a) for a in group.alerts if keep(a)]
            if shown:
                out.append(_group(group, shown))
        return _json(out)

    async def list_silences(request: web.Request) -> web.Response:
        matchers = _filter(request)
        now = view.now_ms()
        return _json([_silence(item, now) for item in await view.silences() if _silence_matches(item, matchers)])

    async def post_silence(request: web.Request) -> web.Response:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise _error(web.HTTPBadRequest, "the body must be a JSON object") from None
        if not isinstance(body, dict):
            raise _error(web.HTTPBadRequest, "a silence is a JSON object")
        try:
            data = {**body, "matchers": _matcher_strings(body.get("matchers"))}
            silence = await view.create_silence(data, replace=str(body["id"]) if body.get("id") else None)
        except SilenceNotFound as exc:
            raise _error(web.HTTPNotFound, silence_error_text(exc)) from None
        except (SilenceError, SilenceFromConfig) as exc:
            raise _error(web.HTTPBadRequest, silence_error_text(exc)) from None
        return _json({"silenceID": silence.id})

    async def get_silence(request: web.Request) -> web.Response:
        try:
            item = await view.silence(request.match_info["id"])
        except SilenceNotFound as exc:
            raise _error(web.HTTPNotFound, silence_error_text(exc)) from None
        return _json(_silence(item, view.now_ms()))

    async def delete_silence(request: web.Request) -> web.Response:
        try:
            await view.expire_silence(request.match_info["id"])
        except SilenceNotFound as exc:
            raise _error(web.HTTPNotFound, silence_error_text(exc)) from None
        except SilenceFromConfig as exc:
            raise _error(web.HTTPConflict, silence_error_text(exc)) from None
        return web.Response(status=200)

    return [
        web.get("/api/v2/status", guarded(status)),
        web.get("/api/v2/receivers", guarded(list_receivers)),
        web.get("/api/v2/alerts", guarded(alerts)),
        web.get("/api/v2/alerts/groups", guarded(groups)),
        web.get("/api/v2/silences", guarded(list_silences)),
        web.post("/api/v2/silences", guarded(post_silence)),
        web.get("/api/v2/silence/{id}", guarded(get_silence)),
        web.delete("/api/v2/silence/{id}", guarded(delete_silence)),
    ]


# ---- request parameters ---------------------------------------------------------------------------------


def _flag(request: web.Request, name: str) -> bool:
    value = request.query.get(name, "true").lower()
    if value not in ("true", "false"):
        raise _error(web.HTTPBadRequest, f"{name}: true or false")
    return value == "true"


def _filter(request: web.Request) -> list[Matcher]:
    try:
        return [m for text in request.query.getall("filter", []) for m in parse_matchers(text)]
    except MatcherError as exc:
        raise _error(web.HTTPBadRequest, f"bad matcher format: {exc}") from None


def _alert_filter(request: web.Request) -> Callable[[AlertView], bool]:
    """Alertmanager's selection: firing alerts only; an alert counts as silenced or inhibited when anything
    silences or inhibits it, as active otherwise (streamalert has no unprocessed alerts)."""
    active, silenced, inhibited, _ = (_flag(request, name) for name in _FLAGS)
    matchers = _filter(request)
    receiver = request.query.get("receiver") or None
    pattern = None
    if receiver is not None:
        try:
            pattern = re2.compile(f"^(?:{receiver})$")
        except re2.error:
            raise _error(web.HTTPBadRequest, "receiver: not a valid regular expression") from None

    def keep(alert: AlertView) -> bool:
        if not alert.firing or not matches_all(matchers, alert.labels):
            return False
        if pattern is not None and not any(pattern.search(r) for r in alert.receivers):
            return False
        if not alert.suppressed and not active:
            return False
        if alert.silenced_by and not silenced:
            return False
        return not (alert.inhibited_by and not inhibited)

    return keep


def _matcher_strings(raw: Any) -> list[str]:
    """Alertmanager's matcher objects ({name, value, isRegex, isEqual}) as our matcher strings."""
    if not isinstance(raw, list) or not raw:
        raise SilenceError("matchers: a non-empty list of {name, value, isRegex, isEqual}")
    out = []
    for item in raw:
        if not isinstance(item, dict) or not all(isinstance(item.get(k), str) for k in ("name", "value")):
            raise SilenceError("matchers: each needs a string name and value")
        regex, equal = item.get("isRegex", False), item.get("isEqual", True)
        if not isinstance(regex, bool) or not isinstance(equal, bool):
            raise SilenceError("matchers: isRegex and isEqual are booleans")
        op: Op = ("=~" if equal else "!~") if regex else ("=" if equal else "!=")
        try:
            out.append(str(Matcher.make(item["name"], op, item["value"])))
        except MatcherError as exc:
            raise SilenceError(f"matchers: {exc}") from None
    return out


# ---- answers --------------------------------------------------------------------------------------------


def _alert(alert: AlertView) -> dict[str, Any]:
    updated = alert.ends_ms if alert.ends_ms is not None else alert.starts_ms
    return {
        "labels": alert.labels,
        "annotations": alert.annotations,
        "receivers": [{"name": name} for name in alert.receivers],
        "fingerprint": alert.fingerprint,
        "startsAt": format_ms(alert.starts_ms),
        "updatedAt": format_ms(updated),
        "endsAt": ZERO_TIME if alert.ends_ms is None else format_ms(alert.ends_ms),
        "generatorURL": "",
        "status": {
            "state": "suppressed" if alert.suppressed else "active",
            "silencedBy": list(alert.silenced_by),
            "inhibitedBy": list(alert.inhibited_by),
            "mutedBy": [],
        },
    }


def _group(group: GroupView, alerts: list[dict[str, Any]]) -> dict[str, Any]:
    return {"labels": group.labels, "receiver": {"name": group.receiver}, "alerts": alerts}


def _silence(item: ListedSilence, now: int) -> dict[str, Any]:
    silence = item.silence
    state = "pending" if now < silence.starts_ms else ("active" if now < silence.ends_ms else "expired")
    return {
        "id": silence.id,
        "status": {"state": state},
        "updatedAt": format_ms(silence.starts_ms),
        "matchers": [
            {"name": m.name, "value": m.value, "isRegex": m.op in ("=~", "!~"), "isEqual": m.op in ("=", "=~")}
            for m in silence.matchers
        ],
        "startsAt": format_ms(silence.starts_ms),
        "endsAt": format_ms(silence.ends_ms),
        "createdBy": silence.created_by or item.source,
        "comment": silence.comment,
    }


def _silence_matches(item: ListedSilence, matchers: list[Matcher]) -> bool:
    """Alertmanager's silence filter: every filter matcher must match one of the silence's matchers read as
    labels (name -> value)."""
    as_labels = {m.name: m.value for m in item.silence.matchers}
    return matches_all(matchers, as_labels)


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _error(kind: type[web.HTTPException], message: str) -> web.HTTPException:
    return kind(text=orjson.dumps(message).decode(), content_type="application/json")
