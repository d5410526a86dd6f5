"""Vector http benchmark: POST /vector -> `run_live` -> Redis, lines/s of one process, as a ratio to a bare floor.

Run by hand, never in CI (it starts a private redis-server):

    python bench/vector_bench.py [--lines N] [--body-lines B] [--concurrency C] [--runs R] [--loop asyncio|uvloop]
                                 [--gzip] [--fenced] [--serial] [--rules PATH ...]

Input: the first N lines of the replay benchmark's generated file (bench/replay_bench.py; cached in bench/data/),
cut into NDJSON bodies of B lines (Vector's `http` sink sends one body per batch). A client in a separate
process (the other core) posts them over C keep-alive connections and times from the first request to the
last answer. Every answer must be 200, and streamalert answers 200 only after the batch's checkpoint is
committed to Redis, so the figure is committed lines per second. `--gzip` sends the bodies gzip-compressed
(level 6, compressed before the clock starts), as the shipped Vector configs do. `--fenced` takes the
namespace's writer lease first, so every commit is fenced (WATCH the epoch, MULTI/EXEC) as under
`streamalert run` with Redis; without it the commits are plain MULTI/EXEC.

The live loop runs as `streamalert run` wires it for Vector: a batch's commit overlaps the next batch's
intake (`run_live(..., overlap=True)`; `--serial` turns that off). The server's CPU is measured from the
first request's arrival to the last answer (the client's start-up, and handing it the bodies, are not in
it): as a share of one core over the client's time, and as microseconds per line. The client's own CPU
share is printed too (against the floor and against streamalert): whether the client could be the limit.

Floor: the same client against a bare aiohttp server on the same event loop implementation that reads each
body (inflating it in a worker thread as the source does, with --gzip), splits it into lines and answers
200: what HTTP and the split cost before streamalert does anything.
The ratio streamalert / floor is what the machine's speed does not change much.

Time: the input spans hours of event time and is replayed in seconds, so the live engine's wall clock is a
clock that follows the newest event time taken in (`FollowClock`): as if the logs were written in real time.
Lateness and max_delay keep their defaults; `config/rules` runs with the shipped pack.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import gzip
import multiprocessing
import os
import resource
import statistics
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _path in (str(ROOT), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

from bench.replay_bench import input_file  # noqa: E402
from streamalert.clock import Stopwatch, WallClock  # noqa: E402
from streamalert.config.rules import load_rules  # noqa: E402
from streamalert.decode import format_ms  # noqa: E402
from streamalert.engine import Engine, tune_collector  # noqa: E402
from streamalert.http import build_app, start_server  # noqa: E402
from streamalert.model import Transition  # noqa: E402
from streamalert.pipeline import Health, run_live  # noqa: E402
from streamalert.sources.vector_body import gunzip  # noqa: E402
from streamalert.sources.vector_http import VectorHttpConfig, VectorHttpSource  # noqa: E402
from streamalert.state.redis import RedisStore  # noqa: E402
from streamalert.telemetry.metrics import Metrics  # noqa: E402
from streamalert.testing import free_port, redis_server  # noqa: E402

RULES_DIR = ROOT / "config" / "rules"
TARGET_LINES_PER_S = 300_000
MAX_BODY = 64 * 1024 * 1024


class FollowClock:
    """A wall clock that follows the newest event time the engine took in (see the module docstring)."""

    def __init__(self, engine: Engine, start_ms: int) -> None:
        self.engine, self.start_ms = engine, start_ms

    def now_ms(self) -> int:
        newest = self.engine.newest_ms
        return self.start_ms if newest is None else newest


class NullSink:
    def __init__(self) -> None:
        self.transitions = 0

    def write(self, transitions: list[Transition]) -> None:
        self.transitions += len(transitions)


def _first_stamp_ms(line: bytes) -> int:
    at = line.rfind(b'"timestamp":"') + len(b'"timestamp":"')
    return int(datetime.fromisoformat(line[at : at + 23].decode() + "+00:00").astimezone(UTC).timestamp() * 1000)


class ServerCpu:
    """The serving process's CPU seconds from the first request's arrival to the last answer."""

    def __init__(self) -> None:
        self.first: float | None = None
        self.last = 0.0

    def wrap(self, routes: list[web.RouteDef]) -> list[web.RouteDef]:
        return [web.post(route.path, self._timed(route.handler)) for route in routes]

    def _timed(self, handler: Any) -> Any:
        async def timed(request: web.Request) -> web.StreamResponse:
            if self.first is None:
                self.first = _cpu_s()
            response: web.StreamResponse = await handler(request)
            self.last = _cpu_s()
            return response

        return timed

    @property
    def seconds(self) -> float:
        return 0.0 if self.first is None else self.last - self.first


def _client(
    url: str,
    bodies: list[bytes],
    concurrency: int,
    headers: dict[str, str],
    out: multiprocessing.Queue[Posted],
) -> None:
    """Post every body (C at a time, in order per connection); put (seconds, statuses, own CPU s) on `out`."""

    async def main() -> Posted:
        statuses: Counter[int] = Counter()
        queue: asyncio.Queue[bytes] = asyncio.Queue()
        for body in bodies:
            queue.put_nowait(body)
        connector = aiohttp.TCPConnector(limit=concurrency)
        async with aiohttp.ClientSession(connector=connector) as session:

            async def worker() -> None:
                while not queue.empty():
                    body = queue.get_nowait()
                    async with session.post(url, data=body, headers=headers) as response:
                        await response.read()
                        statuses[response.status] += 1

            watch, cpu = Stopwatch(), _cpu_s()
            await asyncio.gather(*(worker() for _ in range(concurrency)))
            return Posted(watch.elapsed(), dict(statuses), _cpu_s() - cpu)

    out.put(asyncio.run(main()))


def _post_all(url: str, bodies: list[bytes], concurrency: int, gzipped: bool) -> Posted:
    context = multiprocessing.get_context("spawn")
    out: multiprocessing.Queue[Posted] = context.Queue()
    headers = {"Content-Encoding": "gzip"} if gzipped else {}
    process = context.Process(target=_client, args=(url, bodies, concurrency, headers, out))
    process.start()
    result = out.get(timeout=600)
    process.join(timeout=30)
    return result


async def _floor(bodies: list[bytes], concurrency: int, gzipped: bool) -> Posted:
    async def receive(request: web.Request) -> web.Response:
        body = await request.read()
        if gzipped:
            inflated = await asyncio.to_thread(gunzip, body, MAX_BODY)
            body = inflated or b""
        body.split(b"\n")
        return web.Response(status=200)

    app = web.Application()
    app.add_routes([web.post("/vector", receive)])
    port = free_port()
    runner = await start_server(app, "127.0.0.1", port)
    try:
        return await asyncio.to_thread(_post_all, f"http://127.0.0.1:{port}/vector", bodies, concurrency, gzipped)
    finally:
        await runner.cleanup()


async def _streamalert(
    bodies: list[bytes], args: argparse.Namespace, redis_url: str, start_ms: int, run: int
) -> Served:
    rules = [rule for path in args.rules for rule in load_rules(path)]
    engine = Engine(rules)
    store = RedisStore.from_url(f"{redis_url}?namespace=vectorbench{run}")
    await store.reset()
    lease = None
    if args.fenced:  # as `streamalert run` does with Redis state: every commit is then fenced on the epoch
        lease = store.lease(60_000)
        if not await lease.acquire():
            raise RuntimeError("the benchmark's namespace lease is held by someone else")
        store.hold(lease)
    metrics, health = Metrics(), Health()
    config = VectorHttpConfig(auth="none", max_body_bytes=MAX_BODY)
    source = VectorHttpSource(config, metrics)
    port = free_port()
    cpu = ServerCpu()
    app = build_app(metrics, lambda: _ready(health), cpu.wrap(source.routes()), source="vector")
    runner = await start_server(app, "127.0.0.1", port)
    sink = NullSink()
    clock = FollowClock(engine, start_ms)
    live = asyncio.create_task(run_live(engine, source, store, sink, clock, metrics, health, overlap=not args.serial))
    try:
        url = f"http://127.0.0.1:{port}/vector"
        posted = await asyncio.to_thread(_post_all, url, bodies, args.concurrency, args.gzip)
    finally:
        await source.close()
        await asyncio.wait_for(live, 60)
        await runner.cleanup()
        if lease is not None:
            await lease.release()
        await store.close()
    return Served(posted, engine.stats.matched, cpu.seconds, batches_seen(metrics))


@dataclass(frozen=True, slots=True)
class Posted:
    seconds: float  # the client's, first request to last answer
    statuses: dict[int, int]
    cpu_s: float  # the client's own CPU over those seconds


@dataclass(frozen=True, slots=True)
class Served:
    posted: Posted
    matched: int
    cpu_s: float  # the server's, first request's arrival to last answer
    batches: int


def batches_seen(metrics: Metrics) -> int:
    """Non-empty batches the live loop took (the pipeline's batch-size histogram count)."""
    for metric in metrics.batch_size.collect():
        for sample in metric.samples:
            if sample.name.endswith("_count"):
                return int(sample.value)
    return 0


def _cpu_s() -> float:
    """CPU seconds of this process (user + system; the client is another process)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


async def _ready(health: Health) -> tuple[bool, dict[str, str]]:
    return health.ready, {}


def _spread(values: list[float], form: str = ",.0f") -> str:
    return f"median {statistics.median(values):{form}} (min {min(values):{form}}, max {max(values):{form}})"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=500_000)
    parser.add_argument("--body-lines", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--gzip", action="store_true", help="send gzip bodies (Content-Encoding: gzip)")
    parser.add_argument("--serial", action="store_true", help="no commit/intake overlap (run_live's default)")
    parser.add_argument("--fenced", action="store_true", help="hold the writer lease: fenced commits, as `run`")
    parser.add_argument(
        "--rules", type=Path, nargs="+", default=[RULES_DIR], metavar="PATH", help="rule files or directories"
    )
    parser.add_argument(
        "--default-gc", action="store_true", help="keep Python's collector thresholds (`run` sets the engine's)"
    )
    args = parser.parse_args(argv)
    if not args.default_gc:
        tune_collector()  # as `streamalert run` does (cli.py): the floor's server runs with it too
    lines = input_file(1_000_000).read_bytes().splitlines()[: args.lines]
    bodies = [b"\n".join(lines[i : i + args.body_lines]) + b"\n" for i in range(0, len(lines), args.body_lines)]
    raw_bytes = sum(len(body) for body in bodies)
    if args.gzip:
        bodies = [gzip.compress(body, compresslevel=6, mtime=0) for body in bodies]
    start_ms = _first_stamp_ms(lines[0])
    runner = asyncio.run
    if args.loop == "uvloop":
        import uvloop  # noqa: PLC0415 (optional)

        runner = uvloop.run
    print(
        f"{format_ms(WallClock().now_ms())[:10]}, {os.cpu_count()} cores, loop {args.loop}, {len(lines):,} lines in "
        f"{len(bodies):,} bodies of {args.body_lines}"
        + (f" (gzip: {sum(len(b) for b in bodies) / raw_bytes:.0%} of {raw_bytes / 1e6:.0f} MB)" if args.gzip else "")
        + f", {args.concurrency} connections, commits {'fenced' if args.fenced else 'unfenced'}"
        + (", serial" if args.serial else "")
        + ", rules "
        f"{', '.join(str(path) for path in args.rules)}, gc thresholds {gc.get_threshold()}, "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    floors: list[float] = []
    ours: list[float] = []
    ratios: list[float] = []
    per_line: list[float] = []
    with redis_server() as redis_url:
        for run in range(args.runs):
            bare = runner(_floor(bodies, args.concurrency, args.gzip))
            floor = len(lines) / bare.seconds
            served = runner(_streamalert(bodies, args, redis_url, start_ms, run))
            posted = served.posted
            if set(posted.statuses) != {200} or set(bare.statuses) != {200}:
                raise RuntimeError(f"answers other than 200: {posted.statuses} / {bare.statuses}")
            rate = len(lines) / posted.seconds
            floors.append(floor)
            ours.append(rate)
            ratios.append(rate / floor)
            per_line.append(served.cpu_s / len(lines) * 1e6)
            print(
                f"run {run + 1}: floor {floor:,.0f} lines/s, streamalert {rate:,.0f} lines/s ({rate / floor:.2f}x), "
                f"server CPU {served.cpu_s / posted.seconds:.0%} of one core = {per_line[-1]:.2f} us a line, "
                f"client CPU {posted.cpu_s / posted.seconds:.0%} (floor's {bare.cpu_s / bare.seconds:.0%}), "
                f"{served.batches:,} batches, matched {served.matched:,}"
            )
    print(f"floor       {_spread(floors)} lines/s")
    print(f"streamalert {_spread(ours)} lines/s  target >= {TARGET_LINES_PER_S:,}")
    print(f"ratio       {statistics.median(ratios):.2f}x (min {min(ratios):.2f}, max {max(ratios):.2f})")
    print(f"server CPU  {_spread(per_line, '.2f')} us a line")
    print(f"load average at the end {os.getloadavg()[0]:.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
