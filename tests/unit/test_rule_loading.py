"""Rule loading: every problem of a file is collected, each located by file, rule and field."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from streamalert.config.rules import Rule, RuleLoadError, label_value, load_rules
from streamalert.state.base import Store
from streamalert.testing import replay_lines, rules_from_yaml


def problems_of(tmp_path: Path, text: str) -> list[str]:
    """The problems load_rules reports for `text`, as `check` prints them, with the file name cut off."""
    path = tmp_path / "rules.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(RuleLoadError) as info:
        load_rules(path)
    prefix = f"{path}: "
    lines = [str(p) for p in info.value.problems]
    assert all(line.startswith(prefix) for line in lines), lines
    return [line.removeprefix(prefix) for line in lines]


GOOD = """
  - name: good
    match: {level: error}
    window: 1m
    condition: count >= 1
"""


def test_non_map_items_are_reported_by_index_and_hide_no_other_rule(tmp_path: Path) -> None:
    """`- 42` and `- [a]` in rules: are one problem each, named by index; the other rules are still checked."""
    text = f"""
rules:
  - 42
  - [a]
  - name: bad_window
    match: {{level: error}}
    window: 5 minutes
    condition: count >= 1
  - null
{GOOD}
"""
    problems = problems_of(tmp_path, text)
    assert problems[0] == "rules[0]: must be a map of rule fields, got a number (42)"
    assert problems[1] == "rules[1]: must be a map of rule fields, got a list"
    assert problems[2].startswith("rule 'bad_window': window: ")
    assert problems[3] == "rules[3]: must be a map of rule fields, got null"
    assert len(problems) == 4


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("rules: 5\n", "must be a map with a `rules:` list, got `rules:` holding a number (5)"),
        ("rules: {name: x}\n", "must be a map with a `rules:` list, got `rules:` holding a map"),
        ("{}\n", "rules: missing: a rule file holds a `rules:` list"),
    ],
)
def test_missing_or_non_list_rules_is_one_file_level_problem(tmp_path: Path, text: str, expected: str) -> None:
    """Without a list under `rules:` the file has exactly one problem, at file level."""
    assert problems_of(tmp_path, text) == [expected]


SHAPE_AND_MEANING = """
rules:
  - name: many_faults
    match: {y: [1, 2], level: error}
    window: 5 minutes
    condition: count >> 1
    for: 3
    group_by: [host, host]
    severity: critical
    labels: {sev: 3, host: a}
    annotations: {summary: "{{ labels.nope }} on {{ labels.host }}", bad: "{{ value * 2 }}", n: 7}
"""


def test_shape_errors_do_not_skip_the_semantic_checks(tmp_path: Path) -> None:
    """Pydantic errors (unknown key, label type, field type) and every semantic problem are all reported."""
    problems = problems_of(tmp_path, SHAPE_AND_MEANING)
    prefix = "rule 'many_faults': "
    got = {p.removeprefix(prefix).split(":", 1)[0] for p in problems}
    assert got == {
        "for",  # int instead of a duration string (pydantic)
        "severity",  # unknown key (pydantic)
        "labels.sev",  # non-string label value (pydantic)
        "annotations.n",  # non-string annotation (pydantic)
        "match.y",  # matcher
        "window",  # duration
        "condition",  # condition syntax
        "annotations.summary",  # unknown label
        "annotations.bad",  # template syntax
        "labels",  # host both a label and a group_by field
        "group_by",  # repeated field
    }, problems
    assert f"{prefix}severity: unknown key" in problems
    assert f"{prefix}annotations.summary: unknown label 'nope' (known: sev, host)" in problems


def test_absence_rule_checks_survive_shape_errors(tmp_path: Path) -> None:
    """With a pydantic error elsewhere, absent_for, expect and window-with-absent_for are still checked."""
    text = """
rules:
  - name: heartbeat
    match: {container: beat}
    absent_for: 5 minutes
    window: 1m
    group_by: [container]
    expect: [{host: a}]
    labels: {severity: [high]}
"""
    problems = problems_of(tmp_path, text)
    assert len(problems) == 4, problems
    assert problems[0] == "rule 'heartbeat': labels.severity: Input should be a valid string"
    assert problems[1] == (
        "rule 'heartbeat': window: not allowed with absent_for (an absence rule has no window or condition)"
    )
    assert problems[2].startswith("rule 'heartbeat': absent_for: ")
    assert problems[3] == "rule 'heartbeat': expect[0]: keys ['host'] must be exactly group_by ['container']"


def test_a_field_of_the_wrong_type_is_reported_once(tmp_path: Path) -> None:
    """absent_for: 5 is a type error, and still makes an absence rule: no 'window required' on top."""
    text = """
rules:
  - name: heartbeat
    match: {container: beat}
    absent_for: 5
"""
    assert problems_of(tmp_path, text) == ["rule 'heartbeat': absent_for: Input should be a valid string"]


def test_every_bad_matcher_of_a_rule_is_reported(tmp_path: Path) -> None:
    """match: {y: [1,2], z: {not: {}}} reports both y and z.not, not only the first."""
    text = """
rules:
  - name: two_bad_matchers
    match: {y: [1, 2], z: {not: {}}}
    window: 1m
    condition: count >= 1
"""
    assert problems_of(tmp_path, text) == [
        "rule 'two_bad_matchers': match.y: a list is not a matcher; use {in: [...]} for a set of values",
        "rule 'two_bad_matchers': match.z.not: empty matcher map",
    ]


@pytest.mark.parametrize(
    ("extra", "problem"),
    [
        (
            'labels: {severity: critical}\n    annotations: {summary: "{{ labels.sev }}"}',
            "annotations.summary: unknown label 'sev' (known: severity, host)",
        ),
        (
            'annotations: {summary: "{{ $labels.severity }}"}',
            "annotations.summary: unknown label 'severity' (known: host)",
        ),
        (
            'labels: {}\n    annotations: {summary: "{{ labels.host }} {{ labels.port }} {{ labels.x.y }}"}',
            "annotations.summary: unknown label 'port' (known: host)",
        ),
    ],
)
def test_templates_may_only_name_existing_labels(tmp_path: Path, extra: str, problem: str) -> None:
    """{{ labels.NAME }} must name a key of labels or a group_by field; the message lists the known ones."""
    text = f"""
rules:
  - name: templated
    match: {{level: error}}
    window: 1m
    condition: count >= 1
    group_by: [host]
    {extra}
"""
    problems = problems_of(tmp_path, text)
    assert f"rule 'templated': {problem}" == problems[0]


def test_templates_naming_labels_and_group_by_fields_load(tmp_path: Path) -> None:
    """Labels from `labels` and from dotted group_by fields are both known to templates."""
    rules = rules_from_yaml("""
rules:
  - name: templated
    match: {level: error}
    window: 1m
    condition: count >= 1
    group_by: [http.status]
    labels: {severity: page}
    annotations: {summary: "{{ labels.severity }} {{ $labels.http.status }} {{ value }} {{ user.id }}"}
""")
    assert [r.name for r in rules] == ["templated"]


def test_unknown_keys_keep_their_spelling_and_for_underscore_is_unknown(tmp_path: Path) -> None:
    """`before_x` is reported as itself and `for_` is not an alias of `for`."""
    text = """
rules:
  - name: typos
    match: {level: error}
    window: 1m
    condition: count >= 1
    before_x: 1
    for_: 1m
"""
    assert problems_of(tmp_path, text) == [
        "rule 'typos': before_x: unknown key",
        "rule 'typos': for_: unknown key",
    ]


def test_duplicate_names_are_reported_even_for_broken_rules(tmp_path: Path) -> None:
    """A second rule with a taken name is a problem whether or not the rule has other problems."""
    text = f"""
rules:
{GOOD}
  - name: good
    match: {{level: error}}
    window: 5 minutes
    condition: count >= 1
"""
    problems = problems_of(tmp_path, text)
    assert problems[0].startswith("rule 'good': window: ")
    assert problems[1] == f"rule 'good': name: duplicate rule name (first defined in {tmp_path / 'rules.yaml'})"
    assert len(problems) == 2


def test_a_rule_without_a_name_is_named_by_its_index(tmp_path: Path) -> None:
    """A nameless rule's problems are located as rule 'rules[N]' (0-based, as the non-map items are)."""
    text = f"""
rules:
{GOOD}
  - match: {{level: error}}
    window: 1m
    condition: count >>= 1
"""
    problems = problems_of(tmp_path, text)
    assert len(problems) == 2, problems
    assert problems[0] == "rule 'rules[1]': name: Field required"
    assert problems[1].startswith("rule 'rules[1]': condition: ")


def test_rules_carry_the_match_spec_and_no_compiled_predicate() -> None:
    """Rule has no `predicate` field: the engine compiles `match_spec` (rules/codegen.py)."""
    names = {f.name for f in dataclasses.fields(Rule)}
    assert "predicate" not in names
    assert "match_spec" in names


def test_huge_integers_in_rule_files_load(tmp_path: Path) -> None:
    """Integers beyond 64 bits in match and expect load (orjson alone refuses them) instead of crashing."""
    rules = rules_from_yaml("""
rules:
  - name: huge_match
    match: {account: 123456789012345678901234567890}
    window: 1m
    condition: count >= 1
  - name: huge_expect
    match: {container: beat}
    absent_for: 5m
    group_by: [account]
    expect: [{account: 123456789012345678901234567890}]
""")
    assert rules[1].expect == (("123456789012345678901234567890",),)
    assert len({r.digest for r in rules}) == 2


def test_label_values_spell_json_scalars_and_never_raise() -> None:
    """Label values: ints in decimal at any size, floats and objects as JSON, even beyond orjson's limits."""
    assert label_value(123456789012345678901234567890) == "123456789012345678901234567890"
    assert label_value(-(2**64)) == str(-(2**64))
    assert label_value(42) == "42"
    assert label_value(1.5) == "1.5"
    assert label_value(True) == "true"
    assert label_value(None) == ""
    assert label_value("x") == "x"
    assert label_value({"b": 1, "a": [2]}) == '{"a":[2],"b":1}'
    huge = {"b": "é", "a": 10**30}
    assert label_value(huge) == '{"a":1000000000000000000000000000000,"b":"é"}'


async def test_group_by_a_huge_integer_gives_its_decimal_label(store: Store) -> None:
    """A group_by field holding an integer beyond 64 bits is labelled with its decimal spelling."""
    rules = rules_from_yaml("""
rules:
  - name: by_account
    match: {level: error}
    window: 1m
    condition: count >= 1
    group_by: [account]
""")
    huge = 123456789012345678901234567890
    line = b'{"timestamp": "2024-01-01T00:00:00Z", "level": "error", "account": %d}' % huge
    sink, _ = await replay_lines(rules, [line], store)
    assert sink.transitions, "the rule should fire"
    assert sink.transitions[0].labels == (("account", str(huge)),)
