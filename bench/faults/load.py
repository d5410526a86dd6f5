"""Load for the fault rows: tracked lines produced to Kafka (librdkafka, a client independent of ours) or posted to
/vector the way Vector's http sink does (retried until answered 200), at a set rate, in a thread.

Only lines the broker acknowledged, or whose request was answered 200, are expected to be applied; they are
written to `delivered` for `streamalert replay`, in the order they were made (event-time order).
"""

from __future__ import annotations

import http.client
import threading
from pathlib import Path

from confluent_kafka import Producer

from bench.faults.harness import noise, pause, tracked
from streamalert.clock import Stopwatch

TRACK_EVERY = 10  # one line in this many is tracked (its own series); the rest is noise matching no rule
MAX_BODY_LINES = 10_000  # Vector rows: the most lines one request carries (well under Vector's 10 MB batches)


class _Paced(threading.Thread):
    """Makes `rate` tracked lines a second in steps of 20 ms until stopped; `hold` pauses it."""

    def __init__(self, prefix: str, rate: float, page_every: int = 0) -> None:
        super().__init__(daemon=True)
        self.prefix, self.rate, self.page_every = prefix, rate, page_every
        self.made = 0
        self.seconds = 0.0  # time spent making lines (paused time excluded)
        self.hold = threading.Event()
        self.stopped = threading.Event()

    def run(self) -> None:
        watch, held = Stopwatch(), 0.0
        while not self.stopped.is_set():
            if self.hold.is_set():
                start = watch.elapsed()
                while self.hold.is_set() and not self.stopped.is_set():
                    pause(0.02)
                held += watch.elapsed() - start
                continue
            due = int(self.rate * (watch.elapsed() - held)) - self.made
            if due > 0:
                self.emit([self.line(self.made + i) for i in range(due)])
                self.made += due
            self.seconds = watch.elapsed() - held
            pause(0.02)
        self.finish()

    def line(self, seq: int) -> bytes:
        if seq % TRACK_EVERY:
            return noise(seq)
        return tracked(self.prefix, seq, page=bool(self.page_every) and seq % self.page_every == 0)

    def emit(self, lines: list[bytes]) -> None:
        raise NotImplementedError

    def finish(self) -> None:
        return None

    def stop(self) -> None:
        self.stopped.set()
        self.join(timeout=300)


class KafkaLoad(_Paced):
    """Tracked lines to `topic`, round-robin over its partitions."""

    def __init__(self, bootstrap: str, topic: str, partitions: int, prefix: str, rate: float) -> None:
        super().__init__(prefix, rate)
        self.topic, self.partitions = topic, partitions
        self.producer = Producer(
            {"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": False, "message.timeout.ms": 600_000}
        )
        self.delivered: list[bytes] = []  # tracked lines the broker acknowledged
        self.accepted = 0  # every line the broker acknowledged
        self.failed = 0
        self._next = 0

    def _report(self, error: object, message: object) -> None:
        if error is not None:
            self.failed += 1
            return
        self.accepted += 1
        value = message.value()  # type: ignore[attr-defined]
        if value is not None and b'"fid":"' in value:
            self.delivered.append(value)

    def emit(self, lines: list[bytes]) -> None:
        for line in lines:
            self.producer.produce(self.topic, line, partition=self._next % self.partitions, on_delivery=self._report)
            self._next += 1
        self.producer.poll(0)

    def finish(self) -> None:
        self.producer.flush(600)


class VectorLoad(_Paced):
    """Tracked lines POSTed to /vector once `batch` lines are waiting, every waiting line in one body (up to
    MAX_BODY_LINES), each body retried until answered 200 (as Vector does) or `give_up_s` passed; records the
    longest time a body took to be accepted."""

    def __init__(
        self, port: int, prefix: str, rate: float, batch: int = 100, give_up_s: float = 300, page_every: int = 0
    ) -> None:
        super().__init__(prefix, rate, page_every)
        self.port, self.batch, self.give_up_s = port, batch, give_up_s
        self.delivered: list[bytes] = []  # tracked lines of bodies answered 200
        self.accepted = 0  # every line of bodies answered 200
        self.refused_lines = 0  # lines of bodies never answered 200
        self.answers: dict[int, int] = {}
        self.longest_accept_s = 0.0
        self._pending: list[bytes] = []

    def emit(self, lines: list[bytes]) -> None:
        # Like Vector's http sink, whose next request carries everything buffered up to its batch limit
        # (10 MB by default): lines made while a request waited go out together in the next one, not in
        # 100-line requests one after another (each line would then wait for every request before it).
        self._pending.extend(lines)
        while len(self._pending) >= self.batch:
            body, self._pending = self._pending[:MAX_BODY_LINES], self._pending[MAX_BODY_LINES:]
            self._post(body)

    def finish(self) -> None:
        if self._pending:
            self._post(self._pending)
            self._pending = []

    def _post(self, lines: list[bytes]) -> None:
        watch = Stopwatch()
        while watch.elapsed() < self.give_up_s:
            status = post(self.port, b"\n".join(lines) + b"\n")
            self.answers[status] = self.answers.get(status, 0) + 1
            if status == 200:
                self.accepted += len(lines)
                self.delivered.extend(line for line in lines if b'"fid":"' in line)
                self.longest_accept_s = max(self.longest_accept_s, watch.elapsed())
                return
            pause(0.1)  # 429 / 503 / 5xx / no connection: Vector backs off and retries
        self.refused_lines += len(lines)


def post(port: int, body: bytes, headers: dict[str, str] | None = None, timeout: float = 60) -> int:
    """One POST /vector on a new connection; its status, or 0 when no answer came."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        connection.request("POST", "/vector", body=body, headers=headers or {})
        response = connection.getresponse()
        response.read()
        return int(response.status)
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        connection.close()


def write_lines(path: Path, lines: list[bytes]) -> Path:
    """The delivered lines in event-time order (tracked lines start with their ISO stamp), for `streamalert
    replay`."""
    path.write_bytes(b"".join(line + b"\n" for line in sorted(lines, key=lambda line: line[:40])))
    return path
