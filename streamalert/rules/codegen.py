"""Compile the match sections of all rules into one generated Python function returning the matched rules.

The closures of `matchers.py` define the semantics; this module generates code with the same meaning that
runs several times faster on the hot path: the virtual `message` and the lower-cased `level` are read
once per record, rules are grouped under their `level` equality, the cheapest tests of a rule run first,
and a regex whose every alternative starts with a literal is guarded by plain substring tests before RE2
is called. Constants reach the code as bound names, never as source text, so no rule can inject code.
`tests/unit/test_codegen.py` checks that both compilations agree on random records.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from streamalert.decode import MISSING, get_message, get_path
from streamalert.model import Fields
from streamalert.rules.matchers import compile_value_test

MultiMatcher = Callable[[Fields], list[int]]

_META = set(".^$*+?()[]{}|\\")
_QUANTIFIERS = set("*?{")


class _Builder:
    def __init__(self) -> None:
        self.consts: dict[str, Any] = {}

    def const(self, value: Any) -> str:
        name = f"_c{len(self.consts)}"
        self.consts[name] = value
        return name

    # Each method returns (cost, python expression) for one condition; lower cost runs first.

    def match_map(self, spec: Mapping[str, Any], skip_level: str | None = None) -> list[tuple[int, str]]:
        terms: list[tuple[int, str]] = []
        for key, sub in spec.items():
            if key == "any":
                alternatives = [self.conjunction(self.match_map(alt)) for alt in sub]
                terms.append((5, "(" + " or ".join(alternatives) + ")"))
                continue
            if key == "level" and skip_level is not None and sub == skip_level:
                continue  # already tested by the enclosing group
            terms.append(self.field_test(key, sub))
        return terms

    @staticmethod
    def conjunction(terms: list[tuple[int, str]]) -> str:
        if not terms:
            return "True"
        return "(" + " and ".join(expr for _, expr in sorted(terms, key=lambda t: t[0])) + ")"

    def field_test(self, key: str, spec: Any) -> tuple[int, str]:
        if key == "message":
            value = "_msg"
        elif key == "level":
            value = "_lvl"
        elif "." in key:
            value = f"_path(f, {self.const(key)})"
        else:
            value = f"_get({self.const(key)}, _M)"
        if key == "level" and isinstance(spec, str):
            return (0, f"_lvl_l == {self.const(spec.lower())}")
        if isinstance(spec, str) and key != "level":
            return (1, f"{value} == {self.const(spec)}")  # str == str only; other types never equal
        if isinstance(spec, Mapping) and len(spec) == 1 and key != "level":
            op, arg = next(iter(spec.items()))
            if op == "contains" and isinstance(arg, str):
                if key == "message":
                    return (2, f"(_msg_s is not None and {self.const(arg)} in _msg_s)")
                return (2, f"(type(_v := {value}) is str and {self.const(arg)} in _v)")
            if op == "regex" and isinstance(arg, str) and key == "message":
                test = compile_value_test(spec, "match")
                guard = literal_guard(arg)
                call = f"{self.const(test)}(_msg_s)"
                if guard:
                    needles = " or ".join(f"{self.const(g)} in _msg_s" for g in guard)
                    return (3, f"(_msg_s is not None and ({needles}) and {call})")
                return (4, f"(_msg_s is not None and {call})")
        # Everything else: the reference closure, on the value read once.
        test = compile_value_test(spec, "match", case_insensitive=(key == "level"))
        return (4, f"{self.const(test)}({value})")


def literal_guard(pattern: str) -> list[str] | None:
    """Substrings of which at least one must occur for `pattern` to match; None when that cannot be told simply.

    Only plain top-level alternations whose every branch starts with a literal qualify; flags, groups or
    escapes anywhere give None, which means "always run the regex".
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


def compile_rules(specs: Sequence[Mapping[str, Any]]) -> MultiMatcher:
    """One function: record fields -> indexes of the rules whose `match` holds, ascending."""
    builder = _Builder()
    by_level: dict[str, list[tuple[int, Mapping[str, Any]]]] = {}
    free: list[tuple[int, Mapping[str, Any]]] = []
    for i, spec in enumerate(specs):
        level = spec.get("level")
        if isinstance(level, str):
            by_level.setdefault(level.lower(), []).append((i, spec))
        else:
            free.append((i, spec))
    body = [
        "def _match(f):",
        "    _get = f.get",
        "    _msg = _message(f)",
        "    _msg_s = _msg if type(_msg) is str else None",
        "    _lvl = _get('level', _M)",
        "    _lvl_l = _lvl.lower() if type(_lvl) is str else None",
        "    out = []",
    ]
    for level, group in sorted(by_level.items()):
        body.append(f"    if _lvl_l == {builder.const(level)}:")
        for i, spec in group:
            terms = builder.match_map(_without_level(spec))
            body.append(f"        if {builder.conjunction(terms)}: out.append({i})")
    for i, spec in free:
        body.append(f"    if {builder.conjunction(builder.match_map(spec))}: out.append({i})")
    body.append("    if len(out) > 1: out.sort()")
    body.append("    return out")
    namespace: dict[str, Any] = {"_message": get_message, "_path": get_path, "_M": MISSING, **builder.consts}
    # Safe to exec: the source is built from fixed fragments; every value from a rule file is a bound name.
    exec(compile("\n".join(body), "<streamalert rules>", "exec"), namespace)
    matcher: MultiMatcher = namespace["_match"]
    return matcher


def _without_level(spec: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in spec.items() if k != "level"}
