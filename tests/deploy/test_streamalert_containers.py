"""Every streamalert container in deploy/ (Kubernetes and compose) against the config it mounts: the config
loads where the container loads it, and ports, probe paths, mounted paths, secrets and grace periods agree
with it and with the Dockerfile."""

from __future__ import annotations

import re
import shutil
import tomllib
from pathlib import Path
from typing import Any

import pytest

from streamalert.config.app import AppConfig, load_config, secret_files
from streamalert.testing import allocator_with
from tests.deploy.deploy_files import (
    DEPLOY,
    KUSTOMIZATIONS,
    ROOT,
    RULES_DIR,
    Doc,
    Kustomization,
    compose,
    container_view,
    containers,
    dockerfile,
    load_kustomization,
    pod_specs,
    project_version,
    run_cli,
    seconds,
    volume,
)

Case = tuple[Kustomization, str, Doc, Doc]


def _cases() -> list[Case]:
    """(kustomization, workload, pod spec, container) of every container running `streamalert run`."""
    found = []
    for root in KUSTOMIZATIONS:
        kust = load_kustomization(root)
        for workload, spec in pod_specs(kust.resources):
            for container in containers(spec):
                if container["image"].startswith("streamalert:") and container["args"][0] == "run":
                    found.append((kust, workload, spec, container))
    return found


CASES = _cases()
IDS = [f"{workload}/{container['name']}" for _, workload, _, container in CASES]


def test_every_live_shape_has_a_streamalert_container() -> None:
    """The Vector Deployment, the Kafka consumer and the sidecar pod each run streamalert."""
    assert sorted(IDS) == ["crm-beat/streamalert", "streamalert-crm/streamalert", "streamalert/streamalert"]


def _config_path(container: Doc) -> str:
    args = container["args"]
    return str(args[args.index("--config") + 1])


def _load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Case) -> tuple[AppConfig, Path, dict[str, str]]:
    kust, _, spec, container = case
    root, env = container_view(tmp_path, kust, spec, container)
    for name in [n for n in env if n.startswith("STREAMALERT_")] + ["STREAMALERT_SECRETS"]:
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return load_config(root / _config_path(container).lstrip("/")), root, env


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_config_checks_in_the_container_view(tmp_path: Path, case: Case) -> None:
    """`streamalert check --config` passes on the mounted config, with the container's env and secret files."""
    kust, _, spec, container = case
    root, env = container_view(tmp_path, kust, spec, container)
    secrets = [m for m in container["volumeMounts"] if "secret" in volume(spec, m["name"])]
    (mount,) = secrets
    env["STREAMALERT_SECRETS"] = str(root / mount["mountPath"].lstrip("/"))
    result = run_cli("check", "--config", root / _config_path(container).lstrip("/"), env=env)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("OK: ")


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_mounted_paths_match_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    """`rules:` resolves to the rules ConfigMap's mount (holding every rule file), and every `*_file` secret,
    at the config's default $STREAMALERT_SECRETS, is a key of the Secret mounted there."""
    kust, _, spec, container = case
    config, root, _ = _load(tmp_path, monkeypatch, case)
    mounts = {m["mountPath"]: volume(spec, m["name"]) for m in container["volumeMounts"]}
    rules_at = "/" + str(config.rules.relative_to(root))
    assert mounts[rules_at]["configMap"]["name"] == "streamalert-rules"
    assert sorted(p.name for p in config.rules.iterdir()) == sorted(p.name for p in RULES_DIR.glob("*.yaml"))
    files = secret_files(config)
    assert files  # the shipped configs read seven
    for key, path in files:
        mounted = mounts[str(path.parent)]  # an absolute path in the container: the default was used
        assert path.name in kust.generated[("Secret", mounted["secret"]["secretName"])].files, key


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_ports_and_probes_match_the_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    """The container port is the config's listen port and the Dockerfile's EXPOSE; liveness (and startup)
    probe /healthz, readiness /readyz, on that port."""
    _, _, _, container = case
    config, _, _ = _load(tmp_path, monkeypatch, case)
    port = int(config.http.listen.rpartition(":")[2])
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": port}
    assert f"EXPOSE {port}" in dockerfile()
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    if "startupProbe" in container:
        assert container["startupProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    if "readinessProbe" in container:
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_grace_period_exceeds_shutdown_timeout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: Case) -> None:
    """terminationGracePeriodSeconds > shutdown_timeout: Kubernetes does not kill a shutdown in progress."""
    _, _, spec, _ = case
    config, _, _ = _load(tmp_path, monkeypatch, case)
    assert spec["terminationGracePeriodSeconds"] > config.ms("shutdown_timeout") / 1000


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_image_and_user_match_the_dockerfile(case: Case) -> None:
    """The image is the one the Dockerfile builds for this version, run as the Dockerfile's user."""
    _, _, spec, container = case
    assert container["image"] == f"streamalert:{project_version()}"
    uid = re.search(r"useradd .*--uid (\d+)", dockerfile())
    assert uid is not None
    assert spec["securityContext"]["runAsUser"] == int(uid.group(1))
    assert spec["securityContext"]["runAsNonRoot"] is True


def test_every_container_has_requests_and_a_memory_limit() -> None:
    """Every container of every workload requests CPU and memory and has a memory limit."""
    for root in KUSTOMIZATIONS:
        for workload, spec in pod_specs(load_kustomization(root).resources):
            for container in containers(spec):
                resources = container["resources"]
                assert {"cpu", "memory"} <= set(resources["requests"]), (workload, container["name"])
                assert "memory" in resources["limits"], (workload, container["name"])


def test_kafka_consumer_runs_replicas_with_a_disruption_budget(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The Kafka Deployment's config has replicas: true on Redis state, and a PDB covering its pods lets one go
    at a time."""
    (case,) = [c for c in CASES if c[1] == "streamalert-crm"]
    kust = case[0]
    config, _, _ = _load(tmp_path, monkeypatch, case)
    assert config.sources.kafka is not None
    assert config.sources.kafka.replicas is True
    assert config.state.startswith("redis://")
    (deployment,) = [d for d in kust.resources if d["kind"] == "Deployment" and d["metadata"]["name"] == case[1]]
    (pdb,) = [d for d in kust.resources if d["kind"] == "PodDisruptionBudget"]
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert pdb["spec"]["maxUnavailable"] == 1 < deployment["spec"]["replicas"]


def test_state_namespaces_do_not_collide() -> None:
    """Two live shapes on one namespace would fight over its lease: each writer has its own (the Kafka
    replicas share theirs by design)."""
    namespaces: dict[str, str] = {}
    for _, workload, _, container in CASES:
        state = next(e["value"] for e in container["env"] if e["name"] == "STREAMALERT_STATE")
        namespaces[workload] = state.partition("namespace=")[2]
    assert len(set(namespaces.values())) == len(namespaces), namespaces


def test_replay_job_reads_the_mounted_rules() -> None:
    """The replay Job's --rules is the rules ConfigMap's mount and its input file lies on the saved-logs PVC."""
    kust = load_kustomization(DEPLOY / "replay")
    ((_, spec),) = pod_specs(kust.resources)
    (container,) = containers(spec)
    args = container["args"]
    assert args[0] == "replay"
    mounts = {m["mountPath"]: volume(spec, m["name"]) for m in container["volumeMounts"]}
    assert mounts[args[args.index("--rules") + 1]]["configMap"]["name"] == "streamalert-rules"
    assert mounts[str(Path(args[1]).parent)]["persistentVolumeClaim"]["claimName"] == "saved-logs"


# ---- compose ----------------------------------------------------------------------------------------------


def _compose_view(tmp_path: Path, service: dict[str, Any]) -> Path:
    """The bind mounts of a compose service laid out under tmp_path (named volumes as empty folders)."""
    for entry in service.get("volumes", []):
        source, target = entry.split(":")[:2]
        dest = tmp_path / target.lstrip("/")
        if source.startswith("."):
            src = (DEPLOY / source).resolve()
            assert src.exists(), entry
            if src.is_dir():
                shutil.copytree(src, dest)
            else:
                dest.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, dest)
        else:
            dest.mkdir(parents=True, exist_ok=True)
    return tmp_path


def test_compose_streamalert_config_checks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The compose service's config, where its bind mounts put it, checks with its environment; it reads
    the Kafka topic the init service creates, listens on the published port, and the stop grace period
    exceeds its shutdown_timeout."""
    services = compose()["services"]
    service = services["streamalert"]
    root = _compose_view(tmp_path, service)
    command = service["command"]
    config_file = root / command[command.index("--config") + 1].lstrip("/")
    env = {k: str(v) for k, v in service["environment"].items()}
    result = run_cli("check", "--config", config_file, env=env)
    assert result.returncode == 0, result.stderr
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    config = load_config(config_file)
    assert config.rules == root / "etc/streamalert/rules"
    assert sorted(p.name for p in config.rules.glob("*.yaml")) == sorted(p.name for p in RULES_DIR.glob("*.yaml"))
    assert config.sources.kafka is not None
    topics = services["kafka-topics"]["command"]
    assert config.sources.kafka.topics == [topics[topics.index("--topic") + 1]]
    assert config.sources.kafka.brokers == ["kafka:9092"]
    assert "PLAINTEXT://kafka:9092" in services["kafka"]["environment"]["KAFKA_ADVERTISED_LISTENERS"]
    port = config.http.listen.rpartition(":")[2]
    assert service["ports"] == [f"127.0.0.1:{port}:{port}"]
    assert f"127.0.0.1:{port}/readyz" in " ".join(service["healthcheck"]["test"])
    assert seconds(service["stop_grace_period"]) > config.ms("shutdown_timeout") / 1000


def test_compose_builds_the_dockerfile_image() -> None:
    """compose builds streamalert from the repository's Dockerfile and tags it as the manifests name it."""
    service = compose()["services"]["streamalert"]
    assert (DEPLOY / service["build"]["context"] / service["build"]["dockerfile"]).resolve() == (
        DEPLOY.parent / "Dockerfile"
    )
    assert service["image"] == f"streamalert:{project_version()}"


def test_compose_kafka_runs_in_kraft_mode() -> None:
    """Apache Kafka's own image, one node acting as broker and controller (KRaft), no ZooKeeper."""
    services = compose()["services"]
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert kafka["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert not any("zookeeper" in name for name in services)


def test_dockerfile_builds_reproducibly_and_checks_health() -> None:
    """Base image pinned to an exact version, every runtime dependency pinned in constraints.txt and used,
    EXPOSE 8080 with a HEALTHCHECK on /healthz there, and the README builds the tag the manifests use."""
    text = dockerfile()
    bases = re.findall(r"^FROM (\S+)", text, re.MULTILINE)
    assert bases
    assert all(re.fullmatch(r"python:\d+\.\d+\.\d+-slim-[a-z]+", base) for base in bases), bases
    assert "--constraint constraints.txt" in text
    pinned = {}
    for line in (ROOT / "constraints.txt").read_text("utf-8").splitlines():
        if line and not line.startswith("#"):
            name, _, version = line.partition("==")
            assert re.fullmatch(r"\d+(\.\d+)*(\.post\d+)?", version), line
            pinned[re.sub(r"[-_.]+", "-", name).lower()] = version
    project = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))["project"]
    for requirement in project["dependencies"]:
        name = re.sub(r"[-_.]+", "-", re.split(r"[\[<>=!~; ]", requirement)[0]).lower()
        assert name in pinned, f"{name} is not pinned in constraints.txt"
    assert re.search(r"^EXPOSE 8080$", text, re.MULTILINE)
    health = re.search(r"^HEALTHCHECK .*\n?.*", text, re.MULTILINE)
    assert health is not None
    assert "http://127.0.0.1:8080/healthz" in text[health.start() :]
    build = f"docker build -t streamalert:{project_version()} ."
    assert build in (ROOT / "README.md").read_text("utf-8")
    assert build in text


def test_the_image_runs_python_on_the_jemalloc_it_installs() -> None:
    """The final stage installs libjemalloc2 and preloads it with PYTHONMALLOC=malloc (README "Memory after a
    flood"); those variables, given to a Python here, make the service log `allocator=malloc+jemalloc`."""
    final = dockerfile().rsplit("\nFROM ", 1)[1]
    assert re.search(r"apt-get install [^\n]*\blibjemalloc2\b", final)
    env_line = re.search(r"^ENV (.*)$", final, re.MULTILINE)
    assert env_line is not None
    env = dict(pair.split("=", 1) for pair in env_line.group(1).split())
    assert env == {"PYTHONMALLOC": "malloc", "LD_PRELOAD": "libjemalloc.so.2"}
    if not list(Path("/usr/lib").glob("*-linux-gnu/libjemalloc.so.2")):
        pytest.skip("libjemalloc2 (redis-server's dependency) is not installed here")
    assert allocator_with(env) == "malloc+jemalloc"
