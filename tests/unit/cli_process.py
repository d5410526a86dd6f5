"""Running the real `streamalert` console script as a process, as a user would, on this checkout's code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "rules"
INCIDENT = ROOT / "examples" / "incident.jsonl"


def console_script() -> list[str]:
    """The installed `streamalert` entry point next to this interpreter (`python -m streamalert` if absent)."""
    script = Path(sys.executable).parent / "streamalert"
    return [str(script)] if script.exists() else [sys.executable, "-m", "streamalert"]


def clean_env(**extra: str) -> dict[str, str]:
    """The environment of a fresh shell: none of the config's variables set; this checkout's code first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("STREAMALERT_", "SMTP_", "ALERT_EMAIL_"))}
    env["PYTHONPATH"] = str(ROOT)
    env.update(extra)
    return env


def streamalert(*args: str | Path, cwd: Path = ROOT, **env: str) -> subprocess.CompletedProcess[str]:
    """Run `streamalert ARGS...` to its end (bounded: a hang fails the test instead of the suite)."""
    return subprocess.run(
        [*console_script(), *map(str, args)],
        cwd=cwd,
        env=clean_env(**env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
