"""Time intervals agree with the real Alertmanager 0.25 (Debian's, installed by scripts/ensure-packages).

- Parsing: every YAML case of the ported table is accepted or refused by `amtool check-config` exactly when
  streamalert's config accepts or refuses it (refusals with the same words).
- Muting: one Alertmanager with one route per interval, some muting and some active-only, each built around
  the wall-clock time of the run (in the zone whose midnight is farthest away, so no boundary is near); an alert
  per route is posted, and the routes whose webhook notification arrives are those streamalert's evaluation of
  the same config at that instant says send.
"""

from __future__ import annotations

import asyncio
import calendar
import subprocess
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import aiohttp
import yaml

from streamalert.clock import Stopwatch
from streamalert.config.notify import NotifyConfig, build_route
from streamalert.config.yaml_load import safe_load
from tests.notify.alertmanager_support import alertmanager_server, amtool_binary
from tests.notify.test_alertmanager import wall_now
from tests.notify.test_time_intervals import YAML_CASES
from tests.notify.vendor import Vendor, serve


def _am_config(intervals_yaml: str) -> str:
    """An Alertmanager config whose child route is muted by interval `t` (the YAML list of intervals)."""
    body = "\n".join("      " + line for line in intervals_yaml.rstrip("\n").splitlines())
    return (
        "route:\n  receiver: r\n  routes:\n    - matchers: ['a=\"b\"']\n      mute_time_intervals: [t]\n"
        "receivers:\n  - name: r\ntime_intervals:\n  - name: t\n    time_intervals:\n" + body + "\n"
    )


def test_amtool_check_config_agrees_on_every_yaml_case(tmp_path: Path) -> None:
    """Accepted by streamalert exactly when amtool 0.25 accepts it, and refused with Alertmanager's words."""
    disagreements = []
    for index, (text, _, _, error) in enumerate(YAML_CASES):
        config_text = _am_config(text)
        file = tmp_path / f"case{index}.yml"
        file.write_text(config_text, encoding="utf-8")
        am = subprocess.run(
            [amtool_binary(), "check-config", str(file)], check=False, capture_output=True, text=True, timeout=30
        )
        ours: str | None = None
        try:
            NotifyConfig.model_validate(safe_load(config_text)).check()
        except ValueError as exc:
            ours = str(exc)
        if (am.returncode == 0) != (ours is None):
            disagreements.append((text, am.stdout + am.stderr, ours))
        elif error is not None:
            assert error in am.stdout, (text, am.stdout)  # the table's words are Alertmanager 0.25's
            assert ours is not None
            assert error in ours
    assert disagreements == []


ZONES = ("UTC", "Australia/Sydney", "America/New_York", "Europe/Moscow", "Asia/Kolkata", "Pacific/Auckland")


def _quiet_zone(now: datetime) -> ZoneInfo:
    """The zone whose local midnight is farthest from `now`: day-based intervals built there hold for hours."""

    def distance(name: str) -> int:
        local = now.astimezone(ZoneInfo(name))
        minute = local.hour * 60 + local.minute
        return min(minute, 1440 - minute)

    return ZoneInfo(max(ZONES, key=distance))


def _cases(now: datetime) -> dict[str, tuple[str, dict[str, Any]]]:
    """name -> ("mute" or "active", interval), around `now`."""
    zone = _quiet_zone(now)
    local = now.astimezone(zone)
    weekday = (local.weekday() + 1) % 7
    days = calendar.monthrange(local.year, local.month)[1]
    minute = local.hour * 60 + local.minute
    names = ["sunday", "monday", "tuesday", "wednesday", "thursday", "friday", "saturday"]
    other_month = calendar.month_name[local.month % 12 + 1].lower()
    around = {"start_time": f"{(minute - 60) // 60:02d}:00", "end_time": f"{(minute + 60) // 60 + 1:02d}:00"}
    later = {"start_time": f"{(minute + 120) // 60:02d}:00", "end_time": f"{(minute + 120) // 60 + 1:02d}:00"}
    at = str(zone)
    return {
        "today": ("mute", {"weekdays": [names[weekday]], "location": at}),
        "tomorrow": ("mute", {"weekdays": [names[(weekday + 1) % 7]], "location": at}),
        "last_days": ("mute", {"days_of_month": [f"{local.day - days - 1}:-1"], "location": at}),
        "first_days": ("mute", {"days_of_month": [f"1:{local.day - 1}" if local.day > 1 else "2:-1"], "location": at}),
        "hours": ("mute", {"times": [around], "location": at}),
        "later": ("mute", {"times": [later], "location": at}),
        "other_month": ("mute", {"months": [other_month], "years": [str(local.year)]}),
        "this_year": ("active", {"years": [f"{local.year}:{local.year + 1}"], "location": at}),
        "next_year": ("active", {"years": [str(local.year + 1)], "location": at}),
        "hours_active": ("active", {"times": [around], "weekdays": [names[weekday]], "location": at}),
    }


async def _eventually(check: Callable[[], bool], what: str, within_s: float = 15.0) -> None:
    watch = Stopwatch()
    while not check():
        if watch.elapsed() > within_s:
            raise AssertionError(f"not within {within_s:g} s: {what}")
        await asyncio.sleep(0.02)


async def test_alertmanager_mutes_the_routes_streamalert_mutes() -> None:
    """At the same instant and on the same config, Alertmanager notifies exactly the routes streamalert's
    route tree does not mute (mute and active intervals, zones, negative days), and both kinds occur."""
    now = wall_now()
    cases = _cases(now)
    local = now.astimezone(_quiet_zone(now))
    assert min(local.hour * 60 + local.minute, 1440 - local.hour * 60 - local.minute) >= 180  # six zones apart
    routes = [
        {"matchers": [f'case="{name}"'], "receiver": "hook", f"{kind}_time_intervals": [name]}
        for name, (kind, _) in cases.items()
    ]
    routes.append({"matchers": ['case="marker"'], "receiver": "hook"})
    intervals = [{"name": name, "time_intervals": [spec]} for name, (_, spec) in cases.items()]
    route: dict[str, Any] = {"receiver": "hook", "group_by": ["case"], "group_wait": "10ms", "group_interval": "100ms"}
    route |= {"repeat_interval": "1h", "routes": routes}
    ours = NotifyConfig.model_validate(
        {"route": route, "receivers": [{"name": "hook", "stdout_configs": [{}]}], "time_intervals": intervals}
    )
    assert ours.check() == []
    assert ours.route is not None
    tree = build_route(ours.route, ours.named_intervals())
    now_ms = int(now.timestamp() * 1000)
    sends = set()
    for name in cases:
        times = tree.match({"case": name})[0].times
        assert times is not None
        if times.muted(now_ms) is None:
            sends.add(name)
    assert sends == {"tomorrow", "first_days", "later", "other_month", "this_year", "hours_active"}

    async with serve(Vendor(lambda path, headers, body: [])) as hook:
        am_config = {
            "route": route,
            "receivers": [{"name": "hook", "webhook_configs": [{"url": f"{hook.url}/hook"}]}],
            "time_intervals": intervals,
        }
        with alertmanager_server(yaml.safe_dump(am_config)) as base:

            def notified() -> set[str]:
                return {a["labels"]["case"] for r in hook.requests for a in r.body["alerts"]}

            alerts = [
                {"labels": {"alertname": "Interval", "case": name}, "startsAt": now.isoformat()} for name in cases
            ]
            async with aiohttp.ClientSession() as http:
                async with http.post(f"{base}/api/v2/alerts", json=alerts) as response:
                    assert response.status == 200, await response.text()
                await _eventually(lambda: sends <= notified(), f"notifications for {sorted(sends)}")
                # a later alert's notification: by then every group posted before it has flushed too
                marker = [{"labels": {"alertname": "Interval", "case": "marker"}, "startsAt": now.isoformat()}]
                async with http.post(f"{base}/api/v2/alerts", json=marker) as response:
                    assert response.status == 200
                await _eventually(lambda: "marker" in notified(), "the marker's notification")
    assert wall_now() - now < timedelta(minutes=1)  # no boundary crossed: the cases are hours from one
    assert notified() - {"marker"} == sends
