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
from collections.abc import AsyncIterator, Callable, Collection, Mapping
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

    def __init__(
        self,
        engine: Engine,
        client: aioredis.Redis,
        namespace: str,
        clock: Clock,
        metrics: Metrics,
        digest: str = "",
    ) -> None:
        self.engine, self._redis, self._ns, self._clock, self._metrics = engine, client, namespace, clock, metrics
        self.digest = digest  # the configuration `engine` matches with (reload.Setup.digest)
        self._append = client.register_script(_APPEND)
        self.health = Health()
        self._unstarted: set[str] = set()  # assigned partitions never forwarded: their start is forwarded once
        self.forwarded = 0  # batches appended
        self._next: tuple[Engine, str] | None = None  # a reloaded configuration's intake, taken at the next batch
        # Configurations this intake ran before, kept while the evaluation may still run one of them: until it
        # is known to run this intake's own (see `_also`).
        self._earlier: dict[str, Engine] = {}
        self.evaluating: str | None = None  # the configuration the evaluation runs, as last read from Redis
        self._warned: str | None = None
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
            self._set_lane(lane, None if value is None else int(value))
        stored = {lane: int(value) for lane, value in zip(lanes, offsets, strict=True) if value is not None}
        self._unstarted |= set(lanes) - set(stored)
        return stored

    def switch(self, engine: Engine, digest: str = "") -> None:
        """Match with a reloaded configuration's rules from the next batch on (a batch boundary)."""
        self._next = (engine, digest)

    def _set_lane(self, lane: str, newest: int | None) -> None:
        for engine in (self.engine, *self._earlier.values()):
            engine.set_lane(lane, newest)

    def _switched(self, source: KafkaSource) -> Engine:
        switch, self._next = self._next, None
        if switch is not None:
            new, digest = switch
            for lane in source.assigned():  # lateness goes on from each partition's newest time
                new.set_lane(lane, self.engine.lane_newest(lane))
            if digest != self.digest:
                self._earlier[self.digest] = self.engine
                self._earlier.pop(digest, None)
            self.engine, self.digest = new, digest
            _log.info("intake_switched", rules=len(new.rules), digest=digest)
        return self.engine

    def _also(self) -> tuple[str, Engine] | None:
        """While the evaluation may still run a configuration this intake ran before, that configuration and
        its intake: each entry then holds every record either set of rules matches, so whichever set the
        evaluating process applies it with (it matches each record again), nothing it needs is missing. The
        evaluation switches at the end of its term, the intakes at their next batch: without this, records
        forwarded between the two were judged by rules that had not matched them. Once the evaluation is
        known to run this intake's configuration, the earlier ones are dropped."""
        if not self._earlier:
            return None
        evaluating = self.evaluating
        if evaluating is None:  # not read yet: the configuration switched from last is the likely one
            return next(reversed(self._earlier.items()))
        for digest in [d for d in self._earlier if d != evaluating]:
            del self._earlier[digest]  # the evaluation has moved past it (to this intake's, or another)
        engine = self._earlier.get(evaluating)
        return None if engine is None else (evaluating, engine)

    def _take(
        self, engine: Engine, lines: list[bytes], lane: str, wall: int
    ) -> tuple[int, list[tuple[int, bytes]], int | None, list[str]]:
        """Intake of one batch: (malformed lines, records to forward, earliest time, configurations matched)."""
        malformed = engine.accept_lines(lines, wall_ms=wall, lane=lane)
        records, earliest = engine.take_accepted()
        also = self._also()
        if also is None:
            return malformed, records, earliest, [self.digest]
        digest, other = also
        other.accept_lines(lines, wall_ms=wall, lane=lane)
        more, sooner = other.take_accepted()
        if more:
            records = _union(lines, records, more)
        if sooner is not None and (earliest is None or sooner < earliest):
            earliest = sooner
        return malformed, records, earliest, [self.digest, digest]

    async def run(self, source: KafkaSource) -> None:
        """Until the source ends (after `close()`)."""
        async for batch in source.batches():
            engine = self._switched(source)
            stats = engine.stats
            wall = self._clock.now_ms()
            if batch.lines:
                before = (stats.matched, stats.late, stats.untimed, stats.clamped)
                malformed, records, earliest, configs = self._take(engine, batch.lines, batch.lane, wall)
                count_intake(self._metrics, source.name, len(batch.lines), malformed, before, stats)
                forward = functools.partial(self._forward, source, batch, records, earliest, configs)
                await retry_store(forward, self._metrics, self.health)
            elif isinstance(batch.token, Chunk):  # no records: the partition moved, its offset was outside its log
                move = functools.partial(self._forward, source, batch, [], None, [self.digest])
                await retry_store(move, self._metrics, self.health)
            await retry_store(functools.partial(self._report, source, wall), self._metrics, self.health)

    async def _forward(
        self,
        source: KafkaSource,
        batch: Batch,
        records: list[tuple[int, bytes]],
        earliest: int | None,
        configs: list[str],
    ) -> None:
        chunk = batch.token
        assert isinstance(chunk, Chunk)
        refused_at = await self._append_entry(batch.lane, chunk.start, chunk.end, records, earliest, configs)
        if refused_at is None:
            await source.ack(batch)
            return
        source.rewind(batch, await self._rewound(batch.lane, chunk.start, refused_at))

    async def _append_entry(
        self,
        lane: str,
        start: int,
        end: int,
        records: list[tuple[int, bytes]],
        earliest: int | None,
        configs: list[str] | None = None,
    ) -> int | None:
        """Append one entry if the partition's forwarded offset is `start` (or it has none yet): None; else
        the offset the partition was forwarded to by someone else. `configs`: the digests of the
        configurations whose rules chose the records (the evaluation says when its own is not among them)."""
        newest = self.engine.lane_newest(lane)
        entry = orjson.dumps(
            {
                "lane": lane,
                "start": start,
                "end": end,
                "newest": newest,
                "earliest": earliest,
                "records": [(time_ms, line.decode()) for time_ms, line in records],
                "config": configs if configs is not None else [self.digest],
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
        self._set_lane(lane, None if lane_newest is None else int(lane_newest))
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
        pipe.get(keys.evaluating_config(self._ns))
        evaluating = cast(bytes | None, (await pipe.execute())[-1])
        self.evaluating = None if evaluating is None else evaluating.decode()
        if self.evaluating not in (None, self.digest, *self._earlier) and self._warned != self.evaluating:
            self._warned = self.evaluating  # a rolling update: this intake cannot match for what is evaluated
            _log.warning("intake_config_differs", evaluating=self.evaluating, mine=self.digest)


def _union(
    lines: list[bytes], records: list[tuple[int, bytes]], more: list[tuple[int, bytes]]
) -> list[tuple[int, bytes]]:
    """The records of one batch that either of two intakes took, each once, in the batch's order (an intake
    keeps the line objects it was given; the time is the first intake's when both took a line)."""
    taken = {id(line): (time_ms, line) for time_ms, line in more}
    taken.update((id(line), (time_ms, line)) for time_ms, line in records)
    return [taken[id(line)] for line in lines if id(line) in taken]


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
        digest: str = "",
        upcoming: Callable[[], str] = str,
    ) -> None:
        self._redis, self._ns, self._clock = client, namespace, clock
        self._digest = digest  # the configuration this term evaluates with (published for the intakes)
        self._upcoming = upcoming  # the configuration accepted last (the next term's, when not `digest`)
        self._halted = False
        self._closing = asyncio.Event()
        self._foreign: set[str] = set()  # configurations of entries whose records were not matched for ours
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
            if self._halted:  # the term ends for a reload: wait for it, reading nothing more
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._closing.wait(), self._tick_ms / 1000)
                yield Batch([])
                continue
            read = functools.partial(self._redis.xread, {stream: self._position}, count=100, block=self._tick_ms)
            reply = cast(list[Any], await retry_store(read, self._metrics, self._health))
            await retry_store(self._refresh, self._metrics, self._health)
            entries = reply[0][1] if reply else []
            if not entries:
                yield Batch([])
                continue
            for entry_id, fields in entries:
                entry = orjson.loads(fields[b"e"])
                if self._closed or self._for_next(entry):
                    self._halted = True  # not applied: the next term reads it from the stored position
                    break
                self._position = entry_id.decode()
                yield self._batch(entry_id.decode(), entry)

    def _for_next(self, entry: dict[str, Any]) -> bool:
        """The entry holds records matched for a configuration this process has accepted and evaluates from
        its next term: the term ends before it, so those records are applied with the rules that need them
        (the intakes switch at their next batch, the evaluation only when its term ends)."""
        upcoming = self._upcoming()
        return upcoming not in ("", self._digest) and upcoming in entry.get("config", ())

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
        configs = entry.get("config")
        if self._digest and configs and self._digest not in configs and configs[0] not in self._foreign:
            self._foreign.add(configs[0])  # once per configuration and term: a rolling update, or a refused file
            _log.warning("intake_config_differs", partition=lane, evaluating=self._digest, matched_for=configs)
        records = [(time_ms, line.encode()) for time_ms, line in entry["records"]]
        timed = Timed(records, entry["newest"], entry["earliest"])
        return Batch([], meta=meta, token=entry_id, lane=lane, timed=timed)

    async def _refresh(self) -> None:
        pipe = self._redis.pipeline(transaction=False)
        if self._digest:
            pipe.set(keys.evaluating_config(self._ns), self._digest)
        pipe.hgetall(keys.lane_status(self._ns))
        raw = cast(dict[bytes, bytes], (await pipe.execute())[-1])
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
        self._closing.set()


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
        digest: str = "",
    ) -> None:
        self.forwarder = Forwarder(engine, client, namespace, clock, metrics, digest)
        self.kafka = KafkaSource(config, metrics, positions=self.forwarder.positions, clock=clock)
        # A partition whose owner has not reported for this long holds the evaluation's clock (its replica is
        # gone, or it is between owners). Reports come after every batch and tick; hosts' clocks must agree
        # (NTP) to well within this.
        self._intake_args = (client, namespace, clock, config.tick_ms, config.owner_silence_ms(), config.idle_ms)
        self._metrics = metrics
        self.intake = self.evaluation()
        self._task: asyncio.Task[None] | None = None

    def evaluation(self, digest: str = "", upcoming: Callable[[], str] = str) -> IntakeSource:
        """A fresh evaluation source, for a term as the namespace's writer (it resumes from the checkpoint)
        running the configuration `digest`; `upcoming` gives the configuration accepted last."""
        client, namespace, clock, tick_ms, stale_ms, idle_ms = self._intake_args
        health = self.forwarder.health
        self.intake = IntakeSource(
            client, namespace, clock, tick_ms, stale_ms, idle_ms, self._metrics, health, digest, upcoming
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
