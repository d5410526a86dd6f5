"""Matchers: a table of match specs, records and the expected verdict."""

from __future__ import annotations

from typing import Any

import pytest

from streamalert.rules.matchers import MatchError, compile_match

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
