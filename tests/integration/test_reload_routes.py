"""Hot reload of routes and receivers while notification groups are pending (issue 14, "route change with
groups pending"): `streamalert run` with webhook stand-ins for every receiver; the reload moves pending groups
to the new route tree, which sends each once; an API silence and an outbox entry in flight survive it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

from streamalert.clock import Stopwatch, WallClock
from streamalert.decode import format_ms
from tests.notify.test_webhook import PATH
from tests.notify.test_webhook import conformance_validator as webhook_format
from tests.notify.vendor import Vendor, serve

from .test_run import Service

TOKEN = "reload-token"
RULES = """
rules:
  - name: errors
    match: {level: error}
    window: 1m
    condition: count >= 1
    labels: {team: db}
  - name: quiet
    match: {level: debug}
    window: 1m
    condition: count >= 1
    labels: {team: db}
  - name: warnings
    match: {level: warning}
    window: 1m
    condition: count >= 1
"""
# Before: db alerts wait 4 s in the root route's groups (receiver `old`); warnings go to `warn` at once.
# After: a route for team="db" sends them to `new` instead; `warn` is unchanged (its outbox entry must stay).
ROUTES = """
notify: {{api_token: "{token}", max_attempts: 10000, retry_initial: 20ms, retry_max: 200ms, tick: 100ms}}
route:
  receiver: old
  group_by: [alertname]
  group_wait: 4s
  group_interval: 1m
  repeat_interval: 1d
  routes:
    - receiver: warn
      matchers: ['alertname="warnings"']
      group_wait: 0s
{db_route}
receivers:
  - name: old
    webhook_configs: [{{url: "{old}{path}"}}]
  - name: new
    webhook_configs: [{{url: "{new}{path}"}}]
  - name: warn
    webhook_configs: [{{url: "{warn}{path}", timeout: 30s}}]
"""
DB_ROUTE = """    - receiver: new
      matchers: ['team="db"']
      group_wait: 4s"""


@pytest_asyncio.fixture
async def hooks() -> AsyncIterator[dict[str, Vendor]]:
    async with (
        serve(Vendor(webhook_format)) as old,
        serve(Vendor(webhook_format)) as new,
        serve(Vendor(webhook_format)) as warn,
    ):
        yield {"old": old, "new": new, "warn": warn}


def _routes(hooks: dict[str, Vendor], db_route: str) -> str:
    urls = {name: vendor.url for name, vendor in hooks.items()}
    return ROUTES.format(token=TOKEN, db_route=db_route, path=PATH, **urls)


@pytest.fixture
def service(tmp_path: Path, hooks: dict[str, Vendor]) -> Iterator[Service]:
    svc = Service(tmp_path, "memory://", extra=_routes(hooks, ""))
    (tmp_path / "rules.yaml").write_text(RULES)
    yield svc
    if svc.proc.poll() is None:
        svc.proc.kill()
        svc.proc.wait()


def _line(level: str) -> dict[str, object]:
    return {"timestamp": format_ms(WallClock().now_ms()), "level": level}


async def _call(service: Service, method: str, path: str, body: object = None) -> tuple[int, Any]:
    headers = {"Authorization": f"Bearer {TOKEN}"}
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, service.url + path, headers=headers, json=body) as response,
    ):
        return response.status, await response.json(content_type=None)


async def _until(what: str, check: Any) -> Any:
    """Poll `check` (an async callable) with a deadline until it returns something true; return that."""
    watch = Stopwatch()
    while watch.elapsed() < 20:
        result = await check()
        if result:
            return result
        await asyncio.sleep(0.05)
    raise AssertionError(f"never happened: {what} (last: {result!r})")


async def _group_receivers(service: Service) -> dict[str, str]:
    """alertname -> receiver of every group the dispatcher holds (Alertmanager's /api/v2/alerts/groups)."""
    status, groups = await _call(service, "GET", "/api/v2/alerts/groups")
    assert status == 200, groups
    return {a["labels"]["alertname"]: g["receiver"]["name"] for g in groups for a in g["alerts"]}


def _alertnames(vendor: Vendor) -> list[str]:
    return [a["labels"]["alertname"] for r in vendor.accepted for a in r.body["alerts"]]


async def test_a_route_change_moves_pending_groups_and_keeps_silences_and_the_outbox(
    service: Service, tmp_path: Path, hooks: dict[str, Vendor]
) -> None:
    """Groups still in group_wait when the routes change are sent once, by the new route's receiver, at
    their due time; an API silence keeps muting; a delivery in flight is made again with the same id."""
    await service.wait_ready()
    status, created = await _call(
        service,
        "POST",
        "/api/silences",
        {"matchers": ['alertname="quiet"'], "endsAt": format_ms(WallClock().now_ms() + 3_600_000), "comment": "t"},
    )
    assert status == 201, created
    hooks["warn"].hang()  # the first delivery to `warn` is still in flight when the reload comes
    assert await service.post([_line("warning")]) == 200
    await _until("a delivery to warn in flight", lambda: _async(len(hooks["warn"].requests) == 1))
    assert await service.post([_line("error"), _line("debug")]) == 200
    pending = await _until("the db groups pending", lambda: _pending(service, {"errors", "quiet"}))
    assert pending["errors"] == pending["quiet"] == "old"

    (tmp_path / "streamalert.yaml").write_text(
        (tmp_path / "streamalert.yaml").read_text().replace(_routes(hooks, ""), _routes(hooks, DB_ROUTE))
    )
    assert await _call(service, "POST", "/-/reload") == (200, {"status": "success"})
    moved = await _until("the groups under the new routes", lambda: _pending(service, {"errors", "quiet"}, "new"))
    assert moved["errors"] == moved["quiet"] == "new"
    assert hooks["new"].accepted == []  # still in group_wait: the reload did not flush them early

    await _until("the db notification", lambda: _async(hooks["new"].accepted))
    await _until("the outbox drained", lambda: _outbox_empty(service))
    assert _alertnames(hooks["new"]) == ["errors"]  # once; `quiet` stays silenced
    assert hooks["old"].requests == []  # the old route tree sends nothing
    status, silences = await _call(service, "GET", "/api/silences")
    assert [s["id"] for s in silences] == [created["id"]]
    warn = hooks["warn"]
    assert _alertnames(warn) == ["warnings"]
    assert warn.accepted[0].headers["x-streamalert-delivery"] == warn.requests[0].headers["x-streamalert-delivery"]
    assert service.stop() == 0


async def _async(value: Any) -> Any:
    return value


async def _pending(service: Service, names: set[str], receiver: str | None = None) -> dict[str, str] | None:
    groups = await _group_receivers(service)
    if not names <= groups.keys():
        return None
    if receiver is not None and any(groups[name] != receiver for name in names):
        return None
    return groups


async def _outbox_empty(service: Service) -> bool:
    async with aiohttp.ClientSession() as session, session.get(f"{service.url}/metrics") as response:
        text = await response.text()
    return "streamalert_outbox_depth 0.0" in text.splitlines()
