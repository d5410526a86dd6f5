"""`streamalert test FILE...`: rule unit tests, in the spirit of `promtool test rules`, for logs and time.

A test file names rule files and lists tests: log lines at times relative to a start, and the transitions
(and, with a service config, notifications) expected. Each test runs on its own the way `streamalert replay`
runs a file (spec.py reads the format, run.py runs a case, compare.py judges and draws the diff). The format
is documented in README.md, "Testing rules".

Exit status: 0 every test passed; 1 some test failed (or a rule file does not load); 2 a test file is
malformed (each problem named with file, test and field, like `check`).
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import TextIO

from streamalert.config.notify import NotifyConfig
from streamalert.ruletest.compare import clock_note, notification_diff, transition_diff
from streamalert.ruletest.run import run_case
from streamalert.ruletest.spec import MalformedTest, TestFile, load_test_file

EXIT_FAILED = 1
EXIT_MALFORMED = 2


def run_files(paths: list[str], out: TextIO, err: TextIO) -> int:
    """Run every test of every file, print PASS/FAIL per test (failures with their diff) and a summary."""
    passed = failed = malformed = 0
    for name in paths:
        try:
            test_file = load_test_file(Path(name))
            config = _notify_config(test_file)
        except MalformedTest as exc:
            for problem in exc.problems:
                print(problem, file=err)
            malformed += 1
            continue
        results = asyncio.run(_run_file(test_file, config))
        for case_title, diff in results:
            if diff:
                failed += 1
                print(f"FAIL {case_title}", file=out)
                for line in diff:
                    print(f"  {line}", file=out)
            else:
                passed += 1
                print(f"PASS {case_title}", file=out)
    summary = f"{passed} passed, {failed} failed"
    if malformed:
        summary += f", {malformed} malformed file(s) not run"
    print(summary, file=out)
    if malformed:
        return EXIT_MALFORMED
    return EXIT_FAILED if failed else 0


async def _run_file(test_file: TestFile, config: NotifyConfig | None) -> list[tuple[str, list[str]]]:
    """(title, diff lines) per test; no lines: it passed."""
    results = []
    for case in test_file.cases:
        outcome = await run_case(case, test_file.rules, config)
        diff = transition_diff(case, test_file.rules, outcome.transitions) or []
        if outcome.notifications is not None:
            diff += notification_diff(case, test_file.rules, outcome.notifications) or []
        note = clock_note(case, outcome.end_ms) if diff else None
        results.append((case.title, [*diff, note] if note else diff))
    return results


def _notify_config(test_file: TestFile) -> NotifyConfig | None:
    """The routing of the file's `config:` (read as `replay --notify --config` reads it: unset variables of
    keys routing does not use are left as written), or None without one."""
    from streamalert.config.app import ConfigError, load_config  # noqa: PLC0415 (only files with a config)

    if test_file.config_path is None:
        return None
    try:
        config = load_config(test_file.config_path, unset=[])
    except ConfigError as exc:
        raise MalformedTest([f"{test_file.path}: config: {exc}"]) from None
    if config.route is None:
        raise MalformedTest([f"{test_file.path}: config: {test_file.config_path} has no route"])
    return config
