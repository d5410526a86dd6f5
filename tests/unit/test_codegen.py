"""The generated multi-rule matcher agrees with the reference closures on every record."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from streamalert.config.rules import load_rules
from streamalert.rules.codegen import CompiledRules, compile_rules, literal_guard
from streamalert.rules.matchers import compile_match
from tests.unit.test_matchers import CASES

ROOT = Path(__file__).resolve().parents[2]
PACK = load_rules(ROOT / "config" / "rules")
SPECS: list[dict[str, Any]] = [rule.match_spec for rule in PACK] + [spec for spec, _, _ in CASES]
REFERENCE = [compile_match(spec) for spec in SPECS]
COMPILED = compile_rules(SPECS)


def generated(record: dict[str, Any], compiled: CompiledRules = COMPILED) -> list[int]:
    """Run the hot path on a record: encode it as a log line, decode it into a Struct, match."""
    return list(compiled.match(compiled.decode(orjson.dumps(record))))


_words = st.sampled_from(
    [
        "error",
        "ERROR",
        "warning",
        "info",
        "crm",
        "revel",
        "celery_beat",
        "fail_open",
        "db-1",
        "10",
        "9",
        "rate_limiter_backend_error",
        "throttle_backend_error",
        "Error reserving rate limit token (Redis)",
        "Stuck PROCESSING campaigns detected",
        "Campaign paused: too many transient errors",
        "stripe_refund_created",
        "stripe_payment_failed",
        "x_task_failed",
        "Database timeout",
        "PSYCOPG",
        "unhandled_exception",
        "questionnaire_llm_evaluation_completed",
        "otp_verification_failed",
        "",
    ]
)
_values = st.one_of(_words, st.integers(-5, 20), st.floats(allow_nan=True), st.booleans(), st.none())
_keys = st.sampled_from(
    [
        "level",
        "message",
        "event",
        "msg",
        "app",
        "service",
        "error_type",
        "policy",
        "consecutive_errors",
        "container",
        "host",
        "status",
        "n",
        "env",
        "trace",
        "ok",
        "tokens_used",
    ]
)
_records = st.dictionaries(_keys, _values, max_size=8).flatmap(
    lambda base: st.just(base) | st.just({**base, "http": {"status": 500}})
)


@settings(max_examples=400, deadline=None)
@given(_records)
def test_generated_matcher_equals_reference(record: dict[str, Any]) -> None:
    """For any record, the generated function returns exactly the rules whose closures hold."""
    expected = [i for i, predicate in enumerate(REFERENCE) if predicate(record)]
    assert generated(record) == expected


@pytest.mark.parametrize(("spec", "record", "expected"), CASES)
def test_generated_matcher_on_the_matcher_table(spec: dict[str, Any], record: dict[str, Any], expected: bool) -> None:
    """The generated code gives the table's verdict for each single spec."""
    assert generated(record, compile_rules([spec])) == ([0] if expected else [])


@pytest.mark.parametrize(
    ("pattern", "guard"),
    [
        (
            "stripe_payment_failed|stripe_refund_.*|stripe_session",
            ["stripe_payment_failed", "stripe_refund_", "stripe_session"],
        ),
        (".*_task_failed", ["_task_failed"]),
        ("password_reset_.*_failed", ["password_reset_"]),
        ("abc*d", ["ab"]),
        ("(?i)database", None),
        ("(a|b)c", None),
        ("^start", None),
        ("a\\.b", None),
        ("x|.*", None),
    ],
)
def test_literal_guard_is_conservative(pattern: str, guard: list[str] | None) -> None:
    """Guards are only derived from plain alternations; anything unusual means 'always run the regex'."""
    assert literal_guard(pattern) == guard


def test_rule_values_cannot_inject_code() -> None:
    """Field names and values with quotes and newlines are data, not source."""
    spec = {"a') or __import__('os') #": "x'); raise SystemExit('\n", "message": {"contains": "'\"\\"}}
    compiled = compile_rules([spec])
    assert generated({"a') or __import__('os') #": "x'); raise SystemExit('\n", "message": "'\"\\"}, compiled) == [0]
    assert generated({}, compiled) == []


MANY = SPECS * 5  # every indexed value is now the anchor of several rules, in several positions
MANY_REFERENCE = REFERENCE * 5
MANY_COMPILED = compile_rules(MANY)


@settings(max_examples=300, deadline=None)
@given(_records)
def test_repeated_rules_are_each_reported(record: dict[str, Any]) -> None:
    """The pack and the table five times over: each copy is reported, in ascending order, like the closures."""
    expected = [i for i, predicate in enumerate(MANY_REFERENCE) if predicate(record)]
    assert generated(record, MANY_COMPILED) == expected
