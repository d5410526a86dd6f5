"""deploy/ as kustomize builds it: every file parses, every ConfigMap, Secret and PVC a pod uses is defined,
and the rules ConfigMap lists exactly the rule files there are."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.deploy.deploy_files import (
    DEPLOY,
    KUSTOMIZATIONS,
    RULES_DIR,
    containers,
    load_docs,
    load_kustomization,
    manifest_files,
    pod_specs,
)

K8S_KINDS = {"Deployment", "Service", "PersistentVolumeClaim", "PodDisruptionBudget", "Job"}


@pytest.mark.parametrize("path", sorted([*DEPLOY.rglob("*.yaml"), *DEPLOY.rglob("*.yml")]), ids=lambda p: p.name)
def test_every_yaml_file_parses(path: Path) -> None:
    """Every YAML file under deploy/ parses, each document a map (multi-document files included)."""
    docs = load_docs(path)
    assert docs, f"{path} holds no document"
    assert all(isinstance(doc, dict) for doc in docs)


@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifests_are_kubernetes_objects(path: Path) -> None:
    """Each manifest document is a named Kubernetes object of a kind the deployment uses."""
    for doc in load_docs(path):
        assert doc["kind"] in K8S_KINDS, (path, doc["kind"])
        assert doc["apiVersion"]
        assert doc["metadata"]["name"]


# The oldest Kubernetes the manifests are for (native sidecars: restartPolicy on init containers) and a newer one
KUBERNETES_VERSIONS = ["1.29.0", "1.32.0"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("path", manifest_files(), ids=lambda p: p.name)
def test_manifests_validate_against_kubernetes_schemas(path: Path, version: str) -> None:
    """Every manifest document is valid against Kubernetes' OpenAPI schema, strictly (no unknown field)."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    for doc in load_docs(path):
        kubernetes_validate.validate(doc, version, strict=True)  # raises naming the field


def test_schema_validation_refuses_an_unknown_field() -> None:
    """The check above would catch a misspelt field (terminationGracePeriod for ...Seconds)."""
    kubernetes_validate = pytest.importorskip("kubernetes_validate")
    (deployment, _) = load_docs(DEPLOY / "streamalert-run.yaml")
    spec = deployment["spec"]["template"]["spec"]
    spec["terminationGracePeriod"] = spec.pop("terminationGracePeriodSeconds")
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, KUBERNETES_VERSIONS[0], strict=True)


def test_every_image_is_pinned() -> None:
    """Every image of the manifests and of compose names a version (no bare name, no :latest)."""
    images = [
        container["image"]
        for root in KUSTOMIZATIONS
        for _, spec in pod_specs(load_kustomization(root).resources)
        for container in containers(spec)
    ]
    (compose_file,) = load_docs(DEPLOY / "docker-compose.yml")
    images += [service["image"] for service in compose_file["services"].values()]
    for image in images:
        name, _, tag = image.rpartition(":")
        assert name, f"{image}: no tag"
        assert tag != "latest", image


def test_kustomizations_list_every_manifest() -> None:
    """No manifest under deploy/ is left out of both kustomizations."""
    listed = set()
    for root in KUSTOMIZATIONS:
        (spec,) = load_docs(root / "kustomization.yaml")
        listed |= {(root / name).resolve() for name in spec["resources"]}
    assert {p.resolve() for p in manifest_files()} == listed


def test_rules_generator_lists_exactly_the_rule_files() -> None:
    """kustomize cannot glob: the streamalert-rules generator must name every file of config/rules/, no more."""
    kust = load_kustomization(DEPLOY)
    listed = sorted(Path(name).name for name in kust.rules_files)
    present = sorted(p.name for p in RULES_DIR.iterdir() if p.suffix in {".yaml", ".yml"})
    assert listed == present, "update deploy/rules/kustomization.yaml: it must list every file of config/rules/"
    gen = kust.generated[("ConfigMap", "streamalert-rules")]
    assert all(path.parent == RULES_DIR and path.is_file() for path in gen.files.values())


@pytest.mark.parametrize("root", KUSTOMIZATIONS, ids=lambda p: p.name)
def test_every_referenced_object_is_defined(root: Path) -> None:
    """Every ConfigMap, Secret and PVC a pod mounts or reads env from is generated or listed in its kustomization,
    and every key it names exists."""
    kust = load_kustomization(root)
    pvcs = {doc["metadata"]["name"] for doc in kust.resources if doc["kind"] == "PersistentVolumeClaim"}
    specs = pod_specs(kust.resources)
    assert specs
    for workload, spec in specs:
        for vol in spec.get("volumes", []):
            if "configMap" in vol:
                assert ("ConfigMap", vol["configMap"]["name"]) in kust.generated, (workload, vol)
            elif "secret" in vol:
                assert ("Secret", vol["secret"]["secretName"]) in kust.generated, (workload, vol)
            elif "persistentVolumeClaim" in vol:
                assert vol["persistentVolumeClaim"]["claimName"] in pvcs, (workload, vol)
            else:
                assert "emptyDir" in vol, (workload, vol)
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        for container in containers(spec):
            for mount in container.get("volumeMounts", []):
                vol = volumes[mount["name"]]
                if "subPath" in mount:  # a single key: it must exist
                    assert mount["subPath"] in kust.generated[("ConfigMap", vol["configMap"]["name"])].files
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["key"] in kust.generated[("Secret", ref["name"])].files, (workload, item)


def test_generated_files_exist() -> None:
    """Every ConfigMap source file exists; Secret files are named in deploy/secrets/README.md (not committed)."""
    readme = (DEPLOY / "secrets" / "README.md").read_text(encoding="utf-8")
    for root in KUSTOMIZATIONS:
        for gen in load_kustomization(root).generated.values():
            for key, path in gen.files.items():
                if gen.kind == "ConfigMap":
                    assert path.is_file(), path
                else:
                    assert path.parent == DEPLOY / "secrets", key
                    assert f"`{path.name}`" in readme, key


def _kubectl() -> str:
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl (with its built-in kustomize) is not installed")
    return kubectl


def _build(tree: Path, folder: str, *extra: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [_kubectl(), "kustomize", *extra, str(tree / folder)], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture
def deploy_copy(tmp_path: Path) -> Path:
    """deploy/ and config/ copied side by side, with a value in every secret file the generators read."""
    shutil.copytree(DEPLOY, tmp_path / "deploy")
    shutil.copytree(DEPLOY.parent / "config", tmp_path / "config")
    for gen in load_kustomization(DEPLOY).generated.values():
        if gen.kind == "Secret":
            for path in gen.files.values():
                (tmp_path / "deploy" / "secrets" / path.name).write_text("test-value\n", encoding="utf-8")
    return tmp_path


@pytest.mark.parametrize("folder", ["deploy", "deploy/replay"])
def test_kubectl_kustomize_builds(deploy_copy: Path, folder: str) -> None:
    """`kubectl kustomize --load-restrictor LoadRestrictionsNone` builds each kustomization, every reference
    to a generated ConfigMap or Secret rewritten to its hashed name."""
    built = _build(deploy_copy, folder, "--load-restrictor", "LoadRestrictionsNone")
    assert built.returncode == 0, built.stderr
    docs = [doc for doc in yaml.safe_load_all(built.stdout) if doc]
    generated = {doc["metadata"]["name"] for doc in docs if doc["kind"] in {"ConfigMap", "Secret"}}
    rules = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"].startswith("streamalert-rules-")]
    assert len(rules) == 1
    assert sorted(rules[0]["data"]) == sorted(p.name for p in RULES_DIR.glob("*.yaml"))
    for _, spec in pod_specs(docs):
        for vol in spec.get("volumes", []):
            name = vol.get("configMap", {}).get("name") or vol.get("secret", {}).get("secretName")
            if name is not None:
                assert name in generated, name
        for container in containers(spec):
            for item in container.get("env", []):
                ref = item.get("valueFrom", {}).get("secretKeyRef")
                if ref is not None:
                    assert ref["name"] in generated, ref


def test_kubectl_kustomize_needs_the_secret_files(deploy_copy: Path) -> None:
    """Without the secret files the build fails, naming the file: nothing is deployed with an empty secret."""
    (deploy_copy / "deploy" / "secrets" / "vector-token").unlink()
    built = _build(deploy_copy, "deploy", "--load-restrictor", "LoadRestrictionsNone")
    assert built.returncode != 0
    assert "vector-token" in built.stderr
