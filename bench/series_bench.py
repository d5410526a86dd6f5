"""Series memory benchmark: bytes per idle series (memory and Redis state) and RSS across many series' expiry.

Run by hand, never in CI:

    python bench/series_bench.py [--series N] [--rss-series N] [--uncapped] [--no-redis] [--skip-rss]
    python bench/series_bench.py --matched N [--runs R] [--default-gc]

- **Per series, memory state**: one `count >= 2` rule over 1h with `group_by: [user]`; N (default 200,000)
  lines with distinct users, 1 ms apart, through `pipeline.run` with a `MemoryStore`. tracemalloc's current
  size after the run minus before it (input lines excluded, engine and store included), over N. Every series
  is still live and idle (one event in its window, not firing) when measured.
- **Per series, Redis state**: the same run into a `RedisStore`; `used_memory` of a private redis-server
  after minus before, over N, and `MEMORY USAGE` of the rule's hash over N.
- **RSS across expiry**: in a fresh process, M (default 1,000,000) distinct users at 1 per ms with a 10 min
  window, then a line 1 h later so every series expires; VmRSS before, VmHWM (peak) and VmRSS after. By
  default the engine's caps apply (100,000 per rule): `--uncapped` lifts them to see every series live.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a plain script from a checkout, installed or not

import orjson  # noqa: E402
import redis.asyncio as aioredis  # noqa: E402

from streamalert.clock import Stopwatch  # noqa: E402
from streamalert.decode import format_ms  # noqa: E402
from streamalert.engine import Engine, tune_collector  # noqa: E402
from streamalert.pipeline import run  # noqa: E402
from streamalert.state.base import Store  # noqa: E402
from streamalert.state.memory import MemoryStore  # noqa: E402
from streamalert.state.redis import RedisStore  # noqa: E402
from streamalert.testing import CapturingSink, ListSource, redis_server, rules_from_yaml  # noqa: E402

T0 = 1_769_418_000_000  # 2026-01-26T09:00:00Z
RULE = """
rules:
  - name: per_user
    match: {{level: error}}
    window: {window}
    condition: count >= 2
    group_by: [user]
"""


def lines(count: int, tail_ms: int | None = None) -> list[bytes]:
    out = [
        b'{"timestamp":"%s","level":"error","user":"u%07d","message":"login failed"}' % (format_ms(T0 + k).encode(), k)
        for k in range(count)
    ]
    if tail_ms is not None:
        out.append(b'{"timestamp":"%s","level":"info"}' % format_ms(T0 + count + tail_ms).encode())
    return out


async def _run(store: Store, data: list[bytes], window: str, **caps: int) -> Engine:
    engine = Engine(rules_from_yaml(RULE.format(window=window)), lateness_ms=0, **caps)
    await run(engine, ListSource(data, 4096), store, CapturingSink())
    return engine


def per_series_memory(count: int) -> float:
    data = lines(count)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    store = MemoryStore()
    engine = asyncio.run(_run(store, data, "1h", max_series_per_rule=count))
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert engine.series_count() == count, engine.series_count()
    return (after - before) / count


async def per_series_redis(url: str, count: int) -> tuple[float, float]:
    data = lines(count)
    client = aioredis.from_url(url)
    await client.flushall()
    before = int((await client.info("memory"))["used_memory"])
    store = RedisStore.from_url(f"{url}?namespace=seriesbench")
    engine = await _run(store, data, "1h", max_series_per_rule=count)
    await store.close()
    after = int((await client.info("memory"))["used_memory"])
    biggest = 0
    async for key in client.scan_iter(match="*"):
        if await client.type(key) == b"hash":
            biggest = max(biggest, int(await client.memory_usage(key, samples=0) or 0))
    await client.aclose()
    assert engine.series_count() == count, engine.series_count()
    return (after - before) / count, biggest / count


def _rss_kb(field: str) -> int:
    for row in Path("/proc/self/status").read_text().splitlines():
        if row.startswith(field + ":"):
            return int(row.split()[1])
    raise RuntimeError(field)


def rss_child(count: int, uncapped: bool) -> None:
    """In a fresh process: RSS before, peak and after every series has expired (printed as one line)."""
    data = lines(count, tail_ms=3_600_000)
    gc.collect()
    before = _rss_kb("VmRSS")
    caps = {"max_series_per_rule": count, "max_series": count} if uncapped else {}
    engine = asyncio.run(_run(MemoryStore(), data, "10m", **caps))
    gc.collect()
    after, peak = _rss_kb("VmRSS"), _rss_kb("VmHWM")
    dropped = sum(engine.stats.series_dropped.values())
    print(f"{before} {peak} {after} {engine.series_count()} {dropped}")


def matched_lines(count: int, share: float) -> list[bytes]:
    """Lines 1 ms apart, `share` of them errors of 1,000 users (matching), the rest info lines of the same size."""
    out = []
    for k in range(count):
        level = b"error" if int((k + 1) * share) > int(k * share) else b"debug"
        stamp = format_ms(T0 + k).encode()
        out.append(
            b'{"timestamp":"%s","level":"%s","user":"u%04d","message":"login failed"}' % (stamp, level, k % 1000)
        )
    return out


def per_matched_line(count: int, runs: int) -> None:
    """Replay time of lines 10% vs 90% matching, in one process: the difference is the cost of matching lines."""
    rule = rules_from_yaml(RULE.format(window="10s").replace("count >= 2", "count >= 50"))
    inputs = {share: matched_lines(count, share) for share in (0.1, 0.9)}
    for share, data in inputs.items():
        assert abs(sum(b'"error"' in line for line in data) - share * count) <= 1, share
    times: dict[float, list[float]] = {0.1: [], 0.9: []}
    collector: dict[float, list[float]] = {0.1: [], 0.9: []}  # seconds inside the garbage collector
    floors: list[float] = []
    for _ in range(runs):
        watch = Stopwatch()
        for line in inputs[0.9]:
            orjson.loads(line)
        floors.append(watch.elapsed())
        for share, data in inputs.items():
            engine = Engine(rule, lateness_ms=30_000)
            gc.collect()
            with _CollectorTime() as spent:
                watch = Stopwatch()
                asyncio.run(run(engine, ListSource(data, 4096), MemoryStore(), CapturingSink()))
                times[share].append(watch.elapsed())
            collector[share].append(spent.seconds)
    per = sorted((hi - lo) / (0.8 * count) * 1e6 for lo, hi in zip(times[0.1], times[0.9], strict=True))
    in_gc = sorted((hi - lo) / (0.8 * count) * 1e6 for lo, hi in zip(collector[0.1], collector[0.9], strict=True))
    ratio = sorted(p / (f / count * 1e6) for p, f in zip(per, floors, strict=True))
    print(
        f"per matched line (memory state, {count:,} lines, {runs} runs, gc thresholds {gc.get_threshold()}): "
        f"{per[0]:.2f}-{per[-1]:.2f} us (median {per[len(per) // 2]:.2f}), "
        f"{ratio[0]:.1f}-{ratio[-1]:.1f}x an orjson parse of one line; "
        f"10%: {min(times[0.1]):.2f}-{max(times[0.1]):.2f} s, 90%: {min(times[0.9]):.2f}-{max(times[0.9]):.2f} s, "
        f"parse-only {min(floors):.2f}-{max(floors):.2f} s; "
        f"of the per-line cost, in the garbage collector: {in_gc[0]:.2f}-{in_gc[-1]:.2f} us"
    )


class _CollectorTime:
    """Wall time spent in the garbage collector while the block runs (gc.callbacks)."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._start: Stopwatch | None = None

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = Stopwatch()
        elif self._start is not None:
            self.seconds += self._start.elapsed()
            self._start = None

    def __enter__(self) -> _CollectorTime:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--series", type=int, default=200_000)
    parser.add_argument("--rss-series", type=int, default=1_000_000)
    parser.add_argument("--uncapped", action="store_true")
    parser.add_argument("--no-redis", action="store_true")
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--matched", type=int, default=0, help="only time N lines at 10%% vs 90%% matching")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--default-gc",
        action="store_true",
        help="--matched: keep the interpreter's collector thresholds (default: the engine's, as run and replay set)",
    )
    parser.add_argument("--rss-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rss_child:
        rss_child(args.rss_child, args.uncapped)
        return 0
    if args.matched:
        if not args.default_gc:
            tune_collector()
        per_matched_line(args.matched, args.runs)
        return 0
    print(f"memory state: {per_series_memory(args.series):.0f} bytes per idle count series ({args.series:,} series)")
    if not args.no_redis:
        with redis_server() as url:
            used, hashed = asyncio.run(per_series_redis(url, args.series))
        print(f"redis state: {used:.0f} bytes per series (used_memory), {hashed:.0f} (MEMORY USAGE of the hash)")
    if not args.skip_rss:
        command = [sys.executable, __file__, "--rss-child", str(args.rss_series)]
        if args.uncapped:
            command.append("--uncapped")
        with tempfile.TemporaryDirectory():
            out = subprocess.run(command, check=True, capture_output=True, text=True).stdout.split()
        before, peak, after, live, dropped = map(int, out)
        print(
            f"RSS over {args.rss_series:,} distinct groups ({'uncapped' if args.uncapped else 'default caps'}): "
            f"before {before / 1024:.0f} MB, peak {peak / 1024:.0f} MB, after expiry {after / 1024:.0f} MB; "
            f"{live} live at the end, {dropped:,} events dropped by the caps"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
