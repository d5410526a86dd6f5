"""Rows about size: 10 MB bodies of tiny lines, 1M distinct group_by values in memory state, 10k rules."""

from __future__ import annotations

import gzip
from pathlib import Path

from bench.faults.harness import pause, poll
from bench.faults.load import post
from bench.faults.result import Result
from bench.faults.rows import Env, kafka_row, vector_row
from streamalert.clock import Stopwatch, WallClock
from streamalert.decode import format_ms


def big_bodies(folder: Path, name: str) -> Result:
    """A gzip body inflating to 10 MB of `{}` lines, and a JSON array of 1M `{}`, twice each, while a normal
    client keeps posting tracked lines."""

    def fault(env: Env) -> str:
        lines = b"{}\n" * (10_000_000 // 3)
        bodies = [
            ("10 MB of {} lines, gzip", gzip.compress(lines, 1), {"Content-Encoding": "gzip"}),
            ("JSON array of 1M {}", b"[" + b",".join([b"{}"] * 1_000_000) + b"]", {}),
        ]
        seen = []
        for label, body, headers in bodies * 2:
            watch = Stopwatch()
            status = post(env.service.port, body, headers, timeout=120)
            seen.append(f"{label}: {status} in {watch.elapsed():.1f} s")
        return "; ".join(seen)

    return vector_row(folder, name, "10 MB bodies of tiny lines", fault)


# The service's allocator in each groupby row: Python's own (pymalloc, the default outside the Docker image),
# glibc's malloc, and jemalloc preloaded, as the Docker image runs it (README "Memory after a flood").
ALLOCATORS = {
    "pymalloc": {"PYTHONMALLOC": "pymalloc"},
    "malloc": {"PYTHONMALLOC": "malloc"},
    "jemalloc": {"PYTHONMALLOC": "malloc", "LD_PRELOAD": "libjemalloc.so.2"},
}
# A preloaded allocator gives freed pages back after its decay time (jemalloc's dirty_decay_ms: 10 s), not at
# once: the RSS judged is read this long after the series expired.
SETTLE_S = 15.0


def groupby_1m(folder: Path, name: str, values: int, allocator: str = "malloc") -> Result:
    """`values` distinct group_by values posted to /vector with memory state (a `count >= 2` rule over them, so
    none fires unless a line is counted twice); peak RSS, and RSS once the series have expired.

    `allocator` (ALLOCATORS) is how the service's Python allocates: with "malloc" and "jemalloc" the memory of
    ended series goes back to the system (the row fails when more than KEPT_BOUND_MB stays SETTLE_S after the
    series expired); with "pymalloc", Python's default, CPython keeps every 1 MiB arena in which any object
    still lives, so what stays is reported, not judged (README "Memory after a flood")."""
    rule = """
rules:
  - name: fault_distinct
    match: {u: {exists: true}}
    window: 5s
    condition: count >= 2
    group_by: [u]
"""

    def fault(env: Env) -> str:
        base = env.service.rss_kb() / 1024
        watch = Stopwatch()
        accepted = 0
        for start in range(0, values, 10_000):
            stamp = format_ms(WallClock().now_ms()).encode()
            body = b"\n".join(b'{"timestamp":"%s","u":"u-%d"}' % (stamp, i) for i in range(start, start + 10_000))
            if post(env.service.port, body, timeout=120) == 200:
                accepted += 10_000
        took = watch.elapsed()
        env.service.sample_rss()
        peak = env.service.peak_rss_kb / 1024
        expired = poll(lambda: (env.service.metric("streamalert_series") or 0) < 1000, 180, 0.5)
        pause(2)
        after = env.service.rss_kb() / 1024
        logged = env.service.err.read_text(errors="replace").splitlines()
        started = [line for line in logged if '"event": "started"' in line]
        expected = {"jemalloc": "malloc+jemalloc"}.get(allocator, allocator)
        if not started or f'"allocator": "{expected}"' not in started[-1]:
            env.wrong.append(f"the service did not start with {expected}")
        settled = ""
        if allocator != "pymalloc":
            pause(SETTLE_S - 2)
            later = env.service.rss_kb() / 1024
            settled = f", {later:.0f} MB {SETTLE_S:.0f} s after"
            env.kept_mb = later - base
        return (
            f"{accepted:,} of {values:,} distinct values accepted in {took:.0f} s; RSS {base:.0f} MB before, "
            f"peak {peak:.0f} MB, {after:.0f} MB 2 s after the series expired{settled}"
            + ("" if expired else " (series still above 1000 after 180 s)")
        )

    setting = ", ".join(f"{k}={v}" for k, v in ALLOCATORS[allocator].items())
    return vector_row(
        folder,
        name,
        f"{values:,} distinct group_by values (memory state, {setting})",
        fault,
        state="memory://",
        rules_text=rule,
        service_env=ALLOCATORS[allocator],
    )


def rules_10k(folder: Path, name: str, count: int) -> Result:
    """`count` generated rules (each its own service, error count over 1m) beside the tracked ones, under load."""
    rules = ["rules:"]
    for i in range(count):
        rules += [
            f"  - name: gen_{i}",
            f"    match: {{service: svc-{i}, level: error}}",
            "    window: 1m",
            "    condition: count >= 5",
            "    group_by: [host]",
        ]

    def fault(env: Env) -> str:
        pause(20)
        return f"{count:,} generated rules loaded; 20 s of load"

    return kafka_row(folder, name, f"{count:,} rules under load", fault, rate=2000, rules_text="\n".join(rules) + "\n")
