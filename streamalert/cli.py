"""Command line: argument parsing and wiring only (`check`, `replay`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Sequence

from redis.exceptions import RedisError

from streamalert.clock import Stopwatch
from streamalert.config.rules import Rule, RuleLoadError, load_rules
from streamalert.decode import parse_time
from streamalert.durations import parse_duration
from streamalert.engine import Engine
from streamalert.output import JsonLinesWriter, TableWriter
from streamalert.pipeline import RunSummary, run
from streamalert.sources import Batch
from streamalert.sources.replay import ReplaySource
from streamalert.state.base import Store
from streamalert.state.stores import open_store, redact


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    handler = {"check": _check, "replay": _replay, "run": _run}[args.command]
    return handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamalert", description="Alerts from structured JSON logs.")
    sub = parser.add_subparsers(dest="command")

    check = sub.add_parser("check", help="validate rule files; print every problem with file, rule and field")
    check.add_argument("path", help="a rule file or a folder of *.yaml")

    run_cmd = sub.add_parser("run", help="live mode: take logs from the configured sources until SIGTERM")
    run_cmd.add_argument("--config", required=True, help="the service configuration (YAML)")

    replay = sub.add_parser("replay", help="run rules over saved logs in event time; print transitions")
    replay.add_argument("files", nargs="+", help="NDJSON log files, plain or .gz")
    replay.add_argument("--rules", required=True, help="a rule file or a folder of *.yaml")
    replay.add_argument("--format", choices=("jsonl", "table"), default="jsonl")
    replay.add_argument("--until", help="stop the clock here (ISO 8601 or epoch seconds); later events are ignored")
    replay.add_argument("--state", default="memory://", help="memory:// (default) or redis://host:port/db?namespace=x")
    replay.add_argument("--reset-state", action="store_true", help="forget stored state before replaying")
    replay.add_argument(
        "--resume", action="store_true", help="continue the stored state: these files carry on where its input ended"
    )
    replay.add_argument("--lateness", default="30s", help="how far behind the newest event a record may arrive")
    replay.add_argument("--no-progress", action="store_true", help="no progress bar even on a terminal")
    return parser


def _load(path: str) -> list[Rule] | None:
    """Rules from a file or folder; on problems, print each with file, rule and field, and return None."""
    try:
        return load_rules(path)
    except RuleLoadError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
        return None


def _check(args: argparse.Namespace) -> int:
    rules = _load(args.path)
    if rules is None:
        return 1
    windows = sum(1 for r in rules if r.kind == "window")
    files = len({r.source for r in rules})
    print(f"OK: {len(rules)} rules ({windows} window, {len(rules) - windows} absence) in {files} file(s)")
    return 0


class _StateInUse(Exception):
    """The state store already holds a run's state and the user did not say what to do with it."""


def _replay(args: argparse.Namespace) -> int:
    rules = _load(args.rules)
    if rules is None:
        return 1
    try:
        lateness = parse_duration(args.lateness)
    except ValueError as exc:
        print(f"--lateness: {exc}", file=sys.stderr)
        return 2
    until = None
    if args.until is not None:
        until = parse_time(float(args.until) if _is_number(args.until) else args.until)
        if until is None:
            print(f"--until: cannot read {args.until!r} as a time (ISO 8601 or epoch seconds)", file=sys.stderr)
            return 2
    try:
        source = ReplaySource(args.files)
        store = open_store(args.state)
    except OSError as exc:
        print(f"cannot read input: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"--state {redact(args.state)}: {exc}", file=sys.stderr)
        return 2
    writer = JsonLinesWriter(sys.stdout.buffer) if args.format == "jsonl" else TableWriter(sys.stdout.buffer)
    engine = Engine(rules, lateness_ms=lateness, until_ms=until)
    progress = _Progress(source.total_bytes) if sys.stderr.isatty() and not args.no_progress else None
    watch = Stopwatch()
    try:
        summary = asyncio.run(_replay_async(engine, source, store, args, writer, progress))
    except RedisError as exc:
        print(f"state store {redact(args.state)}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except _StateInUse as exc:
        print(exc, file=sys.stderr)
        return 2
    writer.close()
    if progress is not None:
        progress.done()
    _print_summary(summary, watch.elapsed())
    for problem in source.problems:
        print(f"input problem: {problem}", file=sys.stderr)
    return 1 if source.problems else 0


async def _replay_async(
    engine: Engine,
    source: ReplaySource,
    store: Store,
    args: argparse.Namespace,
    writer: JsonLinesWriter | TableWriter,
    progress: _Progress | None,
) -> RunSummary:
    try:
        if args.reset_state:
            await store.reset()
        elif not args.resume and (await store.load([])).meta:
            raise _StateInUse(
                f"--state {redact(args.state)} holds the state of an earlier run: pass --reset-state to start "
                "over, or --resume if these files continue the input that run read (lines it already took "
                "would be counted twice)"
            )
        return await run(engine, source, store, writer, progress.update if progress else None)
    finally:
        await store.close()


def _run(args: argparse.Namespace) -> int:
    from streamalert import app  # noqa: PLC0415 (the HTTP stack loads only for live mode)
    from streamalert.config.app import ConfigError, load_config  # noqa: PLC0415
    from streamalert.telemetry.logging import configure  # noqa: PLC0415

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    configure(config.log_level)
    rules = _load(str(config.rules))
    if rules is None:
        return 1
    try:
        return asyncio.run(app.serve(config))
    except OSError as exc:
        print(f"cannot listen on {config.http.listen}: {exc}", file=sys.stderr)
        return 2


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


class _Progress:
    """A one-line progress bar on stderr, redrawn at most every 64 batches."""

    def __init__(self, total: int) -> None:
        self.total = max(total, 1)
        self.calls = 0

    def update(self, batch: Batch) -> None:
        self.calls += 1
        if self.calls % 64 == 1:
            share = min(batch.position / self.total, 1.0)
            bar = "#" * int(share * 30)
            sys.stderr.write(f"\r[{bar:<30}] {share:6.1%}")
            sys.stderr.flush()

    def done(self) -> None:
        sys.stderr.write("\r" + " " * 40 + "\r")


def _print_summary(summary: RunSummary, seconds: float) -> None:
    stats = summary.stats
    rate = summary.lines / seconds if seconds > 0 else 0.0
    print(
        f"replay: {summary.lines} lines read, {summary.malformed} skipped as malformed, {stats.late} late, "
        f"{stats.untimed} untimed, {stats.untimed_dropped} untimed before any time, "
        f"{stats.beyond_until} after --until, {stats.matched} matched, {stats.transitions} transitions "
        f"in {seconds:.2f}s ({rate:,.0f} lines/s)",
        file=sys.stderr,
    )
