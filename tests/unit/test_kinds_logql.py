"""LogQL's quantile_over_time and ratios of counts become the quantile and ratio kinds, or are refused."""

from __future__ import annotations

import re

import pytest
import yaml

from streamalert.rules.condition import parse_condition
from streamalert.rules.logql.errors import LogQLError
from streamalert.rules.logql.translate import translate
from streamalert.testing import rules_from_yaml


def test_quantile_over_time_translates_to_a_loadable_quantile_condition() -> None:
    """`quantile_over_time(0.99, ... | unwrap F [1h]) by (app) > 300` is `quantile(0.99, F) > 300` per app."""
    done = translate('quantile_over_time(0.99, {app="crm"} | json | unwrap ready_to_send_s [1h]) by (app) > 300')
    assert done.rule["condition"] == "quantile(0.99, ready_to_send_s) > 300"
    assert done.rule["window"] == "1h"
    assert done.rule["group_by"] == ["app"]
    assert done.loadable
    assert "nearest-rank" in done.notes[0]
    condition = parse_condition(done.rule["condition"])
    assert (condition.aggregate, condition.quantile, condition.field) == ("quantile", 0.99, "ready_to_send_s")


def test_quantile_outside_zero_to_one_is_refused_at_its_position() -> None:
    """A quantile of 1.5 is no quantile: refused, pointing at the number."""
    with pytest.raises(LogQLError, match=r"the quantile 1.5 must be in \(0, 1\]") as info:
        translate('quantile_over_time(1.5, {app="crm"} | unwrap x [5m]) > 1')
    assert (info.value.line, info.value.column) == (1, 20)


def test_a_ratio_of_counts_becomes_the_ratio_kind_and_loads() -> None:
    """sum(count_over_time(B + filters)) / sum(count_over_time(B)) > x: the base is B, `where` the extra
    filters; the rule dict loads and replays like a hand-written ratio rule."""
    done = translate(
        'sum by (tenant) (count_over_time({app="crm"} | json | message="Campaign finished" | status="failed" [5m]))'
        ' / sum by (tenant) (count_over_time({app="crm"} | json | message="Campaign finished" [5m])) > 0.05'
    )
    assert done.rule == {
        "match": {"app": "crm", "message": "Campaign finished"},
        "window": "5m",
        "group_by": ["tenant"],
        "ratio": {"where": {"status": "failed"}},
        "condition": "ratio > 0.05",
    }
    assert done.loadable
    rules = rules_from_yaml(yaml.safe_dump({"rules": [{"name": "failed_share", **done.rule}]}))
    assert rules[0].ratio_where == {"status": "failed"}


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ('sum(count_over_time({a="b"} |= "x" [5m])) / sum(count_over_time({a="b"} [1m])) > 0.1', "exact only when"),
        ('sum(count_over_time({a="c"} [5m])) / sum(count_over_time({a="b"} [5m])) > 0.1', "exact only when"),
        ('sum(count_over_time({a="b"} [5m])) / sum(count_over_time({a="b"} [5m])) > 0.1', "the same query"),
        ('sum(rate({a="b"} [5m])) / sum(count_over_time({a="b"} [5m])) > 0.1', "between two count_over_time"),
        ('count_over_time({a="b"} [5m]) / 2 > 0.1', "arithmetic (`/`) is not supported"),
    ],
)
def test_ratios_that_are_not_a_share_of_the_same_lines_are_refused(expr: str, message: str) -> None:
    """Other ranges, other selectors, the same query twice, rates, or division by a number: refused."""
    with pytest.raises(LogQLError, match=re.escape(message)):
        translate(expr)
