"""Alertmanager's API v2 shapes and selections (streamalert/notify/amapi.py) over real loopback HTTP, in process
with a ManualClock and the memory store: what amtool's end-to-end test (tests/ui/test_amtool.py) does not reach
- inhibition, regex and negative matchers, alert groups, receivers, refusals and the config silences."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import orjson
import pytest

from streamalert.clock import ManualClock
from streamalert.decode import format_ms
from streamalert.http import build_app, start_server
from streamalert.notify import amapi
from streamalert.notify.dispatch import AlertEntry, Group
from streamalert.notify.inhibit import InhibitRule
from streamalert.notify.model import fingerprint
from streamalert.notify.routing import parse_matchers
from streamalert.notify.silences import config_silence
from streamalert.notify.view import NotifyView
from streamalert.state.base import Changes
from streamalert.state.memory import MemoryStore
from streamalert.telemetry.metrics import Metrics
from streamalert.testing import free_port

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z
HOUR = 3_600_000
TOKEN = "v2-t0ken"
CONFIG_SILENCE = config_silence(['team="legacy"'], None, format_ms(T0 + HOUR), "ops", "retired hosts")
INHIBIT = InhibitRule(
    tuple(parse_matchers('severity="critical"')), tuple(parse_matchers('severity="warning"')), ("host",)
)


def _labels(name: str, host: str, severity: str, team: str = "db") -> dict[str, str]:
    return {"alertname": name, "host": host, "severity": severity, "team": team}


CRIT = _labels("DbDown", "db-1", "critical")
WARN = _labels("DbSlow", "db-1", "warning")  # inhibited by CRIT (same host)
OTHER = _labels("DbSlow", "db-2", "warning")
LEGACY = _labels("DbSlow", "db-9", "warning", team="legacy")  # silenced by the config silence
GONE = _labels("DbDown", "db-3", "critical")  # resolved, still in its group until the next flush


def _entry(labels: dict[str, str], firing: bool = True) -> AlertEntry:
    return AlertEntry(
        fingerprint(labels), labels, {"summary": labels["alertname"]}, firing, T0, None if firing else T0 + 5, 7
    )


async def _ready() -> tuple[bool, dict[str, str]]:
    return True, {}


class Client:
    def __init__(self, base: str, session: aiohttp.ClientSession) -> None:
        self.base, self.session = base, session

    async def call(self, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> tuple[int, Any]:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        data = orjson.dumps(body) if body is not None else None
        async with self.session.request(method, self.base + path, headers=headers, data=data) as response:
            raw = await response.read()
            assert TOKEN.encode() not in raw
            return response.status, orjson.loads(raw) if raw else None


@pytest.fixture
async def client() -> AsyncIterator[Client]:
    store = MemoryStore()
    groups = [
        Group(
            "r0:{host=db-1}",
            "r0",
            "pager",
            {"host": "db-1"},
            {fingerprint(CRIT): _entry(CRIT), fingerprint(WARN): _entry(WARN)},
        ),
        Group("r1:{host=db-1}", "r1", "chat", {"host": "db-1"}, {fingerprint(WARN): _entry(WARN)}),
        Group("r1:{host=db-2}", "r1", "chat", {"host": "db-2"}, {fingerprint(OTHER): _entry(OTHER)}),
        Group("r1:{host=db-9}", "r1", "chat", {"host": "db-9"}, {fingerprint(LEGACY): _entry(LEGACY)}),
        Group("r0:{host=db-3}", "r0", "pager", {"host": "db-3"}, {fingerprint(GONE): _entry(GONE, firing=False)}),
    ]
    await store.commit(Changes(meta={}, groups={g.id.encode(): g.dump() for g in groups}), {})
    view = NotifyView(store, ManualClock(T0), [CONFIG_SILENCE], 0, [INHIBIT])
    app = build_app(Metrics(), _ready, api=amapi.routes(view, TOKEN, ["pager", "chat"], "route: {}\n"))
    port = free_port()
    runner = await start_server(app, "127.0.0.1", port)
    try:
        async with aiohttp.ClientSession() as session:
            yield Client(f"http://127.0.0.1:{port}", session)
    finally:
        await runner.cleanup()


def _hosts(alerts: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return sorted((a["labels"]["alertname"], a["labels"]["host"]) for a in alerts)


async def test_every_v2_route_needs_the_bearer_token(client: Client) -> None:
    """401 without or with a wrong token on every route; nothing is created by a refused POST."""
    routes = [("GET", p) for p in ("/api/v2/status", "/api/v2/receivers", "/api/v2/alerts", "/api/v2/alerts/groups")]
    routes += [("GET", "/api/v2/silences"), ("GET", "/api/v2/silence/x"), ("DELETE", "/api/v2/silence/x")]
    body = {"matchers": [{"name": "a", "value": "b", "isRegex": False}], "endsAt": format_ms(T0 + HOUR)}
    for token in (None, "wrong"):
        for method, path in [*routes, ("POST", "/api/v2/silences")]:
            status, _ = await client.call(method, path, body if method == "POST" else None, token=token)
            assert status == 401, (token, method, path)
    assert [s["id"] for s in (await client.call("GET", "/api/v2/silences"))[1]] == [CONFIG_SILENCE.id]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ("", [("DbDown", "db-1"), ("DbSlow", "db-1"), ("DbSlow", "db-2"), ("DbSlow", "db-9")]),
        ("?silenced=false&inhibited=false", [("DbDown", "db-1"), ("DbSlow", "db-2")]),
        ("?active=false", [("DbSlow", "db-1"), ("DbSlow", "db-9")]),
        ("?active=false&silenced=false", [("DbSlow", "db-1")]),
        ("?filter=alertname%3D%22DbSlow%22&filter=host%3D~%22db-%5B12%5D%22", [("DbSlow", "db-1"), ("DbSlow", "db-2")]),
        ("?filter=severity!%3D%22warning%22", [("DbDown", "db-1")]),
        ("?receiver=pag.*", [("DbDown", "db-1"), ("DbSlow", "db-1")]),
        ("?receiver=pag", []),  # anchored, as Alertmanager's
    ],
)
async def test_alerts_are_selected_as_alertmanager_does(client: Client, query: str, expected: list[Any]) -> None:
    """Firing alerts only (a resolved one still in its group is not listed), each once with all its receivers;
    active/silenced/inhibited flags, filter matchers and an anchored receiver regex select among them."""
    status, alerts = await client.call("GET", "/api/v2/alerts" + query)
    assert status == 200, alerts
    assert _hosts(alerts) == expected


async def test_an_alert_has_alertmanagers_shape_and_status(client: Client) -> None:
    """Labels, annotations, receivers, fingerprint, times, and the status: suppressed with inhibitedBy the
    inhibiting alert's fingerprint, or silencedBy the silence's id."""
    _, alerts = await client.call("GET", "/api/v2/alerts")
    by_host = {(a["labels"]["alertname"], a["labels"]["host"]): a for a in alerts}
    assert by_host[("DbSlow", "db-1")] == {
        "labels": WARN,
        "annotations": {"summary": "DbSlow"},
        "receivers": [{"name": "chat"}, {"name": "pager"}],
        "fingerprint": fingerprint(WARN),
        "startsAt": format_ms(T0),
        "updatedAt": format_ms(T0),
        "endsAt": "0001-01-01T00:00:00Z",
        "generatorURL": "",
        "status": {"state": "suppressed", "silencedBy": [], "inhibitedBy": [fingerprint(CRIT)], "mutedBy": []},
    }
    assert by_host[("DbSlow", "db-9")]["status"]["silencedBy"] == [CONFIG_SILENCE.id]
    assert by_host[("DbDown", "db-1")]["status"] == {
        "state": "active",
        "silencedBy": [],
        "inhibitedBy": [],
        "mutedBy": [],
    }


async def test_alert_groups_list_each_group_with_its_selected_alerts(client: Client) -> None:
    """One entry per group with alerts left after the selection: labels, receiver, alerts."""
    status, groups = await client.call("GET", "/api/v2/alerts/groups?inhibited=false&silenced=false")
    assert status == 200
    assert [(g["receiver"]["name"], g["labels"], _hosts(g["alerts"])) for g in groups] == [
        ("chat", {"host": "db-2"}, [("DbSlow", "db-2")]),
        ("pager", {"host": "db-1"}, [("DbDown", "db-1")]),
    ]


async def test_status_and_receivers(client: Client) -> None:
    _, status = await client.call("GET", "/api/v2/status")
    assert status["cluster"]["status"] == "disabled"
    assert status["versionInfo"]["version"] == amapi.VERSION
    assert status["versionInfo"]["version"].startswith("0.25.0+streamalert.")
    assert status["config"] == {"original": "route: {}\n"}
    assert status["uptime"] == format_ms(T0)
    assert await client.call("GET", "/api/v2/receivers") == (200, [{"name": "pager"}, {"name": "chat"}])


async def test_silences_round_trip_through_alertmanagers_matcher_objects(client: Client) -> None:
    """All four operators as {isRegex, isEqual}; the silence is listed, fetched by id, filtered, and then
    applies to alerts; DELETE expires it (200, then 404); the config silence cannot be expired (409)."""
    matchers = [
        {"name": "alertname", "value": "DbSlow", "isRegex": False, "isEqual": True},
        {"name": "host", "value": "db-[0-9]", "isRegex": True},
        {"name": "team", "value": "legacy", "isRegex": False, "isEqual": False},
        {"name": "zone", "value": "eu.*", "isRegex": True, "isEqual": False},
    ]
    body = {"matchers": matchers, "endsAt": format_ms(T0 + HOUR), "createdBy": "amtool", "comment": "c"}
    status, answer = await client.call("POST", "/api/v2/silences", body)
    assert status == 200, answer
    silence_id = answer["silenceID"]
    status, got = await client.call("GET", f"/api/v2/silence/{silence_id}")
    assert status == 200
    assert got["matchers"] == [{**m, "isEqual": m.get("isEqual", True)} for m in matchers]
    assert (got["status"], got["startsAt"], got["createdBy"]) == ({"state": "active"}, format_ms(T0), "amtool")
    _, filtered = await client.call("GET", "/api/v2/silences?filter=alertname%3DDbSlow")
    assert [s["id"] for s in filtered] == [silence_id]
    _, alerts = await client.call("GET", "/api/v2/alerts?silenced=false&inhibited=false")
    assert _hosts(alerts) == [("DbDown", "db-1")]  # DbSlow db-2 is silenced now
    assert (await client.call("DELETE", f"/api/v2/silence/{silence_id}"))[0] == 200
    assert (await client.call("DELETE", f"/api/v2/silence/{silence_id}")) == (404, "silence not found")
    assert (await client.call("GET", f"/api/v2/silence/{silence_id}"))[0] == 404
    status, answer = await client.call("DELETE", f"/api/v2/silence/{CONFIG_SILENCE.id}")
    assert status == 409
    assert "config" in answer


@pytest.mark.parametrize(
    ("body", "status", "words"),
    [
        ({"matchers": [], "endsAt": format_ms(T0 + HOUR)}, 400, "matchers"),
        ({"matchers": [{"name": "a"}], "endsAt": format_ms(T0 + HOUR)}, 400, "matchers"),
        ({"matchers": [{"name": "a", "value": "(", "isRegex": True}], "endsAt": format_ms(T0 + HOUR)}, 400, "RE2"),
        ({"matchers": [{"name": "a", "value": "b", "isRegex": "yes"}], "endsAt": format_ms(T0 + HOUR)}, 400, "isRegex"),
        ({"matchers": [{"name": "a", "value": "b", "isRegex": False}], "endsAt": format_ms(T0 - 1)}, 400, "endsAt"),
        (
            {"id": "nope", "matchers": [{"name": "a", "value": "b", "isRegex": False}], "endsAt": format_ms(T0 + HOUR)},
            404,
            "not found",
        ),
        (
            {
                "id": CONFIG_SILENCE.id,
                "matchers": [{"name": "a", "value": "b", "isRegex": False}],
                "endsAt": format_ms(T0 + HOUR),
            },
            400,
            "config",
        ),
        (["not", "an", "object"], 400, "JSON object"),
    ],
)
async def test_refused_silences_name_the_problem(client: Client, body: Any, status: int, words: str) -> None:
    """Each refusal is a JSON string naming the field (Alertmanager's error shape); nothing is stored."""
    answer = await client.call("POST", "/api/v2/silences", body)
    assert answer[0] == status, answer
    assert isinstance(answer[1], str)
    assert words in answer[1]
    assert [s["id"] for s in (await client.call("GET", "/api/v2/silences"))[1]] == [CONFIG_SILENCE.id]


@pytest.mark.parametrize("query", ["?filter=host", "?active=maybe", "?receiver=(", "?filter=%7B"])
async def test_bad_query_parameters_are_400(client: Client, query: str) -> None:
    status, answer = await client.call("GET", "/api/v2/alerts" + query)
    assert status == 400, answer
    assert isinstance(answer, str)
