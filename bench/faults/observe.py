"""Watching a `streamalert run` process from outside: the process itself (restarted after an exit nobody asked for),
its peak RSS, its event-loop lag gauge, the stall probe, and the transition log read as it grows."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import orjson
import redis

from bench.faults.harness import ROOT, poll


@dataclass
class Exit:
    code: int
    stderr_tail: str


class Service:
    """`python -m streamalert run --config F` from this checkout, stdout and stderr appended to files. `check()`
    (called by the Watcher) notices an exit nobody asked for, keeps it, and starts the process again, as a
    supervisor would, so the row still measures what a restart loses or counts twice."""

    def __init__(self, folder: Path, config: Path, port: int, env: dict[str, str] | None = None) -> None:
        self.folder, self.config, self.port = folder, config, port
        self.out, self.err = folder / "out.jsonl", folder / "err.log"
        self.env = env
        self.source = "kafka" if "  kafka:" in config.read_text() else "vector"
        self.proc: subprocess.Popen[bytes] | None = None
        self.exits: list[Exit] = []  # exits not asked for
        self.stop_codes: list[int] = []  # exit codes after SIGTERM
        self.peak_rss_kb = 0
        self.starts = 0
        self.stopping = False  # set by stop(): an exit from then on was asked for
        self._lock = threading.RLock()

    def start(self) -> None:
        with self._lock, self.out.open("ab") as stdout, self.err.open("ab") as stderr:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "streamalert", "run", "--config", str(self.config)],
                stdout=stdout,
                stderr=stderr,
                cwd=ROOT,
                env=self.env,
            )
            self.starts += 1

    def check(self) -> None:
        with self._lock:
            if self.proc is None or self.stopping:
                return
            self.sample_rss()
            code = self.proc.poll()
            if code is not None:
                tail = self.err.read_text(errors="replace")[-600:]
                self.exits.append(Exit(code, tail))
                self.start()

    def sample_rss(self) -> None:
        if self.proc is not None:
            self.peak_rss_kb = max(self.peak_rss_kb, status_kb(self.proc.pid, "VmHWM"))

    def kill9(self) -> None:
        """SIGKILL (asked for: not counted as an exit), wait for it, start again."""
        with self._lock:
            assert self.proc is not None
            self.sample_rss()
            self.proc.kill()
            self.proc.wait(timeout=30)
            self.start()

    def stop(self, timeout: float = 60) -> int:
        with self._lock:
            assert self.proc is not None
            self.sample_rss()
            self.stopping = True
            if self.proc.poll() is not None:
                self.exits.append(Exit(self.proc.returncode, self.err.read_text(errors="replace")[-600:]))
                return self.proc.returncode
            self.proc.send_signal(signal.SIGTERM)
            try:
                code = self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                code = self.proc.wait()
            self.stop_codes.append(code)
            return code

    def rss_kb(self) -> int:
        return status_kb(self.proc.pid, "VmRSS") if self.proc is not None else 0

    def get(self, path: str, timeout: float = 5) -> tuple[int, bytes]:
        """Status and body of a GET; (0, b"") while nothing listens or it does not answer in time."""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.port}{path}", timeout=timeout) as response:
                return int(response.status), bytes(response.read())
        except urllib.error.HTTPError as error:
            return int(error.code), bytes(error.read())
        except (urllib.error.URLError, OSError):
            return 0, b""

    def metric(self, name: str) -> float | None:
        """A sample's value from /metrics (the line starting with `name `), or None if absent."""
        status, body = self.get("/metrics")
        if status != 200:
            return None
        for line in body.decode().splitlines():
            if line.startswith(name + " "):
                return float(line.split()[-1])
        return None

    def wait_ready(self, within: float = 60) -> bool:
        return poll(lambda: self.get("/readyz")[0] == 200, within, 0.1)


def status_kb(pid: int, key: str) -> int:
    """A kB field of /proc/PID/status (VmHWM: peak resident set; VmRSS: now); 0 once the process is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (OSError, ValueError):
        return 0
    return 0


LAG_GAUGE = "streamalert_event_loop_lag_max_seconds"


class Watcher:
    """A thread that, every 0.25 s, lets the service restart after an unasked exit and samples its peak RSS,
    and every second reads the event-loop lag gauge (when the build has it)."""

    def __init__(self, service: Service) -> None:
        self.service = service
        self.lag_max: float | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Watcher:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)

    def _run(self) -> None:
        ticks = 0
        while not self._stop.wait(0.25):
            self.service.check()
            ticks += 1
            if ticks % 4 == 0:
                self.read_lag()

    def read_lag(self) -> None:
        value = self.service.metric(LAG_GAUGE)
        if value is not None:
            self.lag_max = max(self.lag_max or 0.0, value)


class Probe:
    """The stall probe (bench/faults/probe.py) as its own process, for the length of a `with`."""

    def __init__(self, port: int, folder: Path) -> None:
        self.port, self.out = port, folder / "probe.json"
        self.result: dict[str, float] = {}

    def __enter__(self) -> Probe:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "bench.faults.probe", str(self.port), str(self.out)], cwd=ROOT
        )
        return self

    def __exit__(self, *_: object) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=30)
        self.result = orjson.loads(self.out.read_bytes()) if self.out.exists() else {}

    @property
    def longest(self) -> float:
        return float(self.result.get("longest_s", 0.0))


class LogTail:
    """Reads the transition log (a Redis stream) as it grows, so the suite is not limited by its trimming
    (about the last 100,000 entries). A gap (entries trimmed before they were read) is reported, never hidden."""

    def __init__(self, url: str, namespace: str) -> None:
        self.url, self.key = url, f"streamalert:{{{namespace}}}:transitions"
        self.lines: list[bytes] = []
        self.gap = False
        self._last = "0-0"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> LogTail:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=30)
        self.read()  # what came after the last poll

    def _run(self) -> None:
        while not self._stop.wait(0.3):
            with contextlib.suppress(redis.RedisError):  # Redis paused or restarting: read it when it is back
                self.read()

    def read(self) -> None:
        client = redis.Redis.from_url(self.url, socket_timeout=5)
        try:
            while True:
                answer = cast(
                    list[tuple[bytes, list[tuple[bytes, dict[bytes, bytes]]]]],
                    client.xread({self.key: self._last}, count=10_000),
                )
                if not answer:
                    break
                entries = answer[0][1]
                self.lines.extend(fields[b"t"] for _, fields in entries)
                self._last = entries[-1][0].decode()
            if client.exists(self.key):
                # every entry ever added was read, or some were trimmed before this tail saw them
                added = int(cast(dict[str, int], client.xinfo_stream(self.key))["entries-added"])
                self.gap = added != len(self.lines)
        finally:
            client.close()


@contextlib.contextmanager
def running(service: Service) -> Iterator[Watcher]:
    """The service started, watched; stopped with SIGTERM at the end whatever happened."""
    service.start()
    try:
        with Watcher(service) as watcher:
            yield watcher
    finally:
        if service.proc is not None and service.proc.poll() is None:
            service.stop()
