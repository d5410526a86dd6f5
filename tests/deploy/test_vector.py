"""deploy/vector/*.toml: they parse, share one identity transform (the real VRL program gives what
vector_identity.deliver gives), tail the folder the app writes, and send to the path, port, token or topic
the streamalert config of the same shape reads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from streamalert.config.app import load_config
from tests.deploy.deploy_files import (
    DEPLOY,
    ROOT,
    Doc,
    compose,
    containers,
    env_of,
    load_kustomization,
    pod_specs,
    vector_configs,
    volume,
)
from tests.deploy.vector_identity import deliver, file_event

CONFIGS = vector_configs()


def _sidecar() -> tuple[Doc, dict[str, Doc]]:
    """The sidecar pod spec and its containers by name."""
    (spec,) = [spec for name, spec in pod_specs(load_kustomization(DEPLOY).resources) if name == "crm-beat"]
    return spec, {c["name"]: c for c in containers(spec)}


def test_three_vector_configs() -> None:
    """Host/node (vector.toml), sidecar and compose (kafka.toml) each have a config, all parsed by tomllib."""
    assert sorted(CONFIGS) == ["kafka.toml", "sidecar.toml", "vector.toml"]


def test_every_config_uses_the_same_file_source_and_identity_transform() -> None:
    """One file source and one identity remap, identical in all three, feeding every sink; acknowledgements on."""
    sources = {name: config["sources"] for name, config in CONFIGS.items()}
    transforms = {name: config["transforms"] for name, config in CONFIGS.items()}
    assert len({json.dumps(s, sort_keys=True) for s in sources.values()}) == 1
    assert len({json.dumps(t, sort_keys=True) for t in transforms.values()}) == 1
    for config in CONFIGS.values():
        assert config["transforms"]["identity"]["type"] == "remap"
        assert config["transforms"]["identity"]["inputs"] == ["app_logs"]
        for sink in config["sinks"].values():
            assert sink["inputs"] == ["identity"]
            assert sink["acknowledgements"]["enabled"] is True


def test_sidecar_sink_points_at_the_streamalert_container(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The sidecar's Vector posts to 127.0.0.1 at the streamalert container's listen port and sources.vector.path,
    with the bearer token both containers take from the same Secret key; the healthcheck is /healthz."""
    spec, by_name = _sidecar()
    streamalert, vector = by_name["streamalert"], by_name["vector"]
    config_file = next(m for m in streamalert["volumeMounts"] if m.get("subPath"))
    monkeypatch.setenv("STREAMALERT_TOKEN", "t")
    monkeypatch.delenv("STREAMALERT_STATE", raising=False)
    config = load_config(ROOT / "config" / config_file["subPath"])
    assert config.sources.vector is not None
    sink = CONFIGS["sidecar.toml"]["sinks"]["streamalert"]
    uri = urlsplit(sink["uri"])
    assert (uri.hostname, uri.port, uri.path) == ("127.0.0.1", int(config.http.listen.rpartition(":")[2]), "/vector")
    assert uri.path == config.sources.vector.path
    assert urlsplit(sink["healthcheck"]["uri"]).path == "/healthz"
    assert sink["auth"] == {"strategy": "bearer", "token": "${STREAMALERT_TOKEN}"}
    assert "${STREAMALERT_TOKEN}" in (ROOT / "config" / config_file["subPath"]).read_text(encoding="utf-8")
    assert config.sources.vector.auth == "bearer"
    assert env_of(vector)["STREAMALERT_TOKEN"] == env_of(streamalert)["STREAMALERT_TOKEN"]
    assert "valueFrom" in env_of(vector)["STREAMALERT_TOKEN"]
    # Vector reads the folder the app writes, from the same volume, and keeps its checkpoints on a volume
    (include,) = CONFIGS["sidecar.toml"]["sources"]["app_logs"]["include"]
    app_mount = next(m for m in by_name["app"]["volumeMounts"] if m["mountPath"] == str(Path(include).parent))
    vector_mounts = {m["mountPath"]: m for m in vector["volumeMounts"]}
    assert vector_mounts[app_mount["mountPath"]]["name"] == app_mount["name"]
    assert "emptyDir" in volume(spec, app_mount["name"])
    assert CONFIGS["sidecar.toml"]["data_dir"] in vector_mounts
    config_mount = next(m for m in vector["volumeMounts"] if m["mountPath"] == "/etc/vector")
    assert volume(spec, config_mount["name"])["configMap"]["name"] == "vector-sidecar"
    assert vector["args"] == ["--config", "/etc/vector/sidecar.toml"]


def test_host_config_points_at_the_streamalert_service(monkeypatch: pytest.MonkeyPatch) -> None:
    """vector.toml posts to the `streamalert` Service, whose port leads to the Vector Deployment's listen port,
    at that Deployment's config's sources.vector.path, with its bearer token."""
    kust = load_kustomization(DEPLOY)
    (service,) = [d for d in kust.resources if d["kind"] == "Service" and d["metadata"]["name"] == "streamalert"]
    (spec,) = [spec for name, spec in pod_specs(kust.resources) if name == "streamalert"]
    (container,) = containers(spec)
    assert service["spec"]["selector"].items() <= _labels(kust.resources, "streamalert").items()
    config_file = next(m for m in container["volumeMounts"] if m.get("subPath"))
    monkeypatch.setenv("STREAMALERT_TOKEN", "t")
    config = load_config(ROOT / "config" / config_file["subPath"])
    assert config.sources.vector is not None
    (port,) = service["spec"]["ports"]
    (target,) = [p for p in container["ports"] if p["name"] == port["targetPort"]]
    assert target["containerPort"] == int(config.http.listen.rpartition(":")[2])
    sink = CONFIGS["vector.toml"]["sinks"]["streamalert"]
    uri = urlsplit(sink["uri"])
    assert (uri.hostname, uri.port, uri.path) == ("streamalert", port["port"], config.sources.vector.path)
    assert urlsplit(sink["healthcheck"]["uri"])[1:3] == (f"streamalert:{port['port']}", "/healthz")
    assert sink["auth"] == {"strategy": "bearer", "token": "${STREAMALERT_TOKEN}"}
    assert config.sources.vector.auth == "bearer"


def _labels(docs: list[Doc], deployment: str) -> dict[str, str]:
    (found,) = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == deployment]
    labels: dict[str, str] = found["spec"]["template"]["metadata"]["labels"]
    return labels


def test_compose_vector_produces_to_the_consumed_topic() -> None:
    """kafka.toml produces JSON to the topic and broker the compose streamalert consumes, and the compose
    Vector mounts it, the app's log volume and a checkpoint volume."""
    services = compose()["services"]
    sink = CONFIGS["kafka.toml"]["sinks"]["kafka"]
    consumer = (DEPLOY / "compose" / "streamalert.yaml").read_text(encoding="utf-8")
    assert f"topics: [{sink['topic']}]" in consumer
    assert sink["bootstrap_servers"] == services["streamalert"]["environment"]["KAFKA_BROKERS"]
    assert sink["encoding"]["codec"] == "json"
    vector = services["vector"]
    assert vector["command"] == ["--config", "/etc/vector/kafka.toml"]
    mounts = {entry.split(":")[1]: entry.split(":")[0] for entry in vector["volumes"]}
    assert mounts["/etc/vector/kafka.toml"] == "./vector/kafka.toml"
    (include,) = CONFIGS["kafka.toml"]["sources"]["app_logs"]["include"]
    app_volume = mounts[str(Path(include).parent)]
    assert f"{app_volume}:{Path(include).parent}" in services["demo-app"]["volumes"]
    assert CONFIGS["kafka.toml"]["data_dir"] in mounts


def test_identity_env_is_set_where_vector_runs() -> None:
    """LOG_APP=crm on the sidecar's and compose's Vector: the mailer rules match app: crm."""
    _, by_name = _sidecar()
    assert env_of(by_name["vector"])["LOG_APP"]["value"] == "crm"
    assert compose()["services"]["vector"]["environment"]["LOG_APP"] == "crm"


# ---- the VRL program itself -------------------------------------------------------------------------------

PATH = "/var/log/app/celery_beat.log"
READ_AT = "2026-01-26T09:30:00.000Z"
LINES = [
    '{"timestamp": "2026-01-26T09:00:00.000Z", "level": "info", "event": "beat: Sending due task x"}',
    '{"time": "2026-01-26T09:00:01Z", "event": "own time kept"}',
    '{"ts": 1769418000, "event": "epoch time kept"}',
    '{"event": "no time: Vector read time"}',
    '{"event": "own identity wins", "host": "h", "container": "c", "app": "a", "service": "s"}',
    "celery beat v5.3.6 (emerald-rush) is starting.",
    "[1, 2, 3]",
    '"a string"',
    '{"truncated": ',
]
ENVS = [{"LOG_APP": "crm"}, {"LOG_SERVICE": "revel"}, {"LOG_APP": "", "LOG_SERVICE": ""}, {}]


def _vrl_program() -> Any:
    pyvrl = pytest.importorskip("pyvrl", reason="pyVRL (Vector's VRL runtime for Python) is not installed")
    source = CONFIGS["vector.toml"]["transforms"]["identity"]["source"]
    return pyvrl.Transform(source + "\n.")  # the program's value is the event (Vector ignores it)


@pytest.mark.parametrize("env", ENVS, ids=lambda e: ",".join(f"{k}={v}" for k, v in e.items()) or "no-env")
@pytest.mark.parametrize("path", [PATH, "/var/log/app/crm_web.log", "/var/log/app/nolog.txt"])
def test_vrl_program_gives_what_deliver_gives(monkeypatch: pytest.MonkeyPatch, env: dict[str, str], path: str) -> None:
    """The shipped VRL, run by Vector's VRL runtime, turns each line into exactly the event `deliver` describes."""
    program = _vrl_program()
    for name in ("LOG_APP", "LOG_SERVICE"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    for line in LINES:
        event = file_event(line, path=path, host="crm-beat-7d9f", read_at=READ_AT)
        got = program.remap(event)
        assert got == deliver(line, path=path, host="crm-beat-7d9f", read_at=READ_AT, env=env), line


def test_deliver_adds_identity_and_keeps_the_apps_time() -> None:
    """A structlog line gains container, app and host; a line with its own `time` gets no `timestamp`."""
    env = {"LOG_APP": "crm"}
    event = deliver(LINES[0], path=PATH, host="pod", read_at=READ_AT, env=env)
    assert (event["container"], event["app"], event["host"]) == ("celery_beat", "crm", "pod")
    assert event["timestamp"] == "2026-01-26T09:00:00.000Z"
    assert "timestamp" not in deliver(LINES[1], path=PATH, host="pod", read_at=READ_AT, env=env)
