"""The rule index and the RE2 pattern sets give exactly the reference closures' verdicts, for whole rule sets."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
import re2
from hypothesis import given, settings
from hypothesis import strategies as st

from streamalert.decode import decode_record
from streamalert.rules.codegen import compile_rules
from streamalert.rules.index import choose_anchor
from streamalert.rules.matchers import MatchError, compile_match, compile_value_test
from streamalert.rules.patterns import PatternSet, literal_pattern

# Values shared by rules and records, so that indexed values overlap a lot: strings that differ only in
# case, numeric strings, numbers equal as floats, booleans next to 1 and 0, null.
STRINGS = ["error", "ERROR", "Error", "warning", "crm", "revel", "500", "10", "10.0", "a.b", "x y", "é", ""]
STRINGS += ["payment 12 failed", "Payment 12 FAILED for order 7", "queue q1 is full", "(x)", "line\nbreak"]
SCALARS: list[Any] = [*STRINGS, 500, 10, 10.0, -1, 0, 1, 2.5, True, False, None]
FIELDS = ["level", "message", "event", "service", "error_type", "status", "http.status", "env", "n"]
NEEDLES = ["rr", "error", "ERR", "a.b", "(", "12 f", "é", " ", "\n", "5"]
PATTERNS = ["^err", "(?i)error", "[0-9]+ failed", "a\\.b", "x|y", "^$", "rev.*l", "^5", "(?i)q[0-9] IS", "\\pL$"]

_scalar = st.sampled_from(SCALARS)
_simple = st.one_of(
    _scalar,
    st.lists(_scalar, min_size=1, max_size=3).map(lambda items: {"in": items}),
    st.sampled_from(NEEDLES).map(lambda needle: {"contains": needle}),
    st.sampled_from(PATTERNS).map(lambda pattern: {"regex": pattern}),
    st.tuples(st.sampled_from(["gt", "gte", "lt", "lte"]), st.sampled_from([0, 1, 10, 499.5, 500])).map(
        lambda op: {op[0]: op[1]}
    ),
    st.booleans().map(lambda present: {"exists": present}),
)
_test = st.one_of(
    _simple,
    _simple.map(lambda inner: {"not": inner}),
    st.sampled_from([{"gte": 1, "lt": 600}, {"contains": "e", "not": "error"}, {"in": ["crm", 500], "regex": "^c"}]),
)
_conjunction = st.dictionaries(st.sampled_from(FIELDS), _test, min_size=1, max_size=3)
_spec = st.one_of(
    _conjunction,
    st.tuples(_conjunction, st.lists(_conjunction, min_size=1, max_size=3)).map(lambda p: {**p[0], "any": p[1]}),
    st.lists(_conjunction, min_size=1, max_size=3).map(lambda alternatives: {"any": alternatives}),
)
_record_value = st.one_of(
    _scalar, st.just({"status": 500}), st.just([1, "error"]), st.just({}), st.integers(-3, 600), st.floats(-1, 600)
)
_record_keys = st.sampled_from(["level", "message", "event", "msg", "service", "error_type", "status", "env", "n"])
_records = st.dictionaries(_record_keys, _record_value, max_size=7).flatmap(
    lambda base: st.sampled_from(
        [base, {**base, "http": {"status": 500}}, {**base, "http": {"status": "500"}}, {**base, "http.status": 10}]
    )
)


def agree(specs: list[dict[str, Any]], records: list[dict[str, Any]]) -> None:
    """The compiled matcher lists exactly the rules whose reference closures hold, record by record."""
    compiled = compile_rules(specs)
    reference = [compile_match(spec) for spec in specs]
    for record in records:
        line = orjson.dumps(record)
        fields = decode_record(line)  # what the reference sees: the record as JSON gives it back
        expected = [i for i, predicate in enumerate(reference) if predicate(fields)]
        assert list(compiled.match(compiled.decode(line))) == expected, (record, specs)


@settings(max_examples=300, deadline=None)
@given(st.lists(_spec, min_size=1, max_size=30), st.lists(_records, min_size=1, max_size=15))
def test_random_rule_sets_agree_with_the_reference(specs: list[dict[str, Any]], records: list[Any]) -> None:
    """Any set of rules (overlapping values, case-insensitive level, contains/regex sets, any:, not:) agrees."""
    agree(specs, records)


def _big_rule_set() -> list[dict[str, Any]]:
    """400 rules whose indexed values collide: each value is the anchor of many rules, of several kinds."""
    specs: list[dict[str, Any]] = []
    for i in range(400):
        value = SCALARS[i % len(SCALARS)]
        other = STRINGS[(i * 7) % len(STRINGS)]
        shape = i % 8
        if shape == 0:
            specs.append({"service": value, "level": other})
        elif shape == 1:
            specs.append({"level": {"in": [other, value]}, "status": {"gte": i % 600}})
        elif shape == 2:
            specs.append({"message": {"contains": NEEDLES[i % len(NEEDLES)]}, "env": {"not": value}})
        elif shape == 3:
            specs.append({"message": {"regex": PATTERNS[i % len(PATTERNS)]}, "level": value})
        elif shape == 4:
            specs.append({"error_type": {"regex": PATTERNS[i % len(PATTERNS)]}, "http.status": value})
        elif shape == 5:
            specs.append({"any": [{"status": value}, {"event": {"contains": NEEDLES[i % len(NEEDLES)]}}]})
        elif shape == 6:
            specs.append({"n": {"gt": i % 11}, "env": {"exists": i % 2 == 0}})
        else:
            specs.append({"message": value, "service": {"in": [value, other, 500]}})
    return specs


BIG = _big_rule_set()
BIG_COMPILED = compile_rules(BIG)
BIG_REFERENCE = [compile_match(spec) for spec in BIG]


@settings(max_examples=500, deadline=None)
@given(_records)
def test_a_large_rule_set_with_colliding_values_agrees(record: dict[str, Any]) -> None:
    """400 rules sharing their indexed values: every record gets exactly the reference's rule list."""
    line = orjson.dumps(record)
    fields = decode_record(line)
    expected = [i for i, predicate in enumerate(BIG_REFERENCE) if predicate(fields)]
    assert list(BIG_COMPILED.match(BIG_COMPILED.decode(line))) == expected


def test_repeated_values_are_answered_from_the_cache_the_same_way() -> None:
    """The same record twice (the second time from the per-value cache) gets the same list, fixed or varied."""
    records = [{"message": m, "level": lv} for m in STRINGS for lv in ("error", "WARNING")]
    records += [{"event": f"payment {n} failed", "level": "error"} for n in range(50)]
    agree(BIG, records + records)


@pytest.mark.parametrize(
    ("spec", "entry", "exact"),
    [
        ({"level": "error", "error_type": "x"}, "error_type", True),  # level comes after other equalities
        ({"level": "error", "message": {"regex": "boom"}}, "message", True),
        ({"level": {"in": ["error", "critical"]}, "n": {"gt": 5}}, "level", True),
        ({"path": {"contains": "/api/", "not": {"contains": "/health"}}}, "path", False),
        ({"any": [{"a": 1}, {"message": {"contains": "x"}}]}, "any", False),
    ],
)
def test_anchor_choice(spec: dict[str, Any], entry: str, exact: bool) -> None:
    """Each rule is reached through its most selective entry that a lookup can decide."""
    anchor = choose_anchor(spec)
    assert anchor is not None
    assert (anchor.entry, anchor.exact) == (entry, exact)


@pytest.mark.parametrize(
    "spec",
    [
        {"n": {"gt": 5}},
        {"trace": {"exists": True}},
        {"env": {"not": "prod"}},
        {"level": {"contains": "err"}},  # case-insensitive contains: not an RE2 literal
        {"any": [{"a": 1}, {"n": {"lt": 0}}]},  # one alternative without an anchor
    ],
)
def test_rules_without_a_lookup_stay_residual(spec: dict[str, Any]) -> None:
    """Rules no lookup can decide have no anchor (they run on every record) and still match correctly."""
    assert choose_anchor(spec) is None
    agree([spec], [{"n": 6, "trace": None, "env": "dev", "level": "ERROR", "a": 1}, {"n": -1}, {}])


def test_bad_specs_raise_the_reference_error() -> None:
    """compile_rules refuses a broken matcher with the same MatchError as compile_match, anchored or not."""
    for spec in ({"message": {"regex": "(unclosed"}}, {"n": {"in": [1, float("nan")]}}):
        with pytest.raises(MatchError) as reference:
            compile_match(spec)
        with pytest.raises(MatchError) as compiled:
            compile_rules([{"level": "error"}, spec])
        assert compiled.value.path == reference.value.path


@pytest.mark.parametrize("needle", ["a.b", "(x)", "[", "\\", "^$", "line\nbreak", "tab\there", "\x00", "é.", "*+?{}|"])
def test_literal_patterns_match_exactly_the_substring(needle: str) -> None:
    """A contains needle becomes an RE2 pattern matching that substring and nothing else."""
    pattern = re2.compile(literal_pattern(needle))
    for text in (needle, f"x{needle}y", needle[1:], needle[:-1], needle.upper(), "", "xyz", "a\\.b", "ab"):
        assert (pattern.search(text) is not None) is (needle in text), text


_texts = st.text(alphabet=st.sampled_from("aAbB5 .é\n(x)q1ISfailed"), max_size=30)


@settings(max_examples=200, deadline=None)
@given(_texts)
def test_pattern_set_equals_each_pattern_alone(text: str) -> None:
    """One scan reports exactly the patterns whose own RE2 search (or substring test) holds."""
    patterns = PATTERNS + [literal_pattern(n) for n in NEEDLES]
    tests = [compile_value_test({"regex": p}, "p") for p in PATTERNS]
    tests += [compile_value_test({"contains": n}, "p") for n in NEEDLES]
    scan = PatternSet(patterns, tests)
    assert sorted(scan.matches(text)) == [k for k, test in enumerate(tests) if test(text)]


def test_sets_too_big_for_their_memory_are_split_and_still_answer() -> None:
    """With a budget too small for one set, the patterns end up in smaller sets or alone, same answers."""
    patterns = [f"a[ab]{{{n}}}c" for n in range(3, 40)] + ["^x", "y$"]
    tests = [compile_value_test({"regex": p}, "p") for p in patterns]
    scan = PatternSet(patterns, tests, max_mem=16 << 10)
    assert len(scan.chunks) + len(scan.alone) > 1
    for text in ("x" + "ab" * 30 + "c", "aaac", "y", "xy", "b" * 50):
        assert sorted(scan.matches(text)) == [k for k, test in enumerate(tests) if test(text)]


@pytest.mark.parametrize(
    "specs",
    [
        [{"level": "error"}, {"level": {"in": ["Warning", "critical"]}}],  # strings only: the plain dict lookup
        [{"level": "error"}, {"level": {"in": ["Warning", 5]}}, {"level": None}],  # with numbers and null
        [{"level": {"regex": "^E"}}, {"level": "eRRor", "service": {"contains": "r"}}],
    ],
)
def test_level_is_looked_up_case_insensitively(specs: list[dict[str, Any]]) -> None:
    """`level` equality and `in` hold whatever the record's case, through every kind of level lookup."""
    levels: list[Any] = ["error", "ERROR", "Error", "warning", "WARNING", "Critical", "5", 5, 5.0, None, True, {}]
    agree(specs, [{"level": level, "service": "crm"} for level in levels] + [{"service": "crm"}])


# Rules written from a few shapes with other values, as big rule sets are: several rules per indexed value,
# the same test in several rules of one bucket, a field (dotted or not) read by several tests of a bucket.
_key_value = st.sampled_from(["crm", "revel", "500", "error", 10, None])
_shaped = st.one_of(
    st.builds(lambda s, t: {"service": s, "http.status": t}, _key_value, st.sampled_from([500, 503, "500", 10.0])),
    st.builds(lambda s, b: {"service": s, "n": {"gt": b}}, _key_value, st.sampled_from([0, 1, 10, 499.5])),
    st.builds(
        lambda s, v, e: {"service": {"in": [s, "db"]}, "env": {"not": v}, "status": {"exists": e}},
        _key_value,
        _scalar,
        st.booleans(),
    ),
    st.builds(
        lambda s, m, b: {"service": s, "message": {"contains": m}, "http.status": {"gte": b}, "n": {"lt": b}},
        _key_value,
        st.sampled_from(NEEDLES),
        st.sampled_from([0, 500, 501]),
    ),
    st.builds(lambda s, m: {"service": s, "message": {"not": {"regex": m}}}, _key_value, st.sampled_from(PATTERNS)),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_shaped, min_size=20, max_size=120), st.lists(_records, min_size=1, max_size=20))
def test_rule_sets_of_repeated_shapes_agree_with_the_reference(specs: list[dict[str, Any]], records: list[Any]) -> None:
    """Buckets sharing one function (constants from a tuple), values computed once, equal tests merged: exact."""
    agree(specs, records)


def test_buckets_of_the_same_shapes_share_their_function() -> None:
    """3,000 rules in 3 shapes over 300 services compile to a few functions, not one per service (each of
    which would run too rarely for the interpreter to specialize it)."""
    specs: list[dict[str, Any]] = []
    for i in range(3000):
        service = f"svc{i * 7 % 300}"
        if i % 3 == 0:
            specs.append({"service": service, "latency_ms": {"gt": 1000 + i}})
        elif i % 3 == 1:
            specs.append({"service": service, "http.status": 500 + i % 4})
        else:
            specs.append({"service": service, "env": {"not": "dev"}, "message": {"contains": f"x{i}"}})
    compiled = compile_rules(specs)
    functions = [name for name in compiled.match.__globals__ if name.startswith("_t")]  # the bucket functions
    assert 1 <= len(functions) <= 30
    records = [
        {"service": f"svc{s}", "latency_ms": 2000 + s, "http": {"status": 501}, "event": "x5x"}
        for s in range(0, 300, 7)
    ]
    agree(specs, records)
