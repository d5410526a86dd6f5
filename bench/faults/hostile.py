"""The hostile-line corpus (tests/scenarios/test_hostile_input.py's lines, plus transport-level oddities) sent
over Vector and over Kafka, mixed into the same requests and partitions as tracked lines: every tracked line
must still be applied once, and the process must neither exit nor stall."""

from __future__ import annotations

from pathlib import Path

from bench.faults.harness import pause, tracked
from bench.faults.load import KafkaLoad, VectorLoad
from bench.faults.result import Result
from bench.faults.rows import Env, kafka_row, vector_row
from streamalert.clock import WallClock
from streamalert.decode import format_ms


def corpus() -> list[bytes]:
    """One line each, no newline inside; stamped now where they carry a time."""
    stamp = b'"timestamp":"' + format_ms(WallClock().now_ms()).encode() + b'"'
    deep = b"[" * 3000 + b"]" * 3000
    nested = b'{"n":' * 300 + b'{"k":1}' + b"}" * 300  # deeper than orjson writes (254)
    return [
        # tests/scenarios/test_hostile_input.py
        b"{" + stamp + b',"level":"error","x":"\xff"}',
        b"{" + stamp + b',"level":"error","x":1e999}',
        b"{" + stamp + b',"level":"info","x":' + deep + b"}",
        b"{" + stamp + b',"level":"error","x":' + deep + b"}",
        b"{" + stamp + b',"level":"error","detail":123456789012345678901234567890}',
        b"{" + stamp + b',"level":"error","detail":' + nested + b"}",
        b'{"ts": 3000000000000000, "level": "error"}',
        b'{"ts": 1e300, "level": "error"}',
        b'{"timestamp": "1969-12-31T23:59:59Z", "level": "error"}',
        b'{"timestamp": [0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0,0], "level": "error"}',
        b'{"timestamp": "2026-01-26T09:00:00.1\xc2\xb2Z", "level": "error"}',
        # more: not objects, broken, odd encodings, big
        b"not json",
        b"[1,2,3]",
        b'"a string"',
        b"42",
        b"null",
        b'{"truncated": ',
        b"\x00\x01\x02\x03",
        b"\xef\xbb\xbf{" + stamp + b"}",
        b"{" + stamp + b',"s":"\\ud800"}',
        b"{" + stamp + b',"big":"' + b"x" * 500_000 + b'"}',
        b"{" + stamp + b"," + b",".join(b'"k%d":%d' % (i, i) for i in range(10_000)) + b"}",
        b'{"timestamp":"2100-01-01T00:00:00Z","level":"error"}',
        b"{" + stamp + b"," + stamp + b',"level":"error"}',
        b'{"timestamp":"' + b"9" * 10_000 + b'"}',
    ]


def hostile_vector(folder: Path, name: str) -> Result:
    def fault(env: Env) -> str:
        load = env.load
        assert isinstance(load, VectorLoad)
        answers: dict[int, int] = {}
        for round_ in range(10):
            mixed: list[bytes] = []
            extra = [tracked(f"{name}-mixed", round_ * 1000 + i) for i in range(len(corpus()))]
            for hostile, good in zip(corpus(), extra, strict=True):
                mixed += [good, hostile]
            status = 0
            for _ in range(100):  # retried until 200, as Vector does
                status = _post(env, b"\n".join(mixed) + b"\n")
                answers[status] = answers.get(status, 0) + 1
                if status == 200:
                    load.delivered.extend(extra)
                    break
                pause(0.1)
        return f"10 bodies of {len(corpus())} hostile lines each interleaved with tracked ones; answers {answers}"

    return vector_row(folder, name, "hostile lines over Vector", fault)


def _post(env: Env, body: bytes) -> int:
    from bench.faults.load import post  # noqa: PLC0415

    return post(env.service.port, body)


def hostile_kafka(folder: Path, name: str) -> Result:
    def fault(env: Env) -> str:
        load = env.load
        assert isinstance(load, KafkaLoad)
        count = 0
        for round_ in range(10):
            values: list[bytes | None] = [*corpus(), None, b""]
            for i, hostile in enumerate(values):
                for partition in range(env.partitions):
                    good = tracked(f"{name}-mixed", (round_ * 1000 + i) * 10 + partition)
                    load.producer.produce(env.topic, good, partition=partition, on_delivery=load._report)
                    load.producer.produce(env.topic, hostile, partition=partition)
                    count += 1
            load.producer.poll(0)
        load.producer.flush(60)
        return f"{count} hostile records (the corpus, a tombstone, an empty value) interleaved with tracked ones"

    return kafka_row(folder, name, "hostile records over Kafka", fault)
