"""logfmt, text and auto input end to end: replay from a file, Vector over real HTTP, Kafka on a real broker.

The same mixed input everywhere: JSON, logfmt and plain-text lines (Celery beat's own spelling) decode into
records that YAML matchers and LogQL rules (`| logfmt`, line filters on the line as written) alert on.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web

from streamalert.cli import main
from streamalert.clock import ManualClock
from streamalert.decode import decode_line, event_time_ms, format_ms
from streamalert.engine import Engine
from streamalert.pipeline import Health, run_live
from streamalert.sources.kafka import KafkaConfig, KafkaSource
from streamalert.sources.vector_http import SERVER_OPTIONS, VectorHttpConfig, VectorHttpSource
from streamalert.state.memory import MemoryStore
from streamalert.telemetry.metrics import Metrics
from streamalert.testing import CapturingSink, free_port, rules_from_yaml
from tests.integration.kafka_support import create_topic, produce, unique

RULES = """
rules:
  - name: SmtpDown
    expr: sum(count_over_time({app="mailer"} | logfmt | error_type="Timeout" [1m])) > 2
  - name: BeatErrors
    match: {message: {regex: "ERROR/.*beat"}}
    window: 1m
    condition: count >= 2
  - name: Refused
    expr: sum(count_over_time({app="mailer"} |= `msg="connection refused"` [1m])) > 0
"""

MIXED = [
    b'app=mailer level=error msg="smtp down" error_type=Timeout ts=2026-01-26T09:00:01Z',
    b'{"timestamp": "2026-01-26T09:00:02Z", "app": "mailer", "error_type": "Timeout"}',
    b"[2026-01-26 09:00:03,000: ERROR/MainProcess] beat: Connection refused",
    b'app=mailer level=error msg="smtp down" error_type=Timeout ts=2026-01-26T09:00:04Z',
    b'app=mailer msg="connection refused" ts=2026-01-26T09:00:05Z',
    b"[2026-01-26 09:00:06,000: ERROR/MainProcess] beat: still refused",
    b"Traceback (most recent call last): no time of its own, ERROR/MainProcess beat",
]
# SmtpDown: the two logfmt Timeouts and the JSON one (3 > 2) at 09:00:04. BeatErrors: the two Celery lines
# at 09:00:06. Refused: the line filter finds the logfmt text as written (quotes and all) at 09:00:05.
EXPECTED = [("2026-01-26T09:00:04.000Z", "SmtpDown", 3), ("2026-01-26T09:00:05.000Z", "Refused", 1)]


def test_replay_reads_mixed_input_with_auto(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--input-format auto: all three kinds alert; the line without a time takes the previous line's (counted)."""
    logs, rules = tmp_path / "mixed.log", tmp_path / "rules.yaml"
    logs.write_bytes(b"\n".join(MIXED) + b"\n")
    rules.write_text(RULES, encoding="utf-8")
    assert main(["replay", str(logs), "--rules", str(rules), "--input-format", "auto"]) == 0
    captured = capsys.readouterr()
    out = [json.loads(line) for line in captured.out.splitlines()]
    assert [(t["at"], t["rule"], t["value"]) for t in out if t["state"] == "firing"] == [
        *EXPECTED[:2],
        ("2026-01-26T09:00:06.000Z", "BeatErrors", 3),  # the two Celery lines and the untimed traceback
    ]
    assert "0 skipped as malformed" in captured.err
    assert "1 untimed," in captured.err  # the traceback line, placed at 09:00:06, the previous line's time


def test_replay_text_format_keeps_logfmt_lines_whole(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """--input-format text: a logfmt line is one message; with no leading time in any line, nothing is timed."""
    logs, rules = tmp_path / "mixed.log", tmp_path / "rules.yaml"
    logs.write_bytes(MIXED[0] + b"\n" + MIXED[2] + b"\n")
    rules.write_text(
        "rules:\n  - {name: M, match: {message: {contains: error_type=Timeout}}, window: 1m, condition: count >= 1}\n"
    )
    assert main(["replay", str(logs), "--rules", str(rules), "--input-format", "text"]) == 0
    captured = capsys.readouterr()
    assert captured.out == ""  # the logfmt line has no leading timestamp: dropped as untimed before any time
    assert "1 untimed before any time" in captured.err


async def eventually(predicate: Callable[[], bool], within: float, what: str) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not predicate():  # poll with a deadline
        if loop.time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


async def test_vector_source_decodes_logfmt_and_text_over_http() -> None:
    """POSTed mixed lines reach the engine as records; a text line without a time gets its arrival time."""
    arrival = 1_769_418_010_000  # 09:00:10
    metrics = Metrics()
    source = VectorHttpSource(VectorHttpConfig(auth="none", format="auto", tick_ms=50), metrics, ManualClock(arrival))
    app = web.Application()
    app.add_routes(source.routes())
    runner = web.AppRunner(app, shutdown_timeout=2, **SERVER_OPTIONS)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    got: list[bytes] = []

    async def consume() -> None:
        async for batch in source.batches():
            got.extend(batch.lines)
            await source.ack(batch)

    consumer = asyncio.create_task(consume())
    try:
        async with aiohttp.ClientSession() as session:
            # the second body starts with Celery's `[`: lines, not a JSON array; the third is Vector's json codec
            bodies = [MIXED[:2], MIXED[2:], [b'[{"timestamp": "2026-01-26T09:00:07Z"},{"app": "mailer"}]']]
            for body in bodies:
                async with session.post(f"http://127.0.0.1:{port}/vector", data=b"\n".join(body) + b"\n") as response:
                    assert response.status == 200
        await eventually(lambda: len(got) == len(MIXED) + 2, 5, "the lines")
        assert got[-2:] == [b'{"timestamp": "2026-01-26T09:00:07Z"}', b'{"app": "mailer"}']
        del got[-2:]
    finally:
        await source.close()
        await asyncio.wait_for(consumer, 5)
        await runner.cleanup()
    records = [decode_line(line) for line in got]
    assert all(r is not None for r in records)
    assert records[0] == {
        "app": "mailer",
        "level": "error",
        "msg": "smtp down",
        "error_type": "Timeout",
        "ts": "2026-01-26T09:00:01Z",
        "_line": MIXED[0].decode(),
    }
    assert got[1] == MIXED[1]  # JSON passes untouched
    assert records[2] == {
        "message": MIXED[2].decode(),
        "_line": MIXED[2].decode(),
        "timestamp": "2026-01-26T09:00:03.000Z",
    }
    assert [event_time_ms(r) for r in records if r is not None][-1] == arrival
    assert metrics.events_arrival_timed.labels("vector")._value.get() == 1

    engine = Engine(rules_from_yaml(RULES))  # the converted lines alert as in replay
    engine.accept_lines(got[:-1])
    engine.finish()
    assert [(format_ms(t.at_ms), t.rule, t.value) for t in engine.drain() if t.state.value == "firing"][:2] == EXPECTED


async def test_kafka_source_decodes_logfmt_and_text(kafka_bootstrap: str) -> None:
    """Records of a real topic in format auto: logfmt, JSON and text lines all match; the untimed one is counted."""
    topic = create_topic(kafka_bootstrap, partitions=1)
    produce(kafka_bootstrap, topic, MIXED)
    config = KafkaConfig(
        brokers=[kafka_bootstrap],
        topics=[topic],
        group_id=unique("group"),
        auto_offset_reset="earliest",
        session_timeout_ms=6000,
        heartbeat_interval_ms=1000,
        tick_ms=50,
        idle_ms=300,
        format="auto",
    )
    metrics = Metrics()
    source = KafkaSource(config, metrics)
    engine = Engine(rules_from_yaml(RULES))
    sink = CapturingSink()
    clock = ManualClock(1_769_418_600_000)  # 09:10, after every record
    task = asyncio.create_task(run_live(engine, source, MemoryStore(), sink, clock, metrics, Health()))
    try:
        await eventually(lambda: metrics.events_arrival_timed.labels("kafka")._value.get() == 1, 20, "all records")
        await eventually(
            lambda: {t.rule for t in sink.transitions} >= {"SmtpDown", "Refused", "BeatErrors"}, 10, "alerts"
        )
    finally:
        await source.close()
        await asyncio.wait_for(task, 20)
    assert metrics.events_malformed.labels("kafka")._value.get() == 0
    firing = [(format_ms(t.at_ms), t.rule, t.value) for t in sink.transitions if t.state.value == "firing"]
    assert firing[:2] == EXPECTED
