"""Kafka offsets outside the log: found, said loudly, and settled by `offset_out_of_range`.

A partition's stored offset can point outside its log: above the log end when the topic was re-created or a
broker lost data, below the log start when retention removed records not read yet. Left alone, aiokafka
resets the position by its `auto_offset_reset` (logged at info) and the source's rule "drop records below the
stored offset" then swallows every record of a re-created topic up to the old offset; a broker that answers
such a fetch with nothing (Tansu) leaves the partition waiting there. Either way lag shows 0 (the next offset
is not below the high watermark) and readiness stays green. So the consumer runs with aiokafka's reset off
(`none`) and the source finds such partitions two ways:

- the broker's word: a fetch answered OFFSET_OUT_OF_RANGE (Kafka does, at either end);
- the fetch response's high watermark below the next offset to read (brokers that answer an empty fetch
  instead, Tansu among them), confirmed by asking the log's start and end (ListOffsets), because a new leader's
  high watermark may trail for a moment.

Either way the partition is logged at error level (`kafka_offset_out_of_range`) with its log's bounds and
counted in `streamalert_kafka_offset_out_of_range_total`; then it continues at the log start (`earliest`) or
end (`latest`), which becomes its stored offset, or (`fail`) stops: paused, reported by `problems()` and
readiness, logged again every minute, until the operator settles it and restarts.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass

import structlog
from aiokafka import AIOKafkaConsumer, TopicPartition

from streamalert.clock import Clock
from streamalert.sources.kafka_config import OutOfRangePolicy
from streamalert.telemetry.metrics import Metrics

REMIND_MS = 60_000  # a stopped partition is logged again this often
_log = structlog.get_logger("streamalert.kafka")


@dataclass(frozen=True, slots=True)
class OutOfRange:
    """A partition whose next offset lies outside its log [log_start, log_end), and where it continues
    (None: it stopped, `offset_out_of_range: fail`)."""

    tp: TopicPartition
    offset: int
    log_start: int
    log_end: int
    resume_at: int | None

    def describe(self) -> str:
        return (
            f"{self.tp.topic}/{self.tp.partition}: offset {self.offset} is outside the log "
            f"[{self.log_start}, {self.log_end})"
        )


class OffsetGuard:
    """Finds partitions read from outside their log, reports them, and decides where they continue."""

    def __init__(self, policy: OutOfRangePolicy, clock: Clock, metrics: Metrics | None = None) -> None:
        self.policy, self._clock, self._metrics = policy, clock, metrics
        self.stopped: dict[TopicPartition, OutOfRange] = {}  # policy fail: partitions no longer read
        self._checked: dict[TopicPartition, tuple[int, int]] = {}  # (high watermark, next offset) found in range
        self._reminded = 0

    def suspects(
        self, consumer: AIOKafkaConsumer, owned: Collection[TopicPartition], fetched: Mapping[TopicPartition, int]
    ) -> dict[TopicPartition, int]:
        """Partitions whose next offset lies above the high watermark of their latest fetch response, and
        that offset; each (high watermark, offset) pair is asked about once."""
        found: dict[TopicPartition, int] = {}
        for tp in owned:
            highwater, offset = consumer.highwater(tp), fetched.get(tp)
            if tp in self.stopped or highwater is None or offset is None or offset <= highwater:
                continue
            if self._checked.get(tp) != (highwater, offset):
                found[tp] = offset
        return found

    def judge(
        self, tp: TopicPartition, offset: int, bounds: tuple[int, int], highwater: int | None, *, refused: bool
    ) -> OutOfRange | None:
        """`offset` against the log's (start, end) from ListOffsets: None if inside it. `refused`: the broker
        answered OFFSET_OUT_OF_RANGE, which is taken as it is (the high watermark may date from before the
        topic was re-created); otherwise the end is at least the high watermark of the fetch response that
        raised the suspicion (Tansu's ListOffsets answers the last batch's base offset + 1, short of the end)."""
        start, end = bounds
        if not refused:
            end = max(end, highwater or 0)
            if start <= offset <= end:
                self._checked[tp] = (highwater or 0, offset)
                return None
        resume_at = {"earliest": start, "latest": end, "fail": None}[self.policy]
        found = OutOfRange(tp, offset, start, end, resume_at)
        self._say(found)
        if self._metrics is not None:
            self._metrics.kafka_offset_out_of_range.labels(topic=tp.topic, partition=str(tp.partition)).inc()
        if resume_at is None:
            self.stopped[tp] = found
        return found

    def remind(self) -> None:
        """Log the stopped partitions again, at most every REMIND_MS."""
        now = self._clock.now_ms()
        if self.stopped and now - self._reminded >= REMIND_MS:
            self._reminded = now
            for found in self.stopped.values():
                self._say(found)

    def forget(self, tps: Collection[TopicPartition]) -> None:
        """Revoked: their next owner looks again."""
        for tp in tps:
            self.stopped.pop(tp, None)
            self._checked.pop(tp, None)

    def problems(self) -> list[str]:
        return sorted(f"{found.describe()}; not read (offset_out_of_range: fail)" for found in self.stopped.values())

    def _say(self, found: OutOfRange) -> None:
        if found.resume_at is None:
            self._reminded = self._clock.now_ms()
            outcome = "partition stopped: settle its offset in the state store (or change the policy) and restart"
        else:
            outcome = f"continues at offset {found.resume_at}, stored as its offset"
        _log.error(
            "kafka_offset_out_of_range",
            topic=found.tp.topic,
            partition=found.tp.partition,
            stored_offset=found.offset,
            log_start=found.log_start,
            log_end=found.log_end,
            offset_out_of_range=self.policy,
            outcome=outcome,
        )
