"""Load rule files (one YAML file or a folder of *.yaml) into compiled rules, collecting every problem."""

from __future__ import annotations

import functools
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import orjson
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from streamalert.config.yaml_load import safe_load, yaml_problem
from streamalert.decode import LINE_FIELD
from streamalert.durations import format_duration, parse_duration
from streamalert.rules.condition import Condition, parse_condition
from streamalert.rules.extract import Extractor, compile_extractor, merge_names
from streamalert.rules.matchers import MatchError, compile_match
from streamalert.rules.template import Template, parse_template

if TYPE_CHECKING:  # LogQL (`expr:` rules, Loki rule files) is imported when a file uses it: a quicker `check`
    from streamalert.rules.logql import Translation
    from streamalert.rules.logql.rulefile import Located

# Rule files repeat their annotation texts, conditions and durations; a Template, a Condition and an int are
# immutable, and a bad text raises every time (lru_cache keeps no exceptions).
_parse_template = functools.lru_cache(maxsize=4096)(parse_template)
_parse_condition = functools.lru_cache(maxsize=4096)(parse_condition)
_parse_duration = functools.lru_cache(maxsize=4096)(parse_duration)


class RatioSpec(BaseModel):
    """`ratio: {where: MATCH}`: the share of the rule's matched records (the base) that also match `where`."""

    model_config = ConfigDict(extra="forbid")

    where: dict[str, Any]


class FlappingSpec(BaseModel):
    """`flapping: {changes: N, within: 10m}`: more than N firing/resolved changes within the period flap."""

    model_config = ConfigDict(extra="forbid")

    changes: int = Field(ge=1)
    within: str


class RuleSpec(BaseModel):
    """One rule as written in YAML; unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")  # `for` only by its alias: `for_` is an unknown key

    name: str = Field(pattern=r"^[A-Za-z_][A-Za-z0-9_.:-]*$")
    match: dict[str, Any]  # given by the translation when the rule file wrote `expr:` (see _from_expr)
    window: str | None = None
    condition: str | None = None
    group_by: list[str] = Field(default_factory=list)
    for_: str | None = Field(default=None, alias="for")
    ratio: RatioSpec | None = None
    # `[{regexp: "(?P<x>...)"}]` / `[{pattern: "<_> <x>"}]`: fields taken from the raw line (rules/extract.py)
    extract: list[dict[str, str]] = Field(default_factory=list)
    keep_firing_for: str | None = None
    flapping: FlappingSpec | None = None
    lookback: str | None = None
    min_base: int | None = Field(default=None, ge=1)
    absent_for: str | None = None
    expect: list[dict[str, str | int | bool]] = Field(default_factory=list)
    labels: dict[str, str] = Field(default_factory=dict)
    annotations: dict[str, str] = Field(default_factory=dict)


class RuleFileSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    rules: list[Any]  # each item is checked on its own, so one bad item hides nothing about the others


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
    group_by: tuple[str, ...]
    labels: tuple[tuple[str, str], ...]
    annotations: tuple[tuple[str, Template], ...]
    digest: str  # changes whenever the rule's semantics change, so stale state is never reused
    window_ms: int = 0
    condition: Condition | None = None
    for_ms: int = 0
    keep_ms: int = 0  # keep_firing_for
    flapping: tuple[int, int] | None = None  # (changes, within ms): alerts/flap.py
    lookback_ms: int = 0  # new(F): how long a value stays known
    min_base: int = 1  # change: the fewest events the past window needs to compare with
    absent_ms: int = 0
    expect: tuple[tuple[str, ...], ...] = ()
    keeps_record: bool = False
    match_spec: dict[str, Any] = field(default_factory=dict)
    ratio_where: dict[str, Any] | None = None  # `ratio: {where: ...}`: the records counted over the base
    extract: tuple[tuple[str, str], ...] = ()  # (regexp|pattern, expression): fields from the raw line


def load_rules(path: str | Path) -> list[Rule]:
    """Compile every rule under `path`; raise RuleLoadError listing every problem found."""
    files = _rule_files(Path(path))
    problems: list[Problem] = []
    rules: list[Rule] = []
    seen: dict[str, str] = {}
    for file in files:
        for name, rule in _load_file(file, problems):
            if name in seen:
                message = f"duplicate rule name (first defined in {seen[name]})"
                problems.append(Problem(str(file), name, "name", message))
                continue
            seen[name] = str(file)
            if rule is not None:
                rules.append(rule)
    _check_extract_names(rules, problems)
    if problems:
        raise RuleLoadError(problems)
    return rules


def _check_extract_names(rules: list[Rule], problems: list[Problem]) -> None:
    """Two rules may not extract one label with different parsers: the record holds one value per field."""
    seen: list[Extractor] = []
    for rule in rules:
        mine = [compile_extractor(kind, expression) for kind, expression in rule.extract]
        try:
            merge_names([*seen, *mine])
        except ValueError as exc:
            problems.append(Problem(rule.source, rule.name, "extract", str(exc)))
            continue
        seen += mine


def _rule_files(path: Path) -> list[Path]:
    if path.is_dir():
        files = sorted([*path.glob("*.yaml"), *path.glob("*.yml")])
        if not files:
            raise RuleLoadError([Problem(str(path), None, None, "no *.yaml rule files in this folder")])
        return files
    if not path.exists():
        raise RuleLoadError([Problem(str(path), None, None, "no such file or folder")])
    return [path]


def _load_file(file: Path, problems: list[Problem]) -> list[tuple[str, Rule | None]]:
    """(name, rule) for every named rule of the file, rule None when it has problems (all in `problems`)."""
    name = str(file)
    try:
        text = file.read_text(encoding="utf-8")
        raw = safe_load(text)  # yaml.safe_load's result, faster
    except (OSError, UnicodeDecodeError) as exc:
        problems.append(Problem(name, None, None, f"cannot read: {exc}"))
        return []
    except yaml.YAMLError as exc:
        problems.append(Problem(name, None, None, f"invalid YAML: {yaml_problem(exc)}"))
        return []
    if not isinstance(raw, dict) or not isinstance(raw.get("rules", []), list):
        # pydantic would say "valid dictionary or instance of RuleFileSpec": say what the file must hold
        got = f"`rules:` holding {_kind(raw['rules'])}" if isinstance(raw, dict) else _kind(raw)
        got = "an empty file" if raw is None else got
        problems.append(Problem(name, None, None, f"must be a map with a `rules:` list, got {got}"))
        return []
    if isinstance(raw, dict) and "groups" in raw:
        return _load_loki_file(name, text, problems)
    try:
        spec = RuleFileSpec.model_validate(raw)
    except ValidationError as exc:
        for err in exc.errors():
            message = {"extra_forbidden": "unknown key", "missing": "missing: a rule file holds a `rules:` list"}
            problems.append(Problem(name, None, _loc(err["loc"]), message.get(err["type"], err["msg"])))
        return []
    out: list[tuple[str, Rule | None]] = []
    for index, item in enumerate(spec.rules):
        if not isinstance(item, dict):
            problems.append(Problem(name, None, f"rules[{index}]", f"must be a map of rule fields, got {_kind(item)}"))
            continue
        rule_name = item.get("name")
        if not isinstance(rule_name, str):
            _compile(name, f"rules[{index}]", item, problems)  # no name to list it by: only its problems count
            continue
        before = len(problems)
        out.append((rule_name, _compile(name, rule_name, item, problems)))
        if "expr" in item:
            from streamalert.rules.logql.rulefile import Located  # noqa: PLC0415 (LogQL loads on use)

            at = Located(text, name, ("rules", index, "expr"))
            problems[before:] = [_with_file_position(p, at) for p in problems[before:]]
    return out


def _kind(value: Any) -> str:
    """What a YAML value is, in YAML's words."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return f"a number ({value!r})"
    if isinstance(value, str):
        return f"a string ({value!r})"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a map"
    return type(value).__name__


def _loc(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _compile(file: str, rule_name: str, item: dict[str, Any], problems: list[Problem]) -> Rule | None:  # noqa: PLR0915 (one linear pass over the fields reads better than jumps)
    """Check one rule map, appending every problem found; the Rule only when there are none.

    Pydantic checks the shape (keys, basic types). The semantic checks then run on the raw fields, so a
    shape error in one field hides nothing about the others; a field of the wrong basic type was already
    reported by pydantic and is skipped here.
    """
    before = len(problems)

    def problem(field_name: str | None, message: str) -> None:
        problems.append(Problem(file, rule_name, field_name, message))

    if "expr" in item:
        expanded = _from_expr(item, problem)
        if expanded is None:
            return None
        item = expanded

    spec: RuleSpec | None = None
    try:
        spec = RuleSpec.model_validate(item)
    except ValidationError as exc:
        for err in exc.errors():
            message = "unknown key" if err["type"] == "extra_forbidden" else err["msg"]
            problem(_loc(err["loc"]), message)

    def text(key: str) -> str | None:
        value = item.get(key)
        return value if isinstance(value, str) else None

    def present(key: str) -> bool:
        return item.get(key) is not None

    extract = _check_extract(item.get("extract"), problem)
    match = item.get("match")
    if isinstance(match, dict):
        match_errors: list[MatchError] = []
        compile_match(match, errors=match_errors)  # validation only: the engine compiles via rules/codegen.py
        for error in match_errors:
            problem(error.path, error.message)

    def duration(field_name: str, value: str | None, positive: bool = True) -> int:
        if value is None:
            return 0
        try:
            ms = _parse_duration(value)
        except ValueError as exc:
            problem(field_name, str(exc))
            return 0
        if positive and ms <= 0:
            problem(field_name, "must be greater than zero")
        return ms

    raw_group_by = item.get("group_by", [])
    raw_labels = item.get("labels", {})
    group_by = [g for g in raw_group_by if isinstance(g, str)] if isinstance(raw_group_by, list) else []
    labels = [k for k in raw_labels if isinstance(k, str)] if isinstance(raw_labels, dict) else []
    # The label names a template may use; unknown when labels or group_by is not even a map / a list.
    known_labels = (
        list(dict.fromkeys([*labels, *group_by]))
        if isinstance(raw_group_by, list) and isinstance(raw_labels, dict)
        else None
    )

    templates: list[tuple[str, Template]] = []
    raw_annotations = item.get("annotations")
    if isinstance(raw_annotations, dict):
        for key, value in raw_annotations.items():
            if not isinstance(key, str) or not isinstance(value, str):
                continue
            try:
                template = _parse_template(value)
            except ValueError as exc:
                problem(f"annotations.{key}", str(exc))
                continue
            templates.append((key, template))
            if known_labels is None:
                continue
            for part in template.parts[1::2]:
                label = part.removeprefix("labels.")
                if part.startswith("labels.") and label not in known_labels:
                    known = ", ".join(known_labels) if known_labels else "none, the rule has no labels or group_by"
                    problem(f"annotations.{key}", f"unknown label {label!r} (known: {known})")

    overlap = set(group_by) & set(labels)
    if overlap:
        problem("labels", f"{sorted(overlap)} also in group_by; a label must come from one place")
    if len(set(group_by)) != len(group_by):
        problem("group_by", "repeated field")

    kind: Literal["window", "absence"]
    window_ms = for_ms = keep_ms = flap_ms = lookback_ms = absent_ms = 0
    condition: Condition | None = None
    if present("absent_for"):
        kind = "absence"
        for key in ("window", "condition", "for", "ratio", "keep_firing_for", "flapping", "lookback", "min_base"):
            if present(key):
                problem(key, "not allowed with absent_for (an absence rule has no window or condition)")
        absent_ms = duration("absent_for", text("absent_for"))
        raw_expect = item.get("expect")
        if isinstance(raw_expect, list) and isinstance(raw_group_by, list):
            for i, group in enumerate(raw_expect):
                if isinstance(group, dict) and set(group) != set(group_by):
                    problem(f"expect[{i}]", f"keys {sorted(map(str, group))} must be exactly group_by {group_by}")
    else:
        kind = "window"
        if item.get("expect"):
            problem("expect", "only allowed on absence rules (absent_for)")
        if not present("window"):
            problem("window", "required (or absent_for for an absence rule)")
        if not present("condition"):
            problem("condition", "required, e.g. `count >= 1`")
        window_ms = duration("window", text("window"))
        for_ms = duration("for", text("for"), positive=False)
        keep_ms = duration("keep_firing_for", text("keep_firing_for"), positive=False)
        raw_flapping = item.get("flapping")
        if isinstance(raw_flapping, dict) and isinstance(raw_flapping.get("within"), str):
            flap_ms = duration("flapping.within", raw_flapping["within"])
        condition_text = text("condition")
        if condition_text is not None:
            try:
                condition = _parse_condition(condition_text)
            except ValueError as exc:
                problem("condition", str(exc))
        _check_ratio(item, condition, problem)
        aggregate = condition.aggregate if condition is not None else None
        if present("lookback") != (aggregate == "new") and condition is not None:
            problem(
                "lookback",
                "required by new(FIELD), e.g. lookback: 7d" if aggregate == "new" else "only with new(FIELD)",
            )
        lookback_ms = duration("lookback", text("lookback"))
        if present("min_base") and condition is not None and aggregate != "change":
            problem("min_base", "only with `count OP K * count offset D`")

    if spec is None or len(problems) > before:
        return None
    ratio_where = spec.ratio.where if spec.ratio is not None else None
    semantics: list[Any] = [kind, spec.match, spec.group_by, window_ms, spec.condition, for_ms, absent_ms]
    flapping = (spec.flapping.changes, flap_ms) if spec.flapping is not None else None
    min_base = spec.min_base or 1
    if ratio_where is not None or keep_ms or flapping or lookback_ms or min_base != 1:
        semantics += [ratio_where, keep_ms, flapping, lookback_ms, min_base]  # only when set: digests stay
    if extract:
        semantics.append(extract)
    digest_source = _json_bytes(semantics)
    return Rule(
        name=spec.name,
        source=file,
        kind=kind,
        group_by=tuple(spec.group_by),
        labels=tuple(sorted(spec.labels.items())),
        annotations=tuple(templates),
        digest=hashlib.sha256(digest_source).hexdigest()[:12],
        window_ms=window_ms,
        condition=condition,
        for_ms=for_ms,
        keep_ms=keep_ms,
        flapping=flapping,
        lookback_ms=lookback_ms,
        min_base=min_base,
        absent_ms=absent_ms,
        expect=tuple(tuple(_label_value(group[k]) for k in spec.group_by) for group in spec.expect),
        keeps_record=any(t.uses_record for _, t in templates),
        match_spec=spec.match,
        ratio_where=ratio_where,
        extract=extract,
    )


def _check_extract(raw: Any, problem: Callable[[str | None, str], None]) -> tuple[tuple[str, str], ...]:
    """The (kind, expression) pairs of `extract:`, each compiled once to report what is wrong with it."""
    if not isinstance(raw, list):
        return ()  # absent, or the model reports the type
    out: list[tuple[str, str]] = []
    for i, item in enumerate(raw):
        if not isinstance(item, dict) or len(item) != 1:
            problem(f"extract[{i}]", "must be one `regexp: EXPRESSION` or `pattern: EXPRESSION`")
            continue
        [(kind, expression)] = item.items()
        if not isinstance(expression, str):
            continue  # the model reports the type
        try:
            compile_extractor(str(kind), expression)
        except ValueError as exc:
            problem(f"extract[{i}]", str(exc))
            continue
        out.append((str(kind), expression))
    return tuple(out)


# The translation's engine needs (rules/logql) that the engine meets: `_line` through rules/codegen.py, and
# `| logfmt` because a logfmt line's fields are what the input format decoded with the same parser.
_MET_NEEDS = frozenset((LINE_FIELD, "parser:logfmt"))
_EXPR_REPLACES = ("match", "window", "condition", "absent_for", "expect", "group_by", "extract")


def _from_expr(item: dict[str, Any], problem: Callable[[str | None, str], None]) -> dict[str, Any] | None:
    """The rule map with its LogQL `expr` replaced by the translated match/window/condition; None on problems."""
    clash = [key for key in _EXPR_REPLACES if key in item]
    if clash:
        problem("expr", f"replaces {', '.join(clash)}: give either expr or those (grouping: `sum by (...)`)")
    from streamalert.rules.logql import LogQLError, translate  # noqa: PLC0415 (LogQL loads on use)

    expr = item["expr"]
    if not isinstance(expr, str) or not expr.strip():
        problem("expr", "must be a LogQL expression (a string)")
        return None
    try:
        translation = translate(expr)
    except LogQLError as exc:
        problem("expr", str(exc))
        return None
    unmet = _unmet(translation)
    for message in unmet:
        problem("expr", message)
    if unmet or clash:
        return None
    rule = {key: value for key, value in item.items() if key != "expr"} | translation.rule
    for_text = item.get("for")
    if "absent_for" in rule and isinstance(for_text, str):
        # as in Loki rule files (rules/logql/rulefile.py): absent over W, held for F, is no line in W + F
        try:
            rule["absent_for"] = format_duration(parse_duration(rule["absent_for"]) + parse_duration(for_text))
        except ValueError:
            return rule  # the `for` check reports it
        del rule["for"]
    return rule


def _unmet(translation: Translation, at: Located | None = None) -> list[str]:
    """A problem text, with its position in the expression, for each need of the translation the engine lacks."""
    return [
        f"line {need.line}, column {need.column}: not supported yet: {need.detail}"
        + (at.suffix(need.line, need.column) if at is not None else "")
        for need in translation.needs
        if need.feature not in _MET_NEEDS
    ]


_EXPR_POSITION = re.compile(r"line ([0-9]+), column ([0-9]+): ")


def _with_file_position(problem: Problem, at: Located) -> Problem:
    """An `expr` problem at a position in the expression, also pointing at the file's line and column."""
    found = _EXPR_POSITION.match(problem.message) if problem.field == "expr" else None
    if found is None or problem.message.endswith(")"):
        return problem
    suffix = at.suffix(int(found.group(1)), int(found.group(2)))
    return Problem(problem.file, problem.rule, problem.field, problem.message + suffix)


def _load_loki_file(name: str, text: str, problems: list[Problem]) -> list[tuple[str, Rule | None]]:
    """The alerts of a Loki/Prometheus rule-group file (`groups:`), translated from LogQL and compiled."""
    from streamalert.rules.logql.rulefile import Located, read_loki_rules  # noqa: PLC0415 (LogQL loads on use)

    loaded, refused = read_loki_rules(text, name)
    problems.extend(Problem(name, None, None, message.removeprefix(f"{name}: ")) for message in refused)
    out: list[tuple[str, Rule | None]] = []
    for loki in loaded:
        rule_name = str(loki.rule["name"])
        unmet = _unmet(loki.translation, Located(text, name, loki.path))
        where = f"group {loki.group!r} rule {rule_name!r}: expr"
        problems.extend(Problem(name, None, None, f"{where} {message}") for message in unmet)
        if unmet:
            out.append((rule_name, None))
            continue
        out.append((rule_name, _compile(name, rule_name, loki.rule, problems)))
    return out


def _check_ratio(item: dict[str, Any], condition: Condition | None, problem: Callable[[str | None, str], None]) -> None:
    """`ratio:` goes with a `ratio` condition and the other way round; its `where` is a match map."""
    raw = item.get("ratio")
    if condition is not None and condition.aggregate == "ratio" and raw is None:
        problem("ratio", "required by a ratio condition: `ratio: {where: MATCH}` names the share of the base")
    if raw is None:
        return
    if condition is not None and condition.aggregate != "ratio":
        problem("ratio", "only allowed with a `ratio OP N` condition")
    where = raw.get("where") if isinstance(raw, dict) else None
    if isinstance(where, dict):
        errors: list[MatchError] = []
        compile_match(where, "ratio.where", errors=errors)
        for error in errors:
            problem(error.path, error.message)


def _label_value(value: Any) -> str:
    """A field value as a label value: strings as is, JSON scalars in their JSON spelling, absent as ''."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)  # its JSON spelling, at any size (orjson stops at 64 bits)
    if isinstance(value, float):
        return orjson.dumps(value).decode()
    return _json_bytes(value).decode()


label_value = _label_value


def _json_bytes(value: Any) -> bytes:
    """Compact JSON with sorted keys: orjson's bytes, or the same spelling from `json` where orjson refuses.

    orjson refuses integers beyond 64 bits (YAML and msgspec both produce them); `json` writes every int,
    and whatever else YAML can produce (dates) as its `str`.
    """
    try:
        return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # orjson.JSONEncodeError
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str).encode()
