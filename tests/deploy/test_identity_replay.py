"""The demo app's lines, as Vector delivers them after the identity transform, replayed against the shipped
rule pack: the celery_beat heartbeat rule (keyed on `container`) fires when beat falls silent and resolves
when it logs again, and the `app: crm` rules see the worker's errors. The same lines without the identity
fields do neither: the transform is what makes the rules work."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import pytest

from tests.deploy.deploy_files import DEPLOY, compose, containers, env_of, load_kustomization, pod_specs
from tests.deploy.vector_identity import deliver, file_event
from tests.unit.cli_process import RULES, streamalert

START = "2026-01-26T09:00:00+00:00"
# demo app story with its defaults: beat every 30 s for 120 s, then silent for 420 s (last beat at 09:01:30,
# next at 09:09:00); the worker's fail-open error every 90 s
BEAT_DOWN_FIRES = "2026-01-26T09:06:30.000Z"  # last beat + absent_for 5m
BEAT_DOWN_RESOLVES = "2026-01-26T09:09:00.000Z"  # beat logs again
UNTIL = "2026-01-26T09:15:00Z"

Deliver = Callable[..., dict[str, Any]]


def _vrl() -> Deliver:
    """`deliver` by the shipped VRL program itself (Vector's VRL runtime), when pyVRL is installed."""
    pyvrl = pytest.importorskip("pyvrl", reason="pyVRL (Vector's VRL runtime for Python) is not installed")
    source = (DEPLOY / "vector" / "sidecar.toml").read_text(encoding="utf-8")
    import tomllib  # noqa: PLC0415

    program = pyvrl.Transform(tomllib.loads(source)["transforms"]["identity"]["source"] + "\n.")

    def run(line: str, *, path: str, host: str, read_at: str, env: Mapping[str, str]) -> dict[str, Any]:
        del env  # the program reads the process environment: set by the test
        result: dict[str, Any] = program.remap(file_event(line, path=path, host=host, read_at=read_at))
        return result

    return run


def _vector_env(shape: str) -> tuple[dict[str, str], str]:
    """The environment and host name of Vector in the sidecar pod or in compose, as deploy/ sets them."""
    if shape == "sidecar":
        (spec,) = [spec for name, spec in pod_specs(load_kustomization(DEPLOY).resources) if name == "crm-beat"]
        (vector,) = [c for c in containers(spec) if c["name"] == "vector"]
        env = {k: v["value"] for k, v in env_of(vector).items() if "value" in v}
        return env, "crm-beat-5f6d8c9b7-x2k4p"  # a pod's name: Vector's host name in the pod
    service = compose()["services"]["vector"]
    return {k: str(v) for k, v in service["environment"].items()}, service["hostname"]


def _demo_logs(tmp_path: Path) -> Path:
    """15 minutes of the demo app's story, written at once (its --simulate mode) with its default timings."""
    logs = tmp_path / "app-logs"
    subprocess.run(
        [sys.executable, str(DEPLOY / "demo-app" / "app.py"), "--simulate", "900", "--start", START],
        env={"LOG_DIR": str(logs), "PATH": "/usr/bin:/bin"},
        check=True,
        timeout=60,
    )
    return logs


def _delivered(logs: Path, env: dict[str, str], host: str, how: Deliver | None) -> list[dict[str, Any]]:
    """Every line of every file, as the transform delivers it (or as written, with `how` None), in time order."""
    events = []
    for file in sorted(logs.glob("*.log")):
        path = f"/var/log/app/{file.name}"  # where the pod and compose mount the folder
        for line in file.read_text(encoding="utf-8").splitlines():
            if how is None:
                events.append(json.loads(line))
            else:
                events.append(how(line, path=path, host=host, read_at=json.loads(line)["timestamp"], env=env))
    return sorted(events, key=lambda e: str(e["timestamp"]))


def _replay(tmp_path: Path, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    delivered = tmp_path / "delivered.jsonl"
    delivered.write_text("".join(json.dumps(e) + "\n" for e in events), encoding="utf-8")
    result = streamalert("replay", delivered, "--rules", RULES, "--until", UNTIL, "--format", "jsonl")
    assert result.returncode == 0, result.stderr
    return [json.loads(line) for line in result.stdout.splitlines()]


def _of(transitions: list[dict[str, Any]], rule: str) -> list[tuple[str, str]]:
    return [(t["state"], t["at"]) for t in transitions if t["rule"] == rule]


@pytest.mark.parametrize("shape", ["sidecar", "compose"])
@pytest.mark.parametrize("how", ["python", "vrl"])
def test_heartbeat_rule_fires_and_resolves_on_delivered_lines(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, shape: str, how: str
) -> None:
    """With Vector's identity fields, mailer_celery_beat_down fires 5 min after beat's last line and resolves
    at its next; the worker's errors fire mailer_rate_limiter_redis_error (app: crm comes from LOG_APP)."""
    env, host = _vector_env(shape)
    deliver_by = deliver if how == "python" else _vrl()
    for name in ("LOG_APP", "LOG_SERVICE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)  # read by the VRL runtime
    events = _delivered(_demo_logs(tmp_path), env, host, deliver_by)
    assert {e["container"] for e in events} == {"celery_beat", "celery_worker", "crm_web"}
    assert {(e["app"], e["host"]) for e in events} == {("crm", host)}
    transitions = _replay(tmp_path, events)
    beat_down = _of(transitions, "mailer_celery_beat_down")
    assert beat_down == [("firing", BEAT_DOWN_FIRES), ("resolved", BEAT_DOWN_RESOLVES)]
    (beat,) = [t for t in transitions if t["rule"] == "mailer_celery_beat_down" and t["state"] == "firing"]
    assert beat["labels"]["container"] == "celery_beat"
    assert ("firing", "2026-01-26T09:00:00.000Z") in _of(transitions, "mailer_rate_limiter_redis_error")


def test_without_identity_fields_the_rules_cannot_work(tmp_path: Path) -> None:
    """The same lines as the app writes them (no container, no app): the heartbeat alert fires from `expect`
    and never resolves, and no `app: crm` rule sees the errors."""
    events = _delivered(_demo_logs(tmp_path), {}, "", None)
    transitions = _replay(tmp_path, events)
    assert _of(transitions, "mailer_celery_beat_down") == [("firing", "2026-01-26T09:05:00.000Z")]
    assert _of(transitions, "mailer_rate_limiter_redis_error") == []
