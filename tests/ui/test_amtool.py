"""Debian's amtool 0.25 against the running streamalert (tests/ui/service.py), over real HTTP, through the
Alertmanager API v2 (streamalert/notify/amapi.py): `alert query` (filters, -s), `silence add`, `query`,
`expire` and `import`, with the bearer token passed in `--http.config.file` as amtool users write it.

A silence added with amtool must mute the notification of an alert that fires after it, and expiring it must
let that notification out. The token never appears in amtool's output or the service's log.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.notify.alertmanager_support import amtool_binary
from tests.ui.service import TOKEN, Service, until

pytestmark = pytest.mark.asyncio(loop_scope="session")  # the shared service's loop


class Amtool:
    def __init__(self, service: Service, tmp: Path, token: str | None = TOKEN) -> None:
        self.base = [amtool_binary(), f"--alertmanager.url={service.url}"]
        if token is not None:
            config = tmp / f"http-{len(token)}.yml"
            config.write_text(f"authorization:\n  type: Bearer\n  credentials: {token}\n")
            self.base.append(f"--http.config.file={config}")
        self.env = {"HOME": str(tmp), "PATH": "/usr/bin:/bin"}  # no ~/.config/amtool of the machine's user

    async def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        done = await asyncio.to_thread(
            subprocess.run, [*self.base, *args], capture_output=True, text=True, env=self.env, timeout=30
        )
        assert TOKEN not in done.stdout + done.stderr
        if ok:
            assert done.returncode == 0, (args, done.stdout, done.stderr)
        return done

    async def json(self, *args: str) -> Any:
        return json.loads((await self.run(*args, "-o", "json")).stdout)

    async def alerts(self, *args: str) -> list[tuple[str, str, str]]:
        """(alertname, host, state) of the alerts `alert query` prints, sorted."""
        found = await self.json("alert", "query", *args)
        return sorted((a["labels"]["alertname"], a["labels"]["host"], a["status"]["state"]) for a in found)


async def test_amtool_queries_alerts_and_its_silences_mute_notifications(service: Service, tmp_path: Path) -> None:
    """alert query lists the firing alert (filtered by matcher, or by a bare alertname); silence add mutes a
    host: its alert fires but is not notified, alert query hides it unless -s (suppressed, silencedBy the
    id); silence query shows the silence in amtool's JSON; expire unmutes it (the notification goes out);
    import re-creates exported silences (an unknown id is created anew, a known one updated in place)."""
    amtool = Amtool(service, tmp_path)
    await service.post([{"level": "error", "host": "am-1"}])
    await until(lambda: ("am-1", "firing") in service.notified_hosts(), 15, "am-1 to be notified")
    assert await amtool.alerts("host=~am-.*") == [("db_errors", "am-1", "active")]
    assert await amtool.alerts("host=am-1") == [("db_errors", "am-1", "active")]
    assert ("db_errors", "am-1", "active") in await amtool.alerts("db_errors")  # amtool: alertname=db_errors
    assert await amtool.alerts("host=~am-[2-9]") == []

    added = await amtool.run("silence", "add", "host=am-3", "-a", "alice", "-c", "disk swap", "-d", "1h")
    silence_id = added.stdout.strip()
    listed = await amtool.json("silence", "query", "host=am-3")
    assert [(s["id"], s["createdBy"], s["comment"], s["status"]["state"]) for s in listed] == [
        (silence_id, "alice", "disk swap", "active")
    ]
    assert listed[0]["matchers"] == [{"name": "host", "value": "am-3", "isRegex": False, "isEqual": True}]

    await service.post([{"level": "error", "host": "am-3"}, {"level": "error", "host": "am-4"}])
    await until(lambda: ("am-4", "firing") in service.notified_hosts(), 15, "am-4 to be notified")
    assert ("am-3", "firing") not in service.notified_hosts()  # same batch as am-4: decided, and muted
    assert await amtool.alerts("host=~am-.*") == [("db_errors", "am-1", "active"), ("db_errors", "am-4", "active")]
    silenced = await amtool.json("alert", "query", "-s", "host=am-3")
    assert [(a["status"]["state"], a["status"]["silencedBy"]) for a in silenced] == [("suppressed", [silence_id])]

    exported = tmp_path / "silences.json"
    exported.write_text((await amtool.run("silence", "query", "-o", "json", "host=am-3")).stdout)
    await amtool.run("silence", "expire", silence_id)
    assert await amtool.json("silence", "query", "host=am-3") == []
    await until(lambda: ("am-3", "firing") in service.notified_hosts(), 15, "am-3 to be notified once unmuted")

    await amtool.run("silence", "import", str(exported))  # its id is gone: created anew
    (again,) = await amtool.json("silence", "query", "host=am-3")
    assert again["id"] != silence_id
    assert (again["matchers"], again["comment"], again["createdBy"]) == (
        listed[0]["matchers"],
        "disk swap",
        "alice",
    )
    exported.write_text(json.dumps([{**again, "comment": "updated"}]))
    await amtool.run("silence", "import", str(exported))  # a known id: updated in place
    updated = await amtool.json("silence", "query", "host=am-3")
    assert [(s["id"], s["comment"]) for s in updated] == [(again["id"], "updated")]


async def test_amtool_without_the_right_token_is_refused(service: Service, tmp_path: Path) -> None:
    """No http config, or a wrong token in it: every amtool command fails (401) and creates nothing."""
    for token in (None, "not-the-token"):
        amtool = Amtool(service, tmp_path, token)
        for args in (("alert", "query"), ("silence", "query"), ("silence", "add", "host=unauthorized", "-c", "c")):
            done = await amtool.run(*args, ok=False)
            assert done.returncode != 0, (token, args, done.stdout)
            assert "401" in done.stderr or "nauthorized" in done.stderr, (token, args, done.stderr)
    assert await service.api('/api/v2/silences?filter=host="unauthorized"') == []
