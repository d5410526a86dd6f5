"""Hot reload of `streamalert run`: SIGHUP and POST /-/reload apply a good file, refuse a bad one, keep the
state of unchanged rules and resolve the alerts of changed or removed ones; the process never ends."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from streamalert.clock import Stopwatch, WallClock
from streamalert.decode import format_ms

from .test_run import Service

RULES = """
rules:
  - name: errors
    match: {level: error}
    window: 1m
    condition: count >= 2
  - name: warnings
    match: {level: warning}
    window: 1m
    condition: count >= 2
"""


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    svc = Service(tmp_path, "memory://", extra='notify: {api_token: "reload-token"}')
    (tmp_path / "rules.yaml").write_text(RULES)
    yield svc
    if svc.proc.poll() is None:
        svc.proc.kill()
        svc.proc.wait()


def _line(level: str) -> dict[str, object]:
    return {"timestamp": format_ms(WallClock().now_ms()), "level": level}


async def _metric(service: Service, name: str) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"{service.url}/metrics") as response:
        text = await response.text()
    return next((line for line in text.splitlines() if line.startswith(name + " ")), "")


async def _until_metric(service: Service, name: str, value: str) -> None:
    watch = Stopwatch()
    while watch.elapsed() < 20:  # poll with a deadline
        if await _metric(service, name) == f"{name} {value}":
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name} never became {value}: {await _metric(service, name)!r}")


async def _reload(service: Service, token: str | None = "reload-token") -> tuple[int, dict[str, object]]:
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{service.url}/-/reload", headers=headers) as response,
    ):
        return response.status, await response.json()


async def test_a_changed_rule_resolves_its_alert_and_an_unchanged_rule_keeps_its_state(
    service: Service, tmp_path: Path
) -> None:
    """`errors` fires; the reload changes its threshold: a resolved transition says why, and the new rule
    starts fresh. `warnings`, unchanged, saw one line before the reload and fires on one more after it."""
    await service.wait_ready()
    assert await service.post([_line("error"), _line("error"), _line("warning")]) == 200
    fired = service.read_transition()
    assert (fired["rule"], fired["state"]) == ("errors", "firing")
    (tmp_path / "rules.yaml").write_text(
        RULES.replace("condition: count >= 2\n  - name: warnings", "condition: count >= 3\n  - name: warnings")
    )
    status, body = await _reload(service)
    assert (status, body) == (200, {"status": "success"})
    resolved = service.read_transition()
    assert (resolved["rule"], resolved["state"]) == ("errors", "resolved")
    assert resolved["annotations"] == {"reason": "rule changed by a config reload"}
    await service.wait_ready()
    assert await service.post([_line("warning")]) == 200  # the second warning: the kept state makes it fire
    warned = service.read_transition()
    assert (warned["rule"], warned["state"], warned["value"]) == ("warnings", "firing", 2)
    assert await service.post([_line("error"), _line("error")]) == 200  # fresh: two are not three
    assert await service.post([_line("error")]) == 200
    refired = service.read_transition()
    assert (refired["rule"], refired["state"], refired["value"]) == ("errors", "firing", 3)
    assert service.stop() == 0


async def test_a_bad_file_is_refused_and_the_old_rules_keep_running(service: Service, tmp_path: Path) -> None:
    """SIGHUP with a broken rule file: the process stays up, the failure is logged with the file and field
    and shown by config_last_reload_successful 0; the old rules still fire. Fixing the file and reloading
    over HTTP sets the metric back to 1."""
    await service.wait_ready()
    good = (tmp_path / "rules.yaml").read_text()
    (tmp_path / "rules.yaml").write_text(good.replace("window: 1m", "window: often", 1))
    service.proc.send_signal(signal.SIGHUP)
    await _until_metric(service, "streamalert_config_last_reload_successful", "0.0")
    assert service.proc.poll() is None
    assert await service.post([_line("error"), _line("error")]) == 200
    fired = service.read_transition()
    assert (fired["rule"], fired["state"]) == ("errors", "firing")
    status, body = await _reload(service)
    assert status == 400
    assert "rules.yaml" in str(body["error"])
    assert "window" in str(body["error"])
    (tmp_path / "rules.yaml").write_text(good)
    assert (await _reload(service))[0] == 200
    await _until_metric(service, "streamalert_config_last_reload_successful", "1.0")
    assert service.stop() == 0
    assert service.proc.stderr is not None
    logs = service.proc.stderr.read().decode()
    assert "config_reload_failed" in logs
    assert "reload-token" not in logs


async def test_a_removed_rule_resolves_and_reload_needs_the_api_token(service: Service, tmp_path: Path) -> None:
    """Without the bearer token /-/reload answers 401 and changes nothing; with it, a file that drops the
    firing `errors` rule resolves its alert with the reason."""
    await service.wait_ready()
    assert await service.post([_line("error"), _line("error")]) == 200
    assert service.read_transition()["state"] == "firing"
    (tmp_path / "rules.yaml").write_text(RULES[: RULES.index("  - name: warnings")].replace("errors", "other"))
    assert (await _reload(service, token=None))[0] == 401
    assert (await _reload(service, token="wrong"))[0] == 401
    assert (await _reload(service))[0] == 200
    resolved = service.read_transition()
    assert (resolved["rule"], resolved["state"]) == ("errors", "resolved")
    assert resolved["annotations"] == {"reason": "rule removed by a config reload"}
    assert service.stop() == 0


async def test_a_watched_rules_file_reloads_when_written(tmp_path: Path) -> None:
    """`reload.watch: true`: writing the rules file reloads it (a removed rule resolves with the reason);
    writing a broken one is refused (metric 0, process up, old rules kept); fixing it reloads again."""
    service = Service(tmp_path, "memory://", extra="reload: {watch: true, debounce: 100ms}")
    try:
        (tmp_path / "rules.yaml").write_text(RULES)
        await service.wait_ready()
        assert await service.post([_line("error"), _line("error")]) == 200
        assert service.read_transition()["state"] == "firing"
        (tmp_path / "rules.yaml").write_text(RULES.replace("window: 1m", "window: often"))
        await _until_metric(service, "streamalert_config_last_reload_successful", "0.0")
        assert service.proc.poll() is None
        (tmp_path / "rules.yaml").write_text(RULES[: RULES.index("  - name: warnings")].replace("errors", "other"))
        resolved = service.read_transition()
        assert (resolved["rule"], resolved["state"]) == ("errors", "resolved")
        assert resolved["annotations"] == {"reason": "rule removed by a config reload"}
        await _until_metric(service, "streamalert_config_last_reload_successful", "1.0")
        assert service.stop() == 0
        assert service.proc.stderr is not None
        logs = service.proc.stderr.read().decode()
        assert "config_files_changed" in logs
        assert "config_reload_failed" in logs
    finally:
        if service.proc.poll() is None:
            service.proc.kill()
            service.proc.wait()
