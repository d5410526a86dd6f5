"""A real Prometheus Alertmanager for tests, and the amtool next to it.

`alertmanager_server()` starts a private Alertmanager on a free loopback port (clustering off, storage in a
temporary directory, never the system service a Debian package may run on 9093) and yields its base URL once
`/-/ready` answers. Both programs come from Debian's prometheus-alertmanager package (scripts/ensure-packages):
Debian names the server `prometheus-alertmanager`, an upstream install `alertmanager`.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import tempfile
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from streamalert.testing import free_port

# The smallest valid config: every alert goes to a receiver that sends nothing.
NULL_CONFIG = """\
route:
  receiver: "null"
receivers:
  - name: "null"
"""

_INSTALL = "install Debian's prometheus-alertmanager package (scripts/ensure-packages)"


def alertmanager_binary() -> str:
    for name in ("alertmanager", "prometheus-alertmanager"):
        binary = shutil.which(name)
        if binary is not None:
            return binary
    raise RuntimeError(f"alertmanager not found: {_INSTALL}")


def amtool_binary() -> str:
    binary = shutil.which("amtool")
    if binary is None:
        raise RuntimeError(f"amtool not found: {_INSTALL}")
    return binary


def webhook_config(url: str, group_wait: str = "10ms", group_interval: str = "100ms") -> str:
    """Every alert, one group per alert, to a webhook at `url` with resolved notifications, flushed quickly."""
    return f"""\
route:
  receiver: hook
  group_by: ["..."]
  group_wait: {group_wait}
  group_interval: {group_interval}
  repeat_interval: 1h
receivers:
  - name: hook
    webhook_configs:
      - url: "{url}"
        send_resolved: true
"""


@contextlib.contextmanager
def alertmanager_server(config: str = NULL_CONFIG, ready_within_s: float = 15.0) -> Iterator[str]:
    """Start a private Alertmanager with this YAML config; yield its base URL (http://127.0.0.1:PORT)."""
    binary = alertmanager_binary()
    with tempfile.TemporaryDirectory() as tmp:
        config_file = Path(tmp) / "alertmanager.yml"
        config_file.write_text(config, encoding="utf-8")
        storage = Path(tmp) / "data"
        storage.mkdir()
        log = Path(tmp) / "alertmanager.log"
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        with log.open("wb") as log_out:
            proc = subprocess.Popen(
                [
                    binary,
                    f"--config.file={config_file}",
                    f"--storage.path={storage}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--cluster.listen-address=",  # empty: no clustering, no gossip port
                ],
                stdout=log_out,
                stderr=subprocess.STDOUT,
            )
        try:
            _wait_ready(proc, url, log, ready_within_s)
            yield url
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log: Path, within_s: float) -> None:
    # Poll /-/ready with a deadline; each attempt is bounded by its own timeout, so attempts are counted.
    interval_s = 0.02
    for _ in range(int(within_s / interval_s)):
        if proc.poll() is not None:
            raise RuntimeError(f"alertmanager exited at start ({proc.returncode}):\n{_tail(log)}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=0.5) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        threading.Event().wait(interval_s)  # between polls of a server coming up, never for our own state
    raise RuntimeError(f"alertmanager not ready within {within_s:g} s:\n{_tail(log)}")


def _tail(log: Path, lines: int = 20) -> str:
    try:
        return "\n".join(log.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"
