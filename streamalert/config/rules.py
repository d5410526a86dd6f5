"""Load rule files (one YAML file or a folder of *.yaml) into compiled rules, collecting every problem."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamalert.durations import parse_duration
from streamalert.rules.condition import Condition, parse_condition
from streamalert.rules.matchers import MatchError, Predicate, compile_match
from streamalert.rules.template import Template, parse_template


class RuleSpec(BaseModel):
    """One rule as written in YAML; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
    match: dict[str, Any]
    window: str | None = None
    condition: str | None = None
    group_by: list[str] = Field(default_factory=list)
    for_: str | None = Field(default=None, alias="for")
    absent_for: str | None = None
    expect: list[dict[str, str | int | bool]] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class RuleFileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing wrong with a rule file, located by file, rule and field."""

    file: str
    rule: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = self.file
        if self.rule is not None:
            where += f": rule {self.rule!r}"
        if self.field:
            where += f": {self.field}"
        return f"{where}: {self.message}"


class RuleLoadError(Exception):
    """Raised when rule files have problems; carries all of them."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("\n".join(str(p) for p in problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class Rule:
    """A validated, compiled rule, ready for the engine."""

    name: str
    source: str
    kind: Literal["window", "absence"]
    predicate: Predicate
    group_by: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, Template], ...]
    digest: str  # changes whenever the rule's semantics change, so stale state is never reused
    window_ms: int = 0
    condition: Condition | None = None
    for_ms: int = 0
    absent_ms: int = 0
    expect: tuple[tuple[str, ...], ...] = ()
    keeps_record: bool = False
    match_spec: dict[str, Any] = field(default_factory=dict)


def load_rules(path: str | Path) -> list[Rule]:
    """Compile every rule under `path`; raise RuleLoadError listing every problem found."""
    files = _rule_files(Path(path))
    problems: list[Problem] = []
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for file in files:
        for rule in _load_file(file, problems):
            if rule.name in seen:
                problems.append(
                    Problem(
                        str(file),
                        rule.name,
                        "name",
                        f"duplicate rule name (first defined in {seen[rule.name]})",
                    )
                )
                continue
            seen[rule.name] = str(file)
            rules.append(rule)
    if problems:
        raise RuleLoadError(problems)
    return rules


def _rule_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        if not files:
            raise RuleLoadError([Problem(str(path), None, None, "no *.yaml rule files in this folder")])
        return files
    if not path.exists():
        raise RuleLoadError([Problem(str(path), None, None, "no such file or folder")])
    return [path]


def _load_file(file: Path, problems: list[Problem]) -> list[Rule]:
    name = str(file)
    try:
        raw = yaml.safe_load(file.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(name, None, None, f"cannot read: {exc}"))
        return []
    except yaml.YAMLError as exc:
        problems.append(Problem(name, None, None, f"invalid YAML: {exc}".replace("\n", " ")))
        return []
    try:
        spec = RuleFileSpec.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            problems.append(Problem(name, None, _loc(err["loc"]), err["msg"]))
        return []
    out = []
    for index, item in enumerate(spec.rules):
        rule_name = item.get("name") if isinstance(item.get("name"), str) else f"#{index + 1}"
        before = len(problems)
        rule = _compile(name, str(rule_name), item, problems)
        if rule is not None and len(problems) == before:
            out.append(rule)
    return out


def _loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _compile(file: str, rule_name: str, item: dict[str, Any], problems: list[Problem]) -> Rule | None:  # noqa: PLR0915 (one linear pass over the fields reads better than jumps)
    def problem(field_name: str | None, message: str) -> None:
        problems.append(Problem(file, rule_name, field_name, message))

    try:
        spec = RuleSpec.model_validate(item)
    except ValidationError as exc:
        for err in exc.errors():
            loc = _loc(err["loc"]).replace("for_", "for")
            message = err["msg"]
            if err["type"] == "extra_forbidden":
                message = "unknown key"
            problem(loc, message)
        return None

    try:
        predicate = compile_match(spec.match)
    except MatchError as exc:
        problem(exc.path, exc.message)
        predicate = _never

    def duration(field_name: str, text: str | None, positive: bool = True) -> int:
        if text is None:
            return 0
        try:
            ms = parse_duration(text)
        except ValueError as exc:
            problem(field_name, str(exc))
            return 0
        if positive and ms <= 0:
            problem(field_name, "must be greater than zero")
        return ms

    templates: list[tuple[str, Template]] = []
    for key, text in spec.annotations.items():
        try:
            templates.append((key, parse_template(text)))
        except ValueError as exc:
            problem(f"annotations.{key}", str(exc))

    overlap = set(spec.group_by) & set(spec.labels)
    if overlap:
        problem("labels", f"{sorted(overlap)} also in group_by; a label must come from one place")
    if len(set(spec.group_by)) != len(spec.group_by):
        problem("group_by", "repeated field")

    kind: Literal["window", "absence"]
    window_ms = for_ms = absent_ms = 0
    condition: Condition | None = None
    expect: list[tuple[str, ...]] = []
    if spec.absent_for is not None:
        kind = "absence"
        for key in ("window", "condition", "for_"):
            if getattr(spec, key) is not None:
                problem(
                    key.rstrip("_"),
                    "not allowed with absent_for (an absence rule has no window or condition)",
                )
        absent_ms = duration("absent_for", spec.absent_for)
        for i, group in enumerate(spec.expect):
            if set(group) != set(spec.group_by):
                problem(f"expect[{i}]", f"keys {sorted(group)} must be exactly group_by {spec.group_by}")
                continue
            expect.append(tuple(_label_value(group[k]) for k in spec.group_by))
    else:
        kind = "window"
        if spec.expect:
            problem("expect", "only allowed on absence rules (absent_for)")
        if spec.window is None:
            problem("window", "required (or absent_for for an absence rule)")
        if spec.condition is None:
            problem("condition", "required, e.g. `count >= 1`")
        window_ms = duration("window", spec.window)
        for_ms = duration("for", spec.for_, positive=False)
        if spec.condition is not None:
            try:
                condition = parse_condition(spec.condition)
            except ValueError as exc:
                problem("condition", str(exc))
    if kind == "window" and condition is None:
        return None
    digest_source = orjson.dumps(
        [kind, spec.match, spec.group_by, window_ms, spec.condition, for_ms, absent_ms],
        option=orjson.OPT_SORT_KEYS,
    )
    return Rule(
        name=spec.name,
        source=file,
        kind=kind,
        predicate=predicate,
        group_by=tuple(spec.group_by),
        labels=tuple(sorted(spec.labels.items())),
        annotations=tuple(templates),
        digest=hashlib.sha256(digest_source).hexdigest()[:12],
        window_ms=window_ms,
        condition=condition,
        for_ms=for_ms,
        absent_ms=absent_ms,
        expect=tuple(expect),
        keeps_record=any(t.uses_record for _, t in templates),
        match_spec=spec.match,
    )


def _label_value(value: Any) -> str:
    """A field value as a label value: strings as is, JSON scalars in their JSON spelling, absent as ''."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return orjson.dumps(value).decode()
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS).decode()


label_value = _label_value


def _never(fields: dict[str, Any]) -> bool:
    return False
