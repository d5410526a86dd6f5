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

import functools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from streamalert.decode import LINE_FIELD
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


Bucket = Callable[[Any, list[int]], None]  # appends the rules of one key that hold for the record


@dataclass(slots=True)
class _Field:
    """The keys of one field: rules by string, number, boolean, null, and by pattern."""

    strings: dict[str, list[int]] = field(default_factory=dict)
    numbers: dict[float, list[int]] = field(default_factory=dict)
    booleans: dict[bool, list[int]] = field(default_factory=dict)
    nulls: dict[None, list[int]] = field(default_factory=dict)
    patterns: dict[str, list[int]] = field(default_factory=dict)
    tests: dict[str, ValueTest] = field(default_factory=dict)

    def add(self, kind: str, value: Any, rule: int) -> None:
        maps: dict[str, dict[Any, list[int]]] = {
            "s": self.strings,
            "n": self.numbers,
            "b": self.booleans,
            "z": self.nulls,
            "p": self.patterns,
        }
        maps[kind].setdefault(value, []).append(rule)

    def maps(self) -> tuple[dict[Any, list[int]], ...]:
        return (self.strings, self.numbers, self.booleans, self.nulls, self.patterns)


def string_lookup(
    strings: dict[str, Bucket],
    numbers: dict[float, Bucket],
    patterns: list[Bucket],
    scan: PatternSet | None,
    lowered: bool,
    cached: bool = True,
    cache: dict[str, list[Bucket]] | None = None,
) -> Callable[[str], list[Bucket]]:
    """The buckets a string value reaches: as a string, as a numeric string, through patterns. Cached unless
    `cached` is false (LogQL's raw line, `_line`: lines do not repeat, so a cache would only churn); `cache`
    is that cache when the caller reads it first (the generated `_match` does: no call for a value seen)."""
    if cache is None:
        cache = {}
    matches = scan.matches if scan is not None else None

    def lookup(value: str) -> list[Bucket]:
        hits = cache.get(value)
        if hits is not None:
            return hits
        hits = []
        bucket = strings.get(value.lower() if lowered else value)
        if bucket is not None:
            hits.append(bucket)
        if numbers and (number := as_number(value)) is not None and (bucket := numbers.get(number)) is not None:
            hits.append(bucket)
        if matches is not None:
            hits += [patterns[k] for k in matches(value)]
        if len(value) <= CACHE_MAX_CHARS:
            if len(cache) >= CACHE_SIZE:
                cache.clear()
            cache[value] = hits
        return hits

    def uncached(value: str) -> list[Bucket]:  # lookup without its cache: kept apart so lookup pays nothing
        hits = []
        bucket = strings.get(value.lower() if lowered else value)
        if bucket is not None:
            hits.append(bucket)
        if numbers and (number := as_number(value)) is not None and (bucket := numbers.get(number)) is not None:
            hits.append(bucket)
        if matches is not None:
            hits += [patterns[k] for k in matches(value)]
        return hits

    return lookup if cached else uncached


def other_lookup(
    numbers: dict[float, Bucket], booleans: dict[bool, Bucket], null: Bucket | None
) -> Callable[[Any], Bucket | None]:
    """The bucket a present value that is not a string reaches."""

    def lookup(value: Any) -> Bucket | None:
        if value is None:
            return null
        kind = type(value)
        if kind is bool:
            return booleans.get(value)
        if kind is int or kind is float:
            number = as_number(value)
            return None if number is None else numbers.get(number)
        return None

    return lookup


class RuleIndex:
    """The anchors of a rule set, and the source of the `_match` function that uses them.

    Every key gets a bucket: a generated function testing, inline, the remaining tests of each rule
    anchored on that key, bound to that key's constants and rule numbers (keys whose rules have the same
    shapes share the function). A record's lookups give buckets, so it costs one call per key it reaches.
    """

    def __init__(self) -> None:
        self.fields: dict[str, _Field] = {}
        self.overlap = False  # a rule can be reached twice by one record: the result needs deduplicating
        self.buckets: dict[int, tuple[str, tuple[Any, ...]]] = {}  # id() of a rule list -> (function, k)

    def add(self, rule: int, anchor: Anchor) -> None:
        self.overlap = self.overlap or len(anchor.keys) > 1
        for name, kind, value in anchor.keys:
            index = self.fields.setdefault(name, _Field())
            index.add(kind, value, rule)
            if kind == "p":
                index.tests[value] = anchor.tests[value]

    def source(self, builder: _Builder, tests: Sequence[Mapping[str, Any] | None], residual: list[int]) -> str:
        """Python source defining the buckets and `_match(r) -> Sequence[int]`; then bind() the lookups.

        `tests[i]`: the match map rule i must meet once its anchor held (None: nothing more).
        """
        lines = []
        templates: dict[str, str] = {}  # a body -> the name of its function
        for index in self.fields.values():
            for mapping in index.maps():
                for rules in mapping.values():
                    body, constants = builder.template([(i, tests[i]) for i in rules])
                    name = templates.get(body)
                    if name is None:
                        name = templates[body] = f"_t{len(templates)}"
                        lines += [f"def {name}(k, r, out):", body]
                    self.buckets[id(rules)] = (name, constants)
        lines += ["def _match(r):", "    out = []"]
        for j, (name, index) in enumerate(self.fields.items()):
            lines += self._field_source(builder, j, name, index)
        lines += builder.body([(i, tests[i]) for i in residual], "    ")
        # No rule or one rule matched (most lines): the shared empty tuple or the rule's shared one-tuple
        # (_1, from compile_rules). The engine keeps a batch's results until the batch is done, and a list per
        # line would be one more container for the collector to count and walk.
        lines.append("    if len(out) < 2: return _1[out[0]] if out else ()")
        lines.append("    return sorted(set(out))" if self.overlap else "    out.sort()\n    return out")
        return "\n".join(lines) + "\n"

    def bind(self, namespace: dict[str, Any]) -> None:
        """Put the lookups `_match` calls into its namespace, once the buckets are defined there."""
        for j, (name, index) in enumerate(self.fields.items()):
            strings, numbers, booleans, nulls, patterns = (
                {key: self._bucket(namespace, rules) for key, rules in mapping.items()} for mapping in index.maps()
            )
            if index.numbers or index.patterns:
                scan = PatternSet(list(index.patterns), [index.tests[p] for p in index.patterns]) if patterns else None
                cache: dict[str, list[Bucket]] = {}
                namespace[f"_C{j}"] = cache.get
                namespace[f"_S{j}"] = string_lookup(
                    strings, numbers, list(patterns.values()), scan, name == "level", name != LINE_FIELD, cache
                )
            else:
                namespace[f"_S{j}"] = strings.get
            namespace[f"_O{j}"] = other_lookup(numbers, booleans, nulls.get(None))

    def _bucket(self, namespace: dict[str, Any], rules: list[int]) -> Bucket:
        name, constants = self.buckets[id(rules)]
        return functools.partial(namespace[name], constants)

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
        if (index.numbers or index.patterns) and name != LINE_FIELD:  # a value seen before: its cached buckets
            lines += ["    if type(v) is str:", f"        h = _C{j}(v)", f"        if h is None: h = _S{j}(v)"]
            lines.append("        for b in h: b(r, out)")
        elif index.numbers or index.patterns:
            lines += ["    if type(v) is str:", f"        for b in _S{j}(v): b(r, out)"]
        else:
            key = "v.lower()" if lowered else "v"
            lines += ["    if type(v) is str:", f"        b = _S{j}({key})", "        if b is not None: b(r, out)"]
        if index.numbers or index.booleans or index.nulls:
            lines += [f"    elif v is not {absent}:", f"        b = _O{j}(v)", "        if b is not None: b(r, out)"]
        return lines
