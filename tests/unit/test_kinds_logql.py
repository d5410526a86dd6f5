"""LogQL's quantile_over_time becomes the quantile kind, with its one difference stated."""

from __future__ import annotations

import pytest

from streamalert.rules.condition import parse_condition
from streamalert.rules.logql.errors import LogQLError
from streamalert.rules.logql.translate import translate


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
