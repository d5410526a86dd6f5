"""Compile the match sections of all rules into one function returning the matched rules, fast.

The closures of `matchers.py` define the semantics; this module builds code with the same meaning for the
hot path. Log messages repeat (structlog event names, fixed texts), so the tests that rules put on the
virtual `message` field are evaluated once per distinct message and cached: the cache maps a message to
the rules still in the running. Only those rules' remaining tests run, as generated Python expressions
with the cheapest test first. Constants reach the generated code as bound names, never as source text, so
no rule file can inject code. `tests/unit/test_codegen.py` checks that both compilations agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streamalert.decode import MISSING, get_message, get_path
from streamalert.model import Fields
from streamalert.rules.matchers import ValueTest, compile_value_test

MultiMatcher = Callable[[Fields], list[int]]
# Distinct messages remembered before the cache starts over (bounded memory whatever the input).
MESSAGE_CACHE_SIZE = 50_000

_META = set(".^$*+?()[]{}|\\")
_QUANTIFIERS = set("*?{")


class _Builder:
    """Turns match maps into Python expressions over `f` (the record) and `_get` (its bound .get)."""

    def __init__(self) -> None:
        self.consts: dict[str, Any] = {}

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
        if key == "message":
            value = "_message(f)"
        elif "." in key:
            value = f"_path(f, {self.const(key)})"
        else:
            value = f"_get({self.const(key)}, _M)"
        if key == "level" and isinstance(spec, str):
            return (1, f"(type(_v := {value}) is str and _v.lower() == {self.const(spec.lower())})")
        if key != "level" and isinstance(spec, str):
            return (0, f"{value} == {self.const(spec)}")  # str == str only: other types never compare equal
        if key != "level" and isinstance(spec, Mapping) and len(spec) == 1:
            op, arg = next(iter(spec.items()))
            if op == "contains" and isinstance(arg, str):
                return (2, f"(type(_v := {value}) is str and {self.const(arg)} in _v)")
        test = compile_value_test(spec, "match", case_insensitive=(key == "level"))
        return (3, f"{self.const(test)}({value})")


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


def compile_rules(specs: Sequence[Mapping[str, Any]]) -> MultiMatcher:
    """One function: record fields -> indexes of the rules whose `match` holds, ascending.

    A message's tests are evaluated once; the message then maps to a function generated for exactly the
    rules still in the running, with their remaining tests inlined (a handful of distinct functions exist,
    one per distinct set of surviving rules).
    """
    builder = _Builder()
    msg_tests: dict[int, ValueTest] = {}
    rest: list[str] = []
    for i, spec in enumerate(specs):
        if "message" in spec:
            msg_tests[i] = message_test(spec["message"])
        rest.append(builder.conjunction({k: v for k, v in spec.items() if k != "message"}))
    namespace: dict[str, Any] = {"_message": get_message, "_path": get_path, "_M": MISSING, **builder.consts}
    specialized: dict[tuple[int, ...], Callable[[Fields, Callable[..., Any]], list[int]]] = {}

    def specialize(alive: tuple[int, ...]) -> Callable[[Fields, Callable[..., Any]], list[int]]:
        function = specialized.get(alive)
        if function is None:
            lines = ["def _m(f, _get):", "    out = []"]
            lines += [f"    if {rest[i]}: out.append({i})" for i in alive]
            lines.append("    return out")
            scope = dict(namespace)
            # Safe to exec: built from fixed fragments; every value from a rule file is a bound name.
            exec(compile("\n".join(lines), f"<streamalert rules {alive}>", "exec"), scope)
            function = specialized[alive] = scope["_m"]
        return function

    count = len(specs)

    def candidates(message: Any) -> Callable[[Fields, Callable[..., Any]], list[int]]:
        return specialize(tuple(i for i in range(count) if i not in msg_tests or msg_tests[i](message)))

    cache: dict[str, Callable[[Fields, Callable[..., Any]], list[int]]] = {}
    when_missing = candidates(MISSING)

    def match(f: Fields) -> list[int]:
        get = f.get
        message = get("message", MISSING)
        if message is MISSING:
            message = get("event", MISSING)
            if message is MISSING:
                message = get("msg", MISSING)
        if type(message) is str:
            check = cache.get(message)
            if check is None:
                if len(cache) >= MESSAGE_CACHE_SIZE:
                    cache.clear()
                check = cache[message] = candidates(message)
        elif message is MISSING:
            check = when_missing
        else:
            check = candidates(message)  # numbers, null, objects: rare, not cached
        return check(f, get)

    return match
