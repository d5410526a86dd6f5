"""Compile the match sections of all rules into a record decoder and one fast multi-rule matcher.

The closures of `matchers.py` define the semantics; this module builds code with the same meaning for the
hot path:
- lines are decoded by msgspec into a Struct holding only the fields some rule reads (plus event time and
  message), which is faster than building a full dict (measured in bench/); unknown fields are skipped;
- log messages repeat (structlog event names, fixed texts), so the tests rules put on the virtual `message`
  field run once per distinct message; the message then maps to a function generated for exactly the rules
  still in the running, with their remaining tests inlined, cheapest first.
Constants reach generated code as bound names, never as source text, so no rule file can inject code.
`tests/unit/test_codegen.py` checks that both compilations agree on random records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from streamalert.decode import MESSAGE_KEYS, MISSING, TIME_KEYS
from streamalert.rules.matchers import ValueTest, compile_value_test

Record = Any  # an instance of the generated msgspec Struct; absent fields hold msgspec.UNSET
Check = Callable[[Record], list[int]]
# Distinct messages remembered before the cache starts over (bounded memory whatever the input).
MESSAGE_CACHE_SIZE = 50_000

_META = set(".^$*+?()[]{}|\\")
_QUANTIFIERS = set("*?{")


class _Builder:
    """Turns match maps into Python expressions over `r`, a decoded record (absent fields are `_U`)."""

    def __init__(self) -> None:
        self.consts: dict[str, Any] = {}
        self.attrs: dict[str, str] = {}  # JSON key -> Struct attribute

    def attr(self, key: str) -> str:
        name = self.attrs.get(key)
        if name is None:
            name = self.attrs[key] = f"a{len(self.attrs)}"
        return name

    def value(self, key: str) -> str:
        """An expression for the field's value as the closures see it (MISSING when absent)."""
        if key == "message":
            names = [self.attr(k) for k in MESSAGE_KEYS]
            return f"_first(r.{names[0]}, r.{names[1]}, r.{names[2]})"
        literal = self.attr(key)
        if "." not in key:
            return f"_m(r.{literal})"
        head, tail = key.split(".", 1)
        return f"_dotted(r.{literal}, r.{self.attr(head)}, {self.const(tail)})"

    def const(self, value: Any) -> str:
        name = f"_c{len(self.consts)}"
        self.consts[name] = value
        return name

    def conjunction(self, spec: Mapping[str, Any]) -> str:
        terms: list[tuple[int, str]] = []
        for key, sub in spec.items():
            if key == "any":
                alternatives = [self.conjunction(alt) for alt in sub]
                terms.append((5, "(" + " or ".join(alternatives) + ")"))
            else:
                terms.append(self.field_test(key, sub))
        if not terms:
            return "True"
        return "(" + " and ".join(expr for _, expr in sorted(terms, key=lambda t: t[0])) + ")"

    def field_test(self, key: str, spec: Any) -> tuple[int, str]:
        """(cost, expression) for one field's matcher; lower cost runs first."""
        value = f"r.{self.attr(key)}" if "." not in key and key != "message" else self.value(key)
        if key == "level" and isinstance(spec, str):
            return (1, f"(type(_v := {value}) is str and _v.lower() == {self.const(spec.lower())})")
        if key != "level" and isinstance(spec, str):
            return (0, f"{value} == {self.const(spec)}")  # str == str only: UNSET and other types never equal
        if key != "level" and isinstance(spec, Mapping) and len(spec) == 1:
            op, arg = next(iter(spec.items()))
            if op == "contains" and isinstance(arg, str):
                return (2, f"(type(_v := {value}) is str and {self.const(arg)} in _v)")
        test = compile_value_test(spec, "match", case_insensitive=(key == "level"))
        return (3, f"{self.const(test)}({self.value(key)})")


def literal_guard(pattern: str) -> list[str] | None:
    """Substrings of which one must occur for `pattern` to match; None when that cannot be told simply.

    Only plain top-level alternations whose every branch starts with a literal qualify; flags, groups,
    classes or escapes anywhere give None, which means "always run the regex".
    """
    if not pattern or pattern.startswith("(?") or "\\" in pattern or "(" in pattern or "[" in pattern:
        return None
    needles = []
    for branch in pattern.split("|"):
        if branch.startswith("^"):
            return None
        literal = ""
        for ch in branch.removeprefix(".*"):  # search semantics: a leading .* adds nothing
            if ch in _META:
                if ch in _QUANTIFIERS and literal:
                    literal = literal[:-1]  # the quantified character is optional
                break
            literal += ch
        if not literal:
            return None
        needles.append(literal)
    return needles


def message_test(spec: Any) -> ValueTest:
    """The reference test of a `message:` matcher, with a substring guard in front of guardable regexes."""
    test = compile_value_test(spec, "match.message")
    if isinstance(spec, Mapping) and len(spec) == 1 and isinstance(spec.get("regex"), str):
        guard = literal_guard(spec["regex"])
        if guard:
            return lambda v: type(v) is str and any(g in v for g in guard) and test(v)
    return test


@dataclass(frozen=True, slots=True)
class CompiledRules:
    """The hot-path form of a rule set: decode a line into a record, then list the rules it matches."""

    record_type: type
    decode: Callable[[bytes], Record]  # raises msgspec.DecodeError for anything but one JSON object
    match: Check
    time_attrs: tuple[str, ...]  # attributes of timestamp, @timestamp, time, ts: always a0..a3, in that order


def compile_rules(specs: Sequence[Mapping[str, Any]]) -> CompiledRules:
    """Compile every rule's `match`; rule i is reported as index i, ascending."""
    builder = _Builder()
    time_attrs = tuple(builder.attr(k) for k in TIME_KEYS)
    message_attrs = tuple(builder.attr(k) for k in MESSAGE_KEYS)
    msg_tests: dict[int, ValueTest] = {}
    rest: list[str] = []
    for i, spec in enumerate(specs):
        if "message" in spec:
            msg_tests[i] = message_test(spec["message"])
        rest.append(builder.conjunction({k: v for k, v in spec.items() if k != "message"}))
    record_type = msgspec.defstruct(
        "Record",
        [(name, Any, msgspec.UNSET) for name in builder.attrs.values()],
        rename={name: key for key, name in builder.attrs.items()},
        gc=False,  # records hold no cycles; untracked structs allocate faster and never burden the GC
    )
    namespace: dict[str, Any] = {
        "_m": _missing_if_unset,
        "_first": _first_present,
        "_dotted": _dotted,
        "_U": msgspec.UNSET,
        "_M": MISSING,
        **builder.consts,
    }
    specialized: dict[tuple[int, ...], Check] = {}

    def specialize(alive: tuple[int, ...]) -> Check:
        function = specialized.get(alive)
        if function is None:
            lines = ["def _check(r):", "    out = []"]
            lines += [f"    if {rest[i]}: out.append({i})" for i in alive]
            lines.append("    return out")
            scope = dict(namespace)
            # Safe to exec: built from fixed fragments; every value from a rule file is a bound name.
            exec(compile("\n".join(lines), f"<streamalert rules {alive}>", "exec"), scope)
            function = specialized[alive] = scope["_check"]
        return function

    count = len(specs)

    def candidates(message: Any) -> Check:
        return specialize(tuple(i for i in range(count) if i not in msg_tests or msg_tests[i](message)))

    cache: dict[str, Check] = {}
    when_missing = candidates(MISSING)
    unset = msgspec.UNSET
    assert time_attrs == ("a0", "a1", "a2", "a3"), "the engine reads `timestamp` as a0"
    assert message_attrs == ("a4", "a5", "a6"), "match() below reads the message keys as a4..a6"

    def match(record: Record) -> list[int]:
        message = record.a4  # message, event, msg: the first present
        if message is unset:
            message = record.a5
            if message is unset:
                message = record.a6
        if type(message) is str:
            check = cache.get(message)
            if check is None:
                if len(cache) >= MESSAGE_CACHE_SIZE:
                    cache.clear()
                check = cache[message] = candidates(message)
        elif message is unset:
            check = when_missing
        else:
            check = candidates(message)  # numbers, null, objects: rare, not cached
        return check(record)

    decoder = msgspec.json.Decoder(record_type)
    return CompiledRules(record_type, decoder.decode, match, time_attrs)


def _missing_if_unset(value: Any) -> Any:
    return MISSING if value is msgspec.UNSET else value


def _first_present(*values: Any) -> Any:
    for value in values:
        if value is not msgspec.UNSET:
            return value
    return MISSING


def _dotted(literal: Any, head: Any, tail: str) -> Any:
    """get_path on a record: the flattened key first, then the path inside the top-level object."""
    if literal is not msgspec.UNSET:
        return literal
    node = head
    for part in tail.split("."):
        if type(node) is not dict:
            return MISSING
        node = node.get(part, MISSING)
    return node
