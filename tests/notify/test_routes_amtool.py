"""Routing agrees with Alertmanager's: for each route tree and label set of the table, `streamalert routes test`
prints the receivers `amtool config routes test` prints, in the same order (duplicates included).

Each tree is written twice: as an Alertmanager config (route + receivers) for amtool, and as a streamalert
service config with the same `route` and `receivers` keys. amtool prints the receivers comma-separated on one
line (an empty line for none); streamalert prints one per line. The table also holds the receivers expected,
checked against amtool first, so a wrong expectation is told apart from a disagreement. No case is skipped:
without amtool the test fails (scripts/ensure-packages installs it).
"""

from __future__ import annotations

import contextlib
import io
import pathlib
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import pytest
import yaml

from streamalert.cli import main
from tests.notify.alertmanager_support import amtool_binary

ROOT = pathlib.Path(__file__).resolve().parents[2]
RULES = ROOT / "config" / "rules"


@dataclass(frozen=True)
class Case:
    labels: dict[str, str]
    receivers: list[str]  # as Alertmanager routes them, in tree order


TREES: dict[str, dict[str, Any]] = {
    # escapes in matcher values: \d stays for the regex, \" and \\ are unescaped, quoted and bare
    "escapes": {
        "receiver": "default",
        "routes": [
            {"matchers": [r'team=~"pay\d+"'], "receiver": "digits"},
            {"matchers": [r'quote="a\"b"'], "receiver": "quoted"},
            {"matchers": [r"path=c:\\tmp"], "receiver": "backslash"},
            {"matchers": [r'host=~"db\.prod"'], "receiver": "dot"},
        ],
    },
    # three levels; a child without receiver inherits its parent's; anchored regex
    "nesting": {
        "receiver": "default",
        "group_by": ["alertname"],
        "routes": [
            {
                "matchers": ['team="payments"'],
                "receiver": "pay",
                "routes": [
                    {
                        "matchers": ['severity="critical"'],
                        "receiver": "pay-pager",
                        "routes": [{"matchers": ['env="prod"'], "receiver": "pay-prod-pager"}],
                    },
                    {"matchers": ['severity="warning"']},
                ],
            },
            {"matchers": ['team=~"infra|platform"'], "receiver": "infra"},
        ],
    },
    # continue true/false at two levels; a route without matchers catches everything
    "continue": {
        "receiver": "fallback",
        "routes": [
            {"matchers": ['severity="critical"'], "receiver": "pager", "continue": True},
            {
                "matchers": ['team="db"'],
                "receiver": "db-chat",
                "continue": True,
                "routes": [
                    {"matchers": ['service="postgres"'], "receiver": "pg-chat", "continue": True},
                    {"matchers": ['service=~"postgres|mysql"'], "receiver": "sql-chat"},
                ],
            },
            {"matchers": ['team="db"'], "receiver": "db-archive"},
            {"receiver": "catch-all"},
        ],
    },
    # negative matchers (a missing label is the empty value), regex, several matchers ANDed
    "negative": {
        "receiver": "default",
        "routes": [
            {
                "matchers": ['env!="dev"', 'severity=~"critical|error"'],
                "receiver": "oncall",
                "routes": [{"matchers": ['x!~"a|b"'], "receiver": "not-ab"}],
            },
            {"matchers": ['env="dev"'], "receiver": "dev-null"},
            {"matchers": ['region!~"eu-.*"'], "receiver": "non-eu"},
        ],
    },
    # Alertmanager's legacy match / match_re maps (match_re anchored too)
    "legacy": {
        "receiver": "default",
        "routes": [
            {
                "match": {"service": "api"},
                "receiver": "api",
                "routes": [{"match_re": {"severity": "crit.*|page"}, "receiver": "api-page"}],
            },
            {"match_re": {"service": "^(db|cache)$"}, "receiver": "storage", "continue": True},
            {"match": {"service": "db", "env": "prod"}, "receiver": "db-prod"},
        ],
    },
    # continue at several levels, receivers inherited two levels down
    "deep-continue": {
        "receiver": "root",
        "routes": [
            {
                "matchers": ['team="a"'],
                "continue": True,
                "routes": [
                    {
                        "matchers": ['severity="critical"'],
                        "receiver": "a-crit",
                        "continue": True,
                        "routes": [
                            {"matchers": ['env="prod"'], "continue": True},
                            {"matchers": ['env=~"prod|staging"'], "receiver": "a-crit-any"},
                        ],
                    },
                    {"matchers": ['severity=~"critical|warning"'], "receiver": "a-warn"},
                ],
            },
            {
                "matchers": ['team=~"a|b"'],
                "receiver": "ab",
                "routes": [{"matchers": ['severity="info"'], "receiver": "ab-info"}],
            },
        ],
    },
    # the root when no child matches; one receiver reached twice; timing settings on routes
    "root-and-duplicates": {
        "receiver": "everyone",
        "group_by": ["alertname"],
        "group_wait": "30s",
        "group_interval": "5m",
        "repeat_interval": "4h",
        "routes": [
            {"matchers": ['alertname="Watchdog"'], "receiver": "deadman"},
            {
                "matchers": ['alertname=~"Disk.*"', 'severity!="info"'],
                "receiver": "storage",
                "group_by": ["..."],
                "continue": True,
            },
            {"matchers": ['alertname=~"Disk.*"'], "receiver": "storage", "repeat_interval": "1h"},
            {"matchers": ['severity="critical"'], "receiver": "pager", "group_wait": "10s"},
        ],
    },
    # matcher spellings: several in braces in one string, unquoted values
    "spellings": {
        "receiver": "default",
        "routes": [
            {"matchers": ['{team="pay", env="prod"}'], "receiver": "pay-prod"},
            {"matchers": ["severity=critical", "service=~api-.+"], "receiver": "api-critical"},
            {"matchers": ['msg=~".*timeout.*"'], "receiver": "timeouts"},
        ],
    },
}

CASES: dict[str, list[Case]] = {
    "escapes": [
        Case({"team": "pay12"}, ["digits"]),
        Case({"team": "payd"}, ["default"]),
        Case({"quote": 'a"b'}, ["quoted"]),
        Case({"path": "c:\\tmp"}, ["backslash"]),
        Case({"host": "db.prod"}, ["dot"]),
        Case({"host": "dbxprod"}, ["default"]),
    ],
    "nesting": [
        Case({}, ["default"]),
        Case({"team": "payments"}, ["pay"]),
        Case({"team": "payments", "severity": "critical"}, ["pay-pager"]),
        Case({"team": "payments", "severity": "critical", "env": "prod"}, ["pay-prod-pager"]),
        Case({"team": "payments", "severity": "warning"}, ["pay"]),
        Case({"team": "platform"}, ["infra"]),
        Case({"team": "infra-x"}, ["default"]),
    ],
    "continue": [
        Case({}, ["catch-all"]),
        Case({"severity": "critical"}, ["pager", "catch-all"]),
        Case({"team": "db"}, ["db-chat", "db-archive"]),
        Case({"team": "db", "service": "postgres"}, ["pg-chat", "sql-chat", "db-archive"]),
        Case({"severity": "critical", "team": "db", "service": "mysql"}, ["pager", "sql-chat", "db-archive"]),
        Case({"team": "web"}, ["catch-all"]),
    ],
    "negative": [
        Case({"severity": "critical"}, ["not-ab"]),
        Case({"severity": "critical", "x": "a"}, ["oncall"]),
        Case({"severity": "error", "x": "c", "env": "prod"}, ["not-ab"]),
        Case({"severity": "critical", "env": "dev"}, ["dev-null"]),
        Case({"severity": "warning", "region": "eu-west"}, ["default"]),
        Case({"severity": "warning", "region": "us-east"}, ["non-eu"]),
        Case({"severity": "warning"}, ["non-eu"]),
    ],
    "legacy": [
        Case({"service": "api"}, ["api"]),
        Case({"service": "api", "severity": "critical"}, ["api-page"]),
        Case({"service": "api", "severity": "page"}, ["api-page"]),
        Case({"service": "api", "severity": "xcritical"}, ["api"]),
        Case({"service": "db"}, ["storage"]),
        Case({"service": "db", "env": "prod"}, ["storage", "db-prod"]),
        Case({"service": "cache", "env": "prod"}, ["storage"]),
        Case({"service": "dbx"}, ["default"]),
    ],
    "deep-continue": [
        Case({"team": "a"}, ["root", "ab"]),
        Case({"team": "a", "severity": "critical"}, ["a-crit", "a-warn", "ab"]),
        Case({"team": "a", "severity": "critical", "env": "prod"}, ["a-crit", "a-crit-any", "a-warn", "ab"]),
        Case({"team": "a", "severity": "critical", "env": "staging"}, ["a-crit-any", "a-warn", "ab"]),
        Case({"team": "a", "severity": "info"}, ["root", "ab-info"]),
        Case({"team": "b", "severity": "info"}, ["ab-info"]),
        Case({"team": "c"}, ["root"]),
    ],
    "root-and-duplicates": [
        Case({}, ["everyone"]),
        Case({"alertname": "Watchdog"}, ["deadman"]),
        Case({"alertname": "DiskFull", "severity": "warning"}, ["storage", "storage"]),
        Case({"alertname": "DiskFull", "severity": "info"}, ["storage"]),
        Case({"alertname": "HighCPU", "severity": "critical"}, ["pager"]),
        Case({"alertname": "HighCPU"}, ["everyone"]),
    ],
    "spellings": [
        Case({"team": "pay", "env": "prod"}, ["pay-prod"]),
        Case({"team": "pay"}, ["default"]),
        Case({"severity": "critical", "service": "api-gw"}, ["api-critical"]),
        Case({"severity": "critical", "service": "api-"}, ["default"]),
        Case({"msg": "connect-timeout-5s"}, ["timeouts"]),
    ],
}

PARAMS = [
    pytest.param(tree, case, id=f"{tree}-{index}-{','.join(f'{k}={v}' for k, v in case.labels.items()) or 'none'}")
    for tree, cases in CASES.items()
    for index, case in enumerate(cases)
]


def receiver_names(route: dict[str, Any]) -> list[str]:
    names = [route["receiver"]] if "receiver" in route else []
    for child in route.get("routes", []):
        names.extend(name for name in receiver_names(child) if name not in names)
    return names


def receivers(tree: dict[str, Any]) -> list[dict[str, str]]:
    """Every receiver the tree names, without sink configs (a receiver that sends nothing)."""
    return [{"name": name} for name in dict.fromkeys(receiver_names(tree))]


@pytest.fixture(scope="module")
def configs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[pathlib.Path, pathlib.Path]]:
    """For each tree: (Alertmanager config, streamalert config), with the same route and receivers."""
    out = tmp_path_factory.mktemp("routes")
    files: dict[str, tuple[pathlib.Path, pathlib.Path]] = {}
    for name, tree in TREES.items():
        notify = {"route": tree, "receivers": receivers(tree)}
        am_file = out / f"{name}.alertmanager.yml"
        am_file.write_text(yaml.safe_dump(notify, sort_keys=False), encoding="utf-8")
        ours = {"rules": str(RULES), "sources": {"vector": {"auth": "none"}}, **notify}
        ours_file = out / f"{name}.streamalert.yml"
        ours_file.write_text(yaml.safe_dump(ours, sort_keys=False), encoding="utf-8")
        files[name] = (am_file, ours_file)
    return files


def label_args(labels: dict[str, str]) -> list[str]:
    """Labels as both commands read them: matchers `name="value"`, with `\\` and `"` escaped."""
    return [
        f'{name}="{value.replace(chr(92), chr(92) * 2).replace(chr(34), chr(92) + chr(34))}"'
        for name, value in labels.items()
    ]


def amtool_routes(config: pathlib.Path, labels: dict[str, str]) -> list[str]:
    """`amtool config routes test`: the receivers, comma-separated on one line."""
    done = subprocess.run(
        [amtool_binary(), "config", "routes", "test", f"--config.file={config}", *label_args(labels)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, f"amtool failed ({done.returncode}): {done.stderr or done.stdout}"
    line = done.stdout.strip()
    return line.split(",") if line else []


def streamalert_routes(config: pathlib.Path, labels: dict[str, str]) -> list[str]:
    """`streamalert routes test`, in this process (the table is long): the receivers, one per line."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["routes", "test", "--config", str(config), *label_args(labels)])
    assert code == 0
    return [line.strip() for line in out.getvalue().splitlines() if line.strip()]


def streamalert_routes_process(config: pathlib.Path, labels: dict[str, str]) -> list[str]:
    """`streamalert routes test` as a command: the receivers, one per line."""
    done = subprocess.run(
        [sys.executable, "-m", "streamalert", "routes", "test", "--config", str(config), *label_args(labels)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=ROOT,
    )
    assert done.returncode == 0, f"streamalert routes test failed ({done.returncode}): {done.stderr or done.stdout}"
    return [line.strip() for line in done.stdout.splitlines() if line.strip()]


def test_the_command_prints_one_receiver_per_line(configs: dict[str, tuple[pathlib.Path, pathlib.Path]]) -> None:
    tree, case = next((t, c) for t, cases in CASES.items() for c in cases if len(c.receivers) > 1)
    am_file, ours_file = configs[tree]
    assert streamalert_routes_process(ours_file, case.labels) == amtool_routes(am_file, case.labels)


def test_table_covers_enough() -> None:
    assert len(TREES) >= 6
    assert sum(len(cases) for cases in CASES.values()) >= 30
    assert set(CASES) == set(TREES)


@pytest.mark.parametrize(("tree", "case"), PARAMS)
def test_routes_agree_with_amtool(tree: str, case: Case, configs: dict[str, tuple[pathlib.Path, pathlib.Path]]) -> None:
    am_file, ours_file = configs[tree]
    theirs = amtool_routes(am_file, case.labels)
    assert theirs == case.receivers, f"the table's expectation is wrong: amtool routes {case.labels} to {theirs}"
    ours = streamalert_routes(ours_file, case.labels)
    assert ours == theirs, f"{tree}: {case.labels} -> streamalert {ours}, Alertmanager {theirs}"
