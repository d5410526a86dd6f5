"""Rule files with the SLO / anomaly kinds: the conditions parse, and misuse is a located, clear problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from streamalert.config.rules import load_rules
from streamalert.rules.condition import parse_condition

from .test_rule_loading import problems_of


@pytest.mark.parametrize(
    ("text", "aggregate", "field", "quantile"),
    [
        ("ratio > 0.05", "ratio", None, None),
        ("p99(wait_s) < 300", "quantile", "wait_s", 0.99),
        ("p50( ms )>=1", "quantile", "ms", 0.5),
        ("quantile(0.9, latency.ms) > 2", "quantile", "latency.ms", 0.9),
        ("quantile(1, x) > 2", "quantile", "x", 1.0),
        ("distinct(user_id) > 100", "distinct", "user_id", None),
        ("new(error_type) >= 1", "new", "error_type", None),
        ("count > 3 * count offset 1h", "change", None, None),
    ],
)
def test_kind_conditions_parse(text: str, aggregate: str, field: str | None, quantile: float | None) -> None:
    """Each spelling gives its aggregate, field and quantile."""
    condition = parse_condition(text)
    assert (condition.aggregate, condition.field, condition.quantile) == (aggregate, field, quantile)


@pytest.mark.parametrize(
    ("text", "hint"),
    [
        ("ratio(x) > 0.1", "ratio takes no field"),
        ("distinct > 3", "distinct needs a field"),
        ("quantile(x) > 3", "quantile needs a Q"),
        ("quantile(0, x) > 3", "must be in (0, 1]"),
        ("sum(0.5, x) > 3", "only quantile(Q, FIELD) takes a Q"),
        ("p42(x) > 3", "expected"),
        ("count > 3 * count offset soon", "invalid duration 'soon'"),
        ("count > 3 * count offset 0", "the offset must be greater than zero"),
    ],
)
def test_bad_kind_conditions_say_why(text: str, hint: str) -> None:
    """A wrong condition names what is wrong."""
    with pytest.raises(ValueError, match="invalid condition") as info:
        parse_condition(text)
    assert hint in str(info.value)


def test_ratio_and_keep_firing_for_misuse_is_reported(tmp_path: Path) -> None:
    """A ratio condition without `ratio:`, `ratio:` with another condition or a bad `where`, keep_firing_for
    on an absence rule or not a duration, flapping with no changes or no duration, new(F) without lookback,
    lookback and min_base on other kinds: each a problem at its field."""
    text = """
rules:
  - {name: a, match: {x: 1}, window: 1m, condition: ratio > 0.1}
  - {name: b, match: {x: 1}, window: 1m, condition: count > 1, ratio: {where: {y: 2}}}
  - {name: c, match: {x: 1}, window: 1m, condition: ratio > 0.1, ratio: {where: {y: {regex: "("}}}}
  - {name: d, match: {x: 1}, absent_for: 1m, keep_firing_for: 5m}
  - {name: e, match: {x: 1}, window: 1m, condition: count > 1, keep_firing_for: soon}
  - {name: f, match: {x: 1}, window: 1m, condition: count > 1, flapping: {changes: 0, within: 1m}}
  - {name: g, match: {x: 1}, window: 1m, condition: count > 1, flapping: {changes: 2, within: soon}}
  - {name: h, match: {x: 1}, window: 1m, condition: new(t) > 0}
  - {name: i, match: {x: 1}, window: 1m, condition: count > 0, lookback: 1h, min_base: 3}
"""
    problems = problems_of(tmp_path, text)
    assert problems[0].startswith("rule 'a': ratio: required by a ratio condition")
    assert problems[1] == "rule 'b': ratio: only allowed with a `ratio OP N` condition"
    assert problems[2].startswith("rule 'c': ratio.where.y.regex:")
    assert problems[3].startswith("rule 'd': keep_firing_for: not allowed with absent_for")
    assert problems[4].startswith("rule 'e': keep_firing_for: invalid duration 'soon'")
    assert problems[5].startswith("rule 'f': flapping.changes: Input should be greater than or equal to 1")
    assert problems[6].startswith("rule 'g': flapping.within: invalid duration 'soon'")
    assert problems[7] == "rule 'h': lookback: required by new(FIELD), e.g. lookback: 7d"
    assert problems[8] == "rule 'i': lookback: only with new(FIELD)"
    assert problems[9] == "rule 'i': min_base: only with `count OP K * count offset D`"
    assert len(problems) == 10


def test_keep_firing_for_and_ratio_change_the_digest_only_when_set(tmp_path: Path) -> None:
    """Stored state is tied to the digest: adding keep_firing_for changes it, a rule without it keeps its old one."""
    path = tmp_path / "r.yaml"
    plain = "rules:\n- {name: a, match: {x: 1}, window: 1m, condition: count > 1}\n"
    path.write_text(plain)
    before = load_rules(path)[0].digest
    path.write_text(plain.replace("}\n", ", keep_firing_for: 5m}\n"))
    assert load_rules(path)[0].digest != before
    assert before == "48ba5761ce8e"  # its digest before the kinds existed (commit d157218)
