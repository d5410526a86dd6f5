"""Start-up cost of the command line: CPU seconds of `streamalert --help`, `check` and `routes test` over a bare
`python -c pass`, measured in the same run, interleaved, several times each.

Run by hand, never in CI:

    python bench/startup_bench.py [--runs N]

Each command runs as a fresh process (the console script next to this interpreter, or `python -m streamalert`
if there is none); its CPU time (user + system) comes from the kernel's accounting of the finished child, so
other load on the machine changes it less than wall time. Reported per command: the median and the range of
(its CPU - the median CPU of `python -c pass`) over the runs, against the target of 0.3 s.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.3


def cli() -> list[str]:
    script = Path(sys.executable).parent / "streamalert"
    if script.exists():
        return [str(script)]
    found = shutil.which("streamalert")
    return [found] if found else [sys.executable, "-m", "streamalert"]


def cpu_of(command: list[str]) -> float:
    """CPU seconds (user + system) of one run of `command`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    prog = cli()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "streamalert --help": [*prog, "--help"],
        "streamalert check config/rules": [*prog, "check", "config/rules"],
        "streamalert routes test --config config/demo-live.yaml": [
            *prog,
            "routes",
            "test",
            "--config",
            "config/demo-live.yaml",
            "severity=critical",
        ],
    }
    times: dict[str, list[float]] = {name: [] for name in commands}
    for _ in range(args.runs):  # interleaved: a burst of load on the machine touches every command alike
        for name, command in commands.items():
            times[name].append(cpu_of(command))
    floor = statistics.median(times["python -c pass"])
    print(f"{args.runs} runs each, {os.cpu_count()} cores; CPU seconds (user + system)")
    print(
        f"{'python -c pass':<58} median {floor:.3f}  range {min(times['python -c pass']):.3f}-"
        f"{max(times['python -c pass']):.3f}"
    )
    for name, values in times.items():
        if name == "python -c pass":
            continue
        over = [v - floor for v in values]
        verdict = "PASS" if statistics.median(over) <= TARGET_S else "MISS"
        print(
            f"{name:<58} over bare python: median {statistics.median(over):.3f}  range {min(over):.3f}-"
            f"{max(over):.3f}  (x{statistics.median(values) / floor:.1f})  target <= {TARGET_S}: {verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
