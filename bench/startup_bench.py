"""Start-up cost of the command line: CPU seconds of `streamalert --help`, `check`, `check --config` and
`routes test` over a bare `python -c pass`, measured in the same run, interleaved, several times each.

Run by hand, never in CI:

    python bench/startup_bench.py [--runs N] [--baseline DIR] [--no-pyc]

Each command runs as a fresh `python -P -m streamalert ...` with this checkout first on PYTHONPATH (not whatever
checkout the virtualenv's editable install points at; -P keeps the working directory off sys.path), from the
checkout's root (the configs are its files).
Its CPU time (user + system) comes from the kernel's accounting of the finished child, so other load on the
machine changes it less than wall time. Reported per command: the median and the range of (its CPU - the
median CPU of `python -c pass`) over the runs, against the target of 0.3 s.

Bytecode: an installed package starts from compiled bytecode, so the children run with
PYTHONDONTWRITEBYTECODE unset and their bytecode cached in a temporary folder (PYTHONPYCACHEPREFIX: nothing is
written into the checkout), after one unmeasured run of every command. `--no-pyc` measures instead what a
checkout run with PYTHONDONTWRITEBYTECODE=1 pays: every module of the package compiled at every start.

`--baseline DIR` runs every command a second time per round with the code of DIR (another checkout, e.g. of
an earlier commit: `git archive COMMIT streamalert | tar -x -C DIR`), so before and after come from the same
run.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET_S = 0.3
FLOOR = "python -c pass"
COMMANDS = {
    "streamalert --help": ["--help"],
    "streamalert check config/rules": ["check", "config/rules"],
    "streamalert check --config config/streamalert.yaml": ["check", "--config", "config/streamalert.yaml"],
    "streamalert routes test --config config/streamalert.yaml": [
        "routes",
        "test",
        "--config",
        "config/streamalert.yaml",
        "severity=critical",
    ],
}


def cpu_of(command: list[str], env: dict[str, str]) -> float:
    """CPU seconds (user + system) of one run of `command`."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    subprocess.run(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def environment(code: Path, pyc: str | None) -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=str(code))
    if pyc is None:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = pyc
    return env


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--baseline", type=Path, help="also run every command with the code of this checkout")
    parser.add_argument("--no-pyc", action="store_true", help="compile every module at every start")
    args = parser.parse_args()
    trees = {"": ROOT} if args.baseline is None else {"before": args.baseline.resolve(), "after": ROOT}
    with tempfile.TemporaryDirectory(prefix="startup-pyc-") as cache:
        pyc = None if args.no_pyc else cache
        runs: dict[tuple[str, str], tuple[list[str], dict[str, str]]] = {
            (FLOOR, ""): ([sys.executable, "-P", "-c", "pass"], environment(ROOT, pyc))
        }
        for name, argv in COMMANDS.items():
            for label, tree in trees.items():
                runs[(name, label)] = ([sys.executable, "-P", "-m", "streamalert", *argv], environment(tree, pyc))
        for command, env in runs.values():  # unmeasured: fills the bytecode cache
            cpu_of(command, env)
        times: dict[tuple[str, str], list[float]] = {key: [] for key in runs}
        for _ in range(args.runs):  # interleaved: a burst of load on the machine touches every command alike
            for key, (command, env) in runs.items():
                times[key].append(cpu_of(command, env))
    floor_times = times[(FLOOR, "")]
    floor = statistics.median(floor_times)
    print(
        f"{args.runs} runs each, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end; "
        f"CPU seconds (user + system); bytecode {'compiled at every start' if args.no_pyc else 'cached'}"
    )
    print(f"{FLOOR:<66} median {floor:.3f}  range {min(floor_times):.3f}-{max(floor_times):.3f}")
    for (name, label), values in times.items():
        if name == FLOOR:
            continue
        over = [v - floor for v in values]
        verdict = "PASS" if statistics.median(over) <= TARGET_S else "MISS"
        title = f"{name} [{label}]" if label else name
        print(
            f"{title:<66} over bare python: median {statistics.median(over):.3f}  range {min(over):.3f}-"
            f"{max(over):.3f}  (x{statistics.median(values) / floor:.1f})  target <= {TARGET_S}: {verdict}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
