"""Kafka source: an aiokafka consumer group, read with `getmany`, positions stored with the state they produced.

Where to continue reading is kept in the state store, not only in Kafka: every batch carries its partition's
next offset in `Batch.meta`, and the pipeline commits it in the same checkpoint (one Redis transaction) as the
batch's effects. After a crash, a rebalance or a restart the consumer seeks every assigned partition to the
stored offset, so a record is applied once: redelivered records are never fetched again, and any fetched
below the stored offset are dropped. Kafka's own committed offsets follow (after the store commit, best
effort); they serve lag monitoring and a namespace that has no stored offset yet.

One batch holds records of one partition (its lane: "topic/partition"), so event-time lateness is measured
per partition and a consumer reading one partition's backlog after another's newer records drops nothing.
Partition revocation waits for the batch in flight to be committed and acknowledged before the partitions
are given up. Record values that are not JSON objects (including tombstones) are counted as malformed by the
engine and passed over like any other record: they never stall a partition. A partition whose offset lies
outside its log (topic re-created, retention) is found, logged and settled by `offset_out_of_range` (see
kafka_offsets.py), never left to aiokafka's silent reset.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Collection, Coroutine, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import IllegalStateError, KafkaError, NoOffsetForPartitionError, OffsetOutOfRangeError
from tenacity import AsyncRetrying, retry_if_exception_type, wait_exponential_jitter

from streamalert.clock import Clock, Stopwatch, WallClock
from streamalert.sources import Batch
from streamalert.sources.formats import live_format
from streamalert.sources.kafka_config import KafkaConfig as KafkaConfig  # noqa: PLC0414 (re-exported: imported from here)
from streamalert.sources.kafka_offsets import OffsetGuard
from streamalert.sources.kafka_records import install as _install_raw_records
from streamalert.sources.kafka_records import raw_values
from streamalert.telemetry.metrics import Metrics

_BROKER_WAIT_S = 5.0  # best-effort calls to the brokers (offset commits, leaving the group) wait no longer
OFFSET = "offset:"  # checkpoint meta key prefix: "offset:topic/partition" -> the next offset to read
_NEVER = -(2**62)  # "no record yet" for the idle rule
T = TypeVar("T")
_log = structlog.get_logger("streamalert.kafka")
# Records as aiokafka's C parser makes them, not one ConsumerRecord each (kafka_records.py); aiokafka's own path
# if this aiokafka is not shaped as expected (the source reads only `offset` and `value`, which both have).
_RAW_RECORDS = _install_raw_records()


def lane_of(tp: TopicPartition) -> str:
    return f"{tp.topic}/{tp.partition}"


# Replicas mode: where each assigned partition continues, asked when partitions are assigned (lane -> offset).
Positions = Callable[[list[str]], Awaitable[dict[str, int]]]


@dataclass(frozen=True, slots=True)
class Chunk:
    """Batch.token of a Kafka batch: its partition and the offsets it spans, [start, end)."""

    tp: TopicPartition
    start: int
    end: int


class KafkaSource:
    """A pull source over a consumer group; `ack` after the batch's checkpoint (with its offset) is committed."""

    name = "kafka"

    def __init__(
        self,
        config: KafkaConfig,
        metrics: Metrics | None = None,
        positions: Positions | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.config = config
        self._clock = clock or WallClock()
        self._positions = positions
        self._metrics = metrics
        self._consumer: AIOKafkaConsumer | None = None
        self._closed = False
        self._closing = asyncio.Event()  # set by close(): wakes a fetch stuck on a broker that is gone
        self._stored: dict[str, int] = {}  # lane -> next offset whose effects are committed in the store
        self._fetched: dict[TopicPartition, int] = {}  # next offset after the records handed out
        # wall time of the last batch handed out, of assignment, or of a look finding fetches unanswered (_data_ms)
        self._last_data: dict[TopicPartition, int] = {}
        self._owned: set[TopicPartition] = set()
        self._in_flight = 0  # batches yielded and not yet acknowledged
        self._settled = asyncio.Event()  # set while nothing is in flight
        self._settled.set()
        self._position = 0
        self._generation = 0  # bumped by every revocation and assignment
        self._moved: dict[TopicPartition, int] = {}  # per partition: how often rewind or _move set its position
        self._since_commit = Stopwatch()  # since offsets were last committed to Kafka
        self._guard = OffsetGuard(config.offset_out_of_range, self._clock, metrics)
        self._format = live_format(self.name, config.format, config.time_pattern, metrics)
        self.commit_errors = 0

    # ---- Source protocol -----------------------------------------------------------------------------------

    def resume(self, meta: Mapping[str, int]) -> None:
        """Take the stored offsets: assigned partitions are read from there."""
        self._stored.update((key[len(OFFSET) :], value) for key, value in meta.items() if key.startswith(OFFSET))

    async def batches(self) -> AsyncIterator[Batch]:
        consumer = await self._start()
        fresh = False  # the last getmany named a partition with no offset: others may follow at once
        try:
            while not self._closed:
                if not fresh:
                    await self._learn_positions(consumer)  # before getmany, which moves the positions on
                refused: dict[TopicPartition, int] = {}
                fresh = False
                try:
                    # aiokafka's getmany can wait for a reassignment that never comes (broker gone) and was
                    # seen not to end promptly when cancelled: it runs apart, and close or cancel leave it
                    fetched = await self._apart(consumer.getmany(timeout_ms=self.config.tick_ms))
                except OffsetOutOfRangeError as exc:  # the broker's word (aiokafka's own reset is off)
                    refused, fetched = _refused(exc), {}
                except NoOffsetForPartitionError as exc:  # no offset stored here nor committed in Kafka
                    await self._start_fresh(consumer, exc)
                    fresh, fetched = True, {}
                except KafkaError as exc:  # coordination trouble: aiokafka recovers, we report and go on
                    _log.warning("kafka_fetch_failed", error=type(exc).__name__)
                    fetched = {}
                if fetched is None:
                    break  # closed while fetching
                data = fetched
                limit = self.config.max_batch_lines
                for tp in sorted(data):
                    records = data[tp]
                    if _RAW_RECORDS:
                        records = list(itertools.chain.from_iterable(records))
                    mark = (self._generation, self._moved.get(tp, 0))
                    for start in range(0, len(records), limit):
                        if (self._generation, self._moved.get(tp, 0)) != mark:
                            # rewound, moved, or a rebalance (aiokafka's is eager: every partition is revoked and
                            # its position set again) since the last slice: the partition is read again from
                            # there; a later slice must not claim to continue a position the earlier one left
                            break
                        batch = self._batch(tp, records[start : start + limit])
                        if batch is not None:
                            yield self._handed(batch)
                moved = await self._settle(consumer, refused)
                for batch in moved:
                    yield self._handed(batch)
                self._guard.remind()
                self._report_lag(consumer)
                if not data and not moved:
                    yield Batch([], self._position)
        finally:
            await self._stop(consumer)

    async def ack(self, batch: Batch) -> None:
        """The batch and its offset are in the store: remember the offset; tell Kafka at most every
        commit_interval_ms (best effort: it serves lag monitoring; the store's offsets are the ones used)."""
        chunk = batch.token
        if isinstance(chunk, Chunk):
            self._stored[batch.lane] = chunk.end
            self._in_flight -= 1
            if self._in_flight == 0:
                self._settled.set()  # before the Kafka commit, which waits for a rebalance that waits for this
            if self._since_commit.elapsed() * 1000 >= self.config.commit_interval_ms:
                await self._commit_kafka(set(self._owned))

    def lagging(self) -> Collection[str]:
        """Partitions that hold the clock at their newest time: every partition of the subscribed topics that
        is not assigned here (during a rebalance, or while a killed consumer's session has not expired),
        assigned ones whose end (high watermark) is unknown or not reached yet, and ones read to their end
        that had a record within `idle_ms`. One process owns a namespace, so every partition comes back to
        it; until then its records are not late. The clock follows the wall clock only when none holds.
        """
        consumer = self._consumer
        if consumer is None:
            return ("",)  # not started: nothing is known, nothing may be taken as caught up
        behind: list[str] = []
        now = self._clock.now_ms()
        for tp in self._owned:
            ends, data = self._read_to(consumer, tp), self._data_ms(consumer, tp, now)
            if tp in self._guard.stopped:
                behind.append(lane_of(tp))  # offset_out_of_range: fail; its records, once read, are not late
            elif ends is None or ends[1] < ends[0] or not self._answered(consumer, tp, self._hold_ms()):
                # a high watermark from before a broker outage proves nothing: the clock may follow the wall
                # only while fetch responses keep confirming the end (records produced meanwhile, buffered by
                # their producers, come later with their own times and must not find the clock gone past)
                behind.append(lane_of(tp))
            elif now - data < self.config.idle_ms:
                behind.append(lane_of(tp))  # read to its end, but not idle yet
        owned = {lane_of(tp) for tp in self._owned}
        behind.extend(lane for lane in self.partitions() if lane not in owned)
        if not self._owned:
            behind.append("")  # nothing assigned yet: the topics' partitions may not even be known
        return behind

    def rewind(self, batch: Batch, offset: int) -> None:
        """Replicas mode: the batch was not taken (another replica forwarded this partition further): drop it
        and continue the partition at `offset`."""
        chunk = batch.token
        if not isinstance(chunk, Chunk):
            return
        self._in_flight -= 1
        if self._in_flight == 0:
            self._settled.set()
        self._stored[batch.lane] = offset
        self._moved[chunk.tp] = self._moved.get(chunk.tp, 0) + 1
        if chunk.tp in self._owned and self._consumer is not None:
            self._consumer.seek(chunk.tp, offset)
            self._fetched[chunk.tp] = offset

    def status(self) -> dict[str, tuple[int, int, int]]:
        """Replicas mode: (high watermark, next offset to hand out, wall time of its last batch) of every
        assigned partition whose brokers answered lately (a report from before an outage, or from a replica
        cut off from them, proves nothing) and that is read (not stopped by `offset_out_of_range: fail`)."""
        consumer = self._consumer
        report: dict[str, tuple[int, int, int]] = {}
        if consumer is None:
            return report
        now = self._clock.now_ms()
        for tp in self._owned:
            ends = self._read_to(consumer, tp)
            data = self._data_ms(consumer, tp, now)
            if ends is not None and self._answered(consumer, tp) and tp not in self._guard.stopped:
                report[lane_of(tp)] = (*ends, data)
        return report

    def _data_ms(self, consumer: AIOKafkaConsumer, tp: TopicPartition, now: int) -> int:
        """When the partition last had a record, as far as holding the clock goes. While its fetches go
        unanswered (a broker outage) that is now: once they are answered again it holds the clock for
        `idle_ms` more, as after a record, because producers that buffered records during the outage
        deliver them only after reconnecting, often later than this consumer (under load, seconds later),
        and their records are stamped before the outage ended. Without it the clock followed the wall as soon
        as the first empty fetch came back, and those records were late."""
        if not self._answered(consumer, tp, self._hold_ms()):
            self._last_data[tp] = now
        return self._last_data.get(tp, 0)

    def _read_to(self, consumer: AIOKafkaConsumer, tp: TopicPartition) -> tuple[int, int] | None:
        """(high watermark, next offset to hand out) of an assigned partition, once both are known."""
        highwater, fetched = consumer.highwater(tp), self._fetched.get(tp)
        return None if highwater is None or fetched is None else (highwater, fetched)

    def partitions(self) -> list[str]:
        """Every partition of the subscribed topics, assigned here or not."""
        consumer = self._consumer
        if consumer is None:
            return []
        return sorted(
            f"{topic}/{partition}"
            for topic in consumer.subscription()
            for partition in consumer.partitions_for_topic(topic) or ()
        )

    def fetching(self) -> bool:
        """Whether every assigned partition is read: each had a fetch response lately (aiokafka polls each
        one every fetch_max_wait_ms, records or not). False while the brokers are unreachable, and while a
        partition is stopped by `offset_out_of_range: fail` (see `problems()`)."""
        consumer = self._consumer
        if consumer is None or not self._owned or self._guard.stopped:
            return False
        return all(self._answered(consumer, tp) for tp in self._owned)

    def problems(self) -> list[str]:
        """Why assigned partitions are not read, for readiness: those stopped by `offset_out_of_range: fail`."""
        return self._guard.problems()

    def _answered(self, consumer: AIOKafkaConsumer, tp: TopicPartition, within_ms: int | None = None) -> bool:
        """A fetch response for the partition came within `within_ms` (default: the readiness bound, 10 s or
        more). `clock` must be the wall clock: aiokafka stamps fetch responses with the real time."""
        last = consumer.last_poll_timestamp(tp)
        bound = within_ms
        if bound is None:
            bound = max(10_000, 3 * (self.config.fetch_max_wait_ms + self.config.tick_ms))
        return last is not None and self._clock.now_ms() - last <= bound

    def _hold_ms(self) -> int:
        """How stale the last fetch response of a caught-up partition may be before it holds the clock: a few
        fetch waits (aiokafka polls every partition every fetch_max_wait_ms, records or not), at least 1 s."""
        return max(1_000, 3 * self.config.fetch_max_wait_ms)

    def assigned(self) -> list[str]:
        return sorted(lane_of(tp) for tp in self._owned)

    async def close(self) -> None:
        """Stop taking input: the current fetch is abandoned (its records were not handed out; they are read
        again from the stored offsets), the batch in flight is finished."""
        self._closed = True
        self._closing.set()

    # ---- internals -----------------------------------------------------------------------------------------

    def _batch(self, tp: TopicPartition, records: list[Any]) -> Batch | None:
        if tp not in self._owned:
            return None  # revoked since the fetch: its new owner reads it from the stored offset
        lane = lane_of(tp)
        start = self._stored.get(lane, -1)
        fetched = self._fetched.get(tp, -1)
        floor = max(start, fetched)
        kept = records if not records or records[0].offset >= floor else [r for r in records if r.offset >= floor]
        if not kept:
            return None
        after = kept[-1].offset + 1
        self._fetched[tp] = after
        self._last_data[tp] = self._clock.now_ms()
        lines = [r.value for r in kept]
        if None in lines:
            lines = [b"" if value is None else value for value in lines]  # a tombstone counts as malformed
        if self._format is not None:
            lines = self._format.convert(lines, self._last_data[tp])  # logfmt/text: the fetch is their arrival
        self._position += len(lines)
        first = floor if floor >= 0 else kept[0].offset
        return Batch(lines, self._position, Chunk(tp, first, after), lane, {OFFSET + lane: after})

    async def _start(self) -> AIOKafkaConsumer:
        """Create and start the consumer, retrying with backoff while the brokers cannot be reached."""
        config = self.config
        retrying = AsyncRetrying(
            wait=wait_exponential_jitter(multiplier=0.2, max=10.0),
            retry=retry_if_exception_type((KafkaError, OSError)),
            before_sleep=lambda state: _log.warning(
                "kafka_unavailable", error=type(state.outcome.exception()).__name__ if state.outcome else "unknown"
            ),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                options = config.consumer_options()
                if _RAW_RECORDS:  # getmany hands out one list per record batch; batches() bounds the lines
                    options.update(value_deserializer=raw_values, max_poll_records=None)
                consumer = AIOKafkaConsumer(**options)
                try:
                    await consumer.start()
                except BaseException:
                    await _bounded(consumer.stop(), _BROKER_WAIT_S)  # bounded: cancelled here, it may hang
                    raise
        listener = _Listener(self, consumer)
        if config.topic_pattern is not None:
            consumer.subscribe(pattern=config.topic_pattern, listener=listener)
        else:
            consumer.subscribe(topics=config.topics, listener=listener)
        self._consumer = consumer
        _log.info("kafka_started", brokers=config.brokers, group_id=config.group_id)
        return consumer

    async def _stop(self, consumer: AIOKafkaConsumer) -> None:
        self._in_flight = 0  # nothing more will be acknowledged: a revocation waiting for it may proceed
        self._settled.set()
        await self._commit_kafka(set(self._owned))
        # leaving the group waits for the brokers; with them gone, the session timeout does it for us
        if not await _bounded(consumer.stop(), _BROKER_WAIT_S):
            _log.warning("kafka_stop_timeout", seconds=_BROKER_WAIT_S)
        self._owned.clear()
        _log.info("kafka_stopped")

    async def _commit_kafka(self, tps: set[TopicPartition]) -> None:
        consumer = self._consumer
        self._since_commit = Stopwatch()
        offsets = {tp: self._stored[lane_of(tp)] for tp in tps if lane_of(tp) in self._stored}
        if consumer is None or not offsets:
            return
        try:
            if await _bounded(consumer.commit(offsets), _BROKER_WAIT_S):
                return
            error = "TimeoutError"
        except KafkaError as exc:  # the store holds the truth; Kafka's copy catches up later
            error = type(exc).__name__
        self.commit_errors += 1
        _log.warning("kafka_commit_failed", error=error)

    async def _learn_positions(self, consumer: AIOKafkaConsumer) -> None:
        """Where reading starts on partitions that have handed out nothing yet (an empty or fully consumed
        partition would otherwise count as lagging for ever). Asked between getmany calls, when the position
        is the next record getmany returns; an answer that spans a rebalance is dropped. Asked for at most a
        tick: a partition with no offset anywhere has none until getmany's NoOffsetForPartitionError starts
        it, and is asked again next time."""
        missing = [tp for tp in self._owned if tp not in self._fetched]
        if not missing:
            return
        generation = self._generation
        found = await self._apart(_positions(consumer, missing, self.config.tick_ms / 1000))
        if found is None or generation != self._generation:
            return  # closed, or a rebalance since
        for tp, offset in found.items():
            if tp in self._owned and tp not in self._fetched:
                self._fetched[tp] = offset

    async def _start_fresh(self, consumer: AIOKafkaConsumer, exc: NoOffsetForPartitionError) -> None:
        """A partition with no offset stored here nor committed in Kafka starts at `auto_offset_reset`."""
        tp = exc.args[0] if exc.args else None
        if not isinstance(tp, TopicPartition) or tp not in self._owned:
            return
        reset = consumer.seek_to_beginning if self.config.auto_offset_reset == "earliest" else consumer.seek_to_end
        try:
            await self._apart(reset(tp))
        except KafkaError as error:  # revoked meanwhile, or the brokers did not answer: getmany says it again
            _log.warning("kafka_reset_failed", partition=lane_of(tp), error=type(error).__name__)
            return
        _log.info("kafka_partition_started", partition=lane_of(tp), at=self.config.auto_offset_reset)

    async def _settle(self, consumer: AIOKafkaConsumer, refused: Mapping[TopicPartition, int]) -> list[Batch]:
        """Partitions read from outside their log (refused by the broker, or their next offset above their high
        watermark): judged against the log's bounds, then continued where `offset_out_of_range` says (one
        empty batch each, which stores the new offset) or stopped (paused)."""
        found = self._guard.suspects(consumer, self._owned, self._fetched)
        found.update((tp, offset) for tp, offset in refused.items() if tp in self._owned)
        if not found:
            return []
        generation = self._generation
        bounds = await self._log_bounds(consumer, sorted(found))
        if bounds is None or generation != self._generation:
            return []  # asked again: the broker refuses the offset again, the high watermark stays below it
        moved: list[Batch] = []
        for tp, offset in sorted(found.items()):
            if tp not in self._owned:
                continue
            verdict = self._guard.judge(tp, offset, bounds[tp], consumer.highwater(tp), refused=tp in refused)
            if verdict is None:
                continue
            try:
                if verdict.resume_at is None:
                    consumer.pause(tp)
                else:
                    moved.append(self._move(consumer, tp, verdict.resume_at))
            except IllegalStateError:  # revoked meanwhile: its next owner looks again
                self._guard.forget([tp])
        return moved

    async def _log_bounds(
        self, consumer: AIOKafkaConsumer, tps: list[TopicPartition]
    ) -> dict[TopicPartition, tuple[int, int]] | None:
        """(log start, log end) of each partition (ListOffsets), or None when the brokers do not say (in time)."""
        try:
            starts = await self._apart(_within(consumer.beginning_offsets(tps), _BROKER_WAIT_S))
            ends = await self._apart(_within(consumer.end_offsets(tps), _BROKER_WAIT_S))
        except (KafkaError, TimeoutError) as exc:
            _log.warning("kafka_log_bounds_unknown", partitions=[lane_of(tp) for tp in tps], error=type(exc).__name__)
            return None
        if starts is None or ends is None or any(tp not in starts or tp not in ends for tp in tps):
            return None
        return {tp: (starts[tp], ends[tp]) for tp in tps}

    def _move(self, consumer: AIOKafkaConsumer, tp: TopicPartition, offset: int) -> Batch:
        """Continue the partition at `offset`: an empty batch whose checkpoint stores it as the partition's
        offset (the rule that drops records below the stored offset must not drop the log's new records).
        It spans [the offset stored so far, `offset`): replicas mode forwards it like any other batch."""
        lane = lane_of(tp)
        start = self._stored.get(lane, self._fetched.get(tp, offset))
        self._moved[tp] = self._moved.get(tp, 0) + 1
        consumer.seek(tp, offset)
        self._fetched[tp] = offset
        return Batch([], self._position, Chunk(tp, start, offset), lane, {OFFSET + lane: offset})

    def _handed(self, batch: Batch) -> Batch:
        self._in_flight += 1
        self._settled.clear()
        return batch

    async def _apart(self, call: Coroutine[Any, Any, T]) -> T | None:
        """Await an aiokafka call in a task of its own: None (the call abandoned) once the source is closed;
        if this task is cancelled, the call is abandoned too, so cancellation always takes effect here."""
        task = asyncio.ensure_future(call)
        closing = asyncio.ensure_future(self._closing.wait())
        try:
            await asyncio.wait({task, closing}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            _abandon(task)
            raise
        finally:
            closing.cancel()
        if not task.done():
            _abandon(task)
            return None
        return task.result()

    def _report_lag(self, consumer: AIOKafkaConsumer) -> None:
        if self._metrics is None:
            return
        for tp in self._owned:
            ends = self._read_to(consumer, tp)
            if ends is not None:
                lag = max(0, ends[0] - ends[1])
                self._metrics.consumer_lag.labels(topic=tp.topic, partition=str(tp.partition)).set(lag)

    async def _revoked(self, revoked: set[TopicPartition]) -> None:
        """Finish and commit the batch in flight, tell Kafka the positions, then give the partitions up."""
        while self._in_flight:  # a loop: the next batch may be handed out before this wait wakes up
            await self._settled.wait()
        await self._commit_kafka(revoked & self._owned)
        self._owned -= revoked
        self._generation += 1
        self._guard.forget(revoked)
        for tp in revoked:
            self._fetched.pop(tp, None)
            if self._metrics is not None:
                with contextlib.suppress(KeyError):  # never reported
                    self._metrics.consumer_lag.remove(tp.topic, str(tp.partition))
        _log.info("partitions_revoked", partitions=sorted(lane_of(tp) for tp in revoked))

    async def _assigned(self, consumer: AIOKafkaConsumer, assigned: set[TopicPartition]) -> None:
        """Continue every partition at its stored offset; partitions never stored start from Kafka's."""
        if self._positions is not None and assigned:
            self._stored.update(await self._positions(sorted(lane_of(tp) for tp in assigned)))
        for tp in assigned:
            stored = self._stored.get(lane_of(tp))
            if stored is not None:
                consumer.seek(tp, stored)
                self._fetched[tp] = stored
        self._owned |= assigned
        now = self._clock.now_ms()
        for tp in assigned:  # idleness counts from assignment: an empty partition is idle idle_ms after it
            self._last_data[tp] = now
        self._generation += 1
        _log.info("partitions_assigned", partitions=sorted(lane_of(tp) for tp in assigned))


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, source: KafkaSource, consumer: AIOKafkaConsumer) -> None:
        self._source, self._consumer = source, consumer

    async def on_partitions_revoked(self, revoked: list[TopicPartition]) -> None:
        await self._source._revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: list[TopicPartition]) -> None:
        await self._source._assigned(self._consumer, set(assigned))


def _refused(exc: OffsetOutOfRangeError) -> dict[TopicPartition, int]:
    """The partitions and fetch offsets an OffsetOutOfRangeError names (aiokafka: `{tp: offset}`)."""
    named = exc.args[0] if exc.args else None
    if not isinstance(named, dict):
        return {}
    return {tp: offset for tp, offset in named.items() if isinstance(tp, TopicPartition) and isinstance(offset, int)}


async def _positions(
    consumer: AIOKafkaConsumer, tps: list[TopicPartition], seconds: float
) -> dict[TopicPartition, int]:
    """The positions of `tps` known within `seconds` (asked together); the others are left out."""
    asks = {asyncio.ensure_future(consumer.position(tp)): tp for tp in tps}
    try:
        done, _ = await asyncio.wait(asks, timeout=seconds)
    finally:
        for task in asks:
            if not task.done():
                _abandon(task)
    found: dict[TopicPartition, int] = {}
    for task in done:
        try:
            found[asks[task]] = task.result()
        except KafkaError as exc:  # not known yet (e.g. revoked meanwhile): asked again next time
            _log.debug("kafka_position_unknown", partition=lane_of(asks[task]), error=type(exc).__name__)
    return found


async def _within(call: Coroutine[Any, Any, T], seconds: float) -> T:
    """`call`'s result, or TimeoutError after `seconds` (the call abandoned, as in `_bounded`)."""
    task = asyncio.ensure_future(call)
    try:
        done, _ = await asyncio.wait({task}, timeout=seconds)
    except asyncio.CancelledError:
        _abandon(task)
        raise
    if not done:
        _abandon(task)
        raise TimeoutError
    return task.result()


async def _bounded(call: Coroutine[Any, Any, Any], seconds: float) -> bool:
    """Run `call` for at most `seconds`: True if it finished (its exception, if any, is raised). Unlike
    `asyncio.wait_for`, a call that does not end when cancelled (aiokafka's stop and commit, with the brokers
    gone, can swallow the cancellation) is abandoned instead of waited for: shutdown stays bounded."""
    task = asyncio.ensure_future(call)
    done, _ = await asyncio.wait({task}, timeout=seconds)
    if not done:
        _abandon(task)
        return False
    task.result()
    return True


def _abandon(task: asyncio.Task[Any]) -> None:
    """Cancel a call and stop caring: it ends when it ends (aiokafka may ignore the cancellation)."""
    task.cancel()
    task.add_done_callback(_forget)


def _forget(task: asyncio.Task[Any]) -> None:
    if not task.cancelled():
        task.exception()  # retrieved: no "exception was never retrieved" warning for an abandoned call
