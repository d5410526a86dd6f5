"""Matching cost against the number of rules: decode + match per line, against a parse-only floor.

Run by hand, never in CI (pin it to one core for steady figures):

    taskset -c 1 python bench/rules_bench.py [--rules 20 200 2000 10000] [--lines N] [--runs R] [--no-check]
    python bench/rules_bench.py --check-only [--rules 10000] [--runs R] [--baseline DIR]

For each rule count, a rule set is generated in the shapes real rules use (equality on level, logger,
error_type and structlog event names; `contains`/`regex` on the message and on other fields; `in` lists;
numeric comparisons; some `any:` and `not:`), and two inputs of N lines: one whose messages come from a
fixed set of texts, one whose messages carry per-line ids ("payment 81723 failed for order 4411"). Each
cell times `compiled.match(compiled.decode(line))` over the lines in memory (what the engine's intake does
per line); the floor is msgspec decoding the same lines into dicts, timed in the same run. Both are taken
R times; the table gives the best lines/s with the min-max spread, and the ratio of best to best floor.
Then `load_rules` (what `streamalert check` runs) is timed on the largest rule set, written as one YAML
file with windows, conditions, labels and annotation templates, and so is the whole command: `python -P -m
streamalert check FILE` as a child process (this checkout first on PYTHONPATH, bytecode cached after one
unmeasured run), its CPU time (user + system) from the kernel's accounting, against the goal of 3 s.
`--baseline DIR` also runs that command with the code of DIR (`git archive COMMIT streamalert | tar -x -C
DIR`), interleaved, for before/after figures from one run. `--check-only` skips the matching cells.
"""

from __future__ import annotations

import argparse
import functools
import gc
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import orjson
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # run as a plain script from a checkout, installed or not

from streamalert.clock import Stopwatch, WallClock  # noqa: E402
from streamalert.config.rules import load_rules  # noqa: E402
from streamalert.decode import format_ms  # noqa: E402
from streamalert.rules.codegen import CompiledRules, compile_rules  # noqa: E402
from streamalert.rules.patterns import literal_pattern  # noqa: E402

SEED = 20261202
LEVELS = ("debug", "info", "info", "info", "warning", "error", "ERROR", "critical")


def pools(rules: int) -> tuple[list[str], list[str]]:
    """(services, loggers) of the fleet a rule set of this size watches: more rules, more components.

    A set of 10,000 rules over 40 services would be 250 rules per service told apart only by thresholds;
    real sets grow because more services and modules are watched.
    """
    services = [f"svc{i}" for i in range(max(40, rules // 10))]
    loggers = [f"app.module{i}" for i in range(max(60, rules // 5))]
    return services, loggers


def make_rules(count: int, seed: int = SEED) -> list[dict[str, Any]]:
    """`count` rules (name, match, window, condition, labels, annotations) in a fixed mix of real shapes."""
    rnd = random.Random(f"{seed}-{count}")
    services, loggers = pools(count)
    rules: list[dict[str, Any]] = []
    for i in range(count):
        shape = i % 10
        match: dict[str, Any]
        if shape == 0:  # a structlog event name
            match = {"message": f"task_{i}_failed"}
        elif shape == 1:
            match = {
                "level": "error",
                "logger": rnd.choice(loggers),
                "message": {"contains": f"timeout calling svc{i}"},
            }
        elif shape == 2:
            match = {"error_type": {"in": [f"err_{i}", f"err_{i + 1}"]}, "level": {"in": ["error", "critical"]}}
        elif shape == 3:
            match = {"level": "warning", "message": {"regex": f"payment [0-9]+ failed for order {i}[0-9]*$"}}
        elif shape == 4:
            match = {"service": rnd.choice(services), "latency_ms": {"gt": 1000 + i}}
        elif shape == 5:
            match = {"any": [{"error_type": f"fatal_{i}"}, {"message": {"contains": f"fatal error {i}:"}}]}
        elif shape == 6:
            match = {"error_type": f"err_{i}", "env": {"not": "dev"}}
        elif shape == 7:
            match = {"message": {"regex": f"(?i)queue q{i} (is )?(full|stuck)"}}
        elif shape == 8:
            match = {"logger": rnd.choice(loggers), "status": {"gte": 500}, "path": {"contains": f"/api/v{i}/"}}
        else:
            match = {"http.status": 500 + i % 10, "service": {"in": rnd.sample(services, 3)}}
        rules.append(
            {
                "name": f"rule_{i}",
                "match": match,
                "window": "5m",
                "condition": "count >= 3",
                "group_by": ["service"],
                "labels": {"severity": "warning", "team": f"team{i % 7}"},
                "annotations": {"summary": "{{ value }} events in 5m on {{ labels.service }}: {{ message }}"},
            }
        )
    return rules


def make_lines(count: int, rules: int, varied: bool, seed: int = SEED) -> list[bytes]:
    """Log lines: mostly noise, a few percent aimed at some rule; messages fixed texts or with per-line ids."""
    rnd = random.Random(f"{seed}-{rules}-{varied}")
    services, loggers = pools(rules)
    fixed = [f"request handled {k}" for k in range(150)] + [f"task_{i}_failed" for i in range(0, rules, 10)][:50]
    lines = []
    for n in range(count):
        aim = rnd.randrange(max(rules, 1))
        level = rnd.choice(LEVELS)
        if varied:
            message = rnd.choice(
                [
                    f"payment {rnd.randrange(100_000)} failed for order {aim}{rnd.randrange(100)}",
                    f"timeout calling svc{aim} after {rnd.randrange(9000)} ms",
                    f"user {rnd.randrange(10**6)} logged in from 10.0.{rnd.randrange(256)}.{rnd.randrange(256)}",
                    f"Queue q{aim} is FULL ({rnd.randrange(10_000)} pending)",
                    f"fatal error {aim}: job {rnd.randrange(10**6)} crashed",
                    f"GET /api/v{aim}/items/{rnd.randrange(10**6)} 200",
                ]
            )
        else:
            message = rnd.choice(fixed)
        record: dict[str, Any] = {
            "timestamp": f"2026-12-02T10:{n // 60000 % 60:02d}:{n // 1000 % 60:02d}.{n % 1000:03d}Z",
            "level": level,
            "logger": rnd.choice(loggers),
            "service": rnd.choice(services),
            "event" if n % 3 else "message": message,
            "env": rnd.choice(("prod", "prod", "dev")),
        }
        if n % 4 == 0:
            record["error_type"] = f"err_{aim}" if n % 8 == 0 else "none"
        if n % 5 == 0:
            record["latency_ms"] = rnd.randrange(3000 + rules)
            record["status"] = rnd.choice((200, 200, 404, 500, 503))
            record["path"] = f"/api/v{aim}/items"
            record["http"] = {"status": 500 + aim % 10}
        lines.append(orjson.dumps(record))
    return lines


def best_of(runs: int, loop: Callable[[], None], lines: int) -> tuple[float, float, float]:
    """(best, min, max) lines/s over `runs` timed runs of `loop` (GC off while timing)."""
    speeds = []
    for _ in range(runs):
        gc.collect()
        gc.disable()
        try:
            watch = Stopwatch()
            loop()
            speeds.append(lines / watch.elapsed())
        finally:
            gc.enable()
    return max(speeds), min(speeds), max(speeds)


def match_all(compiled: CompiledRules, lines: list[bytes]) -> None:
    """What the engine's intake does per line: decode into the rules' record, list the rules it matches."""
    decode, match = compiled.decode, compiled.match
    for line in lines:
        match(decode(line))


def time_cell(
    specs: Sequence[dict[str, Any]], lines: list[bytes], warm: list[bytes], runs: int, decode_alone: bool = False
) -> list[Cell]:
    """One (match lines/s, floor lines/s) per run; each run times the floor right before the matcher.

    Each run compiles the rules afresh and warms them on `warm` (other lines from the same generator), so
    no run finds the lines of an earlier run in the matcher's caches: a real stream does not repeat itself.
    With `decode_alone`, each run also times the rules' decoder alone on the lines, after the matcher.
    """
    floor_decode = msgspec.json.Decoder(dict[str, Any]).decode

    def parsing() -> None:
        for line in lines:
            floor_decode(line)

    cells = []
    for _ in range(runs):
        compiled = compile_rules(specs)
        match_all(compiled, warm)
        floor = best_of(1, parsing, len(lines))[0]
        speed = best_of(1, functools.partial(match_all, compiled, lines), len(lines))[0]
        decoding = best_of(1, functools.partial(decode_all, compiled, lines), len(lines))[0] if decode_alone else 0.0
        cells.append(Cell(speed, floor, decoding))
    return cells


def decode_all(compiled: CompiledRules, lines: list[bytes]) -> None:
    """The first half of match_all: decode into the rules' record (its attributes: the fields rules read)."""
    decode = compiled.decode
    for line in lines:
        decode(line)


@dataclass(frozen=True, slots=True)
class Cell:
    """One run of one cell: decode + match lines/s, and the parse-only floor measured just before it."""

    speed: float
    floor: float
    decoding: float = 0.0  # the decoder alone, lines/s (0: not timed)

    @property
    def ratio(self) -> float:
        return self.speed / self.floor


def cpu_seconds() -> float:
    """CPU time of this process: on a shared machine, wall time also counts other processes' turns."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def time_check(rules: list[dict[str, Any]], runs: int) -> list[tuple[float, float, float]]:
    """Per run: (load_rules wall s, its CPU s, CPU s of PyYAML's C loader alone on the same file: the floor)."""
    out = []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump({"rules": rules}, sort_keys=False), encoding="utf-8")
        for _ in range(runs):
            start = cpu_seconds()
            yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
            floor = cpu_seconds() - start
            watch, start = Stopwatch(), cpu_seconds()
            loaded = load_rules(path)
            out.append((watch.elapsed(), cpu_seconds() - start, floor))
            assert len(loaded) == len(rules)
    return out


CHECK_GOAL_S = 3.0


def child_cpu(command: list[str], env: dict[str, str]) -> float:
    """CPU seconds (user + system) of one run of `command`, which must succeed."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(command)} failed ({done.returncode}): {done.stderr[-2000:]}")
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def time_check_command(
    rules: list[dict[str, Any]], runs: int, baseline: Path | None
) -> dict[str, tuple[list[float], list[float]]]:
    """`streamalert check FILE` as a child process, per code tree: (CPU s of each run, the C loader floor of
    the same round in this process). Trees alternate within each round, so load on the machine hits both."""
    trees = {"": ROOT} if baseline is None else {"before": baseline.resolve(), "after": ROOT}
    out: dict[str, tuple[list[float], list[float]]] = {label: ([], []) for label in trees}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rules.yaml"
        path.write_text(yaml.safe_dump({"rules": rules}, sort_keys=False), encoding="utf-8")
        envs = {}
        for label, tree in trees.items():
            env = dict(os.environ, PYTHONPATH=str(tree), PYTHONPYCACHEPREFIX=str(Path(tmp) / f"pyc-{label}"))
            env.pop("PYTHONDONTWRITEBYTECODE", None)  # an installed package starts from compiled bytecode
            envs[label] = env
        command = [sys.executable, "-P", "-m", "streamalert", "check", str(path)]
        for env in envs.values():  # unmeasured: fills the bytecode cache
            child_cpu(command, env)
        for _ in range(runs):
            start = cpu_seconds()
            yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader)
            floor = cpu_seconds() - start
            for label, env in envs.items():
                out[label][0].append(child_cpu(command, env))
                out[label][1].append(floor)
    return out


def print_check_command(count: int, runs: int, baseline: Path | None) -> None:
    print()
    print(f"`streamalert check` on {count} rules (one file), whole command as a child process, {runs} runs:")
    for label, (cpus, floors) in time_check_command(make_rules(count), runs, baseline).items():
        ratios = [cpu / floor for cpu, floor in zip(cpus, floors, strict=True)]
        median = statistics.median(cpus)
        verdict = "PASS" if median < CHECK_GOAL_S else "MISS"
        print(
            f"  {label or 'this checkout':<14} CPU median {median:.2f} s, range {min(cpus):.2f}-{max(cpus):.2f} s;"
            f" / C loader floor {min(ratios):.2f}-{max(ratios):.2f}; goal < {CHECK_GOAL_S:.0f} s: {verdict}"
        )
    print(f"  (C loader floor, this process: {min(floors):.2f}-{max(floors):.2f} s CPU)")


def compare_pattern_engines(count: int, runs: int) -> None:
    """re2.Set against hyperscan (if importable) on the message patterns of `count` rules and varied messages."""
    import re2  # noqa: PLC0415 (only for this comparison)

    try:
        import hyperscan  # type: ignore[import-not-found]  # noqa: PLC0415 (optional, not a dependency)
    except ImportError:
        print("hyperscan is not installed (pip install hyperscan): no comparison")
        return
    patterns = []
    for rule in make_rules(count):
        for alternative in [rule["match"], *rule["match"].get("any", [])]:
            message = alternative.get("message")
            if isinstance(message, dict):
                patterns.append(message["regex"] if "regex" in message else literal_pattern(message["contains"]))
    texts = []
    for line in make_lines(5000, count, varied=True):
        record = orjson.loads(line)
        texts.append(str(record.get("message", record.get("event"))).encode())
    watch = Stopwatch()
    database = hyperscan.Database()
    flags = hyperscan.HS_FLAG_SINGLEMATCH | hyperscan.HS_FLAG_UTF8 | hyperscan.HS_FLAG_ALLOWEMPTY
    database.compile(
        expressions=[p.encode() for p in patterns], ids=list(range(len(patterns))), flags=[flags] * len(patterns)
    )
    hs_build = watch.elapsed()
    scratch = hyperscan.Scratch(database)
    found: list[int] = []

    def on_match(ident: int, start: int, end: int, flags: int, context: object) -> None:
        found.append(ident)

    def scan_hyperscan() -> None:
        for text in texts:
            found.clear()
            database.scan(text, match_event_handler=on_match, scratch=scratch)

    options = re2.Options()
    options.log_errors = False
    watch = Stopwatch()
    pattern_set = re2.Set.SearchSet(options)
    for pattern in patterns:
        pattern_set.Add(pattern)
    pattern_set.Compile()
    re2_build = watch.elapsed()

    def scan_re2() -> None:
        for text in texts:
            pattern_set.Match(text)

    hs = best_of(runs, scan_hyperscan, len(texts))
    r2 = best_of(runs, scan_re2, len(texts))
    print(
        f"{count:>6} rules, {len(patterns)} patterns: re2.Set {r2[0]:,.0f}/s ({r2[1]:,.0f}-{r2[2]:,.0f}),"
        f" built in {re2_build:.3f} s; hyperscan {hs[0]:,.0f}/s ({hs[1]:,.0f}-{hs[2]:,.0f}), built in {hs_build:.2f} s"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rules", type=int, nargs="+", default=[20, 200, 2000, 10000])
    parser.add_argument("--lines", type=int, default=50_000, help="lines per input (default 50,000)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per cell (default 3, at least 3)")
    parser.add_argument("--no-check", action="store_true", help="skip timing load_rules")
    parser.add_argument("--decode", action="store_true", help="also time the rules' decoder alone (a column)")
    parser.add_argument("--hyperscan", action="store_true", help="only compare re2.Set with hyperscan (if installed)")
    parser.add_argument("--check-only", action="store_true", help="only time load_rules and the check command")
    parser.add_argument("--baseline", type=Path, help="also time the check command with the code of this checkout")
    args = parser.parse_args(argv)
    runs = max(args.runs, 3)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(f"rules_bench: {os.uname().nodename}, {os.cpu_count()} cores, {cores} usable by this process")
    day = format_ms(WallClock().now_ms())[:10]
    print(f"date: {day}  python {sys.version.split()[0]}  lines per input {args.lines:,}  runs {runs}")
    print()
    if args.hyperscan:
        for count in args.rules:
            compare_pattern_engines(count, runs)
        return 0
    if args.check_only:
        count = max(args.rules)
        print_load_rules(count, runs)
        print_check_command(count, runs, args.baseline)
        return 0
    print("lines/s: best of the runs (min-max); ratio: decode + match over the parse-only floor of the same run,")
    print("best (min-max); vs 20: the best ratio over the first rule count's best ratio, same input")
    if args.decode:
        print("decode: the rules' decoder alone over the floor of the same run (min-max); attrs: the record's fields")
    print()
    head = f"{'rules':>6} {'input':<7} {'lines/s':>9} {'(min-max)':>17} {'ratio':>6} {'(min-max)':>11} {'vs 20':>6}"
    print(head + (f" {'decode':>13} {'attrs':>5}" if args.decode else ""))
    first: dict[str, float] = {}
    for count in args.rules:
        specs = [rule["match"] for rule in make_rules(count)]
        for varied in (False, True):
            label = "varied" if varied else "fixed"
            lines = make_lines(args.lines, count, varied)
            warm = make_lines(2000, count, varied, seed=SEED + 1)
            cells = time_cell(specs, lines, warm, runs, args.decode)
            speeds = [c.speed for c in cells]
            ratios = [c.ratio for c in cells]
            first.setdefault(label, max(ratios))
            row = (
                f"{count:>6} {label:<7} {max(speeds):>9,.0f} {min(speeds):>8,.0f}-{max(speeds):<8,.0f}"
                f" {max(ratios):>6.3f} {min(ratios):>5.3f}-{max(ratios):<5.3f} {max(ratios) / first[label]:>5.2f}x"
            )
            if args.decode:
                decoding = [c.decoding / c.floor for c in cells]
                attrs = len(msgspec.structs.fields(compile_rules(specs).record_type))
                row += f" {min(decoding):>6.2f}-{max(decoding):<6.2f} {attrs:>5}"
            print(row)
    if not args.no_check:
        count = max(args.rules)
        print_load_rules(count, runs)
        print_check_command(count, runs, args.baseline)
    return 0


def print_load_rules(count: int, runs: int) -> None:
    times = time_check(make_rules(count), runs)
    walls, cpus, floors = zip(*times, strict=True)
    ratios = [cpu / floor for _, cpu, floor in times]
    print()
    print(f"load_rules ({count} rules, one file, what `streamalert check` runs), {runs} runs:")
    print(f"  wall {min(walls):.2f}-{max(walls):.2f} s, CPU {min(cpus):.2f}-{max(cpus):.2f} s;")
    print(f"  PyYAML's C loader alone (the floor) CPU {min(floors):.2f}-{max(floors):.2f} s;")
    print(f"  load_rules CPU / floor CPU {min(ratios):.2f}-{max(ratios):.2f}")


if __name__ == "__main__":
    raise SystemExit(main())
