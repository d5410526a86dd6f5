"""Live benchmark: Kafka -> `run_live` -> Redis, throughput from a pre-filled topic and produce-to-transition latency.

Run by hand, never in CI (it starts a private Tansu broker and a private redis-server):

    python bench/live_bench.py [--lines N] [--partitions P] [--rate R] [--seconds S] [--send-every-ms MS]
                               [--latency-partitions P] [--fetch-max-wait-ms MS [MS ...]] [--runs R]
                               [--rules PATH [PATH ...]] [--max-batch-lines N] [--max-partition-fetch-bytes B]
                               [--stock-records] [--skip-throughput] [--skip-latency] [--profile]

Every measurement is repeated `--runs` times (3), each with its floor measured right before it, and printed
per run and as median (min-max), the streamalert figure also as a ratio to its floor.

Throughput: N lines from the replay benchmark's generator (bench/replay_bench.py, cached in bench/data/) are
shifted by whole seconds so that the newest lies a minute before the wall clock, and produced to a fresh
topic of P partitions before anything is timed. Then the production live loop
(`streamalert.pipeline.run_live` with a `KafkaSource` in a fresh consumer group, `auto_offset_reset=earliest`,
the rules of `--rules` (default config/rules) with the default lateness, a `RedisStore`) reads the topic. The
clock starts when the first non-empty batch comes out of the source, so the consumer group join is not timed
(nor is the first getmany), and stops when the last line's batch is acknowledged, i.e. after its checkpoint
(state and offset) is committed to Redis. The figure is lines per second of one process (one event loop; the
broker and Redis run beside it). The floor: the same topic drained by a bare aiokafka `getmany` loop (no group,
nothing done with the records but taking their values out of aiokafka's ConsumerRecords), the issue's "Tansu +
aiokafka consume floor". The same drain on raw records (kafka_records.py, what the source reads) is printed
too. A breakdown splits the timed interval into fetch (waiting for the source's next batch, which includes
aiokafka reading and parsing the fetch responses), engine (accept_lines, advance, drain, checkpoint), Redis
commit (the pipeline's own store latency histogram) and ack (the Kafka offset commit); "other" is metrics,
the sink and the event loop. `--stock-records` adds, in each run, the same live run on aiokafka's
ConsumerRecords (the source before kafka_records.py): an A/B in one run.

Latency: a separate (spawned) producer process sends R lines/s for S seconds, a batch every MS ms paced on
the monotonic clock (not a fixed sleep per message), each batch stamped with the wall clock when it is handed
to librdkafka (linger 1 ms), to a topic that `run_live` already consumes (caught up on a warm-up burst first).
One line in PROBE_EVERY is a probe (`event: bench_probe`, unique `probe_id`); a rule written by this script to
a temporary file (count >= 1 over 1 s, group_by probe_id) fires on every probe, so each probe gives one firing
transition whose event time is its produce stamp. Latency = wall clock when the sink receives the transition
(after the Redis commit) - that stamp, in whole milliseconds. The `--rules` run alongside, so the engine does
its usual work. The engine runs with lateness 0: an instant is decided once it falls behind `newest - lateness`,
so the end-to-end latency of a deployment is this figure plus its lateness (30 s by default); and with lateness
0 a probe waits for the next, later line (here the next batch, MS ms on). The floor: a bare aiokafka consumer
(no group, same fetch_max_wait_ms) on a fresh topic fed by the same producer, timing each probe out of
getmany. The run is repeated for each `--fetch-max-wait-ms` (default: KafkaConfig.fetch_max_wait_ms, the
shipped 100, and 20; aiokafka's own is 500): Tansu answers a fetch that finds no new record
only after sleeping on the order of that time, where Kafka answers once a byte arrives.

Targets (issue 10): >= 200k lines/s per process, p99 < 50 ms at 20k lines/s with default Kafka settings and
lateness 0. Each result is printed as PASS or MISS; the exit status stays 0 either way. `--profile` adds a
cProfile run of the live throughput (separate, on a fresh consumer group) and prints the top functions by
tottime. Only streamalert.clock reads the time (Stopwatch, WallClock); CPU use comes from resource.getrusage.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import itertools
import math
import multiprocessing
import os
import pstats
import resource
import statistics
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event as ProcessEvent
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.cimpl import NewTopic  # what confluent_kafka.admin re-exports, without an explicit export

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _path in (str(ROOT), str(BENCH)):  # run as a plain script from a checkout; replay_bench sits next to us
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bench.replay_bench import _Timestamps, generate, input_file  # noqa: E402
from streamalert.clock import Stopwatch, WallClock  # noqa: E402
from streamalert.config.rules import Rule, load_rules  # noqa: E402
from streamalert.decode import parse_time  # noqa: E402
from streamalert.engine import Engine, tune_collector  # noqa: E402
from streamalert.model import AlertState, Transition  # noqa: E402
from streamalert.pipeline import Health, run_live  # noqa: E402
from streamalert.sources import Batch, kafka_records  # noqa: E402
from streamalert.sources import kafka as kafka_source  # noqa: E402
from streamalert.sources.kafka import KafkaConfig, KafkaSource  # noqa: E402
from streamalert.sources.kafka_records import raw_values  # noqa: E402
from streamalert.state.redis import RedisStore  # noqa: E402
from streamalert.telemetry.logging import configure as configure_logging  # noqa: E402
from streamalert.telemetry.metrics import Metrics  # noqa: E402
from streamalert.testing import kafka_broker, redis_server  # noqa: E402

RULES_DIR = ROOT / "config" / "rules"
DEFAULT_LINES = 1_000_000
DEFAULT_PARTITIONS = 3
DEFAULT_RATE = 20_000
DEFAULT_SECONDS = 20.0
TARGET_EVENTS_PER_S = 200_000
TARGET_P99_MS = 50.0  # issue 10

MAX_BATCH_LINES = KafkaConfig.model_fields["max_batch_lines"].default  # records per getmany (--max-batch-lines)
PARTITION_FETCH_BYTES = KafkaConfig.model_fields["max_partition_fetch_bytes"].default  # --max-partition-fetch-bytes
SHIPPED_FETCH_MAX_WAIT_MS = KafkaConfig.model_fields["fetch_max_wait_ms"].default  # streamalert's default
TICK_MS = 100
RECENT_MS = 60_000  # the pre-filled input ends this long before the wall clock
STAMP_KEY = b'"timestamp":"'  # every generated line ends with it: ..."timestamp":"YYYY-MM-DDTHH:MM:SS.mmmZ"}
STAMP_LEN = 24

DEFAULT_SEND_EVERY_MS = 10  # the latency producer sends a batch every 10 ms (200 lines at 20k/s)
PROBE_EVERY = 50  # one line in 50 is a probe: 2%
PROBE_RULE = "bench_probe"
PROBE_RULES_YAML = f"""\
rules:
  - name: {PROBE_RULE}
    match:
      event: {PROBE_RULE}
    window: 1s
    condition: count >= 1
    group_by: [probe_id]
"""
NOISE_TEMPLATES = 20_000  # generated lines the latency producer cycles through (restamped as sent)
WARMUP_LINES = 5_000
TAIL_S = 0.5  # noise without probes after the measured period, so the last probes' instant is decided
STALL_S = 30.0  # a run fails when no line is acknowledged for this long
_names = itertools.count()


def _unique(prefix: str) -> str:
    return f"{prefix}-{os.getpid()}-{next(_names)}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def _cpu_s() -> float:
    """CPU seconds (user + system) used by this process so far."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# ---- input -------------------------------------------------------------------------------------------------


def _stamp_at(line: bytes) -> int:
    """Offset of the "YYYY-MM-DDTHH:MM:SS.mmmZ" stamp in a generated line."""
    at = line.rfind(STAMP_KEY)
    if at < 0:
        raise ValueError(f"no timestamp in {line[:80]!r}")
    return at + len(STAMP_KEY)


def _epoch_s(head: bytes) -> int:
    return int(datetime.fromisoformat(head.decode() + "+00:00").timestamp())


def restamp(lines: Sequence[bytes], newest_ms: int) -> list[bytes]:
    """The lines shifted by a whole number of seconds so that the newest stamp is about `newest_ms`.

    Whole seconds keep the milliseconds, so only "YYYY-MM-DDTHH:MM:SS" changes, through a cache per second."""
    newest = max(lines, key=lambda line: line[_stamp_at(line) : _stamp_at(line) + STAMP_LEN])
    at = _stamp_at(newest)
    shift_s = newest_ms // 1000 - _epoch_s(newest[at : at + 19])
    heads: dict[bytes, bytes] = {}
    out: list[bytes] = []
    for line in lines:
        at = _stamp_at(line)
        head = line[at : at + 19]
        new = heads.get(head)
        if new is None:
            second = datetime.fromtimestamp(_epoch_s(head) + shift_s, tz=UTC)
            new = heads[head] = second.strftime("%Y-%m-%dT%H:%M:%S").encode()
        out.append(line[:at] + new + line[at + 19 :])
    return out


# ---- Kafka -------------------------------------------------------------------------------------------------


def create_topic(broker: str, partitions: int) -> str:
    topic = _unique("bench")
    admin = AdminClient({"bootstrap.servers": broker})
    for future in admin.create_topics([NewTopic(topic, num_partitions=partitions, replication_factor=1)]).values():
        future.result(timeout=30)
    return topic


def prefill(broker: str, topic: str, lines: Sequence[bytes], partitions: int) -> float:
    """Produce the lines round-robin over the partitions (each partition keeps their order); seconds taken."""
    producer = Producer(
        {
            "bootstrap.servers": broker,
            "enable.idempotence": False,
            "linger.ms": 50,
            "batch.size": 1_000_000,
            "queue.buffering.max.messages": 1_000_000,
            "queue.buffering.max.kbytes": 1_048_576,
            "log_level": 3,  # the broker closing idle connections at the end is not news
        }
    )
    watch = Stopwatch()
    for i, line in enumerate(lines):
        while True:
            try:
                producer.produce(topic, line, partition=i % partitions)
                break
            except BufferError:  # the local queue is full: let librdkafka send some
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    left = producer.flush(120)
    if left:
        raise RuntimeError(f"{left} records not delivered")
    return watch.elapsed()


# ---- throughput --------------------------------------------------------------------------------------------


@dataclass(slots=True)
class Timers:
    """Where the timed interval of a live run goes (seconds, from the first non-empty batch on)."""

    started: bool = False
    fetch: float = 0.0  # waiting for the source's next batch (aiokafka getmany and the batch split)
    engine: float = 0.0  # accept_lines, advance, drain and checkpoint
    ack: float = 0.0  # source.ack: the Kafka offset commit
    store_at_start: float = 0.0  # the store latency histogram's sum when the clock started
    store: float = 0.0  # Redis commits (from the pipeline's own store latency histogram)

    def restart(self, metrics: Metrics) -> None:
        self.started, self.fetch, self.engine, self.ack = True, 0.0, 0.0, 0.0
        self.store_at_start, self.store = _histogram_sum(metrics), 0.0


def _histogram_sum(metrics: Metrics) -> float:
    for metric in metrics.store_latency.collect():
        for sample in metric.samples:
            if sample.name.endswith("_sum"):
                return float(sample.value)
    return 0.0


class TimedEngine(Engine):
    """The production engine, with the time spent in its per-batch calls added up."""

    def __init__(self, rules: list[Rule], timers: Timers, **options: Any) -> None:
        super().__init__(rules, **options)
        self.timers = timers

    def accept_lines(self, *args: Any, **kwargs: Any) -> int:
        watch = Stopwatch()
        try:
            return super().accept_lines(*args, **kwargs)
        finally:
            self._add(watch)

    def advance(self, *args: Any, **kwargs: Any) -> bool:
        watch = Stopwatch()
        try:
            return super().advance(*args, **kwargs)
        finally:
            self._add(watch)

    def drain(self) -> list[Transition]:
        watch = Stopwatch()
        try:
            return super().drain()
        finally:
            self._add(watch)

    def checkpoint(self) -> Any:
        watch = Stopwatch()
        try:
            return super().checkpoint()
        finally:
            self._add(watch)

    def _add(self, watch: Stopwatch) -> None:
        if self.timers.started:
            self.timers.engine += watch.elapsed()


class CountingSource:
    """Wraps the Kafka source: starts the clock at the first non-empty batch, counts acknowledged lines, and
    closes the source once `expect`ed lines are all acknowledged (committed to the store)."""

    def __init__(
        self, inner: KafkaSource, metrics: Metrics, timers: Timers | None = None, clock: WallClock | None = None
    ) -> None:
        self.inner = inner
        self.clock = clock
        self.taken_ms = 0  # wall clock when the last non-empty batch came out of the source (with a clock)
        self.batches_taken = 0  # non-empty batches
        self.name = inner.name
        self.metrics = metrics
        self.timers = timers or Timers()
        self.acked = 0
        self.expected: int | None = None
        self.close_when_done = False
        self.reached = asyncio.Event()
        self.watch: Stopwatch | None = None
        self.cpu_at_start = 0.0
        self.seconds = 0.0  # first non-empty batch out of the source -> the `expect`ed line acknowledged
        self.cpu_seconds = 0.0

    def expect(self, total: int, close: bool) -> None:
        """Stop the clock (and close the source, if `close`) once `total` lines are acknowledged."""
        self.expected, self.close_when_done = total, close
        self.reached.clear()
        self._check()

    async def batches(self) -> AsyncIterator[Batch]:
        watch = Stopwatch()
        async for batch in self.inner.batches():
            if self.timers.started:
                self.timers.fetch += watch.elapsed()  # from taking the last batch back to this one
            elif batch.lines:
                self.watch, self.cpu_at_start = Stopwatch(), _cpu_s()
                self.timers.started = True
                self.timers.store_at_start = _histogram_sum(self.metrics)
            if batch.lines:
                self.batches_taken += 1
                if self.clock is not None:
                    self.taken_ms = self.clock.now_ms()
            yield batch
            watch = Stopwatch()

    async def ack(self, batch: Batch) -> None:
        watch = Stopwatch()
        await self.inner.ack(batch)
        if self.timers.started:
            self.timers.ack += watch.elapsed()
        self.acked += len(batch.lines)
        if self._check() and self.close_when_done:
            await self.inner.close()  # every line is in: the source ends within tick_ms

    def _check(self) -> bool:
        """Stop the clock when the expected count is reached; True the first time."""
        if self.expected is None or self.acked < self.expected or self.reached.is_set():
            return False
        if self.watch is not None:
            self.seconds, self.cpu_seconds = self.watch.elapsed(), _cpu_s() - self.cpu_at_start
        self.timers.store = _histogram_sum(self.metrics) - self.timers.store_at_start
        self.reached.set()
        return True

    def lagging(self) -> Collection[str]:
        return self.inner.lagging()

    def resume(self, meta: Mapping[str, int]) -> None:
        self.inner.resume(meta)

    async def close(self) -> None:
        await self.inner.close()


class CountingSink:
    def __init__(self) -> None:
        self.transitions = 0

    def write(self, transitions: list[Transition]) -> None:
        self.transitions += len(transitions)


@dataclass(slots=True)
class Throughput:
    lines: int
    seconds: float
    cpu_seconds: float
    timers: Timers
    transitions: int
    matched: int
    late: int
    series: int

    @property
    def per_s(self) -> float:
        return self.lines / self.seconds


def _kafka_config(broker: str, topic: str, fetch_max_wait_ms: int | None = None) -> KafkaConfig:
    config = KafkaConfig(
        brokers=[broker],
        topics=[topic],
        group_id=_unique("bench-group"),
        auto_offset_reset="earliest",
        max_batch_lines=MAX_BATCH_LINES,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        tick_ms=TICK_MS,
        session_timeout_ms=6000,
    )
    return config if fetch_max_wait_ms is None else config.model_copy(update={"fetch_max_wait_ms": fetch_max_wait_ms})


def _store(redis_url: str) -> RedisStore:
    return RedisStore.from_url(redis_url + ("&" if "?" in redis_url else "?") + "namespace=bench")


async def _reached(source: CountingSource, live: asyncio.Task[None]) -> None:
    """Wait until the source has acknowledged the lines it expects. Fail if the live loop ends first, or if
    no line is acknowledged for STALL_S (lines lost, or the consumer stuck): a benchmark must not hang."""
    reached = asyncio.ensure_future(source.reached.wait())
    try:
        acked = -1
        while source.acked != acked:
            acked = source.acked
            done, _ = await asyncio.wait({reached, live}, timeout=STALL_S, return_when=asyncio.FIRST_COMPLETED)
            if reached in done:
                return
            if live in done:
                live.result()  # raises what ended it
                raise RuntimeError(f"the live loop ended after {source.acked:,} of {source.expected} lines")
        raise RuntimeError(
            f"{source.acked:,} of {source.expected} lines acknowledged and none for {STALL_S:g} s: "
            "lines were lost or the consumer is stuck"
        )
    finally:
        reached.cancel()


async def live_throughput(
    broker: str, topic: str, redis_url: str, rules: list[Rule], lines: int, raw: bool = True
) -> Throughput:
    """`run_live` over the pre-filled topic until every line is committed; timed from the first batch. With
    `raw` false, the source takes aiokafka's ConsumerRecords (as before kafka_records.py), for an A/B run."""
    kafka_source._RAW_RECORDS = raw and kafka_records.install()
    store = _store(redis_url)
    await store.reset()
    metrics, timers = Metrics(), Timers()
    engine = TimedEngine(rules, timers)
    source = CountingSource(KafkaSource(_kafka_config(broker, topic), metrics), metrics, timers)
    source.expect(lines, close=True)
    sink = CountingSink()
    live = asyncio.create_task(run_live(engine, source, store, sink, WallClock(), metrics, Health()))
    try:
        await _reached(source, live)  # the source closes itself then
    finally:
        await source.close()
        await asyncio.wait_for(live, STALL_S)
        await store.close()
    stats = engine.stats
    return Throughput(
        lines,
        source.seconds,
        source.cpu_seconds,
        timers,
        sink.transitions,
        stats.matched,
        stats.late,
        engine.series_count(),
    )


async def drain_baseline(broker: str, topic: str, partitions: int, lines: int, raw: bool) -> tuple[float, float]:
    """A bare aiokafka consumer (no group) reading the topic from the start, the values taken out of the
    records and nothing else: (lines/s, CPU seconds per wall second), timed from the first non-empty getmany.
    `raw`: records as the source gets them (kafka_records.py), else aiokafka's own ConsumerRecords."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker,
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=None if raw else MAX_BATCH_LINES,
        max_partition_fetch_bytes=PARTITION_FETCH_BYTES,
        value_deserializer=raw_values if raw else None,
    )
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        got = 0
        watch: Stopwatch | None = None
        cpu = 0.0
        while got < lines:
            data = await consumer.getmany(timeout_ms=TICK_MS)
            for fetched in data.values():
                # raw: one list per record batch (kafka_records.py)
                records = list(itertools.chain.from_iterable(fetched)) if raw else fetched
                values = [r.value for r in records]
                got += len(values)
            if data and watch is None:
                watch, cpu = Stopwatch(), _cpu_s()
        assert watch is not None
        seconds = watch.elapsed()
        return lines / seconds, (_cpu_s() - cpu) / seconds
    finally:
        await consumer.stop()


def profile_throughput(broker: str, topic: str, redis_url: str, rules: list[Rule], lines: int, top: int = 30) -> None:
    gc.collect()
    profiler = cProfile.Profile()
    profiler.enable()
    result = asyncio.run(live_throughput(broker, topic, redis_url, rules, lines))
    profiler.disable()
    print(
        f"\ncProfile of a live throughput run ({result.per_s:,.0f} lines/s under the profiler), top {top} by tottime:"
    )
    stats = pstats.Stats(profiler, stream=sys.stdout)
    stats.strip_dirs().sort_stats(pstats.SortKey.TIME).print_stats(top)


# ---- latency -----------------------------------------------------------------------------------------------


def _templates(lines: Sequence[bytes]) -> list[tuple[bytes, bytes]]:
    """(before the stamp, after the stamp) of each line, to stamp it as it is sent."""
    out: list[tuple[bytes, bytes]] = []
    for line in lines:
        at = _stamp_at(line)
        out.append((line[:at], line[at + STAMP_LEN :]))
    return out


def paced_producer(
    broker: str,
    topic: str,
    partitions: int,
    rate: int,
    seconds: float,
    send_every_s: float,
    go: ProcessEvent,
    out: Queue[tuple[Any, ...]],
) -> None:
    """The latency run's producer (a process of its own): a warm-up burst, then `rate` lines/s for `seconds`
    plus a probe-free tail, every line stamped with the wall clock when it is handed to librdkafka."""
    templates = _templates(generate(NOISE_TEMPLATES))
    producer = Producer({"bootstrap.servers": broker, "enable.idempotence": False, "linger.ms": 1, "log_level": 3})
    clock, stamps = WallClock(), _Timestamps()
    noise = itertools.cycle(templates)
    partition = itertools.cycle(range(partitions))
    stamp = stamps.format(clock.now_ms()).encode()
    for _ in range(WARMUP_LINES):
        before, after = next(noise)
        producer.produce(topic, before + stamp + after, partition=next(partition))
    left = producer.flush(30)
    out.put(("warm", WARMUP_LINES) if not left else ("undelivered", left))
    if left or not go.wait(120):
        return
    measured, total = int(rate * seconds), int(rate * (seconds + TAIL_S))
    pause = threading.Event()
    sent = probes = 0
    worst_behind = 0.0
    watch = Stopwatch()
    measured_seconds = 0.0
    for tick in itertools.count(1):
        if sent >= measured and not measured_seconds:
            measured_seconds = watch.elapsed()
        if sent >= total:
            break
        due_at = tick * send_every_s
        wait = due_at - watch.elapsed()
        if wait > 0:
            pause.wait(wait)
        else:
            worst_behind = max(worst_behind, -wait)
        due = min(total, round(due_at * rate))
        stamp = stamps.format(clock.now_ms()).encode()
        for k in range(sent, due):
            if k < measured and k % PROBE_EVERY == 0:
                value = b'{"event":"bench_probe","probe_id":%d,"service":"bench","level":"info","timestamp":"%s"}' % (
                    k,
                    stamp,
                )
                probes += 1
            else:
                before, after = next(noise)
                value = before + stamp + after
            producer.produce(topic, value, partition=next(partition))
        sent = due
        producer.poll(0)
    left = producer.flush(30)
    out.put(("done", sent, probes, measured_seconds, worst_behind, left))


class LatencySink:
    """Latency of every probe's firing transition: wall clock at arrival - its event time (the produce stamp),
    split at the moment the batch that led to the transition came out of the source."""

    def __init__(self, clock: WallClock, source: CountingSource) -> None:
        self.clock, self.source = clock, source
        self.latencies_ms: list[int] = []
        self.to_batch_ms: list[int] = []  # stamp -> the deciding batch out of the source
        self.in_pipeline_ms: list[int] = []  # that batch out of the source -> transition in the sink

    def write(self, transitions: list[Transition]) -> None:
        now, taken = self.clock.now_ms(), self.source.taken_ms
        for t in transitions:
            if t.rule == PROBE_RULE and t.state is AlertState.FIRING:
                self.latencies_ms.append(now - t.at_ms)
                self.to_batch_ms.append(taken - t.at_ms)
                self.in_pipeline_ms.append(now - taken)


@dataclass(slots=True)
class Latency:
    sent: int
    probes: int
    measured_seconds: float  # to send the lines of the measured period (the tail not included)
    worst_behind_s: float
    latencies_ms: list[int] = field(default_factory=list)
    to_batch_ms: list[int] = field(default_factory=list)
    in_pipeline_ms: list[int] = field(default_factory=list)
    late: int = 0
    clamped: int = 0
    batches: int = 0  # non-empty batches while the producer ran
    timers: Timers = field(default_factory=Timers)  # from the producer's start to the last line acknowledged
    seconds: float = 0.0  # idem


def quantile(values: Sequence[int], q: float) -> int:
    """Nearest-rank quantile."""
    ordered = sorted(values)
    return ordered[max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))]


async def live_latency(
    broker: str,
    redis_url: str,
    rules: list[Rule],
    partitions: int,
    rate: int,
    seconds: float,
    send_every_ms: float,
    fetch_max_wait_ms: int | None,
) -> Latency:
    """`run_live` (lateness 0) on a fresh topic, caught up on a warm-up burst, then fed by the paced producer."""
    topic = create_topic(broker, partitions)
    store = _store(redis_url)
    await store.reset()
    metrics, timers = Metrics(), Timers()
    engine = TimedEngine(rules, timers, lateness_ms=0)
    config = _kafka_config(broker, topic, fetch_max_wait_ms)
    source = CountingSource(KafkaSource(config, metrics), metrics, timers, clock=WallClock())
    sink = LatencySink(WallClock(), source)
    producer, go, out = _start_producer(broker, topic, partitions, rate, seconds, send_every_ms)
    live = asyncio.create_task(run_live(engine, source, store, sink, WallClock(), metrics, Health()))
    try:
        tag, warm = await asyncio.to_thread(out.get, True, 120)
        if tag != "warm":
            raise RuntimeError(f"the producer could not deliver {warm} warm-up records")
        source.expect(warm, close=False)
        await _reached(source, live)
        batches_before = source.batches_taken
        # Every warm-up line is in. The partition holds the clock until it has been idle for idle_ms (then the
        # wall clock drives); wait for that, so the measured period starts from a caught-up, idle consumer.
        for _ in range(int((source.inner.config.idle_ms + 5_000) / 50)):
            if not source.lagging():
                break
            await asyncio.sleep(0.05)
        else:
            raise RuntimeError(f"still lagging after the warm-up: {sorted(source.lagging())}")
        timers.restart(metrics)
        watch = Stopwatch()
        go.set()
        _, sent, probes, measured_seconds, worst_behind, left = await asyncio.to_thread(out.get, True, seconds + 120)
        if left:
            raise RuntimeError(f"the producer could not deliver {left} records")
        source.expect(warm + sent, close=False)
        await _reached(source, live)
        seconds_run = watch.elapsed()
    finally:
        await source.close()
        await asyncio.wait_for(live, STALL_S)
        await store.close()
        producer.join(10)
        if producer.is_alive():  # the run failed before the producer was let go
            producer.terminate()
            producer.join(10)
    return Latency(
        sent,
        probes,
        measured_seconds,
        worst_behind,
        sink.latencies_ms,
        sink.to_batch_ms,
        sink.in_pipeline_ms,
        engine.stats.late,
        engine.stats.clamped,
        source.batches_taken - batches_before,
        timers,
        seconds_run,
    )


def _start_producer(
    broker: str, topic: str, partitions: int, rate: int, seconds: float, send_every_ms: float
) -> tuple[BaseProcess, ProcessEvent, Queue[tuple[Any, ...]]]:
    """The paced producer in a spawned process, held until `go` is set; it reports on `out`."""
    context = multiprocessing.get_context("spawn")
    go = context.Event()
    out: Queue[tuple[Any, ...]] = context.Queue()
    producer = context.Process(
        target=paced_producer,
        args=(broker, topic, partitions, rate, seconds, send_every_ms / 1000, go, out),
        daemon=True,
    )
    producer.start()
    return producer, go, out


async def bare_latency(
    broker: str, partitions: int, rate: int, seconds: float, send_every_ms: float, fetch_max_wait_ms: int
) -> list[int]:
    """The latency floor: a bare aiokafka consumer (no group, no store, no engine) with the same
    fetch_max_wait_ms, on a fresh topic fed by the same paced producer: wall clock when each probe comes out of
    getmany - its produce stamp, in ms. What the broker, librdkafka and aiokafka take before streamalert does
    anything (streamalert also waits for a later line before a probe's instant is decided, at lateness 0)."""
    topic = create_topic(broker, partitions)
    producer, go, out = _start_producer(broker, topic, partitions, rate, seconds, send_every_ms)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=broker,
        group_id=None,
        enable_auto_commit=False,
        max_poll_records=None,
        value_deserializer=raw_values,
        fetch_max_wait_ms=fetch_max_wait_ms,
    )
    await consumer.start()
    clock = WallClock()
    latencies: list[int] = []
    probe = b'{"event":"bench_probe"'
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_beginning()
        tag, warm = await asyncio.to_thread(out.get, True, 120)
        if tag != "warm":
            raise RuntimeError(f"the producer could not deliver {warm} warm-up records")
        got, expected = 0, warm
        finished = asyncio.ensure_future(asyncio.to_thread(out.get, True, seconds + 120))
        go_sent = False
        while not finished.done() or got < expected:
            if finished.done() and expected == warm:
                _, sent, _, _, _, left = finished.result()
                if left:
                    raise RuntimeError(f"the producer could not deliver {left} records")
                expected = warm + sent
            data = await consumer.getmany(timeout_ms=TICK_MS)
            now = clock.now_ms()
            for chunks in data.values():
                for chunk in chunks:
                    got += len(chunk)
                    for record in chunk:
                        value = record.value
                        if value is not None and value.startswith(probe):
                            at = _stamp_at(value)
                            stamp = parse_time(value[at : at + STAMP_LEN].decode())
                            if stamp is not None:
                                latencies.append(now - stamp)
            if not go_sent and got >= warm:
                go.set()
                go_sent = True
    finally:
        await consumer.stop()
        producer.join(10)
        if producer.is_alive():
            producer.terminate()
            producer.join(10)
    return latencies


# ---- main --------------------------------------------------------------------------------------------------


def _load_rules(paths: Sequence[Path]) -> list[Rule]:
    return [rule for path in paths for rule in load_rules(path)]


def _ranged(values: Sequence[float], fmt: str = ",.0f") -> str:
    """median (min-max) of several runs."""
    return f"{statistics.median(values):{fmt}} ({min(values):{fmt}}-{max(values):{fmt}})"


def _throughput_report(args: argparse.Namespace, broker: str, redis_url: str) -> None:
    path = input_file(args.lines)
    lines = path.read_bytes().splitlines()
    rules = _load_rules(args.rules)
    watch = Stopwatch()
    lines = restamp(lines, WallClock().now_ms() - RECENT_MS)
    print(f"input      {path.relative_to(ROOT)}, restamped to end a minute ago ({watch.elapsed():.1f} s)")
    print(f"rules      {len(rules)} from {', '.join(str(p) for p in args.rules)}")
    topic = create_topic(broker, args.partitions)
    produce_s = prefill(broker, topic, lines, args.partitions)
    size = sum(map(len, lines))
    print(
        f"pre-fill   {len(lines):,} lines ({size / 1e6:,.0f} MB) into {args.partitions} partitions in "
        f"{produce_s:.1f} s ({len(lines) / produce_s:,.0f} lines/s, confluent-kafka, not timed below)"
    )
    del lines
    stock: list[float] = []
    raw: list[float] = []
    ours: list[float] = []
    olds: list[float] = []
    for run in range(args.runs):
        gc.collect()
        floor, floor_cpu = asyncio.run(drain_baseline(broker, topic, args.partitions, args.lines, raw=False))
        gc.collect()
        floor_raw, floor_raw_cpu = asyncio.run(drain_baseline(broker, topic, args.partitions, args.lines, raw=True))
        gc.collect()
        result = asyncio.run(live_throughput(broker, topic, redis_url, rules, args.lines))
        if args.stock_records:
            gc.collect()
            before = asyncio.run(live_throughput(broker, topic, redis_url, rules, args.lines, raw=False))
            olds.append(before.per_s)
        stock.append(floor)
        raw.append(floor_raw)
        ours.append(result.per_s)
        t = result.timers
        other = result.seconds - t.fetch - t.engine - t.store - t.ack
        print(f"run {run + 1}/{args.runs}")
        print(f"  aiokafka drain, ConsumerRecords (the floor) {floor:10,.0f} lines/s, CPU {floor_cpu:.0%}")
        print(f"  aiokafka drain, raw records (our fetch)     {floor_raw:10,.0f} lines/s, CPU {floor_raw_cpu:.0%}")
        print(
            f"  run_live -> Redis                           {result.per_s:10,.0f} lines/s, CPU "
            f"{result.cpu_seconds / result.seconds:.0%} ({result.seconds:.2f} s): {result.per_s / floor:.2f}x the "
            f"floor, {result.per_s / floor_raw:.2f}x the raw drain"
        )
        if args.stock_records:
            print(
                f"  run_live, aiokafka's ConsumerRecords (A/B)  {olds[-1]:10,.0f} lines/s: "
                f"{olds[-1] / floor:.2f}x the floor"
            )
        print(
            "  time     "
            + ", ".join(
                f"{name} {seconds:.2f} s ({seconds / result.seconds:.0%})"
                for name, seconds in (
                    ("fetch", t.fetch),
                    ("engine", t.engine),
                    ("redis commit", t.store),
                    ("kafka ack", t.ack),
                    ("other", other),
                )
            )
        )
        print(
            f"  state    matched {result.matched:,}, late {result.late:,}, transitions {result.transitions:,}, "
            f"series {result.series:,}"
        )
    ratios = [o / f for o, f in zip(ours, stock, strict=True)]
    print(f"throughput, {args.runs} runs, median (min-max):")
    print(f"  floor (aiokafka drain)  {_ranged(stock)} lines/s")
    print(f"  raw-record drain        {_ranged(raw)} lines/s")
    print(
        f"  run_live -> Redis       {_ranged(ours)} lines/s = {_ranged(ratios, '.2f')}x the floor  "
        f"target >= {TARGET_EVENTS_PER_S:,}/s  {_verdict(statistics.median(ours) >= TARGET_EVENTS_PER_S)}"
    )
    if olds:
        ratios_old = [o / f for o, f in zip(olds, stock, strict=True)]
        print(f"  A/B: ConsumerRecords  {_ranged(olds)} lines/s = {_ranged(ratios_old, '.2f')}x the floor")
    if args.profile:
        profile_throughput(broker, topic, redis_url, rules, args.lines)


def _spread(values: Sequence[int]) -> str:
    return f"p50 {quantile(values, 0.5)} ms, p99 {quantile(values, 0.99)} ms, max {max(values)} ms"


def _latency_report(args: argparse.Namespace, broker: str, redis_url: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        probe_file = Path(tmp) / "probe.yaml"
        probe_file.write_text(PROBE_RULES_YAML, encoding="utf-8")
        rules = _load_rules(args.rules) + load_rules(probe_file)
    summary: list[str] = []
    for wait_ms in args.fetch_max_wait_ms:
        shipped = " (streamalert's default)" if wait_ms == SHIPPED_FETCH_MAX_WAIT_MS else ""
        p50s: list[float] = []
        p99s: list[float] = []
        r50s: list[float] = []
        r99s: list[float] = []
        for run in range(args.runs):
            print(f"latency run {run + 1}/{args.runs}, consumer fetch_max_wait_ms {wait_ms}{shipped}, lateness 0:")
            floor = asyncio.run(
                bare_latency(broker, args.latency_partitions, args.rate, args.seconds, args.send_every_ms, wait_ms)
            )
            result = asyncio.run(
                live_latency(
                    broker,
                    redis_url,
                    rules,
                    args.latency_partitions,
                    args.rate,
                    args.seconds,
                    args.send_every_ms,
                    wait_ms,
                )
            )
            achieved = int(args.rate * args.seconds) / result.measured_seconds
            print(
                f"  producer {achieved:,.0f} lines/s for {result.measured_seconds:.1f} s ({result.probes:,} probes), "
                f"then {TAIL_S:g} s without probes, {args.latency_partitions} partition(s); at worst "
                f"{result.worst_behind_s * 1000:.1f} ms behind schedule"
            )
            got = len(result.latencies_ms)
            if not got or not floor:
                print(f"  latency  no probe fired (late {result.late:,}, clamped {result.clamped:,})  MISS")
                continue
            p50, p99 = quantile(result.latencies_ms, 0.5), quantile(result.latencies_ms, 0.99)
            f50, f99 = max(1, quantile(floor, 0.5)), max(1, quantile(floor, 0.99))
            p50s.append(p50)
            p99s.append(p99)
            r50s.append(p50 / f50)
            r99s.append(p99 / f99)
            print(
                f"  floor    bare aiokafka consumer, probe out of getmany: {_spread(floor)} over {len(floor):,} probes"
            )
            print(
                f"  latency  {_spread(result.latencies_ms)} over {got:,} probes: p50 {p50 / f50:.1f}x, "
                f"p99 {p99 / f99:.1f}x the floor  target p99 < {TARGET_P99_MS:g} ms  {_verdict(p99 < TARGET_P99_MS)}"
            )
            print(f"  split    stamp -> deciding batch out of the source {_spread(result.to_batch_ms)}")
            print(f"           that batch -> transition in the sink     {_spread(result.in_pipeline_ms)}")
            t, batches = result.timers, max(1, result.batches)
            print(
                f"  loop     {result.batches:,} batches of {result.sent / batches:,.0f} lines on average; per batch "
                f"engine {t.engine / batches * 1000:.2f} ms, redis commit {t.store / batches * 1000:.2f} ms, "
                f"kafka ack {t.ack / batches * 1000:.2f} ms: busy "
                f"{(t.engine + t.store + t.ack) / result.seconds:.0%} of the time"
            )
            if got != result.probes or result.late or result.clamped:
                print(
                    f"  lost     {result.probes - got:,} probes gave no transition; late {result.late:,}, "
                    f"clamped {result.clamped:,} lines"
                )
        if p99s:
            summary.append(
                f"  fetch_max_wait_ms {wait_ms:>4}{shipped}: p50 {_ranged(p50s)} ms = {_ranged(r50s, '.1f')}x, "
                f"p99 {_ranged(p99s)} ms = {_ranged(r99s, '.1f')}x the floor  target p99 < {TARGET_P99_MS:g} ms  "
                f"{_verdict(statistics.median(p99s) < TARGET_P99_MS)}"
            )
    print(f"latency at {args.rate:,} lines/s, {args.runs} runs each, median (min-max):")
    for line in summary:
        print(line)


def main(argv: list[str] | None = None) -> int:
    global MAX_BATCH_LINES, PARTITION_FETCH_BYTES  # run-wide settings of this script
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--lines", type=int, default=DEFAULT_LINES, help="pre-filled lines (default 1,000,000)")
    parser.add_argument("--partitions", type=int, default=DEFAULT_PARTITIONS, help="of the pre-filled topic (3)")
    parser.add_argument("--rate", type=int, default=DEFAULT_RATE, help="latency run: lines/s (default 20,000)")
    parser.add_argument("--seconds", type=float, default=DEFAULT_SECONDS, help="latency run: duration (20)")
    parser.add_argument(
        "--send-every-ms",
        type=float,
        default=DEFAULT_SEND_EVERY_MS,
        help="latency run: the producer sends a batch this often (default 10)",
    )
    parser.add_argument(
        "--latency-partitions",
        type=int,
        default=1,
        help="latency run: partitions (default 1; with lateness 0, a line of one partition that arrives after "
        "a newer line of another partition has been processed is dropped as late)",
    )
    parser.add_argument(
        "--fetch-max-wait-ms",
        type=int,
        nargs="+",
        default=sorted({SHIPPED_FETCH_MAX_WAIT_MS, 20}, reverse=True),
        metavar="MS",
        help=f"latency run: one run per value of the consumer's fetch_max_wait_ms (default: the shipped "
        f"{SHIPPED_FETCH_MAX_WAIT_MS}, and 20)",
    )
    parser.add_argument(
        "--rules",
        type=Path,
        nargs="+",
        default=[RULES_DIR],
        metavar="PATH",
        help="rule files or directories (default config/rules)",
    )
    parser.add_argument("--runs", type=int, default=3, help="runs of each measurement, each with its floor (3)")
    parser.add_argument(
        "--max-batch-lines",
        type=int,
        default=MAX_BATCH_LINES,
        help=f"the consumer's max_batch_lines, records per getmany (default: KafkaConfig's, {MAX_BATCH_LINES:,})",
    )
    parser.add_argument(
        "--max-partition-fetch-bytes",
        type=int,
        default=PARTITION_FETCH_BYTES,
        help=f"the consumer's max_partition_fetch_bytes (default: KafkaConfig's, {PARTITION_FETCH_BYTES:,})",
    )
    parser.add_argument(
        "--stock-records",
        action="store_true",
        help="throughput: also run the source on aiokafka's ConsumerRecords in each run (A/B)",
    )
    parser.add_argument("--skip-throughput", action="store_true")
    parser.add_argument("--skip-latency", action="store_true")
    parser.add_argument("--profile", action="store_true", help="also cProfile a live throughput run")
    parser.add_argument(
        "--default-gc", action="store_true", help="keep Python's collector thresholds (`run` sets the engine's)"
    )
    args = parser.parse_args(argv)
    for name in (
        "max_batch_lines",
        "max_partition_fetch_bytes",
        "runs",
        "lines",
        "partitions",
        "rate",
        "seconds",
        "send_every_ms",
        "latency_partitions",
    ):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be positive")
    if min(args.fetch_max_wait_ms) < 0:
        parser.error("--fetch-max-wait-ms must not be negative")

    MAX_BATCH_LINES, PARTITION_FETCH_BYTES = args.max_batch_lines, args.max_partition_fetch_bytes
    configure_logging("warning")  # the consumer's info lines (group joined, partitions assigned) are noise here
    if not args.default_gc:
        tune_collector()  # as `streamalert run` does (cli.py); the floors' drains run with it too
    print(f"machine    {os.cpu_count()} CPU(s), Python {sys.version.split()[0]}, gc thresholds {gc.get_threshold()}")
    with kafka_broker() as broker, redis_server() as redis_url:
        if not args.skip_throughput:
            _throughput_report(args, broker, redis_url)
        if not args.skip_latency:
            _latency_report(args, broker, redis_url)
    return 0


if __name__ == "__main__":
    sys.exit(main())
