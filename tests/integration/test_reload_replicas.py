"""Hot reload in replicas mode: two `streamalert run` replicas on a real Tansu broker and redis-server. A
reload accepted by one is published through Redis; the other follows only when its own files give the same
configuration, and reports the disagreement (and refuses a file it cannot validate) meanwhile."""

from __future__ import annotations

import asyncio
import functools
import signal
import subprocess
from pathlib import Path
from typing import Any, cast

import orjson
import pytest
import redis
import redis.asyncio as aioredis

from streamalert.clock import ManualClock, WallClock
from streamalert.decode import format_ms
from streamalert.engine import Engine
from streamalert.replicas import Forwarder, IntakeSource
from streamalert.sources.kafka import KafkaConfig, KafkaSource
from streamalert.state import keys
from streamalert.telemetry.metrics import Metrics
from streamalert.testing import free_port, rules_from_yaml
from tests.integration.kafka_support import create_topic, logged_transitions, produce, start_run, unique, write_config
from tests.integration.test_kafka import _fetch, poll

pytestmark = pytest.mark.redis

# The new rule fires once the evaluation's horizon passes its records: lateness + max_delay after they are
# produced. Short keeps the test quick; long enough that a loaded machine delivers them before they are late.
# max_delay is not 0: a fresh evaluation engine (the namespace never saw an event) starts its clock at
# wall - max_delay, and the records' stamp may be a few ms older than the evaluator's new term.
LATENESS = "lateness: 8s\nmax_delay: 2s"
V1 = "rules:\n  - {name: errors, match: {level: error}, window: 1m, condition: count >= 1}\n"
# `fatal` needs three records: one per partition, so both replicas' intake must match with the new rules
V2 = V1 + "  - {name: fatal, match: {level: fatal}, window: 1m, condition: count >= 3}\n"
BROKEN = V2.replace("window: 1m, condition: count >= 3", "window: often, condition: count >= 3")


def _checks(port: int) -> dict[str, str]:
    status, body = _fetch(port, "/readyz")
    return dict(orjson.loads(body)["checks"]) if status else {}


def _metric(port: int, name: str) -> float | None:
    status, body = _fetch(port, "/metrics")
    for line in body.decode().splitlines() if status == 200 else []:
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return None


def _late(port: int) -> list[str]:
    body = _fetch(port, "/metrics")[1]
    return [line for line in body.decode().splitlines() if line.startswith("streamalert_events_late_total")]


def _agreed(port: int) -> str | None:
    """The replica's config digest when it runs the namespace's published configuration."""
    check = _checks(port).get("config", "")
    return check.split()[0] if check.endswith("(the namespace's)") else None


def _fired(client: redis.Redis, namespace: str) -> list[dict[str, Any]]:
    """The logged transitions of the rule only the new file has."""
    logged = [cast(dict[str, Any], orjson.loads(t)) for t in logged_transitions(client, namespace)]
    return [t for t in logged if t["rule"] == "fatal"]


def _stop(proc: subprocess.Popen[bytes]) -> int:
    proc.send_signal(signal.SIGTERM)
    return proc.wait(timeout=30)


def test_replicas_agree_on_a_reload_and_refuse_what_they_cannot_validate(
    tmp_path: Path, kafka_bootstrap: str, redis_url: str
) -> None:
    """SIGHUP to replica a with new rules: a publishes them; b, whose file is broken, refuses (reload metric
    0, /readyz and the mismatch metric say so) and keeps running; once b's file matches it follows by
    itself. Then a rule only the new file has fires from records split over both replicas' partitions."""
    topic = create_topic(kafka_bootstrap, partitions=3)
    namespace = unique("reload")
    group = unique("group")
    ports, procs, folders = [free_port(), free_port()], [], []
    for name, port in zip("ab", ports, strict=True):
        folder = tmp_path / name
        folder.mkdir()
        (folder / "rules.yaml").write_text(V1)
        state = f"{redis_url}?namespace={namespace}"
        config = write_config(
            folder,
            kafka_bootstrap,
            topic,
            state,
            port,
            rules=folder / "rules.yaml",
            group=group,
            replicas=True,
            extra=LATENESS,
        )
        procs.append(start_run(config, folder / "out.jsonl", folder / "err.log"))
        folders.append(folder)
    client = redis.Redis.from_url(redis_url)
    try:
        poll(lambda: all(_agreed(port) for port in ports), 60, "both replicas on the published config")
        poll(lambda: all(_checks(port).get("sources", "0")[0] != "0" for port in ports), 60, "partitions split")
        first = _agreed(ports[0])
        assert _agreed(ports[1]) == first
        (folders[0] / "rules.yaml").write_text(V2)
        (folders[1] / "rules.yaml").write_text(BROKEN)
        procs[0].send_signal(signal.SIGHUP)
        poll(lambda: _agreed(ports[0]) not in (None, first), 30, "a runs and published the new config", procs[0])
        poll(lambda: _metric(ports[1], "streamalert_config_digest_mismatch") == 1, 30, "b reports it", procs[1])
        poll(lambda: "window" in _checks(ports[1]).get("config", ""), 30, "b names the refused field", procs[1])
        assert _metric(ports[1], "streamalert_config_last_reload_successful") == 0
        assert _checks(ports[1])["config"].startswith(f"{first}, the namespace runs {_agreed(ports[0])}")
        (folders[1] / "rules.yaml").write_text(V2)
        poll(lambda: _agreed(ports[1]) == _agreed(ports[0]), 30, "b follows once its file matches", procs[1])
        assert _metric(ports[1], "streamalert_config_digest_mismatch") == 0
        fired = functools.partial(_fired, client, namespace)
        # Both replicas' intakes forward what the evaluated rules match while the evaluation switches (see
        # test_an_intake_that_switched_forwards_what_the_still_evaluated_rules_match): three lines, once.
        now = format_ms(WallClock().now_ms())
        produce(kafka_bootstrap, topic, [orjson.dumps({"timestamp": now, "level": "fatal"})] * 3, spread=3)
        try:
            poll(lambda: bool(fired()), 60, "the new rule to fire from both replicas' records")
        except AssertionError as error:
            late = [_late(port) for port in ports]
            status = client.hgetall(keys.lane_status(namespace))
            raise AssertionError(f"{error}; late: {late}; lanes: {status} at {WallClock().now_ms()}") from None
        assert fired()[0]["state"] == "firing"
        assert fired()[0]["value"] == 3
    finally:
        codes = [_stop(proc) for proc in procs if proc.poll() is None]
        client.close()
    assert codes == [0, 0]
    logs = [(folder / "err.log").read_text() for folder in folders]
    assert "config_published" in logs[0]
    assert "config_reload_failed" in logs[1]
    assert "config_followed" in logs[1]


async def test_an_intake_that_switched_forwards_what_the_still_evaluated_rules_match(
    kafka_bootstrap: str, redis_url: str
) -> None:
    """The intake switches rules at its next batch, the evaluation only at the end of its term: until the
    evaluation is known to run the new configuration, entries hold what either set matches (the evaluating
    process matches each record again), so neither set loses a record to the switch. Once the evaluation
    publishes the new digest, only the new set's records are forwarded."""
    topic = create_topic(kafka_bootstrap, partitions=1)
    namespace, lane = unique("ns"), f"{topic}/0"
    client = aioredis.Redis.from_url(redis_url)
    old = "rules:\n  - {name: errors, match: {level: error}, window: 1m, condition: count >= 1}\n"
    new = "rules:\n  - {name: fatal, match: {level: fatal}, window: 1m, condition: count >= 1}\n"
    clock = ManualClock(1_769_418_000_000)
    stamp = format_ms(clock.now_ms())
    lines = [orjson.dumps({"timestamp": stamp, "level": level, "n": n}) for n, level in enumerate(["error", "fatal"])]
    metrics = Metrics()
    forwarder = Forwarder(Engine(rules_from_yaml(old)), client, namespace, clock, metrics, digest="old")
    await IntakeSource(client, namespace, clock, tick_ms=50, stale_ms=5_000, digest="old")._refresh()
    forwarder.switch(Engine(rules_from_yaml(new)), "new")  # a reload accepted before the first batch
    config = KafkaConfig(
        brokers=[kafka_bootstrap], topics=[topic], group_id=unique("group"), session_timeout_ms=6000, tick_ms=50
    )
    source = KafkaSource(config, metrics, positions=forwarder.positions)
    task = asyncio.create_task(forwarder.run(source))

    async def forwarded(offset: int) -> list[dict[str, Any]]:
        for _ in range(1000):  # poll with a deadline (20 s)
            if await client.hget(keys.intake_offsets(namespace), lane) == str(offset).encode():
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError(f"offset {offset} not forwarded")
        stream = cast(list[tuple[bytes, dict[bytes, bytes]]], await client.xrange(keys.intake(namespace)))
        return [orjson.loads(fields[b"e"]) for _, fields in stream]

    try:
        await forwarded(0)  # the partition started (at its end: records produced from here on are read)
        produce(kafka_bootstrap, topic, lines, partition=0)
        during = [e for e in await forwarded(2) if e["records"]]
        await IntakeSource(client, namespace, clock, tick_ms=50, stale_ms=5_000, digest="new")._refresh()
        for _ in range(1000):  # the intake reads the evaluated digest with every status report (each tick)
            if forwarder.evaluating == "new":
                break
            await asyncio.sleep(0.02)
        produce(kafka_bootstrap, topic, lines, partition=0)
        after = [e for e in await forwarded(4) if e["records"]][len(during) :]
    finally:
        await source.close()
        await asyncio.wait_for(task, 20)
        await client.aclose()

    def levels(entries: list[dict[str, Any]]) -> list[str]:
        return [orjson.loads(line)["level"] for entry in entries for _, line in entry["records"]]

    assert [e["config"] for e in during] == [["new", "old"]] * len(during), during
    assert levels(during) == ["error", "fatal"]  # batch order, each once
    assert [e["config"] for e in during] == [["new", "old"]] * len(during)
    assert levels(after) == ["fatal"]
    assert [e["config"] for e in after] == [["new"]] * len(after)
