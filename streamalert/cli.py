"""Command line: argument parsing and wiring only (`check`, `replay`)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal

import orjson
from redis.exceptions import RedisError

from streamalert.clock import Stopwatch
from streamalert.config.notify import NotifyConfig, build_route
from streamalert.config.rules import Rule, RuleLoadError, load_rules
from streamalert.decode import parse_time
from streamalert.durations import parse_duration
from streamalert.engine import Engine
from streamalert.model import Transition
from streamalert.notify.history import recent_notifications, recent_transitions
from streamalert.notify.model import Notification
from streamalert.notify.notifier import Notifier
from streamalert.notify.routing import MatcherError, parse_matchers
from streamalert.notify.sender import Sender, build_sinks
from streamalert.notify.sinks.stdout import StdoutConfig, StdoutSink
from streamalert.output import JsonLinesWriter, TableWriter
from streamalert.pipeline import RunSummary, run
from streamalert.sources import Batch
from streamalert.sources.replay import ReplaySource
from streamalert.state.base import Store
from streamalert.state.stores import open_store, redact
from streamalert.telemetry.logging import configure
from streamalert.telemetry.metrics import Metrics

if TYPE_CHECKING:
    from streamalert.config.app import AppConfig


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "routes" and args.routes_command is None:
        parser.parse_args(["routes", "--help"])
    handler = {
        "check": _check,
        "replay": _replay,
        "run": _run,
        "routes": _routes,
        "outbox": _outbox,
        "alerts": _alerts,
    }[args.command]
    return handler(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamalert", description="Alerts from structured JSON logs.")
    sub = parser.add_subparsers(dest="command")

    check = sub.add_parser(
        "check", help="validate rule files or a service config; print every problem with file, rule/key and field"
    )
    check.add_argument("path", nargs="?", help="a rule file or a folder of *.yaml")
    check.add_argument("--config", help="a service configuration: its routes, receivers, sinks and its rules")

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
    replay.add_argument(
        "--notify",
        action="store_true",
        help="print the notifications the routes would send (JSON lines) instead of the transitions",
    )
    replay.add_argument("--config", help="with --notify: the service config whose routes and receivers to use")
    replay.add_argument(
        "--send", action="store_true", help="with --notify --config: deliver through the configured sinks for real"
    )

    routes = sub.add_parser("routes", help="the routing tree of a service config")
    routes_sub = routes.add_subparsers(dest="routes_command")
    routes_test = routes_sub.add_parser(
        "test", help="print the receivers a label set reaches, one per line (like amtool config routes test)"
    )
    routes_test.add_argument("--config", required=True, help="the service configuration (YAML)")
    routes_test.add_argument("labels", nargs="*", help="label=value ...")

    outbox = sub.add_parser("outbox", help="list pending and dead-lettered notifications; re-queue dead ones")
    outbox.add_argument("--config", required=True, help="the service configuration (YAML): its state store")
    outbox.add_argument("--limit", type=int, default=50, help="at most this many of each (default 50)")
    outbox.add_argument("--requeue", nargs="*", metavar="ID", help="re-queue these dead letters (all if no ID)")
    outbox.add_argument(
        "--force", action="store_true", help="with --requeue: also those a later notification of their group superseded"
    )

    alerts = sub.add_parser("alerts", help="recent transitions (or notifications) from the state store")
    alerts.add_argument("--config", required=True, help="the service configuration (YAML): its state store")
    alerts.add_argument("--state", choices=("firing", "resolved"), help="only transitions to this state")
    alerts.add_argument("--severity", help="only alerts with this severity label")
    alerts.add_argument("--limit", type=int, default=20, help="the last N (default 20)")
    alerts.add_argument("--notifications", action="store_true", help="delivered notifications instead")
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
    if (args.path is None) == (args.config is None):
        print("check: give a rule path or --config FILE", file=sys.stderr)
        return 2
    if args.config is not None:
        return _check_config(args.config)
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
    notifying = _replay_notifying(args)
    if notifying is False:
        return 2
    if notifying is not None:
        configure("warning")  # delivery failures on stderr as JSON lines; stdout carries the notifications
    writer: JsonLinesWriter | TableWriter | _Discard
    if notifying is not None:
        writer = _Discard()
    elif args.format == "jsonl":
        writer = JsonLinesWriter(sys.stdout.buffer)
    else:
        writer = TableWriter(sys.stdout.buffer)
    engine = Engine(rules, lateness_ms=lateness, until_ms=until)
    progress = _Progress(source.total_bytes) if sys.stderr.isatty() and not args.no_progress else None
    watch = Stopwatch()
    try:
        summary = asyncio.run(_replay_async(engine, source, store, args, writer, progress, notifying))
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
    writer: JsonLinesWriter | TableWriter | _Discard,
    progress: _Progress | None,
    notifying: tuple[Notifier, NotifyConfig, bool] | None = None,
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
        if notifying is None:
            return await run(engine, source, store, writer, progress.update if progress else None)
        notifier, config, send = notifying
        summary = await run(engine, source, store, writer, progress.update if progress else None, notifier)
        if not send:  # a dry run: every notification printed, in the order the dispatcher decided them
            out = StdoutSink(StdoutConfig())
            for _, raw in await store.outbox(None, 1_000_000):
                out.write(Notification.from_json(raw))
            return summary
        sender = Sender(store, build_sinks(config), config.notify, Metrics())
        try:
            await sender.drain()
        finally:
            await sender.close()
        return summary
    finally:
        await store.close()


class _Discard:
    def write(self, transitions: list[Transition]) -> None:
        return None

    def close(self) -> None:
        return None


# replay --notify without --config: every alert to stdout, grouped by rule, with Alertmanager's default timers
_DEFAULT_NOTIFY = {
    "route": {"receiver": "stdout", "group_by": ["alertname"]},
    "receivers": [{"name": "stdout", "stdout_configs": [{}]}],
}


def _replay_notifying(args: argparse.Namespace) -> tuple[Notifier, NotifyConfig, bool] | Literal[False] | None:
    """replay --notify: the notifier, the notification config and whether to really send; None without
    --notify; False (after printing why) when the options or the config are wrong."""
    if not args.notify:
        if args.config or args.send:
            print("--config and --send go with --notify", file=sys.stderr)
            return False
        return None
    if args.send and not args.config:
        print("--send needs --config (the receivers to send to)", file=sys.stderr)
        return False
    config: NotifyConfig | None
    if args.config:
        config = _config_or_exit(args.config)
        if config is None:
            return False
        if config.route is None:
            print(f"{args.config}: no route configured", file=sys.stderr)
            return False
    else:
        config = NotifyConfig.model_validate(_DEFAULT_NOTIFY)
    if args.send:  # a dry run needs no secrets: it only prints
        try:
            build_sinks(config)
        except ValueError as exc:
            print(f"{args.config}: {exc}", file=sys.stderr)
            return False
    return Notifier(config), config, args.send


def _run(args: argparse.Namespace) -> int:
    from streamalert import app  # noqa: PLC0415 (the HTTP stack loads only for live mode)
    from streamalert.config.app import ConfigError, load_config  # noqa: PLC0415

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
        build_sinks(config)  # secrets in files are read now: a missing one fails the start with its key
        config.notify.token()
    except ValueError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 2
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


def _config_or_exit(path: str) -> AppConfig | None:
    from streamalert.config.app import ConfigError, load_config  # noqa: PLC0415

    try:
        return load_config(path)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None


def _check_config(path: str) -> int:
    config = _config_or_exit(path)
    if config is None:
        return 1
    rules = _load(str(config.rules))
    if rules is None:
        return 1
    try:
        sinks = build_sinks(config)  # reads *_file secrets: a missing file fails here, not at the first page
        config.notify.token()
    except ValueError as exc:
        print(f"{path}: {exc}", file=sys.stderr)
        return 1
    routes = len(build_route(config.route).walk()) if config.route is not None else 0
    print(
        f"OK: {len(rules)} rules, {routes} routes, {len(config.receivers)} receivers with {len(sinks)} sinks, "
        f"{len(config.inhibit_rules)} inhibit rules, {len(config.silences)} silences"
    )
    return 0


def _routes(args: argparse.Namespace) -> int:
    config = _config_or_exit(args.config)
    if config is None:
        return 2
    if config.route is None:
        print(f"{args.config}: no route configured", file=sys.stderr)
        return 2
    labels: dict[str, str] = {}
    for item in args.labels:  # read as amtool reads them: `name=value` or `name="quoted \"value\""`
        try:
            matchers = parse_matchers(item)
        except MatcherError as exc:
            print(f"{item!r}: expected label=value ({exc})", file=sys.stderr)
            return 2
        if len(matchers) != 1 or matchers[0].op != "=":
            print(f"{item!r}: expected label=value", file=sys.stderr)
            return 2
        labels[matchers[0].name] = matchers[0].value
    for route in build_route(config.route).match(labels):
        print(route.receiver)
    return 0


def _outbox(args: argparse.Namespace) -> int:
    config = _config_or_exit(args.config)
    if config is None:
        return 2

    async def go(store: Store) -> int:
        if args.requeue is not None:
            return await _requeue(store, args.requeue, args.force)
        pending = await store.outbox(None, args.limit)
        dead = await store.dead_letters(args.limit)
        print(f"pending: {await store.outbox_depth()}")
        for entry_id, raw in pending:
            print(f"  {entry_id}  {_describe(orjson.loads(raw))}")
        print(f"dead letters: {len(await store.dead_letters(1_000_000))}")
        for entry_id, raw in dead:
            record = orjson.loads(raw)
            print(
                f"  {entry_id}  {_describe(record['notification'])}  attempts={record['attempts']}  {record['error']}"
            )
        return 0

    return _with_store(config.state, go)


async def _requeue(store: Store, ids: list[str], force: bool) -> int:
    """Put dead letters back in the outbox. One whose group and sink have since had a notification
    delivered is left dead unless forced: sending it now (a trigger after its resolve) would reopen a
    closed incident."""
    latest: dict[tuple[str, str, str], str] = {}
    for record in await recent_notifications(store, 1_000_000):
        key = (record["receiver"], record["sink"], record["group_key"])
        latest[key] = max(latest.get(key, ""), record["at"])
    chosen: list[str] = []
    for entry_id, raw in await store.dead_letters(1_000_000):
        if ids and entry_id not in ids:
            continue
        note = orjson.loads(raw)["notification"]
        superseded = (
            "raw" not in note and latest.get((note["receiver"], note["sink"], note["group_key"]), "") > note["at"]
        )
        if superseded and not force:
            print(f"  {entry_id}  left dead: its group has had a later notification (--force to send it anyway)")
            continue
        chosen.append(entry_id)
    count = await store.requeue(chosen) if chosen else 0
    print(f"re-queued {count} notification(s)")
    return 0


def _alerts(args: argparse.Namespace) -> int:
    config = _config_or_exit(args.config)
    if config is None:
        return 2

    async def go(store: Store) -> int:
        if args.notifications:
            items = await recent_notifications(store, args.limit)
        else:
            items = await recent_transitions(store, args.state, args.severity, args.limit)
        for item in items:
            sys.stdout.buffer.write(orjson.dumps(item) + b"\n")
        return 0

    return _with_store(config.state, go)


def _with_store(url: str, go: Callable[[Store], Awaitable[int]]) -> int:
    async def main() -> int:
        store = open_store(url)
        try:
            return await go(store)
        finally:
            await store.close()

    try:
        return asyncio.run(main())
    except RedisError as exc:
        print(f"state store {redact(url)}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _describe(notification: Any) -> str:
    if "raw" in notification:
        return "(unreadable entry)"
    names = sorted({a["labels"].get("alertname", "") for a in notification.get("alerts", [])})
    return f"{notification['at']}  {notification['receiver']}/{notification['sink']}  {','.join(names)}"
