"""Run the fault suite and print its table (markdown).

    python bench/faults/run.py [--quick] [--rows NAME ...] [--markdown OUT] [--keep DIR] [--list]

Every row starts its own redis-server, Tansu broker (Kafka rows) and `streamalert run` from this checkout;
bench/README.md describes the rows and how each figure is measured. The exit status is 0 when every row passed,
1 otherwise (the table is printed either way).
"""

from __future__ import annotations

import argparse
import platform
import shlex
import subprocess
import sys
import tempfile
import traceback
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `bench` and `streamalert` importable from this checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.faults.catalogue import ROWS
from bench.faults.harness import ROOT
from bench.faults.result import Result, table
from streamalert.clock import WallClock


def machine() -> str:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = subprocess.run(["nproc"], capture_output=True, text=True, check=False).stdout.strip()
    memory = next(
        (line.split()[1] for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")),
        "0",
    )
    commit = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
    ).stdout.strip()
    return (
        f"nproc {cores}, {cpu}, {int(memory) // 1024 // 1024} GiB, Linux {platform.release()}, "
        f"Python {platform.python_version()}, commit {commit or 'unknown'}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="only the quick rows (the CI tests in tests/faults/)")
    parser.add_argument("--rows", nargs="+", metavar="NAME", help="these rows only")
    parser.add_argument("--markdown", type=Path, metavar="OUT", help="also write the table to this file")
    parser.add_argument("--keep", type=Path, metavar="DIR", help="keep each row's logs and inputs under DIR")
    parser.add_argument("--list", action="store_true", help="list the rows and exit")
    args = parser.parse_args(argv)
    rows = [row for row in ROWS if row.quick or not args.quick]
    if args.rows:
        unknown = set(args.rows) - {row.name for row in ROWS}
        if unknown:
            parser.error(f"unknown rows: {', '.join(sorted(unknown))} (see --list)")
        rows = [row for row in ROWS if row.name in args.rows]
    if args.list:
        for row in ROWS:
            print(f"{row.name}{'  (quick)' if row.quick else ''}")
        return 0
    started = datetime.fromtimestamp(WallClock().now_ms() / 1000, tz=UTC)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="faults-") as scratch:
        base = args.keep or Path(scratch)
        for row in rows:
            print(f"row {row.name} ...", file=sys.stderr, flush=True)
            try:
                result = row.run(base / row.name)
            except Exception:  # a row that cannot run is a row that failed: shown, never dropped
                result = Result(row.name, "harness error")
                result.notes.append(traceback.format_exc(limit=3).replace("\n", " ")[-600:])
            results.append(result)
            print(table([result]).splitlines()[2], file=sys.stderr, flush=True)
    command = "python bench/faults/run.py " + shlex.join(sys.argv[1:] if argv is None else argv)
    text = "\n".join(
        [
            f"Fault suite, {started:%Y-%m-%d %H:%M} UTC; {machine()}.",
            f"Command: `{command.strip()}`",
            "",
            table(results),
            "",
        ]
    )
    print(text)
    if args.markdown:
        args.markdown.write_text(text)
    return 0 if all(not r.failures() for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
