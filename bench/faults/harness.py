"""The parts every fault row uses: redis-server and Tansu processes a row can pause and restart, the tracked and
noise lines, the service config, and the tally of the service's transitions against `streamalert replay`
(observe.py watches the service itself).

Every tracked input line carries a unique `fid`. Two rules (TRACK_RULES) make each one visible: `fault_seen`
(`count >= 1` per fid) fires once per fid applied, and `fault_twice` (`count >= 2` per fid) fires only for a fid
applied twice. So, against `streamalert replay` of the same lines: a fid whose `fault_seen` firing replay has and
the service's transition log lacks is lost, a fid with a `fault_twice` firing or two `fault_seen` firings at the
same instant is double counted. Both counts are exact, per line, not estimates.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


def poll(predicate: Callable[[], bool], within: float, interval: float = 0.05) -> bool:
    """Call `predicate` until it is true or `within` seconds have passed; whether it became true."""
    watch = Stopwatch()
    while not predicate():
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
