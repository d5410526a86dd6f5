"""The ten LogQL rules of the Django app's Grafana document against their YAML twins in config/rules/revel.yaml.

The expressions are copied verbatim from the `Query` blocks of rules 1-10 of revel-grafana-alerting.md (the
seed document the shipped pack was translated from). Where the translation and the twin differ, the
difference is listed per rule below and applied explicitly; everything else must be equal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from streamalert.rules.logql import LINE_FIELD, translate

TWINS = Path(__file__).resolve().parents[2] / "config" / "rules" / "revel.yaml"

EXPRS = {
    "HighErrorRate": 'rate({service="revel", level="error"} |= "unhandled_exception" [5m]) > 0.1',
    "StripePaymentFailures": """sum(count_over_time(
  {service="revel"}
    |~ "stripe_payment_failed|stripe_refund_.*|stripe_session_unresolved_payment"
  [10m]
)) > 5
""",
    "HighAuthFailureRate": """sum(rate(
  {service="revel"}
    |~ "otp_verification_failed|password_reset_.*_failed|google_token_verification_failed"
  [5m]
)) > 1
""",
    "GDPRExportFailures": """count_over_time(
  {service="revel"} |= "gdpr_export_failed"
  [30m]
) > 0
""",
    "QuestionnaireEvaluationFailures": """sum(count_over_time(
  {service="revel"} |= "questionnaire_evaluation_task_failed"
  [15m]
)) > 3
""",
    "HighLLMTokenUsage": """sum(sum_over_time(
  {service="revel"}
    |= "questionnaire_llm_evaluation_completed"
    | json
    | unwrap tokens_used [1h]
)) > 1000000
""",
    "DatabaseErrors": """sum(count_over_time(
  {service="revel", level="error"}
    |~ "(?i)(database|connection|postgres|psycopg)"
  [5m]
)) > 10
""",
    "CeleryTaskFailures": """sum(rate(
  {service="revel"}
    |~ ".*_task_failed"
  [10m]
)) > 0.5
""",
    "MissingMandatoryQuestions": """sum(count_over_time(
  {service="revel"} |= "questionnaire_missing_mandatory_questions"
  [1h]
)) > 10
""",
    "BlockedAccountDeletions": """sum(count_over_time(
  {service="revel"} |= "account_deletion_blocked_owns_organizations"
  [24h]
)) > 5
""",
}

# The documented differences, per rule. "line": LogQL filters the whole raw line (`_line`), the twin searches
# only the message/event text (`message`), so a pattern found only in another field counts in Loki and not in
# the twin. "per_stream": no outer sum, so Loki alerts per stream; the translation gives one series (all
# selector labels are `=`), exact only if no other stream labels split the lines. "group_by_host": the twin
# alerts per database host by decision (revel.yaml), the Loki rule sums all streams into one series.
DIFFERENCES: dict[str, set[str]] = {
    "HighErrorRate": {"line", "per_stream"},
    "StripePaymentFailures": {"line"},
    "HighAuthFailureRate": {"line"},
    "GDPRExportFailures": {"line", "per_stream"},
    "QuestionnaireEvaluationFailures": {"line"},
    "HighLLMTokenUsage": {"line"},
    "DatabaseErrors": {"line", "group_by_host"},
    "CeleryTaskFailures": {"line"},
    "MissingMandatoryQuestions": {"line"},
    "BlockedAccountDeletions": {"line"},
}


def _twins() -> dict[str, dict[str, Any]]:
    rules = yaml.safe_load(TWINS.read_text(encoding="utf-8"))["rules"]
    return {r["name"]: r for r in rules}


def test_every_twin_has_an_expression() -> None:
    """The table covers exactly the ten rules of the shipped revel pack."""
    assert set(EXPRS) == set(_twins()) == set(DIFFERENCES)


@pytest.mark.parametrize("name", list(EXPRS))
def test_translation_equals_twin_but_for_listed_differences(name: str) -> None:
    """match/window/condition/group_by equal the YAML twin once the listed differences are applied."""
    twin = _twins()[name]
    result = translate(EXPRS[name])
    differences = DIFFERENCES[name]
    ours = {k: result.rule[k] for k in ("match", "window", "condition", "group_by") if k in result.rule}
    theirs = {k: twin[k] for k in ("match", "window", "condition", "group_by") if k in twin}

    assert "line" in differences  # every Grafana rule filters lines
    line_test = ours["match"].pop(LINE_FIELD)
    assert theirs["match"].pop("message") == line_test
    assert [n.feature for n in result.needs] == [LINE_FIELD]

    if "group_by_host" in differences:
        assert theirs.pop("group_by") == ["host"]
    assert any("per stream" in note for note in result.notes) == ("per_stream" in differences)
    assert ours == theirs
