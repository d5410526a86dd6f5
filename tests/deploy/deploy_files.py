"""Reading deploy/ as Kubernetes and Docker would: manifests, the kustomizations' generators, compose, Vector.

`container_view` lays out, under a temporary folder, the files a container would see at its mount paths
(ConfigMap keys from the generators' source files, Secret keys as test values), so a config can be loaded
exactly where the container loads it.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tests.unit.cli_process import clean_env, console_script

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
RULES_DIR = ROOT / "config" / "rules"
KUSTOMIZATIONS = (DEPLOY, DEPLOY / "replay")

Doc = dict[str, Any]


def load_docs(path: Path) -> list[Doc]:
    """Every document of a YAML file (empty ones dropped)."""
    with path.open(encoding="utf-8") as stream:
        docs: list[Doc] = [doc for doc in yaml.safe_load_all(stream) if doc is not None]
    return docs


def manifest_files() -> list[Path]:
    """The Kubernetes manifests under deploy/: every YAML file that is not a kustomization or a config."""
    found = []
    for path in sorted(DEPLOY.rglob("*.yaml")):
        if path.name == "kustomization.yaml" or path.parent.name in {"compose", "secrets"}:
            continue
        found.append(path)
    return found


@dataclass
class Generated:
    """A ConfigMap or Secret a kustomization generates: its keys and the file each comes from."""

    kind: str
    name: str
    files: dict[str, Path] = field(default_factory=dict)


@dataclass
class Kustomization:
    root: Path
    resources: list[Doc]
    generated: dict[tuple[str, str], Generated]
    rules_files: list[str]  # as listed in the rules component, relative to it


def _generated(root: Path, kind: str, entries: list[Doc]) -> dict[tuple[str, str], Generated]:
    out: dict[tuple[str, str], Generated] = {}
    for entry in entries:
        gen = Generated(kind, entry["name"])
        for item in entry.get("files", []):
            key, _, source = item.rpartition("=")
            path = (root / source).resolve()
            gen.files[key or path.name] = path
        out[(kind, gen.name)] = gen
    return out


def load_kustomization(root: Path) -> Kustomization:
    """A kustomization with its resources and components read (one level of components, as deploy/ uses)."""
    (spec,) = load_docs(root / "kustomization.yaml")
    resources = [doc for name in spec.get("resources", []) for doc in load_docs(root / name)]
    generated = _generated(root, "ConfigMap", spec.get("configMapGenerator", []))
    generated |= _generated(root, "Secret", spec.get("secretGenerator", []))
    rules_files: list[str] = []
    for component in spec.get("components", []):
        croot = (root / component).resolve()
        (cspec,) = load_docs(croot / "kustomization.yaml")
        assert cspec["kind"] == "Component"
        generated |= _generated(croot, "ConfigMap", cspec.get("configMapGenerator", []))
        for entry in cspec.get("configMapGenerator", []):
            if entry["name"] == "streamalert-rules":
                rules_files = list(entry["files"])
    return Kustomization(root, resources, generated, rules_files)


def pod_specs(docs: list[Doc]) -> list[tuple[str, Doc]]:
    """(workload name, pod spec) of every Deployment, StatefulSet, DaemonSet and Job."""
    found = []
    for doc in docs:
        if doc.get("kind") in {"Deployment", "StatefulSet", "DaemonSet", "Job"}:
            found.append((doc["metadata"]["name"], doc["spec"]["template"]["spec"]))
    return found


def containers(spec: Doc) -> list[Doc]:
    return [*spec.get("initContainers", []), *spec.get("containers", [])]


def env_of(container: Doc) -> dict[str, Doc]:
    return {item["name"]: item for item in container.get("env", [])}


def volume(spec: Doc, name: str) -> Doc:
    found: list[Doc] = [v for v in spec.get("volumes", []) if v["name"] == name]
    assert len(found) == 1, (name, found)
    return found[0]


def secret_values(kust: Kustomization) -> dict[tuple[str, str], str]:
    """A test value for every generated Secret key: (secret name, key) -> value (a URL for a webhook)."""
    return {
        (gen.name, key): f"https://hooks.example.com/test/{key}" if key.endswith("webhook") else f"test-{key}"
        for gen in kust.generated.values()
        if gen.kind == "Secret"
        for key in gen.files
    }


def container_view(tmp: Path, kust: Kustomization, spec: Doc, container: Doc) -> tuple[Path, dict[str, str]]:
    """The container's mounted files laid out under `tmp` (a mount at /x is tmp/x), and its environment
    (secretKeyRef values filled in with `secret_values`)."""
    secrets = secret_values(kust)
    for mount in container.get("volumeMounts", []):
        vol = volume(spec, mount["name"])
        target = tmp / mount["mountPath"].lstrip("/")
        if "configMap" in vol or "secret" in vol:
            if "configMap" in vol:
                kind, name = "ConfigMap", vol["configMap"]["name"]
            else:
                kind, name = "Secret", vol["secret"]["secretName"]
            gen = kust.generated[(kind, name)]
            keys = [mount["subPath"]] if "subPath" in mount else list(gen.files)
            for key in keys:
                dest = target if "subPath" in mount else target / key
                dest.parent.mkdir(parents=True, exist_ok=True)
                if kind == "Secret":
                    dest.write_text(secrets[(name, key)] + "\n", encoding="utf-8")
                else:
                    shutil.copyfile(gen.files[key], dest)
        else:  # emptyDir, persistentVolumeClaim: an empty folder
            target.mkdir(parents=True, exist_ok=True)
    env: dict[str, str] = {}
    for name, item in env_of(container).items():
        if "value" in item:
            env[name] = str(item["value"])
        else:
            ref = item["valueFrom"]["secretKeyRef"]
            env[name] = secrets[(ref["name"], ref["key"])]
    return tmp, env


def compose() -> Doc:
    (doc,) = load_docs(DEPLOY / "docker-compose.yml")
    return doc


def run_cli(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """`streamalert ARGS...` as a process with this checkout's code and only `env` of the config's variables."""
    return subprocess.run(
        [*console_script(), *map(str, args)],
        cwd=ROOT,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def vector_configs() -> dict[str, Doc]:
    """Every Vector config under deploy/vector/, by file name."""
    return {p.name: tomllib.loads(p.read_text(encoding="utf-8")) for p in sorted((DEPLOY / "vector").glob("*.toml"))}


def dockerfile() -> str:
    return (ROOT / "Dockerfile").read_text(encoding="utf-8")


def project_version() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    return str(tomllib.loads(text)["project"]["version"])


def seconds(duration: str) -> float:
    """'20s', '1m', '30s' as compose and the configs write them."""
    match = re.fullmatch(r"(\d+)(ms|s|m|h)", duration)
    assert match, duration
    return int(match.group(1)) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[match.group(2)]
