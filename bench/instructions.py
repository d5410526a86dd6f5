"""Instructions a line, counted by callgrind: where the time of a line goes, in figures a noisy machine does not move.

Run by hand, never in CI (needs valgrind, the Debian package; a run takes a few minutes):

    python bench/instructions.py [--lines N1 N2] [--top K] [--rules PATH ...] [MODE ...]

Wall-clock figures on a shared 2-core VM move by 1.7x between runs of the same work (bench/README.md,
"Instructions a line"), so a breakdown of a line's cost from timings is guesswork. Here each MODE runs
twice under `valgrind --tool=callgrind`, over the first N1 and the first N2 lines of the replay benchmark's
file (bench/replay_bench.py), and the difference of the two instruction counts over N2 - N1 is the cost of
one line in that mode, start-up and imports cancelled out. `--top K` lists the K C functions (of the
interpreter, msgspec, libc...) whose own instructions grew most between the two runs, per line.

Modes:
- `parse`: the floor of replay_bench.py, orjson.loads over every line;
- `replay`: `streamalert.pipeline.run` over the lines with the rules, memory state (as replay_bench.py);
- `vector`: the Vector http path as vector_bench.py runs it (1000-line NDJSON bodies over 4 keep-alive
  connections from a client in another process, which callgrind does not follow; `run_live` with overlap,
  Redis state in a private redis-server, also not followed): the server process's instructions;
- `vector-floor`: vector_bench.py's floor, a bare aiohttp server that reads each body and splits it.

An instruction is not a cycle (a cache miss or a `rep movsb` over a body is one instruction), so compare
modes and commits with it, and take speeds from the timed benchmarks.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
for _path in (str(ROOT), str(BENCH)):
    if _path not in sys.path:
        sys.path.insert(0, _path)

MODES = ("parse", "replay", "vector", "vector-floor")
DEFAULT_RULES = [ROOT / "config" / "rules" / "mailer.yaml", ROOT / "config" / "rules" / "revel.yaml"]
BODY_LINES = 1000
_COLLECTED = re.compile(r"Collected : (\d+)")
_ANNOTATED = re.compile(r"^\s*([\d,]+) \([^)]*\)\s+(.*)$")


def _lines(count: int) -> list[bytes]:
    from bench.replay_bench import input_file  # noqa: PLC0415 (the inner run only)

    with input_file(1_000_000).open("rb") as handle:
        return [line.rstrip(b"\n") for line in itertools.islice(handle, count)]


def inner(mode: str, count: int, rules_paths: Sequence[Path]) -> None:
    """One run of `mode` over the first `count` lines (what callgrind measures)."""
    import orjson  # noqa: PLC0415

    from streamalert.config.rules import load_rules  # noqa: PLC0415
    from streamalert.engine import tune_collector  # noqa: PLC0415

    lines = _lines(count)
    tune_collector()  # as `streamalert run` and `replay` do
    if mode == "parse":
        for line in lines:
            orjson.loads(line)
        return
    rules = [rule for path in rules_paths for rule in load_rules(path)]
    if mode == "replay":
        from bench.replay_bench import _replay  # noqa: PLC0415
        from streamalert.state.memory import MemoryStore  # noqa: PLC0415

        asyncio.run(_replay(rules, lines, MemoryStore(), False))
        return
    from bench import vector_bench  # noqa: PLC0415

    bodies = [b"\n".join(lines[i : i + BODY_LINES]) + b"\n" for i in range(0, len(lines), BODY_LINES)]
    if mode == "vector-floor":
        posted = asyncio.run(vector_bench._floor(bodies, 4, False))
    else:
        args = argparse.Namespace(rules=list(rules_paths), fenced=False, serial=False, concurrency=4, gzip=False)
        start = vector_bench._first_stamp_ms(lines[0])
        from streamalert.testing import redis_server  # noqa: PLC0415

        with redis_server() as url:
            posted = asyncio.run(vector_bench._streamalert(bodies, args, url, start, 0)).posted
    if set(posted.statuses) != {200}:
        raise RuntimeError(f"answers other than 200: {posted.statuses}")


def _measure(mode: str, count: int, rules: Sequence[Path], out: Path) -> int:
    command = [
        "valgrind",
        "--tool=callgrind",
        f"--callgrind-out-file={out}",
        sys.executable,
        str(Path(__file__).resolve()),
        "--inner",
        mode,
        str(count),
        "--rules",
        *map(str, rules),
    ]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env={**os.environ})
    found = _COLLECTED.search(done.stderr)
    if done.returncode != 0 or found is None:
        raise RuntimeError(f"{mode} over {count} lines failed:\n{done.stderr[-3000:]}")
    return int(found.group(1))


def _functions(path: Path) -> dict[str, int]:
    text = subprocess.run(
        ["callgrind_annotate", "--threshold=100", str(path)], capture_output=True, text=True, check=True
    ).stdout
    costs: dict[str, int] = {}
    for row in text.splitlines():
        found = _ANNOTATED.match(row)
        if found is not None and "PROGRAM TOTALS" not in found.group(2):
            name = re.sub(r" \[/.*\]$", "", re.sub(r"^.*?Python-3[.\d]+/", "", found.group(2)))
            costs[name] = costs.get(name, 0) + int(found.group(1).replace(",", ""))
    return costs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("modes", nargs="*", default=list(MODES), metavar="MODE", help=f"of {', '.join(MODES)}")
    parser.add_argument("--lines", type=int, nargs=2, default=[20_000, 100_000], metavar=("N1", "N2"))
    parser.add_argument("--top", type=int, default=0, help="per mode, the K C functions that grew most")
    parser.add_argument("--rules", type=Path, nargs="+", default=DEFAULT_RULES, metavar="PATH")
    parser.add_argument("--inner", nargs=2, metavar=("MODE", "N"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.inner is not None:
        inner(args.inner[0], int(args.inner[1]), args.rules)
        return 0
    first, second = args.lines
    if unknown := set(args.modes) - set(MODES):
        parser.error(f"unknown mode(s) {', '.join(sorted(unknown))}: choose from {', '.join(MODES)}")
    if not 0 < first < second:
        parser.error("--lines N1 N2: 0 < N1 < N2")
    print(
        f"instructions a line (callgrind), lines {first:,} -> {second:,}, rules "
        f"{', '.join(str(path) for path in args.rules)}"
    )
    with tempfile.TemporaryDirectory() as scratch:
        for mode in args.modes:
            outs = [Path(scratch) / f"{mode}.{count}" for count in (first, second)]
            low, high = (_measure(mode, n, args.rules, out) for n, out in zip((first, second), outs, strict=True))
            print(f"{mode:13s} {(high - low) / (second - first):9,.0f}")
            if args.top:
                before, after = _functions(outs[0]), _functions(outs[1])
                grown = {name: after.get(name, 0) - before.get(name, 0) for name in after.keys() | before.keys()}
                for name, cost in sorted(grown.items(), key=lambda item: -item[1])[: args.top]:
                    print(f"    {cost / (second - first):9,.0f}  {name[:110]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
