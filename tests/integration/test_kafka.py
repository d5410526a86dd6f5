"""`streamalert run` on a Kafka consumer group against a real broker (Tansu), input produced by librdkafka.

Live mode must give what replay gives for the same logs, and a consumer killed with SIGKILL at any point must
neither lose nor double count a record: offsets are stored in Redis with the state they produced.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import cast

import orjson
import pytest
import redis

from streamalert.clock import Stopwatch
from streamalert.testing import LocalCluster, free_port
from tests.integration.kafka_support import (
    INCIDENT,
    RULES,
    Receiver,
    create_topic,
    incident_lines,
    logged_transitions,
    notify_config,
    produce,
    replay,
    replay_notifications,
    start_run,
    stored_offsets,
    unique,
    write_config,
)

pytestmark = pytest.mark.redis


@pytest.fixture
def plain(redis_url: str) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


# The Redis Cluster run of the kill -9 test takes a minute: `make test-slow` runs it (the store contract suite
# covers the cluster in `make test`; this test is CI's kill -9 under Kafka load, the fault suite's kill9 rows
# run by hand).
@pytest.fixture(params=["redis", pytest.param("cluster", marks=pytest.mark.slow)])
def state(request: pytest.FixtureRequest) -> Iterator[tuple[str, str, redis.Redis]]:
    """(state URL, namespace, a plain client on the node holding it): on a single Redis, and on a Redis Cluster
    with the namespace's slot on a master the URL does not name."""
    if request.param == "redis":
        url, namespace = request.getfixturevalue("redis_url"), unique("crash")
        client = redis.Redis.from_url(url)
    else:
        cluster: LocalCluster = request.getfixturevalue("cluster")
        url, namespace = cluster.url, cluster.namespace_on(1, "crash")
        client = redis.Redis(port=cluster.nodes[1].port)
    yield f"{url}?namespace={namespace}", namespace, client
    client.close()


def poll(predicate: Callable[[], bool], within: float, what: str, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Wait for a state with a deadline, never a fixed sleep; fail early when the process died."""
    stop = _Deadline(within)
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"streamalert run exited ({proc.returncode}) while waiting for {what}")
        if stop.passed():
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        stop.pause(0.02)


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self._watch, self._seconds = Stopwatch(), seconds

    def passed(self) -> bool:
        return self._watch.elapsed() > self._seconds

    def pause(self, seconds: float) -> None:
        threading.Event().wait(seconds)  # between polls of another process's state


def stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def test_run_on_kafka_emits_what_replay_emits(tmp_path: Path, kafka_bootstrap: str, redis_url: str) -> None:
    """The example incident, spread at random over 3 partitions, gives replay's transitions byte for byte,
    in the same order; absence rules fire on the wall clock once the consumer has caught up."""
    topic = create_topic(kafka_bootstrap, partitions=3)
    produce(kafka_bootstrap, topic, incident_lines())
    expected = replay([INCIDENT])
    assert any(b'"rule":"mailer_celery_beat_down"' in line for line in expected)  # an absence rule is in it
    port = free_port()
    config = write_config(tmp_path, kafka_bootstrap, topic, f"{redis_url}?namespace={unique('ns')}", port)
    out, err = tmp_path / "out.jsonl", tmp_path / "err.log"
    proc = start_run(config, out, err)
    try:
        poll(lambda: len(out.read_bytes().splitlines()) >= len(expected), 60, "the transitions", proc)
        caught_up = [f'streamalert_consumer_lag{{partition="{p}",topic="{topic}"}} 0.0' for p in range(3)]
        poll(lambda: all(line in _get(port, "/metrics") for line in caught_up), 10, "lag 0 on 3 partitions", proc)
        metrics = _get(port, "/metrics")
        ready = orjson.loads(_get(port, "/readyz"))
    finally:
        code = stop(proc)
    assert code == 0, err.read_text()
    assert out.read_bytes().splitlines() == expected
    assert ready["checks"]["sources"] == "3 partitions assigned"
    assert 'streamalert_events_in_total{source="kafka"} 5642.0' in metrics
    assert 'streamalert_events_malformed_total{source="kafka"} 3.0' in metrics
    assert 'streamalert_events_late_total{source="kafka"} 0.0' in metrics


def _object(line: bytes) -> dict[str, object]:
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _fetch(port: int, path: str) -> tuple[int, bytes]:
    """Status and body of a GET, whatever the status; (0, b"") while the process is not listening yet."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read())
    except urllib.error.URLError:
        return 0, b""


def _get(port: int, path: str) -> str:
    status, body = _fetch(port, path)
    assert status == 200, (path, status, body)
    return body.decode()


EXACT_RULES = """
rules:
  # Fires once, when the last timed record of the incident is counted: a double count fires it earlier (with
  # another `at`), a lost record never. The window reaches back far enough to hold the whole incident.
  - name: every_record_counted
    match: {timestamp: {exists: true}}
    window: 1000d
    condition: count >= TOTAL
  - name: a_record_counted_twice
    match: {timestamp: {exists: true}}
    window: 1000d
    condition: count > TOTAL
"""


def test_kill_9_mid_stream_loses_and_doubles_nothing(
    tmp_path: Path, kafka_bootstrap: str, state: tuple[str, str, redis.Redis]
) -> None:
    """SIGKILL the consumer three times mid-stream and restart it: the transition log in Redis (or a Redis
    Cluster) equals an uninterrupted replay's transitions, including a rule that fires only when every record
    was counted once."""
    state_url, namespace, plain = state
    lines = incident_lines()
    timed = sum(1 for line in lines if "timestamp" in _object(line))
    rules = tmp_path / "rules"
    rules.mkdir()
    for file in RULES.glob("*.yaml"):
        (rules / file.name).write_text(file.read_text())
    (rules / "zz_exact.yaml").write_text(EXACT_RULES.replace("TOTAL", str(timed)))
    expected = replay([INCIDENT], rules)
    assert any(b'"rule":"every_record_counted"' in line for line in expected)
    assert not any(b'"rule":"a_record_counted_twice"' in line for line in expected)

    topic = create_topic(kafka_bootstrap, partitions=3)
    produce(kafka_bootstrap, topic, lines)
    port = free_port()

    def config() -> Path:
        # A new consumer group each start: positions live in the state store, not in the group, and a group
        # whose member was SIGKILLed assigns nothing until the broker expires that member (11 s a restart
        # here); restarts into the same group are test_a_standby_takes_over_a_killed_writer's case.
        return write_config(
            tmp_path,
            kafka_bootstrap,
            topic,
            state_url,
            port,
            rules=rules,
            group=unique("group"),
            max_batch_lines=25,  # many small checkpoints, so the kills land between and inside them
        )

    out, err = tmp_path / "out.jsonl", tmp_path / "err.log"
    kills = []
    for fraction in (0.2, 0.45, 0.7):
        proc = start_run(config(), out, err)
        mark = int(len(lines) * fraction)
        poll(lambda: stored_offsets(plain, namespace) >= mark, 60, f"offsets past {mark}", proc)  # noqa: B023
        proc.kill()  # SIGKILL: no shutdown code runs
        proc.wait(timeout=10)
        kills.append(stored_offsets(plain, namespace))
    assert kills[-1] < len(lines), "the stream ended before the last kill: the test proves nothing"
    proc = start_run(config(), out, err)
    try:
        poll(lambda: stored_offsets(plain, namespace) == len(lines), 60, "every offset stored", proc)
        poll(lambda: len(logged_transitions(plain, namespace)) >= len(expected), 30, "the transitions", proc)
    finally:
        assert stop(proc) == 0, err.read_text()
    assert logged_transitions(plain, namespace) == expected
    printed = out.read_bytes().splitlines()
    assert len(printed) == len(set(printed)), "a transition was printed twice"
    assert set(printed) <= set(expected)


def start_two(
    tmp_path: Path,
    bootstrap: str,
    topic: str,
    state: str,
    replicas: bool,
    max_batch_lines: int = 10_000,
    extra: str = "",
) -> tuple[list[subprocess.Popen[bytes]], list[int]]:
    """Two `streamalert run` processes, folders a/ and b/, one state namespace, one consumer group."""
    group = unique("group")
    ports = [free_port(), free_port()]
    procs = []
    for name, port in zip("ab", ports, strict=True):
        folder = tmp_path / name
        folder.mkdir()
        config = write_config(
            folder,
            bootstrap,
            topic,
            state,
            port,
            group=group,
            replicas=replicas,
            max_batch_lines=max_batch_lines,
            extra=extra,
        )
        procs.append(start_run(config, folder / "out.jsonl", folder / "err.log"))
    return procs, ports


def printed_by_both(tmp_path: Path) -> list[bytes]:
    return [line for name in "ab" for line in (tmp_path / name / "out.jsonl").read_bytes().splitlines()]


def test_a_standby_takes_over_a_killed_writer(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, plain: redis.Redis
) -> None:
    """Two `streamalert run` on one namespace and group: one writes, the other waits (not ready, not in the
    group). SIGKILL the writer mid-stream: the standby takes the lease when it expires, continues from the
    stored offsets, and the transition log equals replay's, each transition once."""
    topic = create_topic(kafka_bootstrap, partitions=3)
    produce(kafka_bootstrap, topic, incident_lines())
    expected = replay([INCIDENT])
    namespace = unique("ha")
    procs, ports = start_two(tmp_path, kafka_bootstrap, topic, f"{redis_url}?namespace={namespace}", False, 25)
    try:
        poll(lambda: 200 in [_status(port, "/readyz") for port in ports], 60, "a writer with partitions")
        readiness = [_status(port, "/readyz") for port in ports]
        assert sorted(readiness) == [200, 503], readiness
        writer = readiness.index(200)
        standby = 1 - writer
        poll(lambda: stored_offsets(plain, namespace) > 0, 30, "the writer's progress", procs[writer])
        procs[writer].kill()
        mark = stored_offsets(plain, namespace)
        procs[writer].wait(timeout=10)
        assert stored_offsets(plain, namespace) < 5642, "the stream ended before the kill: the test proves nothing"
        poll(lambda: stored_offsets(plain, namespace) == 5642, 60, "the standby to finish", procs[standby])
        poll(lambda: len(logged_transitions(plain, namespace)) >= len(expected), 30, "the transitions", procs[standby])
        assert _status(ports[standby], "/readyz") == 200
    finally:
        codes = [stop(proc) for proc in procs if proc.poll() is None]
    assert codes == [0]
    assert mark > 0
    assert logged_transitions(plain, namespace) == expected
    printed = printed_by_both(tmp_path)
    assert len(printed) == len(set(printed)), "a transition was printed twice"
    assert set(printed) <= set(expected)
    assert b'"event": "standby"' in (tmp_path / "ab"[standby] / "err.log").read_bytes()


def _status(port: int, path: str) -> int:
    return _fetch(port, path)[0]


def test_two_replicas_split_partitions_and_emit_each_transition_once(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, plain: redis.Redis
) -> None:
    """Two replicas in one group split the 3 partitions (both run intake), one evaluates; the transition log
    equals replay's, the two processes together print each transition exactly once, and the webhook gets
    each of the notifications `replay --notify` decides exactly once."""
    topic = create_topic(kafka_bootstrap, partitions=3)
    expected = replay([INCIDENT])
    namespace = unique("replicas")
    receiver = Receiver()
    extra = notify_config(receiver.url)
    state = f"{redis_url}?namespace={namespace}"
    procs, ports = start_two(tmp_path, kafka_bootstrap, topic, state, True, extra=extra)
    notes = replay_notifications(tmp_path / "a" / "streamalert.yaml")
    try:
        # both in the group, partitions split, before any record exists: each reads only its own
        poll(lambda: all(_partitions(port) >= 1 for port in ports), 60, "both replicas assigned partitions")
        assert sum(_partitions(port) for port in ports) == 3
        produce(kafka_bootstrap, topic, incident_lines())
        try:
            poll(lambda: len(logged_transitions(plain, namespace)) >= len(expected), 60, "the transitions")
        except AssertionError as error:
            raise AssertionError(f"{error}; {_replica_state(plain, namespace)}") from None
        poll(lambda: len(receiver.received) >= len(notes), 30, "the notifications")
        intake = [_metric(port, 'streamalert_events_in_total{source="kafka"}') for port in ports]
    finally:
        codes = [stop(proc) for proc in procs if proc.poll() is None]
        receiver.close()
    assert codes == [0, 0]
    # Both held partitions when the records were produced (asserted above); under a loaded CI machine a
    # rebalance has once moved them all to one replica before it read any (1 of 3 fresh-clone runs,
    # 2026-12-03: [0, 5642]), which changes nothing above. What must hold: every record was taken once.
    assert sum(count or 0 for count in intake) >= len(incident_lines()), intake
    assert sum(intake) == 5642
    assert logged_transitions(plain, namespace) == expected
    printed = printed_by_both(tmp_path)
    assert sorted(printed) == sorted(expected)
    assert_notified_once(receiver, notes)


def assert_notified_once(receiver: Receiver, notes: list[dict[str, object]]) -> None:
    """Each notification replay decided was received once, with replay's payload."""
    assert len(notes) > 20  # the incident fires and resolves many alerts
    received = {delivery: body for delivery, body in receiver.received}
    assert len(received) == len(receiver.received)  # no delivery id twice
    assert received == {n["id"]: {k: v for k, v in n.items() if k not in ("id", "sink", "at")} for n in notes}


def _checks(port: int) -> dict[str, str]:
    """/readyz's checks, whether it answers 200 or 503 ({} while the process is not listening yet)."""
    status, body = _fetch(port, "/readyz")
    return dict(orjson.loads(body)["checks"]) if status else {}


def _partitions(port: int) -> int:
    return int(_checks(port).get("sources", "0").split()[0])


def _metric(port: int, name: str) -> float:
    for line in _get(port, "/metrics").splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize("victim", ["evaluating", pytest.param("intake only", marks=pytest.mark.slow)])
def test_a_replica_killed_mid_stream_loses_and_doubles_nothing(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str, plain: redis.Redis, victim: str
) -> None:
    """Two replicas; SIGKILL one mid-stream (the one evaluating, or the other): the survivor takes its
    partitions over (and the lease), and the transition log still equals replay's, each transition once;
    the webhook gets every notification replay decides (a kill between a send and its removal from the
    outbox could repeat one, with the same delivery id and payload)."""
    topic = create_topic(kafka_bootstrap, partitions=3)
    expected = replay([INCIDENT])
    namespace = unique("replicas")
    receiver = Receiver()
    state = f"{redis_url}?namespace={namespace}"
    procs, ports = start_two(tmp_path, kafka_bootstrap, topic, state, True, 25, notify_config(receiver.url))
    notes = replay_notifications(tmp_path / "a" / "streamalert.yaml")
    try:
        poll(lambda: all(_partitions(port) >= 1 for port in ports), 60, "both replicas assigned partitions")
        evaluating = [_evaluating(port) for port in ports]
        assert sorted(evaluating) == [False, True]
        doomed = evaluating.index(victim == "evaluating")
        survivor = 1 - doomed
        produce(kafka_bootstrap, topic, incident_lines(), spread=3)
        forwarded = f"streamalert:{{{namespace}}}:intake-offsets"
        poll(lambda: _sum(plain, forwarded) >= 1500, 60, "progress")
        procs[doomed].kill()  # the records are spread evenly, so both replicas are mid-stream here
        procs[doomed].wait(timeout=10)
        assert _sum(plain, forwarded) < 5642, "the stream ended before the kill: the test proves nothing"
        poll(lambda: _sum(plain, forwarded) == 5642, 60, "the survivor to forward everything", procs[survivor])
        try:
            poll(lambda: len(logged_transitions(plain, namespace)) >= len(expected), 60, "the transitions")
        except AssertionError as error:
            survivor_metrics = [
                line for line in _get(ports[survivor], "/metrics").splitlines() if "_total{source=" in line
            ]
            raise AssertionError(f"{error}; {_replica_state(plain, namespace)}; {survivor_metrics}") from None
        assert _evaluating(ports[survivor])
        poll(lambda: {d for d, _ in receiver.received} >= {n["id"] for n in notes}, 30, "the notifications")
    finally:
        codes = [stop(proc) for proc in procs if proc.poll() is None]
        receiver.close()
    assert codes == [0]
    assert logged_transitions(plain, namespace) == expected
    printed = printed_by_both(tmp_path)
    assert len(printed) == len(set(printed)), "a transition was printed twice"
    assert set(printed) <= set(expected)
    received = {delivery: body for delivery, body in receiver.received}
    assert len({(d, orjson.dumps(b)) for d, b in receiver.received}) == len(received)  # repeats are identical
    assert received == {n["id"]: {k: v for k, v in n.items() if k not in ("id", "sink", "at")} for n in notes}


def _evaluating(port: int) -> bool:
    return _checks(port).get("evaluation") == "running here"


def _sum(client: redis.Redis, key: str) -> int:
    return sum(int(value) for value in cast(dict[bytes, bytes], client.hgetall(key)).values())


def _replica_state(client: redis.Redis, namespace: str) -> str:
    """What the evaluation knows, for a failure message."""
    tag = f"streamalert:{{{namespace}}}"
    parts = [f"{name}={client.hgetall(f'{tag}:{name}')!r}" for name in ("lane-status", "intake-offsets", "meta")]
    return ", ".join(parts)
