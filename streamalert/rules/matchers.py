"""Compile the `match:` section of a rule into a pure predicate over a record's fields."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import re2

from streamalert.decode import MISSING, get_message, get_path
from streamalert.model import Fields

Predicate = Callable[[Fields], bool]
ValueTest = Callable[[Any], bool]

OPERATORS = ("contains", "regex", "in", "gt", "gte", "lt", "lte", "exists", "not")
# `unit` goes with gt/gte/lt/lte: the value is text such as "250ms" or "10MB", compared as seconds or bytes
UNITS = ("duration", "bytes")


class MatchError(ValueError):
    """A problem in a match spec, with the dotted path of the offending key."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


# A numeric string: ASCII digits, an optional sign, an optional fraction and exponent; no spaces, no
# underscores, no other digits, no "inf"/"nan" words. Leading zeros and a leading '+' are accepted
# ("007", "+5"): logs write them, and they are still plainly numbers. Digits are needed on both sides
# of a '.', as in JSON ("5." and ".5" are not numbers).
NUMERIC_STRING = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")
_numeric = NUMERIC_STRING.fullmatch


def as_number(value: Any) -> float | None:
    """A finite number from a JSON number or a NUMERIC_STRING; None for anything else (bools included).

    Values that do not fit a finite float (an integer of hundreds of digits, "1e999") are not numbers.
    """
    kind = type(value)
    if kind is float:
        return value if math.isfinite(value) else None
    if kind is int:
        try:
            return float(value)
        except OverflowError:
            return None
    if kind is str:
        if _numeric(value) is None:
            return None
        number = float(value)
        return number if math.isfinite(number) else None
    return None


_BAD_FIELD_CHAR = re.compile(r'["\\\x00-\x1f]')  # a quote, a backslash or a control character


def compile_match(spec: Any, path: str = "match", errors: list[MatchError] | None = None) -> Predicate:
    """A predicate that holds when every entry of the match map holds (`any:` entries are ORs).

    Without `errors`, the first problem is raised as a MatchError. With `errors`, every problem is appended
    to it and compilation goes on, so one call reports them all; the predicate returned is then only
    meaningful if nothing was appended.
    """
    if type(spec) is not dict and not isinstance(spec, Mapping):  # (a dict first: ABC checks are slow)
        return _fail(errors, MatchError(path, "must be a map of field: matcher"))
    parts: list[Predicate] = []
    for key, sub in spec.items():
        key_path = f"{path}.{key}"
        if key == "any":
            if not isinstance(sub, list) or not sub:
                parts.append(_fail(errors, MatchError(key_path, "must be a non-empty list of match maps")))
                continue
            alternatives = [compile_match(alt, f"{key_path}[{i}]", errors) for i, alt in enumerate(sub)]
            parts.append(_any_of(alternatives))
            continue
        if not isinstance(key, str) or not key:
            parts.append(_fail(errors, MatchError(key_path, "field names must be non-empty strings")))
            continue
        if _BAD_FIELD_CHAR.search(key) is not None:
            message = "field names cannot contain quotes, backslashes or control characters"
            parts.append(_fail(errors, MatchError(key_path, message)))
            continue
        test = compile_value_test(sub, key_path, case_insensitive=(key == "level"), errors=errors)
        parts.append(_field(key, test))
    if len(parts) == 1:
        return parts[0]
    return _all_of(parts)


def _fail(errors: list[MatchError] | None, error: MatchError) -> Callable[[Any], bool]:
    """Raise `error`, or, when collecting, append it and stand in with a test that never holds."""
    if errors is None:
        raise error
    errors.append(error)
    return _never


def _never(value: Any) -> bool:
    return False


def _any_of(alternatives: list[Predicate]) -> Predicate:
    return lambda fields: any(alt(fields) for alt in alternatives)


def _all_of(parts: list[Predicate]) -> Predicate:
    return lambda fields: all(part(fields) for part in parts)


def _field(name: str, test: ValueTest) -> Predicate:
    if name == "message":
        return lambda fields: test(get_message(fields))
    if "." in name:
        return lambda fields: test(get_path(fields, name))
    return lambda fields: test(fields.get(name, MISSING))


def compile_value_test(
    spec: Any, path: str, case_insensitive: bool = False, errors: list[MatchError] | None = None
) -> ValueTest:
    """A test of one field's value (MISSING when absent) from a scalar or an operator map.

    `errors` works as in compile_match: None raises the first problem, a list collects all of them.
    """
    if type(spec) is not dict and not isinstance(spec, Mapping):
        if isinstance(spec, list):
            return _fail(errors, MatchError(path, "a list is not a matcher; use {in: [...]} for a set of values"))
        try:
            return _equals(spec, case_insensitive, path)
        except MatchError as exc:
            return _fail(errors, exc)
    if not spec:
        return _fail(errors, MatchError(path, "empty matcher map"))
    if "unit" in spec:
        return _with_unit(spec, path, errors)
    tests: list[ValueTest] = []
    for op, arg in spec.items():
        op_path = f"{path}.{op}"
        if op not in OPERATORS:
            message = f"unknown matcher {op!r} (known: {', '.join(OPERATORS)})"
            tests.append(_fail(errors, MatchError(op_path, message)))
            continue
        try:
            tests.append(_operator(op, arg, op_path, case_insensitive, errors))
        except MatchError as exc:
            tests.append(_fail(errors, exc))
    if len(tests) == 1:
        return tests[0]
    return lambda value: all(t(value) for t in tests)


def _operator(op: str, arg: Any, path: str, case_insensitive: bool, errors: list[MatchError] | None) -> ValueTest:
    """The test of one operator; raises MatchError on a bad argument (`errors` is for a nested `not`)."""
    if op == "contains":
        if not isinstance(arg, str) or not arg:
            raise MatchError(path, "must be a non-empty string")
        needle = arg.lower() if case_insensitive else arg
        if case_insensitive:
            return lambda v: type(v) is str and needle in v.lower()
        return lambda v: type(v) is str and needle in v
    if op == "regex":
        if not isinstance(arg, str):
            raise MatchError(path, "must be a string (RE2 syntax)")
        options = re2.Options()
        options.log_errors = False
        try:
            pattern = re2.compile(arg, options)
        except re2.error as exc:
            reason = exc.args[0] if exc.args else exc
            if isinstance(reason, bytes):
                reason = reason.decode("utf-8", "replace")
            raise MatchError(path, f"invalid RE2 pattern {arg!r}: {reason}") from None
        search = pattern.search
        return lambda v: type(v) is str and search(v) is not None
    if op == "in":
        if not isinstance(arg, list) or not arg:
            raise MatchError(path, "must be a non-empty list of scalars")
        for item in arg:
            _check_scalar(item, path)
        alternatives = [_equals(item, case_insensitive, path) for item in arg]
        return lambda v: any(eq(v) for eq in alternatives)
    if op in ("gt", "gte", "lt", "lte"):
        bound = as_number(arg)
        if bound is None or isinstance(arg, bool):
            raise MatchError(path, f"must be a number, got {arg!r}")
        return _compare(op, bound)
    if op == "exists":
        if not isinstance(arg, bool):
            raise MatchError(path, "must be true or false")
        return (lambda v: v is not MISSING) if arg else (lambda v: v is MISSING)
    # op == "not"
    before = len(errors) if errors is not None else 0
    inner = compile_value_test(arg, path, case_insensitive, errors)
    if errors is not None and len(errors) > before:
        return _never  # keep the stand-in of a broken inner matcher from turning into "always"
    return lambda v: not inner(v)


def _with_unit(spec: Mapping[str, Any], path: str, errors: list[MatchError] | None) -> ValueTest:
    """`{gt: 1.5, unit: duration}`: the value's text parsed as a Go duration (seconds) or a size (bytes), as
    LogQL's duration and bytes label filters do; a value that does not parse never matches."""
    unit = spec["unit"]
    if unit not in UNITS:
        return _fail(errors, MatchError(f"{path}.unit", f"must be one of {', '.join(UNITS)}, got {unit!r}"))
    rest = {op: arg for op, arg in spec.items() if op != "unit"}
    if not rest or any(op not in _COMPARISON_OPS for op in rest):
        return _fail(errors, MatchError(f"{path}.unit", "goes only with gt, gte, lt, lte"))
    before = len(errors) if errors is not None else 0
    test = compile_value_test(rest, path, errors=errors)
    if errors is not None and len(errors) > before:
        return _never
    from streamalert.rules.logql.lexer import go_duration_seconds, label_bytes  # noqa: PLC0415 (no cycle at import)

    parse = go_duration_seconds if unit == "duration" else label_bytes

    def parsed(v: Any) -> float | None:
        if type(v) is str:
            return parse(v)
        if unit == "bytes" and type(v) in (int, float):
            return as_number(v)  # a JSON number's label text is its digits: bytes without a unit
        return None

    return lambda v: (n := parsed(v)) is not None and test(n)


_COMPARISON_OPS = frozenset(("gt", "gte", "lt", "lte"))


def _compare(op: str, bound: float) -> ValueTest:
    def number(v: Any) -> float | None:
        return as_number(v)

    if op == "gt":
        return lambda v: (n := number(v)) is not None and n > bound
    if op == "gte":
        return lambda v: (n := number(v)) is not None and n >= bound
    if op == "lt":
        return lambda v: (n := number(v)) is not None and n < bound
    return lambda v: (n := number(v)) is not None and n <= bound


def _check_scalar(value: Any, path: str) -> None:
    if isinstance(value, (Mapping, list)):
        raise MatchError(path, f"expected a scalar, got {type(value).__name__}")


def _equals(expected: Any, case_insensitive: bool, path: str) -> ValueTest:
    """Equality with JSON-aware types: strings to strings, numbers to numbers or numeric strings."""
    if expected is None:
        return lambda v: v is None
    if isinstance(expected, bool):
        return lambda v: v is expected
    if isinstance(expected, (int, float)):
        target = as_number(expected)
        if target is None:
            raise MatchError(path, f"not a finite number: {expected!r}")
        return lambda v: type(v) is not bool and as_number(v) == target
    text = str(expected)
    if case_insensitive:
        lowered = text.lower()
        return lambda v: type(v) is str and v.lower() == lowered
    return lambda v: type(v) is str and v == text
