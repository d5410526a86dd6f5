"""Installing and starting: `--version`, packaging metadata without stale entries, `make demo` without the dev
extras, and a command line that starts without loading the live-mode stack."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from tests.unit.cli_process import ROOT, clean_env, streamalert

PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
HEAVY = ("aiohttp", "aiokafka", "redis", "prometheus_client", "streamalert.engine")
# Imported on use only (bench/startup_bench.py): jinja2 when a config has templates, asyncio when something
# runs, LogQL when a rule file uses `expr:` or `groups:`, a sink kind's module when a receiver configures it
# (the example configs use email, pagerduty and slack)
LAZY = (
    "jinja2",
    "asyncio",
    "streamalert.rules.logql",
    "streamalert.notify.sinks.apprise_sink",
    "streamalert.notify.sinks.opsgenie",
    "streamalert.notify.sinks.webhook",
)


def test_version_is_the_package_version() -> None:
    """`streamalert --version` prints the version pyproject.toml declares, exit 0."""
    done = streamalert("--version")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"streamalert {PYPROJECT['project']['version']}"


def test_packaging_metadata_has_no_deprecated_or_stale_entries() -> None:
    """license is an SPDX string (a table is deprecated by setuptools >= 77, which the build requires), and
    every package-data pattern matches a file."""
    assert isinstance(PYPROJECT["project"]["license"], str)
    assert any(req.replace(" ", "").startswith("setuptools>=7") for req in PYPROJECT["build-system"]["requires"])
    for package, patterns in PYPROJECT["tool"]["setuptools"]["package-data"].items():
        for pattern in patterns:
            assert list((ROOT / package).glob(pattern)), f"package-data {package}: {pattern} matches nothing"


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_demo_installs_without_dev_extras_and_make_test_with(tmp_path: Path) -> None:
    """On a fresh venv, `make demo` installs the package alone (`-e .`), `make test` the dev extras."""
    venv = f"{tmp_path}/venv"

    def plan(target: str) -> str:
        return subprocess.run(
            ["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True, check=True, timeout=60
        ).stdout

    demo = plan("demo")
    assert "pip install --quiet -e .\n" in demo
    assert "[dev]" not in demo
    assert "-e '.[dev]'" in plan("test")
    assert "config/demo-live.yaml" in plan("demo-live")


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["replay", "--help"],
        ["check", str(ROOT / "config" / "rules")],
        ["check", "--config", str(ROOT / "config" / "streamalert.yaml")],
        ["check", "--config", str(ROOT / "config" / "streamalert-kafka.yaml")],
        ["routes", "test", "--config", str(ROOT / "config" / "streamalert.yaml"), "severity=critical"],
        ["routes", "test", "--config", str(ROOT / "config" / "streamalert-kafka.yaml"), "severity=critical"],
    ],
    ids=["help", "replay-help", "check-rules", "check-config", "check-kafka-config", "routes-test", "routes-kafka"],
)
def test_quick_commands_do_not_load_the_live_stack(argv: list[str]) -> None:
    """--help, `check RULES`, `check --config` and `routes test` (Vector and Kafka configs) never import aiohttp,
    aiokafka, redis, prometheus_client or the engine, nor what they do not use (LAZY)."""
    script = (
        "import sys\n"
        "from streamalert.cli import main\n"
        "try:\n"
        f"    main({argv!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        f"print(sorted(m for m in {(*HEAVY, *LAZY)!r} if m in sys.modules))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "[]"
