"""Loki/Prometheus rule-group files (`groups: - name, interval, rules: - alert, expr, for, labels,
annotations`) as streamalert rule dicts, with every problem reported by group and rule.

Format: grafana/loki docs (alerting rules, "Prometheus-compatible" rule groups), the same shape as
Prometheus' rule files. Alert names become rule names; `for` is kept (`0m`/`0s` drops it, as it means "fire
on the first evaluation"), except on an absent_over_time alert, where absence over W held for F is
`absent_for: W+F`; labels and annotations are copied as written: the rule templates accept the Go
template spellings `{{ $value }}` and `{{ $labels.x }}`. A group's `interval` is the evaluation period of
Loki's ruler; streamalert evaluates at every event, so it is accepted and not used. Recording rules
(`record:`) produce series, not alerts, and are refused.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from streamalert.durations import format_duration, parse_duration
from streamalert.rules.logql.errors import LogQLError
from streamalert.rules.logql.position import file_position
from streamalert.rules.logql.translate import Translation, translate

_GROUP_KEYS = frozenset(("name", "interval", "rules", "limit"))
_RULE_KEYS = frozenset(("alert", "expr", "for", "labels", "annotations"))


class LokiRuleFileError(ValueError):
    """Every problem of a rule file, one per line, each naming the file, group and rule."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True, slots=True)
class LokiRule:
    """One translated alert: the streamalert rule dict, the group it came from and its translation."""

    group: str
    rule: dict[str, Any]
    translation: Translation
    path: tuple[str | int, ...] = ()  # of its `expr` in the file, for file_position


def load_loki_rules(text: str, source_name: str) -> list[LokiRule]:
    """Translate every alert of a Loki rule file; raise LokiRuleFileError listing all problems."""
    rules, problems = read_loki_rules(text, source_name)
    if problems:
        raise LokiRuleFileError(problems)
    return rules


def read_loki_rules(text: str, source_name: str) -> tuple[list[LokiRule], list[str]]:
    """The alerts of a Loki rule file that translate, and the problems of the others (of the file if any)."""
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return [], [f"{source_name}: invalid YAML: {exc}"]
    if not isinstance(raw, dict) or set(raw) != {"groups"} or not isinstance(raw["groups"], list):
        return [], [f"{source_name}: expected a map with one key `groups`, a list of rule groups"]
    problems: list[str] = []
    out: list[LokiRule] = []
    seen: set[str] = set()
    for gi, group in enumerate(raw["groups"]):
        where = f"{source_name}: group #{gi + 1}"
        if not isinstance(group, dict) or not isinstance(group.get("name"), str):
            problems.append(f"{where}: must be a map with a `name`")
            continue
        where = f"{source_name}: group {group['name']!r}"
        for key in sorted(set(group) - _GROUP_KEYS, key=str):
            problems.append(f"{where}: unknown key {key!r}")
        if "interval" in group:
            _check_duration(group["interval"], f"{where}: interval", problems)
        rules = group.get("rules")
        if not isinstance(rules, list):
            problems.append(f"{where}: `rules` must be a list")
            continue
        for ri, item in enumerate(rules):
            expr_at = Located(text, source_name, ("groups", gi, "rules", ri, "expr"))
            loaded = _rule(item, f"{where} rule #{ri + 1}", group["name"], problems, expr_at)
            name = item.get("alert") if isinstance(item, dict) else None
            if isinstance(name, str) and name in seen:  # Prometheus allows it; streamalert names one rule
                problems.append(f"{where} rule {name!r}: duplicate alert name (rule names must be unique)")
            if isinstance(name, str):
                seen.add(name)
            if loaded is not None:
                out.append(loaded)
    return out, problems


@dataclass(frozen=True, slots=True)
class Located:
    """An expression's place in its file: problems at a position in it also name the file's line and column."""

    text: str
    source_name: str
    path: tuple[str | int, ...]

    def suffix(self, line: int, column: int) -> str:
        """` (file:line:column)`, or nothing when the position in the file cannot be told exactly."""
        found = file_position(self.text, self.path, line, column)
        return "" if found is None else f" ({self.source_name}:{found[0]}:{found[1]})"


def _rule(item: Any, where: str, group: str, problems: list[str], expr_at: Located) -> LokiRule | None:
    if not isinstance(item, dict):
        problems.append(f"{where}: must be a map")
        return None
    if "record" in item:
        problems.append(f"{where}: recording rules (`record:`) are not alerts and are not supported")
        return None
    if not isinstance(item.get("alert"), str) or not item["alert"]:
        problems.append(f"{where}: needs `alert: NAME`")
        return None
    where = f"{where.rsplit(' rule #', 1)[0]} rule {item['alert']!r}"
    before = len(problems)
    for key in sorted(set(item) - _RULE_KEYS, key=str):
        problems.append(f"{where}: unknown key {key!r}")
    for key in ("labels", "annotations"):
        value = item.get(key, {})
        if not isinstance(value, dict) or not all(isinstance(v, str | int | float) for v in value.values()):
            problems.append(f"{where}: {key} must be a map of names to strings")
    expr = item.get("expr")
    translation: Translation | None = None
    if not isinstance(expr, str) or not expr.strip():
        problems.append(f"{where}: needs `expr`, a LogQL expression")
    else:
        try:
            translation = translate(expr)
        except LogQLError as exc:
            problems.append(f"{where}: expr {exc}{expr_at.suffix(exc.line, exc.column)}")
    for_ms = _check_duration(item.get("for", "0s"), f"{where}: for", problems)
    if translation is None or len(problems) > before:
        return None
    rule: dict[str, Any] = {"name": item["alert"], **translation.rule}
    if for_ms and "absent_for" in rule:
        # absent over W, held for F, is a silence of W + F: no line in (t0 - W, t0 + F].
        rule["absent_for"] = format_duration(parse_duration(rule["absent_for"]) + for_ms)
    elif for_ms:
        rule["for"] = str(item["for"])
    for key in ("labels", "annotations"):
        if item.get(key):
            rule[key] = {str(k): str(v) for k, v in item[key].items()}
    return LokiRule(group, rule, translation, expr_at.path)


def _check_duration(value: Any, where: str, problems: list[str]) -> int:
    try:
        return parse_duration(str(value))
    except ValueError as exc:
        problems.append(f"{where}: {exc}")
        return 0
