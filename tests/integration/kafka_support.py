"""Kafka test helpers: topics and input made with confluent-kafka (librdkafka), a client independent of ours."""

from __future__ import annotations

import http.server
import itertools
import os
import subprocess
import sys
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import cast

import orjson
import redis
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

ROOT = Path(__file__).resolve().parents[2]
INCIDENT = ROOT / "examples" / "incident.jsonl"
RULES = ROOT / "config" / "rules"
_names = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def create_topic(bootstrap: str, partitions: int = 3) -> str:
    topic = unique("logs")
    admin = AdminClient({"bootstrap.servers": bootstrap})
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
        future.result(timeout=15)
    return topic


def produce(
    bootstrap: str, topic: str, values: Iterable[bytes | None], partition: int | None = None, spread: int = 0
) -> int:
    """Produce values (None: a tombstone) to `partition`, or round-robin over `spread` partitions, or else
    where librdkafka's partitioner puts unkeyed records (sticky batches: uneven)."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": False})
    count = 0
    for value in values:
        if spread:
            producer.produce(topic, value, partition=count % spread)
        elif partition is None:
            producer.produce(topic, value)
        else:
            producer.produce(topic, value, partition=partition)
        count += 1
        if count % 1000 == 0:
            producer.poll(0)
    left = producer.flush(15)
    assert left == 0, f"{left} records not delivered"
    return count


def incident_lines() -> list[bytes]:
    return [line.rstrip(b"\n") for line in INCIDENT.read_bytes().splitlines()]


def write_config(
    tmp: Path,
    bootstrap: str,
    topic: str,
    state: str,
    port: int,
    rules: Path = RULES,
    group: str | None = None,
    max_batch_lines: int = 10_000,
    replicas: bool = False,
    extra: str = "",
) -> Path:
    config = tmp / "streamalert.yaml"
    config.write_text(
        f"""
rules: {rules}
state: "{state}"
lease_ttl: 2s
http: {{listen: "127.0.0.1:{port}"}}
sources:
  kafka:
    brokers: ["{bootstrap}"]
    topics: [{topic}]
    group_id: {group or unique("group")}
    auto_offset_reset: earliest
    session_timeout_ms: 6000
    heartbeat_interval_ms: 1000
    max_batch_lines: {max_batch_lines}
    tick_ms: 100
    idle_ms: 5000
    replicas: {"true" if replicas else "false"}
{extra}"""
    )
    return config


def start_run(config: Path, out: Path, err: Path) -> subprocess.Popen[bytes]:
    with out.open("ab") as stdout, err.open("ab") as stderr:
        return subprocess.Popen(
            [sys.executable, "-m", "streamalert", "run", "--config", str(config)], stdout=stdout, stderr=stderr
        )


def notify_config(url: str) -> str:
    """Routes for the notification tests: every alert to a webhook, one group per rule and labels, no repeats
    (live mode's clock is months after the incident: repeats would differ from replay's). `external_url` is
    set, as replicas behind one service set it: the default names each process's own listen port."""
    return f"""
route:
  receiver: hook
  group_by: ['...']
  group_wait: 30s
  group_interval: 5m
  repeat_interval: 365d
receivers:
  - name: hook
    webhook_configs: [{{url: "{url}", timeout: 5s}}]
notify: {{retry_initial: 50ms, retry_max: 1s, tick: 200ms, external_url: "http://streamalert.example:8080"}}
"""


class Receiver:
    """A webhook receiver in a thread (the Kafka tests are synchronous): records delivery id and body."""

    def __init__(self) -> None:
        received = self.received = []  # type: list[tuple[str, dict[str, object]]]

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                received.append((self.headers["X-Streamalert-Delivery"], orjson.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                return None

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def replay_notifications(config: Path, until: str = "2026-06-01T00:00:00Z") -> list[dict[str, object]]:
    """`streamalert replay --notify --config` of the incident: the notifications live mode must send."""
    command = [sys.executable, "-m", "streamalert", "replay", str(INCIDENT), "--rules", str(RULES), "--notify"]
    done = subprocess.run(
        [*command, "--config", str(config), "--until", until, "--no-progress"], capture_output=True, check=True
    )
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def replay(files: Sequence[Path], rules: Path = RULES, until: str = "2026-06-01T00:00:00Z") -> list[bytes]:
    """`streamalert replay` of the files, its clock run on until long after their end (2026-01-26), as live
    mode's wall clock is, and before today, which live mode's clock has not reached."""
    command = [sys.executable, "-m", "streamalert", "replay", *map(str, files), "--rules", str(rules)]
    done = subprocess.run(
        [*command, "--until", until, "--no-progress"],
        capture_output=True,
        check=True,
    )
    return done.stdout.splitlines()


def stored_offsets(client: redis.Redis, namespace: str) -> int:
    """The sum of the next offsets stored with the state, over every partition."""
    meta = cast(dict[bytes, bytes], client.hgetall(f"streamalert:{{{namespace}}}:meta"))
    return sum(int(value) for key, value in meta.items() if key.startswith(b"offset:"))


def logged_transitions(client: redis.Redis, namespace: str) -> list[bytes]:
    entries = cast(list[tuple[bytes, dict[bytes, bytes]]], client.xrange(f"streamalert:{{{namespace}}}:transitions"))
    return [fields[b"t"] for _, fields in entries]
