"""Matchers: a table of match specs, records and the expected verdict."""

from __future__ import annotations

from typing import Any

import pytest

from streamalert.rules.matchers import MatchError, as_number, compile_match

CASES: list[tuple[dict[str, Any], dict[str, Any], bool]] = [
    ({"level": "error"}, {"level": "ERROR"}, True),  # level is case-insensitive
    ({"level": "error"}, {"level": "warning"}, False),
    ({"error_type": "x"}, {"error_type": "X"}, False),  # other fields are case-sensitive
    ({"error_type": "x"}, {}, False),
    ({"status": 500}, {"status": 500}, True),
    ({"status": 500}, {"status": "500"}, True),  # numeric strings equal numbers
    ({"status": "500"}, {"status": 500}, False),  # a string expects a string
    ({"ok": True}, {"ok": 1}, False),  # booleans are not numbers
    ({"ok": True}, {"ok": True}, True),
    ({"message": {"contains": "rate limit"}}, {"message": "Error reserving rate limit token"}, True),
    ({"message": {"contains": "rate limit"}}, {"event": "Error reserving rate limit token"}, True),
    ({"message": {"contains": "rate limit"}}, {"msg": "rate limit"}, True),
    (
        {"message": {"contains": "rate limit"}},
        {"message": "ok", "event": "rate limit"},
        False,
    ),  # first present
    ({"message": {"regex": "stripe_refund_.*"}}, {"event": "x stripe_refund_failed"}, True),  # search
    ({"message": {"regex": "(?i)postgres"}}, {"event": "PostgreSQL down"}, True),
    ({"message": {"regex": "^a$"}}, {"event": "ba"}, False),
    ({"n": {"gte": 10}}, {"n": 10}, True),
    ({"n": {"gte": 10}}, {"n": "10"}, True),
    ({"n": {"gte": 10}}, {"n": "ten"}, False),
    ({"n": {"gte": 10}}, {"n": "nan"}, False),
    ({"n": {"gte": 10}}, {"n": True}, False),
    ({"n": {"gt": 1, "lt": 5}}, {"n": 3}, True),
    ({"n": {"gt": 1, "lt": 5}}, {"n": 5}, False),
    ({"n": {"lte": 0}}, {"n": -1.5}, True),
    ({"env": {"in": ["prod", "stage"]}}, {"env": "stage"}, True),
    ({"env": {"in": ["prod", "stage"]}}, {"env": "dev"}, False),
    ({"level": {"in": ["error", "critical"]}}, {"level": "CRITICAL"}, True),
    ({"trace": {"exists": True}}, {"trace": None}, True),
    ({"trace": {"exists": False}}, {}, True),
    ({"trace": {"exists": False}}, {"trace": 1}, False),
    ({"env": {"not": "prod"}}, {"env": "dev"}, True),
    ({"env": {"not": "prod"}}, {}, True),
    ({"env": {"not": {"in": ["prod"]}}}, {"env": "prod"}, False),
    ({"http.status": 500}, {"http": {"status": 500}}, True),  # dotted path, nested
    ({"http.status": 500}, {"http.status": 500}, True),  # dotted path, flattened key
    ({"http.status": 500}, {"http": "500"}, False),
    ({"any": [{"level": "error"}, {"n": {"gt": 5}}]}, {"level": "info", "n": 6}, True),
    ({"any": [{"level": "error"}, {"n": {"gt": 5}}]}, {"level": "info", "n": 5}, False),
    ({"service": "revel", "any": [{"level": "error"}]}, {"service": "crm", "level": "error"}, False),
    # Numeric strings: ASCII digits, optional sign, fraction and exponent; nothing else Python's float() takes.
    ({"n": {"gte": 10}}, {"n": "+10"}, True),
    ({"n": {"gte": 10}}, {"n": "010"}, True),  # leading zeros, as in zero-padded log fields
    ({"n": {"gte": 10}}, {"n": "1.5e1"}, True),
    ({"n": {"gte": 10}}, {"n": "1E+2"}, True),
    ({"n": {"lt": 0}}, {"n": "-0.5"}, True),
    ({"n": {"gte": 10}}, {"n": " 10 "}, False),  # no spaces
    ({"n": {"gte": 10}}, {"n": "10\n"}, False),
    ({"n": {"gte": 10}}, {"n": "1_0"}, False),  # no underscores
    ({"n": {"gte": 10}}, {"n": "١٠"}, False),  # Arabic-Indic digits
    ({"n": {"gte": 10}}, {"n": "１０"}, False),  # fullwidth digits
    ({"n": {"gte": 10}}, {"n": "infinity"}, False),
    ({"n": {"gte": 10}}, {"n": "1e999"}, False),  # digits, but beyond a finite float
    ({"n": {"gte": 10}}, {"n": "0x10"}, False),
    ({"n": {"gte": 10}}, {"n": "10."}, False),  # digits on both sides of a '.'
    ({"n": {"lt": 1}}, {"n": ".5"}, False),
    ({"status": 500}, {"status": " 500"}, False),  # equality reads numeric strings the same way
    ({"status": 500}, {"status": "5_00"}, False),
    ({"status": 500}, {"status": "+500"}, True),
]


@pytest.mark.parametrize(("spec", "record", "expected"), CASES)
def test_matcher_table(spec: dict[str, Any], record: dict[str, Any], expected: bool) -> None:
    """Each match spec gives the expected verdict on each record."""
    assert compile_match(spec)(record) is expected


@pytest.mark.parametrize(
    ("spec", "path"),
    [
        ({"m": {"regex": "(unclosed"}}, "match.m.regex"),
        ({"m": {"contain": "x"}}, "match.m.contain"),
        ({"m": {"gt": "many"}}, "match.m.gt"),
        ({"m": {"in": []}}, "match.m.in"),
        ({"m": ["a", "b"]}, "match.m"),
        ({"any": []}, "match.any"),
        ({"any": [{"m": {"exists": "yes"}}]}, "match.any[0].m.exists"),
        ({'say "hi"': 1}, 'match.say "hi"'),
        ({"n": float("inf")}, "match.n"),
        ({"n": {"in": [1, float("nan")]}}, "match.n.in"),
    ],
)
def test_bad_match_specs_name_the_offending_key(spec: dict[str, Any], path: str) -> None:
    """A broken matcher is rejected with the dotted path of the bad key."""
    with pytest.raises(MatchError) as info:
        compile_match(spec)
    assert info.value.path == path


def test_regex_uses_re2_so_catastrophic_patterns_stay_linear() -> None:
    """A pattern that backtracks exponentially in Python's re is linear under RE2."""
    predicate = compile_match({"message": {"regex": "(a+)+$"}})
    assert predicate({"message": "a" * 50_000 + "!"}) is False


BROKEN_EVERYWHERE: dict[str, Any] = {
    "y": [1, 2],
    "ok": "fine",
    "z": {"not": {}},
    "any": [{"a": {"gt": "many"}}, {"b": {"regex": "("}}],
    "w": {"contain": "x", "in": []},
    "v": {"not": {"exists": "yes"}},
}
BROKEN_PATHS = [
    "match.y",
    "match.z.not",
    "match.any[0].a.gt",
    "match.any[1].b.regex",
    "match.w.contain",
    "match.w.in",
    "match.v.not.exists",
]


def test_collecting_mode_reports_every_bad_matcher_in_order() -> None:
    """With an error list, compile_match appends every problem of the match map, nested ones included."""
    errors: list[MatchError] = []
    compile_match(BROKEN_EVERYWHERE, errors=errors)
    assert [e.path for e in errors] == BROKEN_PATHS


def test_without_an_error_list_the_first_problem_is_raised() -> None:
    """Callers that pass no list (codegen) still get the first problem raised."""
    with pytest.raises(MatchError) as info:
        compile_match(BROKEN_EVERYWHERE)
    assert info.value.path == "match.y"


def test_collecting_mode_compiles_a_valid_spec_unchanged() -> None:
    """A valid spec appends nothing and gives the same predicate as without a list."""
    errors: list[MatchError] = []
    predicate = compile_match({"level": "error", "n": {"not": {"gt": 5}}}, errors=errors)
    assert errors == []
    assert predicate({"level": "ERROR", "n": 3}) is True
    assert predicate({"level": "ERROR", "n": 6}) is False


def test_integers_beyond_float_range_are_not_numbers() -> None:
    """A record integer too big for a float never matches a numeric test, and never raises."""
    huge = 10**400
    assert as_number(huge) is None
    assert compile_match({"n": {"gte": 10}})({"n": huge}) is False
    assert compile_match({"n": 10})({"n": huge}) is False
    assert as_number(123456789012345678901234567890) == 1.2345678901234568e29  # big but finite: a number
