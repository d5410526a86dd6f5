"""The test file format of `streamalert test`: models, and loading a file into cases ready to run.

A test file names its rule files and holds tests; each test has a start time, input lines with times, and the
transitions (and optionally notifications) expected. Every problem is reported as `FILE: tests[i] "name":
field.path: message`, and a file with problems runs none of its tests (exit 2).
"""

from __future__ import annotations

import glob
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from streamalert.config.rules import RuleLoadError, label_value, load_rules
from streamalert.ruletest.lines import TIME_FIELD, absolute, input_lines

if TYPE_CHECKING:
    from streamalert.config.rules import Rule

# A test without `start` begins here: a fixed instant, so test output never depends on the day it runs.
DEFAULT_START = "2026-01-01T00:00:00Z"
# `count` of one generated series at most: a typo (count: 1000000000) is refused instead of filling memory
MAX_COUNT = 1_000_000


def _when(value: Any) -> str | datetime:
    if isinstance(value, (str, datetime)):
        return value
    raise ValueError("expected a time: +DURATION after start (+30s, +2m) or ISO 8601 (2026-01-26T09:15:00Z)")


# "+30s" (after `start`), ISO 8601, or a YAML timestamp (which YAML reads as a datetime); one type, one error
When = Annotated[Any, AfterValidator(_when)]


class MalformedTest(Exception):
    """The test file cannot be run: each problem names the file, the test and the field."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


class InputItem(BaseModel):
    """One line (`line` at `at`), a series of `count` lines `every` apart, or the lines of an NDJSON `file`."""

    model_config = ConfigDict(extra="forbid")

    at: When | None = None
    line: dict[str, Any] | None = None
    count: int = Field(default=1, ge=1, le=MAX_COUNT)
    every: str | None = None
    file: str | None = None

    @model_validator(mode="after")
    def _shape(self) -> InputItem:
        if (self.line is None) == (self.file is None):
            raise ValueError("give either `line` (a log record) or `file` (NDJSON lines)")
        if self.file is not None and (self.at is not None or self.count != 1 or self.every is not None):
            raise ValueError("a `file` carries its own times: `at`, `count` and `every` go with `line`")
        if self.line is not None:
            if self.at is None:
                raise ValueError("`at` is required with `line` (e.g. at: +30s)")
            if TIME_FIELD in self.line:
                raise ValueError(f"`line` has its own `{TIME_FIELD}`: the test writes it from `at`; remove it")
            if self.count > 1 and self.every is None:
                raise ValueError("`count` above 1 needs `every` (e.g. every: 5s)")
        return self


class ExpectTransition(BaseModel):
    """A transition expected: the time, rule and state must be equal; labels, annotations and value, when
    given, must be equal for the keys given (a subset match)."""

    model_config = ConfigDict(extra="forbid")

    at: When
    rule: str
    state: Literal["firing", "resolved"]
    labels: dict[str, Any] | None = None
    value: float | None = None
    annotations: dict[str, str] | None = None


class ExpectNotification(BaseModel):
    """A notification expected after routing: time, receiver and status equal; `alerts` lists each alert it
    carries by a subset of its labels (`alertname` is the rule); `sinks`, when given, exactly."""

    model_config = ConfigDict(extra="forbid")

    at: When
    receiver: str
    status: Literal["firing", "resolved"]
    alerts: list[dict[str, Any]]
    sinks: list[str] | None = None


class TestSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    start: When = DEFAULT_START
    until: When | None = None
    input: list[InputItem] = Field(default_factory=list)
    rules: list[str] | None = None
    expect: list[ExpectTransition] = Field(default_factory=list)
    notifications: list[ExpectNotification] | None = None


class TestFileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rule_files: list[str] = Field(min_length=1)
    config: str | None = None
    tests: list[TestSpec] = Field(min_length=1)


@dataclass(slots=True)
class Expected:
    """An expected transition with its time resolved."""

    at_ms: int
    rule: str
    state: str
    labels: dict[str, str] | None
    value: float | None
    annotations: dict[str, str] | None


@dataclass(slots=True)
class ExpectedNote:
    at_ms: int
    receiver: str
    status: str
    alerts: list[dict[str, str]]
    sinks: list[str] | None


@dataclass(slots=True)
class Case:
    """One test, ready to run: its lines in event-time order and its expectations in epoch milliseconds."""

    file: Path
    index: int
    name: str
    start_ms: int
    until_ms: int | None
    lines: list[bytes]
    last_ms: int | None  # the newest time among the lines: where the clock stops without `until`
    scope: frozenset[str] | None  # the rules whose transitions are compared; None: every rule
    expected: list[Expected]
    notifications: list[ExpectedNote] | None

    @property
    def title(self) -> str:
        return f'{self.file}: tests[{self.index}] "{self.name}"'


@dataclass(slots=True)
class TestFile:
    path: Path
    rules: list[Rule]
    config_path: Path | None
    cases: list[Case]


def load_test_file(path: Path) -> TestFile:
    """Read and check a test file, its rule files and its inputs; MalformedTest lists every problem found.
    Rule files that do not load are problems too (named with their own file, rule and field)."""
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise MalformedTest([f"{path}: cannot read: {exc}"]) from None
    except yaml.YAMLError as exc:
        raise MalformedTest([f"{path}: invalid YAML: {exc}".replace("\n", " ")]) from None
    if not isinstance(raw, dict):
        raise MalformedTest([f"{path}: must be a map with `rule_files` and `tests` (README.md, Testing rules)"])
    # `x-...` keys hold YAML anchors for the tests to merge (as in Compose files)
    raw = {k: v for k, v in raw.items() if not (isinstance(k, str) and k.startswith("x-"))}
    try:
        spec = TestFileSpec.model_validate(raw)
    except ValidationError as exc:
        raise MalformedTest(
            [
                f"{path}: {_where(raw, err['loc'])}: {err['msg'].removeprefix('Value error, ')}"
                for err in exc.errors(include_input=False)
            ]
        ) from None
    base = path.parent
    problems: list[str] = []
    rules = _rules(path, spec.rule_files, problems)
    rules_loaded = not problems
    names = {rule.name for rule in rules}
    config_path = base / spec.config if spec.config is not None else None
    if config_path is not None and not config_path.is_file():
        problems.append(f"{path}: config: no such file {config_path}")
    cases = []
    for index, test in enumerate(spec.tests):
        where = f'{path}: tests[{index}] "{test.name}"'
        try:
            cases.append(_case(path, index, test, names if rules_loaded else None))
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    if spec.config is None and any(t.notifications is not None for t in spec.tests):
        problems.append(f"{path}: config: `notifications` expectations need `config:` (a service config)")
    if problems:
        raise MalformedTest(problems)
    return TestFile(path, rules, config_path, cases)


def _rules(path: Path, patterns: list[str], problems: list[str]) -> list[Rule]:
    """The rules of every rule file (globs allowed, relative to the test file), each name once."""
    rules: list[Rule] = []
    seen: dict[str, Path] = {}
    for i, pattern in enumerate(patterns):
        full = path.parent / pattern  # an absolute pattern stays absolute
        found = sorted(map(Path, glob.glob(str(full)))) if glob.has_magic(pattern) else [full]
        if not found:
            problems.append(f"{path}: rule_files[{i}]: {pattern!r} matches no file")
        for file in found:
            try:
                loaded = load_rules(file)
            except RuleLoadError as exc:
                problems.extend(f"{path}: rule_files[{i}]: {problem}" for problem in exc.problems)
                continue
            for rule in loaded:
                if rule.name in seen and seen[rule.name] != file:
                    twice = f"rule {rule.name} is in both {seen[rule.name]} and {file}"
                    problems.append(f"{path}: rule_files[{i}]: {twice}")
                    continue
                seen[rule.name] = file
                rules.append(rule)
    return rules


def _case(path: Path, index: int, test: TestSpec, names: set[str] | None) -> Case:
    """The test with times resolved and its lines generated; ValueError naming the field on a problem.
    `names`: the rules loaded (None when the rule files have problems: names are then not checked)."""
    start = absolute(test.start, None, "start")
    until = absolute(test.until, start, "until") if test.until is not None else None
    timed: list[tuple[int, int, bytes]] = []
    for i, item in enumerate(test.input):
        input_lines(path.parent, item, start, f"input[{i}]", timed)
    timed.sort(key=lambda t: (t[0], t[1]))  # event-time order; the written order among lines of one instant
    expected = []
    for i, e in enumerate(test.expect):
        labels = {k: label_value(v) for k, v in e.labels.items()} if e.labels is not None else None
        at = absolute(e.at, start, f"expect[{i}].at")
        expected.append(Expected(at, e.rule, e.state, labels, e.value, e.annotations))
    notes = None
    if test.notifications is not None:
        notes = [
            ExpectedNote(
                absolute(n.at, start, f"notifications[{i}].at"),
                n.receiver,
                n.status,
                [{k: label_value(v) for k, v in alert.items()} for alert in n.alerts],
                n.sinks,
            )
            for i, n in enumerate(test.notifications)
        ]
    if names is not None:
        for field, name in [*((f"expect[{i}].rule", e.rule) for i, e in enumerate(expected))] + [
            (f"rules[{i}]", name) for i, name in enumerate(test.rules or [])
        ]:
            if name not in names:
                raise ValueError(f"{field}: no rule named {name!r} in rule_files")
    scope = _scope(test, expected)
    last = max((t for t, _, _ in timed), default=None)
    return Case(path, index, test.name, start, until, [line for _, _, line in timed], last, scope, expected, notes)


def _scope(test: TestSpec, expected: list[Expected]) -> frozenset[str] | None:
    """Which rules' transitions the test compares: `rules` if given, else the rules `expect` names, else
    (nothing expected) every rule: `expect: []` alone means nothing fires at all."""
    if test.rules is not None:
        return frozenset(test.rules)
    if expected:
        return frozenset(e.rule for e in expected)
    return None


def _where(raw: Any, loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as `tests[2] "name": expect[0].at`, the test named when it has a name."""
    if len(loc) >= 2 and loc[0] == "tests" and isinstance(loc[1], int):
        test = raw["tests"][loc[1]] if isinstance(raw, dict) and isinstance(raw.get("tests"), list) else None
        name = test.get("name") if isinstance(test, dict) else None
        head = f"tests[{loc[1]}]" + (f' "{name}"' if isinstance(name, str) else "")
        rest = _path(loc[2:])
        return f"{head}: {rest}" if rest else head
    return _path(loc) or "(top level)"


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for key in loc:
        out += f"[{key}]" if isinstance(key, int) else (f".{key}" if out else str(key))
    return out
