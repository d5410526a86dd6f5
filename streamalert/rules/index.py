"""Which rules a record can match, found by looking its field values up rather than by running every rule.

Each rule gets an anchor: one entry of its match map that must hold for the rule to hold and that a
lookup can decide, chosen in this order (most selective first):
- equality or `in` on a field other than `level` (the virtual `message` included): a dict from value to rules;
- `contains` or `regex` on the message: one multi-pattern scan (rules/patterns.py) per distinct message;
- equality or `in` on `level` (looked up lowercased: the reference compares `v.lower()` to the lowered value);
- `contains` or `regex` on another field: a scan per field;
- `any:` whose every alternative has an anchor: the rule is reached through any of them.
A record's candidates are the rules its values reach; only their remaining tests run. Rules without an
anchor (only comparisons, `exists`, `not`, `contains` on `level`) form the residual set and run on every
record. Equality keeps the reference's types: strings equal strings, numbers equal numbers or numeric
strings (as floats), `true`/`false`/`null` only themselves; values of other types are never indexed.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streamalert.rules.matchers import ValueTest, as_number, compile_value_test
from streamalert.rules.patterns import PatternSet, literal_pattern

if TYPE_CHECKING:
    from streamalert.rules.codegen import _Builder

# Distinct values remembered per scanned field before its cache starts over (bounded memory whatever the
# input); values longer than CACHE_MAX_CHARS (stack traces, payloads: rarely repeated) are not kept.
CACHE_SIZE = 50_000
CACHE_MAX_CHARS = 512

# Anchor ranks, lowest preferred.
_EQUALITY, _MESSAGE_SCAN, _LEVEL_EQUALITY, _FIELD_SCAN, _ANY = range(5)

# A key: (field, kind, value) with kind "s" string, "n" number (a float), "b" boolean, "z" null;
# or (field, "p", pattern) for a contains/regex pattern in RE2 syntax.
Key = tuple[str, str, Any]


@dataclass(frozen=True, slots=True)
class Anchor:
    """How a rule becomes a candidate: any of `keys` holds. `exact`: that proves the entry `entry` holds."""

    entry: str
    exact: bool
    keys: tuple[Key, ...]
    tests: dict[str, ValueTest] = field(default_factory=dict)  # pattern -> its reference test


def anchor_options(spec: Mapping[str, Any]) -> list[tuple[int, Anchor]]:
    """(rank, anchor) for every entry of a (valid) match map that can be looked up, in spec order."""
    options: list[tuple[int, Anchor]] = []
    for key, sub in spec.items():
        if key == "any":
            alternatives = [choose_anchor(alt) for alt in sub]
            if not all(alternatives):
                continue
            anchors = [a for a in alternatives if a is not None]
            keys = tuple(dict.fromkeys(k for a in anchors for k in a.keys))
            tests = {p: t for a in anchors for p, t in a.tests.items()}
            options.append((_ANY, Anchor("any", False, keys, tests)))
            continue
        found = _entry_anchor(key, sub)
        if found is not None:
            options.append(found)
    return options


def choose_anchor(spec: Mapping[str, Any]) -> Anchor | None:
    """The best-ranked anchor of a (valid) match map; None when no entry can be looked up."""
    return pick_anchor(anchor_options(spec))


def pick_anchor(options: Sequence[tuple[int, Anchor]], crowd: Mapping[Key, int] | None = None) -> Anchor | None:
    """One of a rule's anchor options; None when it has none.

    With `crowd` (how many rules of the set could be anchored on each key), the anchor whose keys are
    shared by the fewest rules wins, rank breaking ties: a rule on `level: error` and an event name is
    found through the event name. Without it, the rank alone decides.
    """
    if not options:
        return None
    if crowd is None:
        return min(options, key=lambda option: option[0])[1]
    return min(options, key=lambda option: (sum(crowd.get(k, 0) for k in option[1].keys), option[0]))[1]


def _entry_anchor(name: str, spec: Any) -> tuple[int, Anchor] | None:
    level = name == "level"
    equality = _LEVEL_EQUALITY if level else _EQUALITY
    if not isinstance(spec, Mapping):
        key = _equality_key(name, spec, level)
        return None if key is None else (equality, Anchor(name, True, (key,)))
    exact = len(spec) == 1
    items = spec.get("in")
    if isinstance(items, list) and items:
        keys = [_equality_key(name, item, level) for item in items]
        if all(keys):
            return equality, Anchor(name, exact, tuple(dict.fromkeys(k for k in keys if k is not None)))
    scan = _MESSAGE_SCAN if name == "message" else _FIELD_SCAN
    regex = spec.get("regex")
    if isinstance(regex, str):
        test = compile_value_test({"regex": regex}, "match")
        return scan, Anchor(name, exact, ((name, "p", regex),), {regex: test})
    needle = spec.get("contains")
    if isinstance(needle, str) and needle and not level:  # contains on level is case-insensitive: no scan
        pattern = literal_pattern(needle)
        test = compile_value_test({"contains": needle}, "match")
        return scan, Anchor(name, exact, ((name, "p", pattern),), {pattern: test})
    return None


def _equality_key(name: str, value: Any, lowered: bool) -> Key | None:
    kind = type(value)
    if value is None:
        return (name, "z", None)
    if kind is bool:
        return (name, "b", value)
    if kind is int or kind is float:
        number = as_number(value)
        return None if number is None else (name, "n", number)
    if kind is str:
        return (name, "s", value.lower() if lowered else value)
    return None  # other YAML scalars (dates) compare as their str(): left to the rule's own test


@dataclass(slots=True)
class _Field:
    """The lookups of one field: rules by string, number, boolean, null, and by pattern."""

    strings: dict[str, list[int]] = field(default_factory=dict)
    numbers: dict[float, list[int]] = field(default_factory=dict)
    booleans: dict[bool, list[int]] = field(default_factory=dict)
    nulls: list[int] = field(default_factory=list)
    patterns: dict[str, list[int]] = field(default_factory=dict)
    tests: dict[str, ValueTest] = field(default_factory=dict)

    def add(self, kind: str, value: Any, rule: int) -> None:
        if kind == "s":
            self.strings.setdefault(value, []).append(rule)
        elif kind == "n":
            self.numbers.setdefault(value, []).append(rule)
        elif kind == "b":
            self.booleans.setdefault(value, []).append(rule)
        elif kind == "z":
            self.nulls.append(rule)
        else:
            self.patterns.setdefault(value, []).append(rule)

    def string_lookup(self, lowered: bool) -> Callable[[str], list[int]]:
        """Rules reached by a string value: as a string, as a numeric string, through patterns. Cached."""
        strings, numbers = self.strings, self.numbers
        by_pattern = list(self.patterns.values())
        scan = PatternSet(list(self.patterns), [self.tests[p] for p in self.patterns]).matches if by_pattern else None
        cache: dict[str, list[int]] = {}
        empty: list[int] = []

        def lookup(value: str) -> list[int]:
            hits = cache.get(value)
            if hits is not None:
                return hits
            hits = list(strings.get(value.lower() if lowered else value, empty))
            if numbers and (number := as_number(value)) is not None:
                hits += numbers.get(number, empty)
            if scan is not None:
                for k in scan(value):
                    hits += by_pattern[k]
            if len(value) <= CACHE_MAX_CHARS:
                if len(cache) >= CACHE_SIZE:
                    cache.clear()
                cache[value] = hits
            return hits

        return lookup

    def other_lookup(self) -> Callable[[Any], list[int] | None]:
        """Rules reached by a present value that is not a string."""
        numbers, booleans, nulls = self.numbers, self.booleans, self.nulls

        def lookup(value: Any) -> list[int] | None:
            if value is None:
                return nulls
            kind = type(value)
            if kind is bool:
                return booleans.get(value)
            if kind is int or kind is float:
                number = as_number(value)
                return None if number is None else numbers.get(number)
            return None

        return lookup


class RuleIndex:
    """The anchors of a rule set, and the source of the `_match` function that uses them."""

    def __init__(self) -> None:
        self.fields: dict[str, _Field] = {}
        self.consts: dict[str, Any] = {}
        self.overlap = False  # a rule can be reached twice by one record: candidates need deduplicating

    def add(self, rule: int, anchor: Anchor) -> None:
        self.overlap = self.overlap or len(anchor.keys) > 1
        for name, kind, value in anchor.keys:
            index = self.fields.setdefault(name, _Field())
            index.add(kind, value, rule)
            if kind == "p":
                index.tests[value] = anchor.tests[value]

    def source(self, builder: _Builder, tests: list[str | None], residual: list[int]) -> str:
        """Python source defining `_match(r) -> list[int]` (and the rules' test functions it calls)."""
        lines = []
        table = []
        unindexed = set(residual)
        for i, test in enumerate(tests):
            if test is None or i in unindexed:
                table.append("None")
                continue
            lines += [f"def _t{i}(r):", f"    return {test}"]
            table.append(f"_t{i}")
        lines.append(f"_T = ({', '.join(table)}{',' if len(table) == 1 else ''})")
        lines += ["def _match(r):", "    c = []"]
        for j, (name, index) in enumerate(self.fields.items()):
            lines += self._field_source(builder, j, name, index)
        lines += ["    out = [i for i in c if (t := _T[i]) is None or t(r)]"]
        lines += [f"    if {tests[i]}: out.append({i})" for i in residual]
        lines.append("    return sorted(set(out)) if len(out) > 1 else out" if self.overlap else "    out.sort()")
        if not self.overlap:
            lines.append("    return out")
        return "\n".join(lines) + "\n"

    def _field_source(self, builder: _Builder, j: int, name: str, index: _Field) -> list[str]:
        lowered = name == "level"
        if name == "message":
            a, b, c = (builder.attr(k) for k in ("message", "event", "msg"))
            lines = [f"    v = r.{a}", f"    if v is _U: v = r.{b}", f"    if v is _U: v = r.{c}"]
            absent = "_U"
        elif "." in name:
            lines = [f"    v = {builder.value(name)}"]
            absent = "_M"
        else:
            lines = [f"    v = r.{builder.attr(name)}"]
            absent = "_U"
        if index.numbers or index.patterns:
            self.consts[f"_S{j}"] = index.string_lookup(lowered)
            lines += ["    if type(v) is str:", f"        c += _S{j}(v)"]
        else:
            self.consts[f"_S{j}"] = index.strings.get
            key = "v.lower()" if lowered else "v"
            lines += ["    if type(v) is str:", f"        h = _S{j}({key})", "        if h: c += h"]
        if index.numbers or index.booleans or index.nulls:
            self.consts[f"_O{j}"] = index.other_lookup()
            lines += [f"    elif v is not {absent}:", f"        h = _O{j}(v)", "        if h: c += h"]
        return lines
