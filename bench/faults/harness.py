"""The parts every fault row uses: the processes (redis-server, Tansu, `streamalert run`), the watcher that restarts
an exit nobody asked for and reads peak RSS, the stall probe, the transition-log tail and the tally against replay.

Every tracked input line carries a unique `fid`. Two rules (TRACK_RULES) make each one visible: `fault_seen`
(`count >= 1` per fid) fires once per fid applied, and `fault_twice` (`count >= 2` per fid) fires only for a fid
applied twice. So, against `streamalert replay` of the same lines: a fid whose `fault_seen` firing replay has and
the service's transition log lacks is lost, a fid with a `fault_twice` firing or two `fault_seen` firings at the
same instant is double counted. Both counts are exact, per line, not estimates.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import orjson
import redis

from streamalert.clock import Stopwatch, WallClock
from streamalert.decode import format_ms
from streamalert.testing import free_port, tansu_binary

ROOT = Path(__file__).resolve().parents[2]

TRACK_RULES = """
rules:
  - name: fault_seen
    match: {fid: {exists: true}}
    window: WINDOW
    condition: count >= 1
    group_by: [fid]
  - name: fault_twice
    match: {fid: {exists: true}}
    window: WINDOW
    condition: count >= 2
    group_by: [fid]
"""


def pause(seconds: float) -> None:
    """A wait between polls of another process's state (or the length of a fault): never a wait for our own."""
    threading.Event().wait(seconds)


def poll(predicate: object, within: float, interval: float = 0.05) -> bool:
    """Call `predicate` until it is true or `within` seconds have passed; whether it became true."""
    check = cast("type[bool]", predicate)
    watch = Stopwatch()
    while not check():
        if watch.elapsed() > within:
            return False
        pause(interval)
    return True


def noise(seq: int) -> bytes:
    """An untracked line: matches no rule (most of a real log stream), only moves the clock."""
    stamp = format_ms(WallClock().now_ms()).encode()
    return b'{"timestamp":"%s","level":"info","message":"GET /api/items 200","n":%d}' % (stamp, seq)


def tracked(prefix: str, seq: int, page: bool = False) -> bytes:
    """One tracked line: a unique fid, stamped now; with `page`, also a unique `page` (fault_page alerts)."""
    stamp = format_ms(WallClock().now_ms()).encode()
    extra = b',"page":"p-%d"' % seq if page else b""
    return b'{"timestamp":"%s","fid":"%s-%d"%s,"message":"fault probe"}' % (stamp, prefix.encode(), seq, extra)


class RedisServer:
    """A redis-server on a fixed port that a row can pause (SIGSTOP), resume and restart; AOF optional."""

    def __init__(self, directory: Path, appendonly: bool = False) -> None:
        self.port = free_port()
        self.directory = directory
        self.appendonly = appendonly
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_timeout=5)

    def start(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: run scripts/ensure-packages")
        aof = ["--appendonly", "yes", "--appendfsync", "everysec"] if self.appendonly else ["--appendonly", "no"]
        command = [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", *aof]
        self.proc = subprocess.Popen(
            [*command, "--dir", str(self.directory)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        client = self.client()
        try:
            if not poll(lambda: _pings(client), 15):
                raise RuntimeError("redis-server did not answer within 15 s")
        finally:
            client.close()

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a paused server cannot act on SIGTERM
            self.proc.terminate()
            self.proc.wait(timeout=30)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


class Broker:
    """A Tansu broker (memory storage) on a fixed port, restartable on that port. Its memory storage does not
    survive a restart: a restarted broker has no topic and no record."""

    def __init__(self) -> None:
        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        address = f"tcp://{self.bootstrap}"
        command = [tansu_binary(), "broker", "--listener-url", address, "--advertised-listener-url", address]
        self.proc = subprocess.Popen(
            [*command, "--storage-engine", "memory://tansu/"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        if not poll(self._listens, 15, 0.02):
            raise RuntimeError("tansu broker did not listen within 15 s")

    def _listens(self) -> bool:
        import socket  # noqa: PLC0415 (only here)

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                return True
        except OSError:
            return False

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


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


def replay(lines_file: Path, rules: Path, lateness: str, until_ms: int) -> list[bytes]:
    """`streamalert replay` of the same input: the transitions live mode must have written."""
    command = [sys.executable, "-m", "streamalert", "replay", str(lines_file), "--rules", str(rules)]
    done = subprocess.run(
        [*command, "--lateness", lateness, "--until", format_ms(until_ms), "--no-progress"],
        capture_output=True,
        check=True,
        cwd=ROOT,
    )
    return done.stdout.splitlines()


@dataclass
class Tally:
    """Tracked lines against replay: lost and double counted fids, and transitions that differ otherwise."""

    tracked: int
    applied: int
    lost: int
    double: int
    differ: int
    lost_examples: list[str] = field(default_factory=list)


def tally(live: Sequence[bytes], expected: Sequence[bytes]) -> Tally:
    def firings(lines: Sequence[bytes], rule: str) -> Counter[str]:
        found: Counter[str] = Counter()
        for line in lines:
            item = orjson.loads(line)
            if item["rule"] == rule and item["state"] == "firing":
                found[item["labels"]["fid"]] += 1
        return found

    want = firings(expected, "fault_seen")
    seen = firings(live, "fault_seen")
    twice = firings(live, "fault_twice")
    lost = [fid for fid in want if fid not in seen]
    double = {fid for fid, n in seen.items() if n > 1} | set(twice)
    extra = Counter(live) - Counter(expected)
    missing = Counter(expected) - Counter(live)
    return Tally(
        tracked=len(want),
        applied=len(set(seen) & set(want)),
        lost=len(lost),
        double=len(double),
        differ=sum(extra.values()) + sum(missing.values()),
        lost_examples=sorted(lost)[:3],
    )


def write_config(
    folder: Path,
    port: int,
    state: str,
    source: str,
    *,
    window: str = "2s",
    lateness: str = "2s",
    max_delay: str = "5s",
    lease_ttl: str = "10s",
    extra: str = "",
    rules_text: str = "",
) -> tuple[Path, Path]:
    """The rules folder (TRACK_RULES plus `rules_text`) and the service config; returns (config, rules)."""
    rules = folder / "rules"
    rules.mkdir(parents=True, exist_ok=True)
    (rules / "track.yaml").write_text(TRACK_RULES.replace("WINDOW", window))
    if rules_text:
        (rules / "more.yaml").write_text(rules_text)
    config = folder / "streamalert.yaml"
    config.write_text(
        f"""
rules: {rules}
state: "{state}"
lateness: {lateness}
max_delay: {max_delay}
lease_ttl: {lease_ttl}
shutdown_timeout: 20s
http: {{listen: "127.0.0.1:{port}"}}
{source}
{extra}"""
    )
    return config, rules


def kafka_source(bootstrap: str, topic: str, group: str) -> str:
    return f"""sources:
  kafka:
    brokers: ["{bootstrap}"]
    topics: [{topic}]
    group_id: {group}
    auto_offset_reset: earliest
    session_timeout_ms: 6000
    heartbeat_interval_ms: 1000
    tick_ms: 100
    idle_ms: 1000
"""


VECTOR_SOURCE = """sources:
  vector: {auth: none, tick_ms: 100}
"""


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
