"""`streamalert explain`: why a log line does or does not match each rule, and what it would update.

The verdict (which rules match) is the engine's own: the line goes through `rules/codegen.py`'s compiled
decoder and matcher, built exactly as Engine builds them. The per-stage explanation of each rule comes from
the reference closures of `rules/matchers.py`, one per entry of the match map, and is checked against that
verdict: when every stage passes the engine must match, and the other way round. A disagreement is shown
(and would be a bug); `tests/unit/test_explain.py` checks there is none on every line of the bundled incident.

A kind of rule explains itself through a `RuleExplainer`: the first registered explainer that returns stages
for a rule is used; the YAML matcher explainer takes every rule and comes last. A rule kind with stages of
its own (a LogQL pipeline: selector, line filters, parser, label filters) registers one with
`register_explainer`, so its failing stage is named in its own terms.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import orjson

from streamalert.config.rules import Rule, label_value
from streamalert.decode import (
    DECODE_ERRORS,
    MISSING,
    TIME_KEYS,
    event_time_ms,
    format_ms,
    get_message,
    get_path,
)
from streamalert.engine import _group_value
from streamalert.model import Fields
from streamalert.rules.codegen import compile_rules
from streamalert.rules.kind import kind_of
from streamalert.rules.matchers import as_number, compile_match, compile_value_test


@dataclass(frozen=True, slots=True)
class Stage:
    """One test of a rule on one record: what it asks, what the record gave, whether it held."""

    name: str  # the field (or the pipeline stage) tested
    test: str  # the test as written in the rule
    value: Any  # what the test saw (MISSING when the field is absent)
    passed: bool
    failed_parts: tuple[str, ...] = ()  # of an operator map or an `any:`, the parts that did not hold


class RuleExplainer(Protocol):
    """Explains one kind of rule: its stages on a record, or None when the rule is not of that kind."""

    def stages(self, rule: Rule, line: bytes, fields: Fields) -> list[Stage] | None: ...


class MatchExplainer:
    """The `match:` map of a YAML rule: one stage per entry, tested by the reference closures."""

    def __init__(self) -> None:
        self._entries: dict[tuple[str, str], list[_Entry]] = {}  # (name, digest): compiled once per rule

    def stages(self, rule: Rule, line: bytes, fields: Fields) -> list[Stage] | None:
        entries = self._entries.get((rule.name, rule.digest))
        if entries is None:
            entries = self._entries[(rule.name, rule.digest)] = [_Entry(k, v) for k, v in rule.match_spec.items()]
        return [entry.stage(fields) for entry in entries]


class _Entry:
    """One entry of a match map, compiled by rules/matchers.py, with its parts for the failure detail."""

    def __init__(self, key: str, spec: Any) -> None:
        self.key, self.test = key, _spell(spec)
        self.holds = compile_match({key: spec})
        self.parts: list[tuple[str, Callable[[Any], bool]]] = []
        if key == "any":  # an alternative fails through its own entries
            self.alternatives = [[(n, compile_match({n: s})) for n, s in alt.items()] for alt in spec]
        elif isinstance(spec, Mapping) and len(spec) > 1:
            lowered = key == "level"
            self.parts = [
                (f"{op}: {_spell(arg)}", compile_value_test({op: arg}, "match", lowered)) for op, arg in spec.items()
            ]

    def stage(self, fields: Fields) -> Stage:
        passed = self.holds(fields)
        if self.key == "any":
            failed = tuple(
                f"any[{k}]: {', '.join(names)}"
                for k, alt in enumerate(self.alternatives)
                if (names := [n for n, holds in alt if not holds(fields)])
            )
            return Stage("any", self.test, MISSING, passed, () if passed else failed)
        value = get_message(fields) if self.key == "message" else get_path(fields, self.key)
        failed = () if passed else tuple(text for text, test in self.parts if not test(value))
        return Stage(self.key, self.test, value, passed, failed)


_EXPLAINERS: list[RuleExplainer] = [MatchExplainer()]


def register_explainer(explainer: RuleExplainer) -> None:
    """Put an explainer for a rule kind before the YAML matcher explainer (which takes every rule)."""
    _EXPLAINERS.insert(len(_EXPLAINERS) - 1, explainer)


def _spell(value: Any) -> str:
    """A matcher as compact JSON (YAML flow style reads the same)."""
    try:
        return orjson.dumps(value, default=str).decode()
    except TypeError:
        return repr(value)


@dataclass(slots=True)
class RuleVerdict:
    rule: Rule
    matched: bool  # the engine's verdict
    stages: list[Stage]
    disagrees: bool = False  # the stages' verdict differs from the engine's (a bug: reported, never hidden)
    group: tuple[str, ...] | None = None  # matched: the group key of the series it updates
    series: str = ""  # matched: what that series is, and what this record adds to it

    @property
    def failed(self) -> int:
        return sum(not s.passed for s in self.stages)


@dataclass(slots=True)
class Explanation:
    record: Fields
    time_ms: int | None
    time_key: str | None
    verdicts: list[RuleVerdict] = field(default_factory=list)

    @property
    def matches(self) -> list[RuleVerdict]:
        return [v for v in self.verdicts if v.matched]

    @property
    def misses(self) -> list[RuleVerdict]:
        """Rules the record does not match, closest first: fewest failed tests, then the lower share failed."""
        missed = [v for v in self.verdicts if not v.matched]
        return sorted(missed, key=lambda v: (v.failed, v.failed / max(1, len(v.stages))))


class NotARecord(ValueError):
    """The line is not one JSON object: the engine would skip it as malformed."""


class Explainer:
    """Rules compiled once, as the engine compiles them; `explain` one line at a time."""

    def __init__(self, rules: Sequence[Rule]) -> None:
        self.rules = list(rules)
        # as Engine.__init__ does
        self._compiled = compile_rules([r.match_spec for r in self.rules], [r.extract for r in self.rules])

    def engine_matches(self, line: bytes) -> list[int]:
        """The indexes of the rules the engine matches this line with (raises NotARecord)."""
        try:
            matched = self._compiled.match(self._compiled.decode(line))
            self._compiled.fields(line)  # the engine also decodes a matched line in full, and skips it if that fails
        except DECODE_ERRORS as exc:
            raise NotARecord(f"not a JSON object: {exc}") from None
        return list(matched)

    def explain(self, line: bytes) -> Explanation:
        matched = set(self.engine_matches(line))
        fields = self._compiled.fields(line)  # with the labels of `| regexp` / `| pattern`
        time_key = next((k for k in TIME_KEYS if fields.get(k) is not None), None)
        out = Explanation(fields, event_time_ms(fields), time_key)
        for i, rule in enumerate(self.rules):
            stages = next(s for e in _EXPLAINERS if (s := e.stages(rule, line, fields)) is not None)
            verdict = RuleVerdict(rule, i in matched, stages)
            verdict.disagrees = verdict.matched != all(s.passed for s in stages)
            if verdict.matched:
                verdict.group, verdict.series = _series(rule, fields, line)
            out.verdicts.append(verdict)
        return out


def _series(rule: Rule, fields: Fields, line: bytes) -> tuple[tuple[str, ...], str]:
    """The group key a matched record lands in (as Engine._observe computes it) and what it adds."""
    key = tuple(label_value(_group_value(fields, name)) for name in rule.group_by)
    if rule.kind == "absence":
        return (
            key,
            f"absence series: last seen = this record's time (fires after {rule.absent_ms / 1000:g}s without one)",
        )
    condition = rule.condition
    assert condition is not None, "a window rule has a condition"
    window = f"{rule.window_ms / 1000:g}s window, condition {condition.text}"
    if condition.aggregate == "bytes":
        return key, f"bytes series: +{kind_of(rule).sample(fields, line)} bytes in the {window}"
    if condition.field is None:
        return key, f"{condition.aggregate} series: +1 event in the {window}"
    # a converted field (`duration(F)`, `bytes(F)`) is parsed as the engine's kind hook parses it
    sample = kind_of(rule).sample(fields, line) if condition.unit else as_number(get_path(fields, condition.field))
    if sample is None:
        return key, f"no series updated: {condition.field!r} holds no number ({condition.aggregate} needs one)"
    return key, f"{condition.aggregate}({condition.field}) series: sample {sample:g} in the {window}"


# ---- output ------------------------------------------------------------------------------------------------


def as_json(explanation: Explanation) -> dict[str, Any]:
    """The explanation for tools: every rule, matches first, misses closest first."""

    def stage(s: Stage) -> dict[str, Any]:
        out: dict[str, Any] = {"name": s.name, "test": s.test, "passed": s.passed}
        out["value"] = None if s.value is MISSING else s.value
        out["present"] = s.value is not MISSING
        if s.failed_parts:
            out["failed_parts"] = list(s.failed_parts)
        return out

    def verdict(v: RuleVerdict) -> dict[str, Any]:
        out: dict[str, Any] = {"rule": v.rule.name, "file": v.rule.source, "failed": v.failed}
        out["stages"] = [stage(s) for s in v.stages]
        if v.matched:
            out["group_by"] = list(v.rule.group_by)
            out["group"] = list(v.group or ())
            out["series"] = v.series
            out["series_id"] = f"{v.rule.name}:{v.rule.digest}"  # the engine's rule id: its stored state's name
        if v.disagrees:
            out["disagrees_with_engine"] = True
        return out

    return {
        "record": explanation.record,
        "time": None if explanation.time_ms is None else format_ms(explanation.time_ms),
        "time_field": explanation.time_key,
        "matches": [verdict(v) for v in explanation.matches],
        "misses": [verdict(v) for v in explanation.misses],
    }


def as_text(explanation: Explanation, misses: int = 10) -> str:
    """The explanation for people; at most `misses` non-matching rules (0: all)."""
    lines = ["record:"]
    lines += [f"  {k}: {_spell(v)}" for k, v in explanation.record.items()]
    if explanation.time_ms is None:
        lines.append("event time: none usable (the engine gives it the newest event time seen)")
    else:
        lines.append(f"event time: {format_ms(explanation.time_ms)} (from {explanation.time_key})")
    matches = explanation.matches
    lines.append(f"\nmatches {len(matches)} of {len(explanation.verdicts)} rules" + (":" if matches else "."))
    for v in matches:
        lines.append(f"  + {v.rule.name}  ({v.rule.source})")
        if v.rule.group_by:
            group = ", ".join(f"{g}={val!r}" for g, val in zip(v.rule.group_by, v.group or (), strict=True))
            lines.append(f"      group: {group}")
        else:
            lines.append("      group: the rule's one series (no group_by)")
        lines.append(f"      {v.series}")
        lines += _disagreement(v)
    shown = explanation.misses if misses <= 0 else explanation.misses[:misses]
    if shown:
        lines.append("\nno match (closest first):")
    for v in shown:
        lines.append(f"  - {v.rule.name}  ({v.rule.source}): {v.failed} of {len(v.stages)} tests failed")
        for s in sorted(v.stages, key=lambda s: s.passed):
            mark = "ok  " if s.passed else "FAIL"
            got = "" if s.name == "any" else (" | absent" if s.value is MISSING else f" | got {_short(s.value)}")
            lines.append(f"      {mark} {s.name}: {s.test}{got}")
            lines += [f"           failed: {part}" for part in s.failed_parts]
        lines += _disagreement(v)
    hidden = len(explanation.misses) - len(shown)
    if hidden:
        lines.append(f"  ... {hidden} more rules do not match (--misses 0 shows all)")
    return "\n".join(lines)


def _short(value: Any, limit: int = 120) -> str:
    text = _spell(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _disagreement(v: RuleVerdict) -> list[str]:
    if not v.disagrees:
        return []
    return ["      !! the engine's matcher and these tests disagree on this rule: please report this line"]
