"""A webhook receiver that can fail on command (5xx, 429 with Retry-After, hang), in a thread, and the notifications
`streamalert replay --notify` decides for the same input: what the receiver must get, each exactly once."""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
from collections import Counter
from pathlib import Path

import orjson

from bench.faults.harness import ROOT
from streamalert.decode import format_ms

PAGE_RULES = """
rules:
  - name: fault_page
    match: {page: {exists: true}}
    window: 2s
    condition: count >= 1
    group_by: [page]
"""


def notify_config(url: str) -> str:
    """Every fault_page alert to the webhook, one group per page; short retry timers (compressed, see README)."""
    return f"""
route:
  receiver: blackhole
  group_by: [alertname]
  routes:
    - receiver: hook
      matchers: ['alertname="fault_page"']
      group_by: [alertname, page]
      group_wait: 0s
      group_interval: 1s
      repeat_interval: 1d
receivers:
  - name: blackhole
  - name: hook
    webhook_configs: [{{url: "{url}", timeout: 1s}}]
notify: {{max_attempts: 20, retry_initial: 100ms, retry_max: 30s, tick: 200ms}}
"""


class FaultyHook:
    """Answers 200, or the current fault: `mode` is "ok", "5xx" (503), "429" (Retry-After: 1) or "hang" (no answer
    until the fault ends). Records every delivery id answered 200."""

    def __init__(self) -> None:
        self.mode = "ok"
        self.accepted: list[str] = []
        self.attempts = 0
        self.release = threading.Event()
        hook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers["Content-Length"]))
                hook.attempts += 1
                mode = hook.mode
                if mode == "hang":
                    hook.release.wait(600)
                    return  # the client gave up long ago; nothing is answered
                if mode in ("5xx", "429"):
                    self.send_response(503 if mode == "5xx" else 429)
                    if mode == "429":
                        self.send_header("Retry-After", "1")
                    self.end_headers()
                    return
                hook.accepted.append(self.headers["X-Streamalert-Delivery"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def set(self, mode: str) -> None:
        self.mode = mode
        if mode != "hang":
            self.release.set()  # hung requests end (unanswered)
            self.release = threading.Event()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def expected_notifications(lines_file: Path, rules: Path, config: Path, until_ms: int) -> list[str]:
    """Delivery ids of the notifications `replay --notify --config` decides for the same lines."""
    command = [sys.executable, "-m", "streamalert", "replay", str(lines_file), "--rules", str(rules), "--notify"]
    done = subprocess.run(
        [*command, "--config", str(config), "--until", format_ms(until_ms), "--no-progress"],
        capture_output=True,
        check=True,
        cwd=ROOT,
    )
    return [str(orjson.loads(line)["id"]) for line in done.stdout.splitlines() if b'"hook"' in line]


def notification_tally(expected: list[str], accepted: list[str]) -> tuple[int, int]:
    """(lost, duplicated): expected ids never accepted, accepted ids beyond their first."""
    counts = Counter(accepted)
    return sum(1 for i in expected if i not in counts), sum(n - 1 for n in counts.values() if n > 1)
