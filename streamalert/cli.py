"""Command line: argument parsing and wiring only (`check`, `replay`, `test`, `run`, `routes`, `outbox`, `alerts`).

Each command imports what it needs when it runs, so `--help`, `check` and `routes test` start without loading
aiohttp, aiokafka, redis, prometheus_client or the engine (1.5 s of CPU at every start otherwise;
bench/startup_bench.py): the config models live apart from the code that sends and consumes, which imports
those on use.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from streamalert import __version__

if TYPE_CHECKING:
    from streamalert.config.app import AppConfig
    from streamalert.config.notify import NotifyConfig
    from streamalert.config.rules import Rule
    from streamalert.engine import Engine
    from streamalert.model import Transition
    from streamalert.notify.notifier import Notifier
    from streamalert.output import JsonLinesWriter, TableWriter
    from streamalert.pipeline import RunSummary
    from streamalert.reload import Setup
    from streamalert.report import Recorder
    from streamalert.sources import Batch
    from streamalert.sources.replay import ReplaySource
    from streamalert.state.base import Store

# Exit status when the reader of our standard output went away (`| head`): what a process killed by SIGPIPE
# reports in a shell (128 + 13), without the traceback
EXIT_PIPE_CLOSED = 141
# replay: more than this share of malformed lines is warned about; all of them (a file that is not NDJSON,
# such as README.md) is an error
MALFORMED_WARN_SHARE = 0.5


def main(argv: Sequence[str] | None = None) -> int:
    import atexit  # noqa: PLC0415
    import gc  # noqa: PLC0415

    # The interpreter's last collection would walk every object the config and rules built (~0.1 s of a
    # quick command); nothing there needs finalizing, so it is moved out of the collector's sight at exit.
    atexit.register(gc.freeze)
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
        "test": _test,
        "explain": _explain,
        "run": _run,
        "routes": _routes,
        "outbox": _outbox,
        "alerts": _alerts,
    }[args.command]
    # `check` and `routes` build their objects and end: the collector's passes over them free nothing that
    # reference counting does not (0.08 s of `check` on 10,000 rules, bench/rules_bench.py), so it pauses
    collecting = gc.isenabled() and args.command in ("check", "routes")
    if collecting:
        gc.disable()
    # `run` and `replay` drive an engine: its collector settings (engine.tune_collector), restored after so an
    # in-process caller (the tests) keeps its own.
    restore_collector = None
    if args.command in ("run", "replay"):
        from streamalert.engine import tune_collector  # noqa: PLC0415

        restore_collector = tune_collector()
    try:
        code = handler(args)
        sys.stdout.flush()
    except BrokenPipeError:  # `streamalert replay ... | head`: the reader has all it wanted
        _drop_stdout()
        return EXIT_PIPE_CLOSED
    finally:
        if collecting:
            gc.enable()
        if restore_collector is not None:
            restore_collector()
    return code


def _drop_stdout() -> None:
    """Point standard output at /dev/null, so the interpreter's final flush of what is still buffered does
    not raise BrokenPipeError again (Python's documented recipe for SIGPIPE)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no file descriptor behind stdout (tests capturing it): nothing to flush
        return


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="streamalert", description="Alerts from structured JSON logs.")
    parser.add_argument("--version", action="version", version=f"streamalert {__version__}")
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
    replay.add_argument(
        "--format", choices=("jsonl", "table"), help="transitions as JSON lines (default) or a table for people"
    )
    replay.add_argument("--until", help="stop the clock here (ISO 8601 or epoch seconds); later events are ignored")
    replay.add_argument("--state", default="memory://", help="memory:// (default) or redis://host:port/db?namespace=x")
    replay.add_argument("--reset-state", action="store_true", help="forget stored state before replaying")
    replay.add_argument(
        "--resume", action="store_true", help="continue the stored state: these files carry on where its input ended"
    )
    replay.add_argument("--lateness", default="30s", help="how far behind the newest event a record may arrive")
    replay.add_argument(
        "--input-format",
        choices=("json", "logfmt", "text", "auto"),
        default="json",
        help="how lines become records: JSON objects (default), logfmt, plain text in `message`, or auto per line",
    )
    replay.add_argument(
        "--time-pattern",
        help="a text line's leading timestamp, a regex with a group `time` (default: ISO 8601, optionally in '[')",
    )
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
    replay.add_argument(
        "--report",
        metavar="FILE",
        help="also write an HTML report (one self-contained file): per rule its window value, threshold and alerts",
    )

    explain = sub.add_parser("explain", help="why a log line matches each rule or not, and the series it would update")
    explain.add_argument("line", nargs="?", help="the log line (JSON); without it: --file/--line, or stdin")
    explain.add_argument("--rules", required=True, help="a rule file or a folder of *.yaml")
    explain.add_argument("--file", help="take the line from this NDJSON file (with --line N)")
    explain.add_argument("--line", dest="line_number", type=int, metavar="N", help="with --file: line N (from 1)")
    explain.add_argument("--format", choices=("text", "json"), default="text", help="text for people, json for tools")
    explain.add_argument("--misses", type=int, default=10, help="text: non-matching rules shown (0: all; default 10)")

    test = sub.add_parser(
        "test", help="rule unit tests: log lines at given times, the transitions expected (like promtool test rules)"
    )
    test.add_argument("files", nargs="+", help="test files (YAML); see README.md, 'Testing rules'")

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
    for command in (check, run_cmd, replay, test, routes_test, outbox, alerts):
        command.set_defaults(subparser=command)  # so that a handler's argument errors print its usage
    return parser


def _load(path: str) -> list[Rule] | None:
    """Rules from a file or folder; on problems, print each with file, rule and field, and return None."""
    from streamalert.config.rules import RuleLoadError, load_rules  # noqa: PLC0415 (imports on use: fast start)

    try:
        return load_rules(path)
    except RuleLoadError as exc:
        for problem in exc.problems:
            print(problem, file=sys.stderr)
        print(f"{len(exc.problems)} problem(s) found", file=sys.stderr)
        return None


def _usage_error(args: argparse.Namespace, message: str) -> int:
    """An argument error found by a handler, answered as argparse answers its own: the sub-command's usage,
    then `streamalert SUB: error: message`; exit status 2."""
    parser: argparse.ArgumentParser = args.subparser
    parser.print_usage(sys.stderr)
    print(f"{parser.prog}: error: {message}", file=sys.stderr)
    return 2


def _check(args: argparse.Namespace) -> int:
    if (args.path is None) == (args.config is None):
        return _usage_error(args, "give a rule path or --config FILE")
    if args.config is not None:
        return _check_config(args.config)
    rules = _load(args.path)
    if rules is None:
        return 1
    path = Path(args.path)
    files = len([*path.glob("*.yaml"), *path.glob("*.yml")]) if path.is_dir() else 1
    if not rules:
        print(f"warning: no rules in {args.path}: nothing would ever alert", file=sys.stderr)
    windows = sum(1 for r in rules if r.kind == "window")
    summary = f"OK: {len(rules)} rules ({windows} window, {len(rules) - windows} absence) in {files} file(s)"
    print(summary + _kind_errors(rules))
    return 0


def _kind_errors(rules: list[Rule]) -> str:
    """The stated error of the approximate kinds the rules use (none: empty)."""
    aggregates = {r.condition.aggregate for r in rules if r.condition is not None}
    if "quantile" not in aggregates and "distinct" not in aggregates:
        return ""  # without importing the window kinds (~10 ms)
    from streamalert.rules.kinds import EXACT_DISTINCT, EXACT_QUANTILE_EVENTS, HLL_ERROR, QUANTILE_ALPHA  # noqa: PLC0415

    notes = []
    if "quantile" in aggregates:
        notes.append(
            f"quantiles exact up to {EXACT_QUANTILE_EVENTS} samples per window, then within {QUANTILE_ALPHA:.0%}"
        )
    if "distinct" in aggregates:
        notes.append(f"distinct exact up to {EXACT_DISTINCT} values, then {HLL_ERROR:.1%} standard error")
    return "; " + "; ".join(notes) if notes else ""


class _StateInUse(Exception):
    """The state store already holds a run's state and the user did not say what to do with it."""


def _replay_options(args: argparse.Namespace) -> str | None:
    """Why these options cannot go together (a flag that would do nothing), or None."""
    if args.resume and args.reset_state:
        return "--resume and --reset-state contradict each other: continue the stored state, or forget it"
    if args.resume and args.state.startswith("memory:"):
        return (
            "--resume continues a stored state, and memory:// starts empty in every process: "
            "give --state redis://host:port/db?namespace=NAME (the store the earlier run used)"
        )
    if args.notify and args.format is not None:
        return f"--format {args.format} is for transitions; --notify prints notifications as JSON lines"
    if args.report is not None and not Path(args.report).resolve().parent.is_dir():
        return f"--report {args.report}: no such folder to write it in"
    if args.time_pattern is not None:
        from streamalert.sources.formats import compile_time_pattern  # noqa: PLC0415

        try:
            compile_time_pattern(args.time_pattern)
        except ValueError as exc:
            return f"--{exc}".replace("--time_pattern", "--time-pattern")
    return None


def _replay(args: argparse.Namespace) -> int:
    conflict = _replay_options(args)
    if conflict is not None:
        return _usage_error(args, conflict)
    import asyncio  # noqa: PLC0415

    from redis.exceptions import RedisError  # noqa: PLC0415

    from streamalert.clock import Stopwatch  # noqa: PLC0415
    from streamalert.engine import Engine, StoredStateError  # noqa: PLC0415
    from streamalert.sources.formats import LineFormat  # noqa: PLC0415
    from streamalert.sources.replay import ReplaySource  # noqa: PLC0415
    from streamalert.state.stores import open_store, redact  # noqa: PLC0415
    from streamalert.telemetry.logging import configure  # noqa: PLC0415

    rules = _load(args.rules)
    if rules is None:
        return 1
    times = _replay_times(args)
    if times is None:
        return 2
    lateness, until = times
    try:
        source = ReplaySource(args.files, line_format=LineFormat(args.input_format, args.time_pattern))
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
    engine = Engine(rules, lateness_ms=lateness, until_ms=until)
    recorder = _recorder(engine) if args.report is not None else None
    writer = _writer(args, notifying is not None, recorder)
    progress = _Progress(source.total_bytes) if sys.stderr.isatty() and not args.no_progress else None
    # A store that outlives this process may be continued (--resume): what only the end of input decides
    # is printed as provisional and not stored (pipeline.run).
    provisional = None if args.state.startswith("memory:") else _Provisional(writer)
    watch = Stopwatch()
    try:
        summary, dead = asyncio.run(
            _replay_async(engine, source, store, args, writer, progress, notifying, provisional)
        )
    except RedisError as exc:
        print(f"state store {redact(args.state)}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    except StoredStateError as exc:
        print(f"state store {redact(args.state)}: {exc}", file=sys.stderr)
        return 1
    except _StateInUse as exc:
        print(exc, file=sys.stderr)
        return 2
    writer.close()
    if progress is not None:
        progress.done()
    _print_summary(summary, watch.elapsed(), provisional.count if provisional else 0)
    code = _verdict(args, source.problems, summary, dead)
    return max(code, _write_report(args.report, recorder, args.files))


def _writer(
    args: argparse.Namespace, notifying: bool, recorder: Recorder | None
) -> JsonLinesWriter | TableWriter | _Discard | _Tee:
    """Where replay's transitions go: stdout (unless notifications are printed instead), and the report."""
    from streamalert.output import JsonLinesWriter, TableWriter  # noqa: PLC0415

    writer: JsonLinesWriter | TableWriter | _Discard
    if notifying:
        writer = _Discard()
    elif args.format == "table":
        writer = TableWriter(sys.stdout.buffer)
    else:
        writer = JsonLinesWriter(sys.stdout.buffer)
    return writer if recorder is None else _Tee(writer, recorder)


def _recorder(engine: Engine) -> Recorder:
    """--report: the engine's every series value and transition recorded for the page."""
    from streamalert.report import Recorder  # noqa: PLC0415

    recorder = Recorder(engine.rules)
    engine.sampler = recorder.sample
    return recorder


def _write_report(path: str, recorder: Recorder | None, files: list[str]) -> int:
    """--report: write the page (written even when the replay had problems: it shows what was read)."""
    from streamalert.report import render  # noqa: PLC0415

    if recorder is None:
        return 0
    page = render(recorder, "streamalert replay report", files)
    try:
        Path(path).write_text(page, encoding="utf-8")
    except OSError as exc:
        print(f"--report {path}: cannot write: {exc}", file=sys.stderr)
        return 1
    print(f"report written to {path}", file=sys.stderr)
    return 0


def _explain(args: argparse.Namespace) -> int:
    """Explain the given line, --file's line N, or every non-blank line of stdin (0: all explained)."""
    lines = _explain_input(args)
    if lines is None:
        return 2
    rules = _load(args.rules)
    if rules is None:
        return 1
    from streamalert.explain import Explainer, NotARecord, as_json, as_text  # noqa: PLC0415

    explainer = Explainer(rules)
    code = 0
    for where, line in lines:
        try:
            explanation = explainer.explain(line)
        except NotARecord as exc:
            print(f"explain: {where}: {exc} (the engine skips such a line as malformed)", file=sys.stderr)
            code = 1
            continue
        if args.format == "json":
            sys.stdout.buffer.write(_json_line(as_json(explanation)))
        else:
            print(
                f"== {where}" if len(lines) > 1 else "",
                as_text(explanation, args.misses),
                sep="\n" if len(lines) > 1 else "",
            )
    return code


def _json_line(value: Any) -> bytes:
    """One JSON line: orjson's, or `json`'s where orjson refuses (integers beyond 64 bits, which logs have)."""
    import json  # noqa: PLC0415

    import orjson  # noqa: PLC0415

    try:
        return orjson.dumps(value, default=str) + b"\n"
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, default=str, ensure_ascii=False).encode() + b"\n"


def _explain_input(args: argparse.Namespace) -> list[tuple[str, bytes]] | None:
    """(where, line) pairs to explain; None after saying what is wrong with the arguments."""
    if args.line is not None and args.file is not None:
        print("explain: give a line or --file FILE --line N, not both", file=sys.stderr)
        return None
    if (args.file is None) != (args.line_number is None):
        print("explain: --file and --line go together (--file FILE --line N)", file=sys.stderr)
        return None
    if args.line is not None:
        return [("the line given", args.line.encode())]
    if args.file is not None:
        if args.line_number < 1:
            print("explain: --line counts from 1", file=sys.stderr)
            return None
        try:
            with open(args.file, "rb") as handle:
                for number, raw in enumerate(handle, 1):
                    if number == args.line_number:
                        return [(f"{args.file}:{number}", raw.rstrip(b"\r\n"))]
        except OSError as exc:
            print(f"explain: cannot read {args.file}: {exc}", file=sys.stderr)
            return None
        print(f"explain: {args.file} has fewer than {args.line_number} lines", file=sys.stderr)
        return None
    text = sys.stdin.buffer.read().splitlines()
    lines = [(f"stdin line {n}", raw) for n, raw in enumerate(text, 1) if raw.strip()]
    if not lines:
        print("explain: no line given (an argument, --file FILE --line N, or lines on stdin)", file=sys.stderr)
        return None
    return lines


def _test(args: argparse.Namespace) -> int:
    from streamalert.ruletest import run_files  # noqa: PLC0415 (loads the engine: only when tests run)

    return run_files(args.files, sys.stdout, sys.stderr)


def _replay_times(args: argparse.Namespace) -> tuple[int, int | None] | None:
    """--lateness in ms and --until as epoch ms (None: not given); None after printing what is wrong."""
    from streamalert.decode import parse_time  # noqa: PLC0415
    from streamalert.durations import parse_duration  # noqa: PLC0415

    try:
        lateness = parse_duration(args.lateness)
    except ValueError as exc:
        _usage_error(args, f"--lateness: {exc}")
        return None
    until = None
    if args.until is not None:
        until = parse_time(float(args.until) if _is_number(args.until) else args.until)
        if until is None:
            _usage_error(args, f"--until: cannot read {args.until!r} as a time (ISO 8601 or epoch seconds)")
            return None
    return lateness, until


def _verdict(args: argparse.Namespace, problems: list[str], summary: RunSummary, dead: int) -> int:
    """replay's exit status, after saying on stderr what went wrong: files cut short, input that is mostly
    not JSON (all of it: an error), notifications that could not be delivered."""
    code = 0
    for problem in problems:
        print(f"input problem: {problem}", file=sys.stderr)
        code = 1
    if summary.lines and summary.malformed == summary.lines:
        expected = "a JSON object" if args.input_format == "json" else f"readable as {args.input_format}"
        hint = "a file of NDJSON logs? (--input-format reads logfmt and text)" if args.input_format == "json" else "?"
        print(
            f"replay: error: none of the {summary.lines} lines is {expected}: is {' '.join(args.files)} {hint}",
            file=sys.stderr,
        )
        code = 1
    elif summary.malformed > summary.lines * MALFORMED_WARN_SHARE:
        print(
            f"replay: warning: {summary.malformed} of {summary.lines} lines are not JSON objects and were "
            "skipped: the alerts above are only those of the rest",
            file=sys.stderr,
        )
    if dead:
        where = (
            f"`streamalert outbox --config {args.config}` lists them"
            if not args.state.startswith("memory:")
            else "they were kept in memory:// state, gone now: their errors are logged above"
        )
        print(f"replay: {dead} notification(s) could not be delivered and were dead-lettered; {where}", file=sys.stderr)
        code = 1
    return code


async def _replay_async(
    engine: Engine,
    source: ReplaySource,
    store: Store,
    args: argparse.Namespace,
    writer: JsonLinesWriter | TableWriter | _Discard | _Tee,
    progress: _Progress | None,
    notifying: tuple[Notifier, NotifyConfig, bool] | None = None,
    provisional: _Provisional | None = None,
) -> tuple[RunSummary, int]:
    """The run's summary and how many notifications it dead-lettered (with --send)."""
    from streamalert.notify.model import Notification  # noqa: PLC0415
    from streamalert.notify.sender import Sender, build_sinks  # noqa: PLC0415
    from streamalert.notify.sinks.stdout import StdoutConfig, StdoutSink  # noqa: PLC0415
    from streamalert.pipeline import run  # noqa: PLC0415
    from streamalert.state.stores import redact  # noqa: PLC0415
    from streamalert.telemetry.metrics import Metrics  # noqa: PLC0415

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
            on_batch = progress.update if progress else None
            return await run(engine, source, store, writer, on_batch, provisional=provisional), 0
        notifier, config, send = notifying
        on_batch = progress.update if progress else None
        summary = await run(engine, source, store, writer, on_batch, notifier, provisional)
        if not send:  # a dry run: every notification printed, in the order the dispatcher decided them
            out = StdoutSink(StdoutConfig())
            for _, raw in await store.outbox(None, 1_000_000):
                out.write(Notification.from_json(raw))
            return summary, 0
        dead_before = len(await store.dead_letters(1_000_000))
        sender = Sender(store, build_sinks(config), config.notify, Metrics())
        try:
            await sender.drain()
        finally:
            await sender.close()
        return summary, len(await store.dead_letters(1_000_000)) - dead_before
    finally:
        await store.close()


class _Discard:
    def write(self, transitions: list[Transition]) -> None:
        return None

    def write_provisional(self, transitions: list[Transition]) -> None:
        return None

    def close(self) -> None:
        return None


class _Tee:
    """The transitions to the output and to the report's recorder."""

    def __init__(self, writer: JsonLinesWriter | TableWriter | _Discard, recorder: Recorder) -> None:
        self.writer, self.recorder = writer, recorder

    def write(self, transitions: list[Transition]) -> None:
        self.writer.write(transitions)
        self.recorder.write(transitions)

    def write_provisional(self, transitions: list[Transition]) -> None:
        self.writer.write_provisional(transitions)
        self.recorder.write(transitions)

    def close(self) -> None:
        self.writer.close()


class _Provisional:
    """Where replay's end-of-input flush goes when the state may be continued: the writer, marked provisional."""

    def __init__(self, writer: JsonLinesWriter | TableWriter | _Discard | _Tee) -> None:
        self.writer, self.count = writer, 0

    def write(self, transitions: list[Transition]) -> None:
        self.count += len(transitions)
        self.writer.write_provisional(transitions)


# replay --notify without --config: every alert to stdout, grouped by rule, with Alertmanager's default timers
_DEFAULT_NOTIFY = {
    "route": {"receiver": "stdout", "group_by": ["alertname"]},
    "receivers": [{"name": "stdout", "stdout_configs": [{}]}],
}


def _replay_notifying(args: argparse.Namespace) -> tuple[Notifier, NotifyConfig, bool] | Literal[False] | None:
    """replay --notify: the notifier, the notification config and whether to really send; None without
    --notify; False (after printing why) when the options or the config are wrong."""
    from streamalert.config.notify import NotifyConfig  # noqa: PLC0415
    from streamalert.notify.notifier import Notifier  # noqa: PLC0415
    from streamalert.notify.sinks import build_sinks  # noqa: PLC0415

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
        # a dry run uses only the routes and receivers: variables of other keys (a source's token) may be unset
        config = _config_or_exit(args.config, lenient=not args.send)
        if config is None:
            return False
        if config.route is None:
            print(f"{args.config}: no route configured", file=sys.stderr)
            return False
    else:
        from streamalert.config.app import HttpConfig, default_external_url  # noqa: PLC0415

        external = default_external_url(HttpConfig().listen)  # as a service on the default listener
        config = NotifyConfig.model_validate({**_DEFAULT_NOTIFY, "notify": {"external_url": external}})
    if args.send:  # a dry run needs no secrets: it only prints
        try:
            build_sinks(config)
        except ValueError as exc:
            print(f"{args.config}: {exc}", file=sys.stderr)
            return False
    return Notifier(config), config, args.send


def _reload_setup(path: str) -> Setup:
    """The config file read and checked again for a reload, as a start checks it; ValueError names every
    problem (file, rule, field)."""
    from streamalert.config.app import ConfigError, load_config  # noqa: PLC0415
    from streamalert.config.rules import RuleLoadError, load_rules  # noqa: PLC0415
    from streamalert.notify.sender import build_sinks  # noqa: PLC0415
    from streamalert.reload import Setup  # noqa: PLC0415

    try:
        config = load_config(path)
        rules = load_rules(config.rules)
    except ConfigError as exc:
        raise ValueError(str(exc)) from None
    except RuleLoadError as exc:
        raise ValueError("; ".join(map(str, exc.problems))) from None
    unreadable = _unreadable_secrets(path, config)
    if unreadable:
        raise ValueError("; ".join(unreadable))
    sinks = build_sinks(config) if config.route is not None else None  # ValueError names receiver and key
    config.notify.token()
    return Setup(config, rules, sinks)


def _run(args: argparse.Namespace) -> int:
    import asyncio  # noqa: PLC0415
    import functools  # noqa: PLC0415

    from streamalert import app  # noqa: PLC0415 (the HTTP stack loads only for live mode)
    from streamalert.config.app import ConfigError, load_config  # noqa: PLC0415
    from streamalert.notify.sender import build_sinks  # noqa: PLC0415
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
    unreadable = _unreadable_secrets(args.config, config)
    for problem in unreadable:
        print(problem, file=sys.stderr)
    if unreadable:
        return 2
    try:
        build_sinks(config)  # secrets in files are read now: a missing one fails the start with its key
        config.notify.token()
    except ValueError as exc:
        print(f"{args.config}: {exc}", file=sys.stderr)
        return 2
    try:
        return asyncio.run(app.serve(config, loader=functools.partial(_reload_setup, args.config)))
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


def _print_summary(summary: RunSummary, seconds: float, provisional: int = 0) -> None:
    stats = summary.stats
    rate = summary.lines / seconds if seconds > 0 else 0.0
    print(
        f"replay: {summary.lines} lines read, {summary.malformed} skipped as malformed, {stats.late} late, "
        f"{stats.untimed} untimed, {stats.untimed_dropped} untimed before any time, "
        f"{stats.beyond_until} after --until, {stats.matched} matched, {stats.transitions} transitions "
        f"in {seconds:.2f}s ({rate:,.0f} lines/s)",
        file=sys.stderr,
    )
    if provisional:
        print(
            f"replay: the last {provisional} transition(s) are provisional: decided by the end of the input, "
            "not stored; a --resume run over the lines that follow decides them again",
            file=sys.stderr,
        )


def _config_or_exit(path: str, *, lenient: bool = False) -> AppConfig | None:
    """The service config, or None after printing why not. `lenient`: for commands that use only the routing
    tree and receivers, an unset `${VAR}` is left as written, with a note on stderr, instead of an error."""
    from streamalert.config.app import ConfigError, load_config  # noqa: PLC0415

    unset: list[str] | None = [] if lenient else None
    try:
        config = load_config(path, unset=unset)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return None
    if unset:
        print(f"{path}: note: environment variable(s) not set, left as written: {', '.join(unset)}", file=sys.stderr)
    return config


def _unreadable_secrets(path: str, config: AppConfig) -> list[str]:
    """One problem per `*_file` secret that cannot be read, each naming the receiver and key: all of them,
    not just the first a sink would stumble on."""
    from streamalert.config.app import secret_files  # noqa: PLC0415

    problems = []
    for key, file in secret_files(config):
        try:
            file.read_bytes()
        except OSError as exc:
            problems.append(f"{path}: {key}: cannot read {file}: {exc.strerror}")
    return problems


def _check_config(path: str) -> int:
    """Every problem of a service config in one run: unset variables, the config's keys, its rules, and every
    secret file that cannot be read (each named with its receiver and key), then the sinks themselves."""
    from streamalert.config.app import ConfigError, load_config  # noqa: PLC0415
    from streamalert.config.notify import build_route  # noqa: PLC0415
    from streamalert.notify.sinks import build_sinks  # noqa: PLC0415 (not sender's copy: no aiohttp, redis)
    from streamalert.notify.templates import check_all  # noqa: PLC0415

    unset: list[str] = []
    try:
        config = load_config(path, unset=unset)
    except ConfigError as exc:
        if unset:
            print(f"{path}: environment variable(s) not set: {', '.join(unset)}", file=sys.stderr)
        print(exc, file=sys.stderr)
        return 1
    problems = [f"{path}: environment variable(s) not set: {', '.join(unset)}"] if unset else []
    problems += _unreadable_secrets(path, config)
    problems += [f"{path}: {problem}" for problem in check_all(config)]
    rules = _load(str(config.rules))
    sinks: dict[Any, Any] = {}
    if not problems:  # the files are readable: building the sinks finds what else is wrong with them
        try:
            sinks = build_sinks(config)
            config.notify.token()
        except ValueError as exc:
            problems.append(f"{path}: {exc}")
    for problem in problems:
        print(problem, file=sys.stderr)
    if problems:
        print(f"{len(problems)} problem(s) in {path}", file=sys.stderr)
    if problems or rules is None:
        return 1
    routes = len(build_route(config.route).walk()) if config.route is not None else 0
    print(
        f"OK: {len(rules)} rules, {routes} routes, {len(config.receivers)} receivers with {len(sinks)} sinks, "
        f"{len(config.inhibit_rules)} inhibit rules, {len(config.silences)} silences"
    )
    return 0


def _routes(args: argparse.Namespace) -> int:
    from streamalert.config.app import ConfigError, load_routing  # noqa: PLC0415
    from streamalert.config.notify import build_route  # noqa: PLC0415
    from streamalert.notify.routing import MatcherError, parse_matchers  # noqa: PLC0415

    unset: list[str] = []  # the routing tree needs no token: an unset ${VAR} is left as written
    try:
        config = load_routing(args.config, unset=unset)
    except ConfigError as exc:
        print(exc, file=sys.stderr)
        return 2
    if unset:
        names = ", ".join(sorted(set(unset)))
        print(f"{args.config}: note: environment variable(s) not set, left as written: {names}", file=sys.stderr)
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
    import orjson  # noqa: PLC0415

    config = _config_or_exit(args.config, lenient=True)  # the state store needs no source token
    if config is None:
        return 2
    if _memory_state(args.config, config.state):
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


def _memory_state(path: str, url: str) -> bool:
    """`outbox` and `alerts` read what a running service stored: say so, and True, when that cannot be."""
    if not url.startswith("memory:"):
        return False
    print(
        f"{path}: state is memory://, and memory state does not outlive the process that held it: there is "
        "nothing to read from here (configure state: redis://... to keep outbox and alerts)",
        file=sys.stderr,
    )
    return True


async def _requeue(store: Store, ids: list[str], force: bool) -> int:
    """Put dead letters back in the outbox. One whose group and sink have since had a notification
    delivered is left dead unless forced: sending it now (a trigger after its resolve) would reopen a
    closed incident."""
    import orjson  # noqa: PLC0415

    from streamalert.notify.history import recent_notifications  # noqa: PLC0415

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
    import orjson  # noqa: PLC0415

    from streamalert.notify.history import recent_notifications, recent_transitions  # noqa: PLC0415

    config = _config_or_exit(args.config, lenient=True)  # the state store needs no source token
    if config is None:
        return 2
    if _memory_state(args.config, config.state):
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
    import asyncio  # noqa: PLC0415

    from redis.exceptions import RedisError  # noqa: PLC0415

    from streamalert.state.stores import open_store, redact  # noqa: PLC0415

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
