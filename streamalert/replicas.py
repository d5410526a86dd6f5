"""Replicas mode: every process runs intake for its Kafka partitions, the lease holder evaluates for all.

Intake is decoding, matching, timing and per-partition lateness: nearly all of the CPU. Every replica in the
consumer group runs it for the partitions assigned to it (an intake-only `Engine`) and forwards each batch to
the namespace's intake stream in Redis: the matched records with their times, the partition's newest event
time and the offsets the batch spans. The append is one Lua script that also moves the partition's forwarded
offset on, and refuses a batch that does not start where the partition's forwarded offset stands: a replica
that lost the partition in a rebalance (or a second owner during one) cannot forward it twice; the refused
replica rewinds to the stored offset. Kafka offsets are acknowledged after the append.

The process holding the namespace lease also runs the evaluation: the ordinary live pipeline over
`IntakeSource`, which reads the stream from the position stored in its checkpoint (with the applied offset of
every partition, so an entry is applied once), and takes its clock from the partitions' status reported by
the replicas that own them. Windows, absence timers and transitions therefore live in one process at a time,
and each transition is recorded once in the fenced checkpoint.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Collection, Mapping
from typing import Any, cast

import orjson
import redis.asyncio as aioredis
import structlog
from redis.exceptions import RedisError

from streamalert.clock import Clock
from streamalert.engine import Engine
from streamalert.pipeline import Health, count_intake, retry_store
from streamalert.sources import Batch, Timed
from streamalert.sources.kafka import OFFSET, Chunk, KafkaConfig, KafkaSource
from streamalert.state import keys
from streamalert.telemetry.metrics import Metrics

_log = structlog.get_logger("streamalert.replicas")

# KEYS: intake-offsets, intake-lanes, intake stream. ARGV: lane, start, end, newest ("" if none), entry.
# Returns -1 when appended, else the offset the partition has been forwarded to (the caller rewinds there).
_APPEND = """
local stored = redis.call('HGET', KEYS[1], ARGV[1])
if stored and tonumber(stored) ~= tonumber(ARGV[2]) then
  return tonumber(stored)
end
redis.call('XADD', KEYS[3], '*', 'e', ARGV[5])
redis.call('HSET', KEYS[1], ARGV[1], ARGV[3])
if ARGV[4] ~= '' then
  redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
end
return -1
"""
_INTAKE_POSITION = ("intake_ms", "intake_seq")  # checkpoint meta: the last intake stream entry applied


class Forwarder:
    """Intake for the partitions assigned to this process, forwarded to the namespace's intake stream."""

    def __init__(self, engine: Engine, client: aioredis.Redis, namespace: str, clock: Clock, metrics: Metrics) -> None:
        self.engine, self._redis, self._ns, self._clock, self._metrics = engine, client, namespace, clock, metrics
        self._append = client.register_script(_APPEND)
        self.health = Health()
        self._unstarted: set[str] = set()  # assigned partitions never forwarded: their start is forwarded once
        self.forwarded = 0  # batches appended
        self._next: Engine | None = None  # a reloaded configuration's intake, taken at the next batch
        self.refused = 0  # batches refused (another replica had forwarded the partition further)

    async def positions(self, lanes: list[str]) -> dict[str, int]:
        """Where assigned partitions continue: the forwarded offset, and the lane's newest time with it.
        Called in the rebalance callback (aiokafka swallows its errors): retried until Redis answers."""
        return await retry_store(functools.partial(self._positions, lanes), self._metrics, self.health)

    async def _positions(self, lanes: list[str]) -> dict[str, int]:
        ns = self._ns
        offsets = cast(list[bytes | None], await self._redis.hmget(keys.intake_offsets(ns), lanes))
        newest = cast(list[bytes | None], await self._redis.hmget(keys.intake_lanes(ns), lanes))
        for lane, value in zip(lanes, newest, strict=True):
            self.engine.set_lane(lane, None if value is None else int(value))
        stored = {lane: int(value) for lane, value in zip(lanes, offsets, strict=True) if value is not None}
        self._unstarted |= set(lanes) - set(stored)
        return stored

    def switch(self, engine: Engine) -> None:
        """Match with a reloaded configuration's rules from the next batch on (a batch boundary)."""
        self._next = engine

    def _switched(self, source: KafkaSource) -> Engine:
        new, self._next = self._next, None
        if new is not None:
            for lane in source.assigned():  # lateness goes on from each partition's newest time
                new.set_lane(lane, self.engine.lane_newest(lane))
            self.engine = new
            _log.info("intake_switched", rules=len(new.rules))
        return self.engine

    async def run(self, source: KafkaSource) -> None:
        """Until the source ends (after `close()`)."""
        async for batch in source.batches():
            engine = self._switched(source)
            stats = engine.stats
            wall = self._clock.now_ms()
            if batch.lines:
                before = (stats.matched, stats.late, stats.untimed, stats.clamped)
                malformed = engine.accept_lines(batch.lines, wall_ms=wall, lane=batch.lane)
                records, earliest = engine.take_accepted()
                count_intake(self._metrics, source.name, len(batch.lines), malformed, before, stats)
                await retry_store(
                    functools.partial(self._forward, source, batch, records, earliest), self._metrics, self.health
                )
            elif isinstance(batch.token, Chunk):  # no records: the partition moved, its offset was outside its log
                move = functools.partial(self._forward, source, batch, [], None)
                await retry_store(move, self._metrics, self.health)
            await retry_store(functools.partial(self._report, source, wall), self._metrics, self.health)

    async def _forward(
        self, source: KafkaSource, batch: Batch, records: list[tuple[int, bytes]], earliest: int | None
    ) -> None:
        chunk = batch.token
        assert isinstance(chunk, Chunk)
        refused_at = await self._append_entry(batch.lane, chunk.start, chunk.end, records, earliest)
        if refused_at is None:
            await source.ack(batch)
            return
        source.rewind(batch, await self._rewound(batch.lane, chunk.start, refused_at))

    async def _append_entry(
        self, lane: str, start: int, end: int, records: list[tuple[int, bytes]], earliest: int | None
    ) -> int | None:
        """Append one entry if the partition's forwarded offset is `start` (or it has none yet): None; else
        the offset the partition was forwarded to by someone else."""
        newest = self.engine.lane_newest(lane)
        entry = orjson.dumps(
            {
                "lane": lane,
                "start": start,
                "end": end,
                "newest": newest,
                "earliest": earliest,
                "records": [(time_ms, line.decode()) for time_ms, line in records],
            }
        )
        ns = self._ns
        result = await self._append(
            keys=[keys.intake_offsets(ns), keys.intake_lanes(ns), keys.intake(ns)],
            args=[lane, start, end, "" if newest is None else newest, entry],
        )
        self._unstarted.discard(lane)  # forwarded, or started by another replica: either way it has a start
        if int(result) < 0:
            self.forwarded += 1
            return None
        self.refused += 1
        return int(result)

    async def _rewound(self, lane: str, start: int, offset: int) -> int:
        """After a refusal: continue the lane where it was forwarded to, with the newest time stored there."""
        _log.info("intake_rewound", partition=lane, offset=offset, batch_start=start)
        lane_newest = cast(bytes | None, await self._redis.hget(keys.intake_lanes(self._ns), lane))
        self.engine.set_lane(lane, None if lane_newest is None else int(lane_newest))
        return offset

    async def _report(self, source: KafkaSource, wall: int) -> None:
        """Tell the evaluator how far each assigned partition goes and how far it has been read, and make
        every partition of the topics known to it (unassigned ones hold its clock until someone reports)."""
        report = source.status()
        for lane in sorted(self._unstarted & set(report)):  # forwarded from its first position, records or not
            await self._append_entry(lane, report[lane][1], report[lane][1], [], None)
        status = {lane: f"{high} {fetched} {wall} {data}" for lane, (high, fetched, data) in report.items()}
        pipe = self._redis.pipeline(transaction=False)
        key = keys.lane_status(self._ns)
        for lane in source.partitions():
            if lane not in status:
                pipe.hsetnx(key, lane, "0 0 0 0")
        if status:
            pipe.hset(key, mapping=status)  # type: ignore[arg-type]
        if len(pipe):
            await pipe.execute()


class IntakeSource:
    """The evaluator's source: the intake stream, from the position stored with the evaluator's state."""

    name = "intake"

    def __init__(
        self,
        client: aioredis.Redis,
        namespace: str,
        clock: Clock,
        tick_ms: int,
        stale_ms: int,
        idle_ms: int = 10_000,
        metrics: Metrics | None = None,
        health: Health | None = None,
    ) -> None:
        self._redis, self._ns, self._clock = client, namespace, clock
        self._metrics, self._health = metrics or Metrics(), health or Health()
        self._tick_ms, self._stale_ms, self._idle_ms = tick_ms, stale_ms, idle_ms
        self._position = "0-0"
        self._applied: dict[str, int] = {}  # lane -> the offset up to which its entries are applied
        self._status: dict[str, tuple[int, int, int, int]] = {}
        self._closed = False
        self._behind = True

    def resume(self, meta: Mapping[str, int]) -> None:
        self._applied.update((key[len(OFFSET) :], value) for key, value in meta.items() if key.startswith(OFFSET))
        if all(name in meta for name in _INTAKE_POSITION):
            self._position = f"{meta[_INTAKE_POSITION[0]]}-{meta[_INTAKE_POSITION[1]]}"

    async def batches(self) -> AsyncIterator[Batch]:
        stream = keys.intake(self._ns)
        while not self._closed:
            read = functools.partial(self._redis.xread, {stream: self._position}, count=100, block=self._tick_ms)
            reply = cast(list[Any], await retry_store(read, self._metrics, self._health))
            await retry_store(self._refresh, self._metrics, self._health)
            entries = reply[0][1] if reply else []
            if not entries:
                yield Batch([])
                continue
            for entry_id, fields in entries:
                self._position = entry_id.decode()
                yield self._batch(entry_id.decode(), orjson.loads(fields[b"e"]))

    def _batch(self, entry_id: str, entry: dict[str, Any]) -> Batch:
        ms, seq = (int(part) for part in entry_id.split("-"))
        meta = {_INTAKE_POSITION[0]: ms, _INTAKE_POSITION[1]: seq}
        lane, start, end = entry["lane"], entry["start"], entry["end"]
        applied = self._applied.get(lane)
        if applied is not None and start != applied:
            if start > applied:  # cannot come from the append script; say so rather than stall in silence
                _log.warning("intake_gap", partition=lane, applied=applied, entry_start=start)
            return Batch([], meta=meta, token=entry_id)  # applied before (a restart re-reads the stream's tail)
        self._applied[lane] = end
        meta[OFFSET + lane] = end
        records = [(time_ms, line.encode()) for time_ms, line in entry["records"]]
        timed = Timed(records, entry["newest"], entry["earliest"])
        return Batch([], meta=meta, token=entry_id, lane=lane, timed=timed)

    async def _refresh(self) -> None:
        raw = cast(dict[bytes, bytes], await self._redis.hgetall(keys.lane_status(self._ns)))
        status: dict[str, tuple[int, int, int, int]] = {}
        for lane, value in raw.items():
            high, fetched, wall, data = (int(part) for part in value.split())
            status[lane.decode()] = (high, fetched, wall, data)
        self._status = status

    async def ack(self, batch: Batch) -> None:
        """The entry is applied and checkpointed: entries before it are no longer needed."""
        if isinstance(batch.token, str):
            with contextlib.suppress(RedisError):  # trimming can wait for the next entry
                await self._redis.xtrim(keys.intake(self._ns), minid=batch.token, approximate=True)

    def lagging(self) -> Collection[str]:
        """Partitions that hold the clock: not reported by a live owner lately (unassigned, or its replica
        died), not read to their end, not applied to it yet, or with a record within `idle_ms`."""
        if not self._status:
            return ("",)  # no replica has reported yet
        now = self._clock.now_ms()
        behind: list[str] = []
        for lane, (high, fetched, wall, data) in self._status.items():
            applied = self._applied.get(lane)
            if now - wall > self._stale_ms or fetched < high or applied is None or applied < high:
                behind.append(lane)
            elif wall - data < self._idle_ms:
                # read and applied to its end, but not idle yet (KafkaConfig.idle_ms) as of its owner's last
                # report: an owner that died mid-stream must not look idle just because it stopped reading
                behind.append(lane)
        if not behind and self._behind:
            _log.info("evaluation_caught_up", status=self._status, applied=self._applied, now=now)
        self._behind = bool(behind)
        return behind

    async def close(self) -> None:
        self._closed = True


class Replica:
    """One process's part in replicas mode: intake for its partitions (always), and the evaluation source
    that the composition root runs once this process holds the namespace's lease."""

    def __init__(
        self,
        engine: Engine,
        config: KafkaConfig,
        client: aioredis.Redis,
        namespace: str,
        clock: Clock,
        metrics: Metrics,
    ) -> None:
        self.forwarder = Forwarder(engine, client, namespace, clock, metrics)
        self.kafka = KafkaSource(config, metrics, positions=self.forwarder.positions, clock=clock)
        # A partition whose owner has not reported for this long holds the evaluation's clock (its replica is
        # gone, or it is between owners). Reports come after every batch and tick; hosts' clocks must agree
        # (NTP) to well within this.
        self._intake_args = (client, namespace, clock, config.tick_ms, config.owner_silence_ms(), config.idle_ms)
        self._metrics = metrics
        self.intake = self.evaluation()
        self._task: asyncio.Task[None] | None = None

    def evaluation(self) -> IntakeSource:
        """A fresh evaluation source, for a term as the namespace's writer (it resumes from the checkpoint)."""
        client, namespace, clock, tick_ms, stale_ms, idle_ms = self._intake_args
        self.intake = IntakeSource(
            client, namespace, clock, tick_ms, stale_ms, idle_ms, self._metrics, self.forwarder.health
        )
        return self.intake

    def start(self, stop: asyncio.Event) -> None:
        """Start intake; it ends only when closed or failed, and then the process stops."""
        self._task = asyncio.create_task(self.forwarder.run(self.kafka))
        self._task.add_done_callback(lambda _: stop.set())

    async def close(self, timeout_s: float) -> bool:
        """Stop intake (the batch in flight is forwarded and acknowledged); False when it failed or hung."""
        await self.kafka.close()
        task = self._task
        if task is None:
            return True
        try:
            await asyncio.wait_for(task, timeout_s)
        except TimeoutError:
            _log.error("intake_shutdown_timeout", seconds=timeout_s)
            return False
        except Exception as exc:
            _log.error("intake_failed", error=f"{type(exc).__name__}: {exc}")
            return False
        return True
