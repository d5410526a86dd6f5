"""The notification HTTP API over real loopback HTTP, on both store backends: bearer-token access, silences
(create, list, delete, expiry), and the alert and notification history.

Every answer is checked on the way in: the configured token never appears in a response body.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
import pytest

from streamalert.clock import ManualClock
from streamalert.decode import format_ms
from streamalert.http import build_app, start_server
from streamalert.model import AlertState, Transition
from streamalert.notify import api as notify_api
from streamalert.notify.silences import Silence, config_silence
from streamalert.output import transition_json
from streamalert.state.base import Changes, Store
from streamalert.telemetry.metrics import Metrics
from streamalert.testing import free_port

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z
HOUR = 3_600_000
TOKEN = "tok3n"
WRONG = "guess-me-123"  # a wrong token a client sends: not echoed either

# In force until T0 + 1h; and one that ended long before T0 (never listed).
MAINTENANCE = config_silence(['team="mailer"'], None, format_ms(T0 + HOUR), "config", "mailer maintenance")
OLD = config_silence(['team="legacy"'], None, "2020-01-01T00:00:00Z", "config", "retired")


async def _ready() -> tuple[bool, dict[str, str]]:
    return True, {}


@dataclass
class Api:
    base: str
    session: aiohttp.ClientSession
    clock: ManualClock
    store: Store

    async def call(
        self,
        method: str,
        path: str,
        *,
        auth: str | None = f"Bearer {TOKEN}",
        body: Any = None,
        data: bytes | None = None,
    ) -> tuple[int, Any]:
        """One request; (status, decoded JSON body or None when empty). Fails if the body holds a token."""
        headers = {"Authorization": auth} if auth is not None else {}
        if body is not None:
            data = orjson.dumps(body)
            headers["Content-Type"] = "application/json"
        async with self.session.request(method, self.base + path, headers=headers, data=data) as response:
            raw = await response.read()
            status = response.status
            if raw:
                assert response.content_type == "application/json", (path, raw)
        assert TOKEN.encode() not in raw, (path, raw)
        assert WRONG.encode() not in raw, (path, raw)
        return status, orjson.loads(raw) if raw else None

    async def silences(self) -> list[dict[str, Any]]:
        status, listed = await self.call("GET", "/api/silences")
        assert status == 200, listed
        assert isinstance(listed, list)
        return listed

    async def create(self, **fields: Any) -> str:
        status, answer = await self.call("POST", "/api/silences", body=fields)
        assert status == 201, answer
        assert isinstance(answer["id"], str)
        assert answer["id"]
        return str(answer["id"])


@asynccontextmanager
async def serve(
    store: Store, token: str | None, config_silences: Sequence[Silence], behind_ms: int = 0
) -> AsyncIterator[Api]:
    """The real aiohttp app (operational endpoints plus the API) on a free loopback port."""
    clock = ManualClock(T0)
    routes = notify_api.routes(store, clock, token, list(config_silences), behind_ms)
    app = build_app(Metrics(), _ready, api=routes)
    port = free_port()
    runner = await start_server(app, "127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as session:
            yield Api(f"http://127.0.0.1:{port}", session, clock, store)
    finally:
        await runner.cleanup()


@pytest.fixture
async def api(store: Store) -> AsyncIterator[Api]:
    async with serve(store, TOKEN, [MAINTENANCE, OLD]) as served:
        yield served


ROUTES = [
    ("GET", "/api/silences"),
    ("POST", "/api/silences"),
    ("DELETE", "/api/silences/abc"),
    ("GET", "/api/alerts"),
    ("GET", "/api/notifications"),
]
SILENCE = {
    "matchers": ['alertname="HighErrorRate"'],
    "endsAt": format_ms(T0 + HOUR),
    "createdBy": "alice",
    "comment": "deploy",
}


# ---- access ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("auth", [None, f"Bearer {WRONG}", TOKEN, f"Basic {TOKEN}", f"Bearer {TOKEN}x", "Bearer "])
async def test_every_route_needs_the_right_bearer_token(api: Api, auth: str | None) -> None:
    """No header, a wrong token, the right token without the Bearer scheme: 401 on every route, and a POST
    refused that way creates nothing."""
    for method, path in ROUTES:
        body = SILENCE if method == "POST" else None
        status, answer = await api.call(method, path, auth=auth, body=body)
        assert status == 401, (method, path, answer)
        assert "bearer token" in answer["error"]
    assert [s["source"] for s in await api.silences()] == ["config"]
    assert await api.store.silences(T0) == []


async def test_without_a_configured_token_the_api_is_disabled(store: Store) -> None:
    """notify.api_token unset: 403 on every route whatever the client sends, naming the setting."""
    async with serve(store, None, [MAINTENANCE]) as api:
        for auth in (None, f"Bearer {TOKEN}", "Bearer None", "Bearer "):
            for method, path in ROUTES:
                body = SILENCE if method == "POST" else None
                status, answer = await api.call(method, path, auth=auth, body=body)
                assert status == 403, (auth, method, path, answer)
                assert "notify.api_token" in answer["error"]
        assert await store.silences(T0) == []


async def test_an_empty_configured_token_lets_nobody_in(store: Store) -> None:
    """A token configured as "" (an empty secret file) must not make `Bearer ` (or nothing) a valid login."""
    async with serve(store, "", []) as api:
        for auth in (None, "Bearer ", "Bearer", ""):
            for method, path in ROUTES:
                body = SILENCE if method == "POST" else None
                status, _ = await api.call(method, path, auth=auth, body=body)
                assert status in (401, 403), (auth, method, path, status)
        assert await store.silences(T0) == []


async def test_operational_endpoints_need_no_token(api: Api) -> None:
    """The API is mounted next to /healthz and /readyz, which stay open."""
    status, answer = await api.call("GET", "/healthz", auth=None)
    assert (status, answer) == (200, {"status": "ok"})
    status, answer = await api.call("GET", "/readyz", auth=None)
    assert (status, answer) == (200, {"ready": True, "checks": {}})


# ---- silences -------------------------------------------------------------------------------------------


async def test_a_created_silence_is_listed_with_the_config_ones(api: Api) -> None:
    """POST answers 201 with an id; GET lists it (source api, startsAt defaulting to now) after the config
    silences in force (source config); a config silence that ended is not listed; a client's id is ignored."""
    silence_id = await api.create(
        id=MAINTENANCE.id,
        matchers=['alertname="HighErrorRate"', 'severity=~"critical|error"'],
        endsAt=format_ms(T0 + 2 * HOUR),
        createdBy="alice",
        comment="deploy of the API",
    )
    assert silence_id != MAINTENANCE.id
    listed = await api.silences()
    assert listed == [
        {**MAINTENANCE.to_dict(), "source": "config"},
        {
            "id": silence_id,
            "matchers": ['alertname="HighErrorRate"', 'severity=~"critical|error"'],
            "startsAt": format_ms(T0),
            "endsAt": format_ms(T0 + 2 * HOUR),
            "createdBy": "alice",
            "comment": "deploy of the API",
            "source": "api",
        },
    ]
    assert MAINTENANCE.to_dict()["matchers"] == ['team="mailer"']
    assert OLD.id not in {s["id"] for s in listed}


async def test_scheduled_silences_are_listed_in_start_order(api: Api) -> None:
    """A silence starting later is listed too (it is scheduled); the list is ordered by start."""
    later = await api.create(
        matchers=['team="payments"'], startsAt=format_ms(T0 + HOUR), endsAt=format_ms(T0 + 2 * HOUR)
    )
    now = await api.create(matchers=['team="backend"'], endsAt=format_ms(T0 + 3 * HOUR))
    listed = await api.silences()
    assert [(s["id"], s["source"]) for s in listed] == [(MAINTENANCE.id, "config"), (now, "api"), (later, "api")]
    assert listed[2]["startsAt"] == format_ms(T0 + HOUR)
    assert listed[2]["createdBy"] == ""
    assert listed[2]["comment"] == ""


FUTURE = format_ms(T0 + HOUR)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"matchers": ['severity!!"x"'], "endsAt": FUTURE}, "matchers"),
        ({"matchers": ['1abc="x"'], "endsAt": FUTURE}, "matchers"),
        ({"matchers": [], "endsAt": FUTURE}, "matchers"),
        ({"matchers": "severity=critical", "endsAt": FUTURE}, "matchers"),
        ({"endsAt": FUTURE}, "matchers"),
        ({"matchers": ['team="x"'], "endsAt": format_ms(T0 - 1000)}, "endsAt"),
        ({"matchers": ['team="x"'], "endsAt": format_ms(T0)}, "endsAt"),
        ({"matchers": ['team="x"'], "startsAt": format_ms(T0 + 2 * HOUR), "endsAt": FUTURE}, "endsAt"),
        ({"matchers": ['team="x"'], "startsAt": FUTURE, "endsAt": FUTURE}, "endsAt"),
        ({"matchers": ['team="x"']}, "endsAt"),
        ({"matchers": ['team="x"'], "endsAt": "next tuesday"}, "endsAt"),
        ({"matchers": ['team="x"'], "startsAt": "yesterday", "endsAt": FUTURE}, "startsAt"),
        ({"matchers": ['team="x"'], "endsAt": FUTURE, "createdBy": 7}, "createdBy"),
        ({"matchers": ['team="x"'], "endsAt": FUTURE, "comment": ["a"]}, "comment"),
        (["team=x"], "JSON object"),
        ("silence", "JSON object"),
    ],
)
async def test_bad_silences_are_400_naming_the_field(api: Api, body: Any, field: str) -> None:
    """Each refused body answers 400 with {"error": "<field>: ..."}; nothing is stored."""
    status, answer = await api.call("POST", "/api/silences", body=body)
    assert status == 400, answer
    assert field in answer["error"], answer
    assert await api.store.silences(T0) == []
    assert [s["source"] for s in await api.silences()] == ["config"]


@pytest.mark.parametrize("data", [b"{not json", b"", b"\xff\xfe", b'{"matchers": ['])
async def test_a_body_that_is_not_json_is_400(api: Api, data: bytes) -> None:
    status, answer = await api.call("POST", "/api/silences", data=data)
    assert status == 400, answer
    assert "JSON" in answer["error"]
    assert await api.store.silences(T0) == []


async def test_past_and_ordering_checks_name_the_problem(api: Api) -> None:
    """The two endsAt refusals say which rule was broken."""
    _, past = await api.call("POST", "/api/silences", body={"matchers": ['a="1"'], "endsAt": format_ms(T0 - 1)})
    assert past["error"].startswith("endsAt:")
    assert "past" in past["error"]
    _, order = await api.call(
        "POST", "/api/silences", body={"matchers": ['a="1"'], "startsAt": FUTURE, "endsAt": format_ms(T0 + 1000)}
    )
    assert order["error"].startswith("endsAt:")
    assert "startsAt" in order["error"]


async def test_delete_expires_a_silence_once(api: Api) -> None:
    """DELETE answers 204 and the silence is gone (from the list and the store); again: 404."""
    keep = await api.create(**SILENCE)
    gone = await api.create(**SILENCE)
    status, answer = await api.call("DELETE", f"/api/silences/{gone}")
    assert (status, answer) == (204, None)
    assert [s["id"] for s in await api.silences()] == [MAINTENANCE.id, keep]
    assert [orjson.loads(raw)["id"] for raw in await api.store.silences(T0)] == [keep]
    status, answer = await api.call("DELETE", f"/api/silences/{gone}")
    assert status == 404
    assert gone in answer["error"]
    status, answer = await api.call("DELETE", "/api/silences/never-was")
    assert status == 404


async def test_config_silences_cannot_be_deleted(api: Api) -> None:
    """DELETE of a config silence (in force or ended) is 409 and it stays listed."""
    for silence in (MAINTENANCE, OLD):
        status, answer = await api.call("DELETE", f"/api/silences/{silence.id}")
        assert status == 409, answer
        assert "config" in answer["error"]
    assert [s["id"] for s in await api.silences()] == [MAINTENANCE.id]


async def test_silences_expire_with_the_clock(api: Api) -> None:
    """Once the clock reaches endsAt a silence is no longer listed and the store has dropped it; a config
    silence stops being listed at its end too."""
    short = await api.create(matchers=['team="a"'], endsAt=format_ms(T0 + 10 * 60_000))
    long = await api.create(matchers=['team="b"'], endsAt=format_ms(T0 + 2 * HOUR))
    api.clock.set(T0 + 10 * 60_000 - 1)
    assert [s["id"] for s in await api.silences()] == [MAINTENANCE.id, *sorted([short, long])]  # same start: by id
    api.clock.set(T0 + 10 * 60_000)
    assert [s["id"] for s in await api.silences()] == [MAINTENANCE.id, long]
    assert [orjson.loads(raw)["id"] for raw in await api.store.silences(T0)] == [long]  # dropped, not hidden
    api.clock.set(T0 + HOUR)
    assert [s["id"] for s in await api.silences()] == [long]
    api.clock.advance(HOUR)
    assert await api.silences() == []
    assert await api.store.silences(T0) == []
    status, _ = await api.call("DELETE", f"/api/silences/{long}")
    assert status == 404


async def test_a_silence_is_refused_once_its_end_has_passed_by_the_clock(api: Api) -> None:
    """ "In the past" is judged by the API's clock, not the wall clock."""
    api.clock.set(T0 + 2 * HOUR)
    status, answer = await api.call("POST", "/api/silences", body=SILENCE)  # ends at T0 + 1h
    assert status == 400
    assert "endsAt" in answer["error"]


async def test_silences_cover_the_alerts_being_evaluated_behind_the_wall_clock(store: Store) -> None:
    """Notifications are decided in event time, `lateness + max_delay` behind the wall clock: a silence
    created now starts that far back by default (so the page about to go out is muted), and it is kept
    until its end has passed in that time too."""
    behind = 40_000
    async with serve(store, TOKEN, [], behind_ms=behind) as api:
        created = await api.create(matchers=['team="a"'], endsAt=format_ms(T0 + 60_000))
        assert [(s["id"], s["startsAt"]) for s in await api.silences()] == [(created, format_ms(T0 - behind))]
        given = await api.create(matchers=['team="b"'], startsAt=format_ms(T0 + 5_000), endsAt=format_ms(T0 + HOUR))
        api.clock.set(T0 + 60_000 + behind - 1)  # the first ended at the wall clock, not yet in event time
        listed = {s["id"]: s["startsAt"] for s in await api.silences()}
        assert listed == {created: format_ms(T0 - behind), given: format_ms(T0 + 5_000)}
        api.clock.set(T0 + 60_000 + behind)
        assert [s["id"] for s in await api.silences()] == [given]


# ---- history --------------------------------------------------------------------------------------------


def _transition(at_ms: int, rule: str, state: AlertState, severity: str, value: int) -> Transition:
    return Transition(
        at_ms=at_ms,
        rule=rule,
        state=state,
        labels=(("severity", severity), ("team", "backend")),
        value=value,
        annotations=(("summary", f"{rule} is {state.value}"),),
    )


FIRING, RESOLVED = AlertState.FIRING, AlertState.RESOLVED
TRANSITIONS = [
    _transition(T0, "HighErrorRate", FIRING, "critical", 12),
    _transition(T0 + 1000, "DiskFull", FIRING, "warning", 91),
    _transition(T0 + 2000, "HighErrorRate", RESOLVED, "critical", 0),
    _transition(T0 + 3000, "Latency", FIRING, "critical", 3),
    _transition(T0 + 4000, "DiskFull", RESOLVED, "warning", 40),
]


def _json(*indexes: int) -> list[Any]:
    return [orjson.loads(transition_json(TRANSITIONS[i])) for i in indexes]


async def _commit_transitions(store: Store) -> None:
    lines = [transition_json(t) for t in TRANSITIONS]
    await store.commit(Changes(meta={}, transitions=lines[:2]), {})
    await store.commit(Changes(meta={}, transitions=lines[2:]), {})


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", [0, 1, 2, 3, 4]),
        ("?state=firing", [0, 1, 3]),
        ("?state=resolved", [2, 4]),
        ("?severity=critical", [0, 2, 3]),
        ("?severity=warning&state=resolved", [4]),
        ("?state=firing&severity=critical", [0, 3]),
        ("?severity=info", []),
        ("?limit=2", [3, 4]),
        ("?limit=1", [4]),
        ("?state=firing&limit=2", [1, 3]),
        ("?severity=critical&limit=1", [3]),
        ("?limit=10000", [0, 1, 2, 3, 4]),
        ("?state=&severity=", [0, 1, 2, 3, 4]),
    ],
)
async def test_alerts_are_the_last_transitions_filtered(api: Api, query: str, expected: list[int]) -> None:
    """GET /api/alerts: the transitions committed to the store, oldest first, by state, severity and limit."""
    await _commit_transitions(api.store)
    status, answer = await api.call("GET", "/api/alerts" + query)
    assert status == 200, answer
    assert answer == _json(*expected)


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/alerts?limit=abc", "limit"),
        ("/api/alerts?limit=0", "limit"),
        ("/api/alerts?limit=-3", "limit"),
        ("/api/alerts?limit=10001", "limit"),
        ("/api/alerts?limit=1.5", "limit"),
        ("/api/alerts?state=pending", "state"),
        ("/api/alerts?state=FIRING", "state"),
        ("/api/notifications?limit=x", "limit"),
        ("/api/notifications?limit=0", "limit"),
        ("/api/notifications?limit=99999999999999999999", "limit"),
    ],
)
async def test_bad_queries_are_400_naming_the_parameter(api: Api, path: str, field: str) -> None:
    await _commit_transitions(api.store)
    status, answer = await api.call("GET", path)
    assert status == 400, answer
    assert answer["error"].startswith(f"{field}:")


async def test_alerts_on_an_empty_store_are_an_empty_list(api: Api) -> None:
    assert await api.call("GET", "/api/alerts") == (200, [])
    assert await api.call("GET", "/api/alerts?state=firing&severity=critical") == (200, [])
    assert await api.call("GET", "/api/notifications") == (200, [])


def _record(index: int, status: str) -> dict[str, Any]:
    return {
        "id": f"delivery-{index}",
        "receiver": "team",
        "sink": "slack/0",
        "status": status,
        "alert_status": "firing",
        "alerts": [{"alertname": f"Rule{index}", "status": "firing", "fingerprint": f"{index:016x}"}],
        "group_key": f'{{}}:{{alertname="Rule{index}"}}',
        "at": format_ms(T0 + index * 1000),
        "attempts": 1,
    }


async def test_notifications_are_the_delivery_history(api: Api) -> None:
    """GET /api/notifications: the records of delivered notifications, oldest first, the last `limit`."""
    outbox = [orjson.dumps({"id": f"delivery-{i}"}) for i in range(4)]
    await api.store.commit(Changes(meta={}, outbox=outbox), {})
    records = [_record(i, "sent") for i in range(4)]
    for (entry_id, _), record in zip(await api.store.outbox(None, 10), records, strict=True):
        await api.store.outbox_done(entry_id, orjson.dumps(record), keep=1000)
    assert await api.call("GET", "/api/notifications") == (200, records)
    assert await api.call("GET", "/api/notifications?limit=2") == (200, records[2:])
    assert await api.call("GET", "/api/notifications?limit=10000") == (200, records)
    assert await api.call("GET", "/api/alerts") == (200, [])  # notifications are not transitions
