"""The fast rule-file parser gives exactly what yaml.safe_load gives: the same values, the same errors."""

from __future__ import annotations

import pytest
import yaml

from streamalert.config import yaml_load

DOCUMENTS = [
    "rules:\n  - name: a\n    match: {level: error, n: {gte: 10}}\n    labels: {severity: critical}\n",
    "a: yes\nb: no\nc: on\nd: off\ne: ~\nf: null\ng: 0o17\nh: 017\ni: 0x1F\nj: 1_000\nk: 1e3\nl: .inf\nm: -.INF\n",
    "a: 2026-12-02\nb: 2026-12-02T10:00:00Z\nc: '2026-12-02'\nd: 12:30:00\ne: 1:20\n",  # dates, sexagesimal
    "a: 'quoted: yes'\nb: \"tab\\there\"\nc: |\n  block\n  text\nd: >\n  folded\n  text\ne: ''\nf:\n",
    "1: one\n2.5: two\ntrue: three\nnull: four\n? complex\n: five\n",  # non-string scalar keys
    "dup: 1\ndup: 2\n",  # the later value wins, as in PyYAML
    "base: &b {severity: warning}\nrule: {<<: *b, team: x}\n",  # anchors and merge keys (step 2)
    "a: &x [1, 2]\nb: *x\n",  # aliases share one object
    "a: !!str 10\nb: !!float 1\nc: !!set {x, y}\nd: !!binary aGk=\n",  # explicit tags
    "? [a, b]\n: 1\n",  # a list as a key: PyYAML's own error
    "",
    "# only a comment\n",
    "just a string",
    "- 1\n- [2, [3, {a: b}]]\n",
    "a: !!python/object:os.system x\n",  # an unsafe tag: refused as safe_load refuses it
    "a: b\n---\nc: d\n",  # two documents
    "a: [1, 2\n",  # unclosed flow sequence
    "a: b\n c: d\n",  # bad indentation
    "\ta: b\n",  # a tab
    "a: *missing\n",  # an undefined alias
    "a: 'é ✓ \U0001f600'\n",
    "a:\n  - b: 1\n    c: [x, {y: [z, 1.5, ~]}]\n  - {}\n  - []\n  - d\ne: f\n",  # nesting: back to the outer map
    "{a: 1, a: 2, b: 3}\n",  # a duplicate key keeps its first place
    "<<: {a: 1}\nb: 2\n",  # a merge key without an alias
    "a: =\n",  # a value key: no constructor, PyYAML's error
]


def _outcome(load: object, text: str) -> tuple[str, object]:
    try:
        return ("value", load(text))  # type: ignore[operator]
    except yaml.YAMLError as exc:
        return ("error", f"{type(exc).__name__}: {exc}")
    except Exception as exc:  # PyYAML raises TypeError for an unhashable key
        return ("error", f"{type(exc).__name__}: {exc}")


@pytest.mark.parametrize("text", DOCUMENTS)
def test_same_values_and_errors_as_safe_load(text: str) -> None:
    """Each document loads to an equal value (and type), or fails with PyYAML's exact error message."""
    expected = _outcome(yaml.safe_load, text)
    got = _outcome(yaml_load.safe_load, text)
    assert got == expected
    if expected[0] == "value":
        assert repr(got[1]) == repr(expected[1])  # same types too: 1 is not 1.0 nor True


def test_aliases_still_share_one_object() -> None:
    """An alias gives the anchored object itself, as safe_load does (not a copy)."""
    loaded = yaml_load.safe_load("a: &x [1, 2]\nb: *x\n")
    assert loaded["a"] is loaded["b"]


def test_plain_rule_files_take_the_event_path() -> None:
    """A rule file without anchors or tags is built from events, not handed to PyYAML's composer."""
    text = "rules:\n  - name: a\n    match: {level: error, 'n': 5, ok: true, x: null}\n"
    assert yaml_load._from_events(yaml.CSafeLoader, text) == yaml.safe_load(text)
    with pytest.raises(yaml_load._Unusual):
        yaml_load._from_events(yaml.CSafeLoader, "a: &x 1\nb: *x\n")
