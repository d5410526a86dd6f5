"""Compile the match sections of all rules into a record decoder and one fast multi-rule matcher.

The closures of `matchers.py` define the semantics; this module builds code with the same meaning for the
hot path:
- lines are decoded by msgspec into a Struct holding only the fields some rule reads (plus event time and
  message), which is faster than building a full dict (measured in bench/); unknown fields are skipped;
- a record only runs the tests of the rules its field values reach through the index of rules/index.py
  (equality and `in` by dict lookup, `contains` and `regex` by one RE2-set scan per distinct value, cached
  for values that repeat, such as structlog event names), plus the few rules nothing can index; so the cost
  per record follows the rules that can match it, not the number of rules. The remaining tests of the rules
  anchored on one key are inlined, cheapest first, in the function of that key (a "bucket"), which computes
  a value two of them read once and tests rules with the same test once;
- buckets whose rules have the same shapes (a big rule set repeats a few shapes with other values) share
  one generated function that reads its constants and rule numbers from a tuple bound to it: a set of
  10,000 rules runs a few dozen functions, which the interpreter keeps specialized and in cache, instead of
  thousands that each run too rarely to be (measured in bench/README.md, "Rules benchmark, fixed messages").
Constants reach generated code as bound names or tuple items, never as source text, so no rule file can
inject code.
`tests/unit/test_codegen.py` and `test_rule_index.py` check that both compilations agree on random records
and random rule sets.
"""

from __future__ import annotations

import functools
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from streamalert.decode import LINE_FIELD, MESSAGE_KEYS, MISSING, TIME_KEYS, decode_record
from streamalert.rules.extract import DUPLICATE_SUFFIX, Extractor, apply, compile_extractor, merge_names
from streamalert.rules.index import RuleIndex, anchor_options, pick_anchor
from streamalert.rules.matchers import ValueTest, as_number, compile_match, compile_value_test

Record = Any  # an instance of the generated msgspec Struct; absent fields hold msgspec.UNSET
Check = Callable[[Record], Sequence[int]]  # ascending rule indexes: a tuple or a list

_META = set(".^$*+?()[]{}|\\")
_QUANTIFIERS = set("*?{")


class _Builder:
    """Turns match maps into Python expressions over `r`, a decoded record (absent fields are `_U`).

    `body` writes the code of a group of rules (a bucket, or the residual rules): a field's value or number
    that two of its tests read is computed once, into a local, first (every such expression is pure), and
    rules with the same test share it. `template` writes a bucket's body with its constants and rule numbers
    read from a tuple `k`, so that buckets whose rules have the same shapes share one function.
    """

    def __init__(self) -> None:
        self.consts: dict[str, Any] = {}
        self.attrs: dict[str, str] = {}  # JSON key -> Struct attribute
        self.const_names: dict[tuple[type, Any], str] = {}  # scalar constant -> its name (one per value)
        self.uses: Counter[tuple[str, str]] | None = None  # while sizing a test up: reads per (form, key)
        self.seen: list[Any] = []  # ... and the constants it uses
        self.shared_keys: set[tuple[str, str]] = set()  # (form, key) read twice in the body being built
        self.hoisted: dict[tuple[str, str], str] = {}  # ... those already in a local, and the local
        self.prelude: list[str] = []  # the assignments of those locals, in the order they depend on each other
        self.local: list[Any] | None = None  # building a template: its constants, k[0], k[1], ...

    def attr(self, key: str) -> str:
        name = self.attrs.get(key)
        if name is None:
            name = self.attrs[key] = f"a{len(self.attrs)}"
        return name

    def shared(self, form: str, key: str, expression: Callable[[], str]) -> str:
        """The expression of (form, key), or the local that holds it in the body being built."""
        if self.uses is not None:
            self.uses[form, key] += 1
            return expression()
        if (form, key) not in self.shared_keys:
            return expression()
        name = self.hoisted.get((form, key))
        if name is None:
            text = expression()  # first: it may hoist what it reads
            name = self.hoisted[form, key] = f"_h{len(self.hoisted)}"
            self.prelude.append(f"{name} = {text}")
        return name

    def value(self, key: str) -> str:
        """An expression for the field's value as the closures see it (MISSING when absent)."""
        return self.shared("value", key, functools.partial(self._value, key))

    def _value(self, key: str) -> str:
        if key == "message":
            a, b, c = (self.attr(k) for k in MESSAGE_KEYS)
            return f"(r.{a} if r.{a} is not _U else r.{b} if r.{b} is not _U else r.{c} if r.{c} is not _U else _M)"
        literal = self.attr(key)
        if "." not in key:
            return f"(r.{literal} if r.{literal} is not _U else _M)"
        head, tail = key.split(".", 1)
        if "." in tail:
            return f"_dotted(r.{literal}, r.{self.attr(head)}, {self.const(tail)})"
        top = f"r.{self.attr(head)}"  # one level down, inline: what _dotted does
        return (
            f"(r.{literal} if r.{literal} is not _U else {top}.get({self.const(tail)}, _M)"
            f" if type({top}) is dict else _M)"
        )

    def number(self, key: str) -> str:
        """An expression for as_number of the field's value: None when absent or not a number."""
        return self.shared("number", key, functools.partial(self._number, key))

    def _number(self, key: str) -> str:
        if "." not in key and key != "message":
            literal = f"r.{self.attr(key)}"
            return f"(_num({literal}) if {literal} is not _U else None)"
        return f"(_num(_x) if (_x := {self.value(key)}) is not _M else None)"

    def const(self, value: Any) -> str:
        if self.uses is not None:  # sizing up: the text is thrown away
            self.seen.append(value)
            return "_c"
        if self.local is not None:
            self.local.append(value)
            return f"k[{len(self.local) - 1}]"
        kind = type(value)
        key = (kind, repr(value) if kind is float else value) if kind in (str, int, float, bool) else None
        if key is not None and (known := self.const_names.get(key)) is not None:
            return known
        name = f"_c{len(self.consts)}"
        self.consts[name] = value
        if key is not None:
            self.const_names[key] = name
        return name

    def body(self, rules: Sequence[tuple[int, Mapping[str, Any] | None]], indent: str) -> list[str]:
        """Lines appending to `out` each rule whose match map holds (None or empty: always)."""
        return [indent + line for line in self._code(rules)]

    def template(self, rules: Sequence[tuple[int, Mapping[str, Any] | None]]) -> tuple[str, tuple[Any, ...]]:
        """(the body of a function `(k, r, out)` doing what `body` does, k): the same text for every group of
        rules of the same shapes, whatever their values and numbers."""
        self.local = []
        try:
            lines = self._code(rules)
            return "\n".join("    " + line for line in lines), tuple(self.local)
        finally:
            self.local = None

    def _code(self, rules: Sequence[tuple[int, Mapping[str, Any] | None]]) -> list[str]:
        groups: dict[Any, tuple[Mapping[str, Any] | None, list[int], Counter[tuple[str, str]]]] = {}
        shapes = []
        for i, spec in rules:  # size each test up: its text without constants, its constants, its reads
            self.uses, self.seen = Counter(), []
            text = self.conjunction(spec) if spec else ""
            key: Any = (text, tuple(self.seen))
            try:
                hash(key)
            except TypeError:
                key = (text, object())  # unhashable constants: a group of its own
            shapes.append((text, key, i, spec, self.uses))
        self.uses, self.seen = None, []
        for _, key, i, spec, uses in sorted(shapes, key=lambda shape: shape[0]):  # same shapes, same order
            group = groups.setdefault(key, (spec, [], uses))
            group[1].append(i)
        reads = Counter[tuple[str, str]]()
        for _, _, uses in groups.values():
            reads.update(uses)
        self.shared_keys = {form_key for form_key, count in reads.items() if count > 1}
        self.hoisted, self.prelude = {}, []
        lines = []
        for spec, numbers, _ in groups.values():
            test = self.conjunction(spec) if spec else None
            if self.local is None:
                append = "; ".join(f"out.append({i})" for i in numbers)
            elif len(numbers) == 1:
                append = f"out.append({self.const(numbers[0])})"
            else:
                append = f"out += {self.const(tuple(numbers))}"
            lines.append(append if test is None else f"if {test}: {append}")
        lines = self.prelude + lines
        self.shared_keys, self.hoisted, self.prelude = set(), {}, []
        return lines

    def conjunction(self, spec: Mapping[str, Any]) -> str:
        terms: list[tuple[int, str]] = []
        for key, sub in spec.items():
            if key == "any":
                alternatives = [self.conjunction(alt) for alt in sub]
                terms.append((5, "(" + " or ".join(alternatives) + ")"))
            else:
                terms.append(self.field_test(key, sub))
        if not terms:
            return "True"
        return "(" + " and ".join(expr for _, expr in sorted(terms, key=lambda t: t[0])) + ")"

    def field_test(self, key: str, spec: Any) -> tuple[int, str]:
        """(cost, expression) for one field's matcher; lower cost runs first."""
        if "." not in key and key != "message":
            value = functools.partial(str.__add__, "r.", self.attr(key))  # absent: _U
        else:
            value = functools.partial(self.value, key)  # absent: _M
        if key == "level" and isinstance(spec, str):
            return (1, f"(type(_v := {value()}) is str and _v.lower() == {self.const(spec.lower())})")
        if key != "level" and isinstance(spec, str):
            return (0, f"{value()} == {self.const(spec)}")  # str == str only: UNSET and other types never equal
        if type(spec) in (int, float) and (number := as_number(spec)) is not None:
            return (2, f"{self.number(key)} == {self.const(number)}")  # None for bools, absent and the rest
        if isinstance(spec, Mapping) and spec and all(_inlinable(key, op, arg) for op, arg in spec.items()):
            return (2, "(" + " and ".join(self.inline(key, op, arg, value) for op, arg in spec.items()) + ")")
        if self.uses is not None:  # sizing up: no closure to build; a test of its own, never merged
            self.seen.append(object())
            return (3, f"_c({self.value(key)})")
        if key == "message":
            test = message_test(spec)
        else:
            test = compile_value_test(spec, "match", case_insensitive=(key == "level"))
        return (3, f"{self.const(test)}({self.value(key)})")

    def inline(self, key: str, op: str, arg: Any, value: Callable[[], str]) -> str:
        """An expression for one operator (`_inlinable`) with the reference's meaning."""
        lowered = key == "level"
        if op == "contains":
            return f"(type(_v := {value()}) is str and {self.const(arg)} in _v)"
        if op == "in":
            if lowered:
                return (
                    f"(type(_v := {value()}) is str and _v.lower() in {self.const(frozenset(a.lower() for a in arg))})"
                )
            return f"(type(_v := {value()}) is str and _v in {self.const(frozenset(arg))})"
        if op in _COMPARISONS:
            return f"((_n := {self.number(key)}) is not None and _n {_COMPARISONS[op]} {self.const(as_number(arg))})"
        if op == "exists":
            absent = "_U" if "." not in key and key != "message" else "_M"  # what `value` is when absent
            return f"({value()} {'is not' if arg else 'is'} {absent})"
        assert op == "not"
        return f"(not {self.field_test(key, arg)[1]})"  # field_test: the whole test of a value


def _inlinable(key: str, op: str, arg: Any) -> bool:
    """Whether `_Builder.inline` writes operator `op` of a (valid) matcher of field `key` inline."""
    if op == "contains":
        return isinstance(arg, str) and bool(arg) and key != "level"
    if op == "in":
        return isinstance(arg, list) and bool(arg) and all(type(item) is str for item in arg)
    if op in _COMPARISONS:
        return not isinstance(arg, bool) and as_number(arg) is not None
    return (op == "exists" and type(arg) is bool) or op == "not"


_COMPARISONS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def literal_guard(pattern: str) -> list[str] | None:
    """Substrings of which one must occur for `pattern` to match; None when that cannot be told simply.

    Only plain top-level alternations whose every branch starts with a literal qualify; flags, groups,
    classes or escapes anywhere give None, which means "always run the regex".
    """
    if not pattern or pattern.startswith("(?") or "\\" in pattern or "(" in pattern or "[" in pattern:
        return None
    needles = []
    for branch in pattern.split("|"):
        if branch.startswith("^"):
            return None
        literal = ""
        for ch in branch.removeprefix(".*"):  # search semantics: a leading .* adds nothing
            if ch in _META:
                if ch in _QUANTIFIERS and literal:
                    literal = literal[:-1]  # the quantified character is optional
                break
            literal += ch
        if not literal:
            return None
        needles.append(literal)
    return needles


def message_test(spec: Any) -> ValueTest:
    """The reference test of a `message:` matcher, with a substring guard in front of guardable regexes."""
    test = compile_value_test(spec, "match.message")
    if isinstance(spec, Mapping) and len(spec) == 1 and isinstance(spec.get("regex"), str):
        guard = literal_guard(spec["regex"])
        if guard:
            return lambda v: type(v) is str and any(g in v for g in guard) and test(v)
    return test


@dataclass(frozen=True, slots=True)
class CompiledRules:
    """The hot-path form of a rule set: decode a line into a record, then list the rules it matches."""

    record_type: type
    decode: Callable[[bytes], Record]  # raises msgspec.DecodeError for anything but one JSON object
    match: Check
    time_attrs: tuple[str, ...]  # attributes of timestamp, @timestamp, time, ts: always a0..a3, in that order
    fields: Callable[[bytes], dict[str, Any]] = decode_record  # the full record, extracted fields included
    # The record's attribute of each key the matchers read or compile_rules was asked to read; empty when a
    # rule extracts labels (the record is then not all there is: use `fields`).
    attrs: Mapping[str, str] = field(default_factory=dict)


def compile_rules(
    specs: Sequence[Mapping[str, Any]], extract: Sequence[Sequence[tuple[str, str]]] = (), reads: Iterable[str] = ()
) -> CompiledRules:
    """Compile every rule's `match`; rule i is reported as index i, ascending.

    `extract[i]` lists rule i's (regexp|pattern, expression) parsers (rules/extract.py): their labels become
    record fields. Each distinct parser runs on the lines that pass its gate: the match of one of its rules
    without the terms on extracted labels (or every line, if such a rule has no other term). A spec that
    compile_match refuses raises the same MatchError here. `reads`: top-level keys the caller reads from the
    records too (CompiledRules.attrs), so that it need not decode a matched line in full; each costs a value
    decoded on every line that has it.
    """
    for spec in specs:
        compile_match(spec)  # the reference's checks and errors, before anything below relies on the spec
    builder = _Builder()
    time_attrs = tuple(builder.attr(k) for k in TIME_KEYS)
    message_attrs = tuple(builder.attr(k) for k in MESSAGE_KEYS)
    assert time_attrs == ("a0", "a1", "a2", "a3"), "the engine reads `timestamp` as a0"
    assert message_attrs == ("a4", "a5", "a6"), "the virtual `message` field reads a4..a6"
    per_rule = list(extract) or [()] * len(specs)
    extractors = list({(k, e): compile_extractor(k, e) for pairs in per_rule for k, e in pairs}.values())
    merge_names(extractors)  # config/rules.py reports a clash first, as a problem of the rule file
    gates = _gate_specs(specs, per_rule, extractors)
    for name in merge_names(extractors):
        builder.attr(name)  # read to tell whether the line's record has the label already
        builder.attr(name + DUPLICATE_SUFFIX)
    if extractors:
        builder.attr(LINE_FIELD)
    index = RuleIndex()
    tests: list[Mapping[str, Any] | None] = []  # per rule: what is left to test once its anchor held
    residual: list[int] = []
    options = [anchor_options(spec) for spec in specs]
    crowd = Counter(key for rule in options for _, anchor in rule for key in anchor.keys)
    for i, spec in enumerate(specs):
        anchor = pick_anchor(options[i], crowd)
        if anchor is None:
            residual.append(i)
            tests.append(spec)
            continue
        index.add(i, anchor)
        rest = {k: v for k, v in spec.items() if k != anchor.entry} if anchor.exact else dict(spec)
        tests.append(rest or None)
    source = index.source(builder, tests, residual)
    for j, gate in enumerate(gates):  # extractor j runs when one of its rules' other terms hold
        if gate is not None:
            source += f"\ndef _gate{j}(r):\n    return " + " or ".join(builder.conjunction(g) for g in gate) + "\n"
    reads = () if extractors else tuple(reads)
    for key in reads:
        builder.attr(key)
    record_type = msgspec.defstruct(  # after the source: it names every attribute the code reads
        "Record",
        [(name, Any, msgspec.UNSET) for name in builder.attrs.values()],
        rename={name: key for key, name in builder.attrs.items()},
        gc=False,  # records hold no cycles; untracked structs allocate faster and never burden the GC
    )
    namespace: dict[str, Any] = {
        "_dotted": _dotted,
        "_num": as_number,
        "_U": msgspec.UNSET,
        "_1": tuple((i,) for i in range(len(specs))),  # the result of a record that matches rule i alone
        "_M": MISSING,
        **builder.consts,
    }
    # Safe to exec: built from fixed fragments; every value from a rule file is a bound name.
    exec(compile(source, "<streamalert rules>", "exec"), namespace)
    index.bind(namespace)
    decoder = msgspec.json.Decoder(record_type)
    decode: Callable[[bytes], Record] = decoder.decode
    line_attr = builder.attrs.get(LINE_FIELD)
    if line_attr is not None:  # only rule sets with a LogQL line filter pay for the raw line
        decode = _with_line(decode, line_attr)
    if not extractors:
        return CompiledRules(record_type, decode, namespace["_match"], time_attrs, attrs=dict(builder.attrs))
    assert line_attr is not None
    pairs = [(name, builder.attrs[name], builder.attrs[name + DUPLICATE_SUFFIX]) for name in merge_names(extractors)]
    plan = [(e, namespace.get(f"_gate{j}")) for j, e in enumerate(extractors)]
    full_plan = [
        (e, None if g is None else [compile_match(spec) for spec in g]) for e, g in zip(extractors, gates, strict=True)
    ]
    return CompiledRules(
        record_type,
        _with_extracted(decode, line_attr, plan, pairs),
        namespace["_match"],
        time_attrs,
        functools.partial(_full_with_extracted, full_plan),
    )


def _gate_specs(
    specs: Sequence[Mapping[str, Any]], per_rule: Sequence[Sequence[tuple[str, str]]], extractors: list[Extractor]
) -> list[list[dict[str, Any]] | None]:
    """Per extractor, the match maps of its rules without the terms that read extracted labels (`any:`
    included: it may); None when one of them is then empty, i.e. the extractor runs on every line."""
    owners = merge_names(extractors)
    extracted = {*owners, *(name + DUPLICATE_SUFFIX for name in owners)}
    index = {(e.kind, e.expression): j for j, e in enumerate(extractors)}
    gates: list[list[dict[str, Any]] | None] = [[] for _ in extractors]
    for spec, pairs in zip(specs, per_rule, strict=True):
        gate = {k: v for k, v in spec.items() if k != "any" and k.split(".")[0] not in extracted}
        for pair in pairs:
            j = index[pair]
            current = gates[j]
            gates[j] = None if current is None or not gate else [*current, gate]
    return gates


def _with_extracted(
    decode: Callable[[bytes], Record],
    line_attr: str,
    plan: list[tuple[Extractor, Callable[[Record], bool] | None]],
    attrs: list[tuple[str, str, str]],
) -> Callable[[bytes], Record]:
    """`decode`, then the extracted labels as attributes (NAME_extracted when the line's record has NAME)."""
    slots = {name: (attr, dup) for name, attr, dup in attrs}

    def decode_extracting(line: bytes) -> Record:
        record = decode(line)
        text = getattr(record, line_attr)
        for extractor, gate in plan:
            if gate is not None and not gate(record):
                continue
            for name, value in extractor.extract(text):
                attr, dup = slots[name]
                setattr(record, attr if getattr(record, attr) is msgspec.UNSET else dup, value)
        return record

    return decode_extracting


def _full_with_extracted(
    plan: list[tuple[Extractor, list[Callable[[Any], bool]] | None]], line: bytes
) -> dict[str, Any]:
    """decode_record, then the labels of the extractors whose gate holds (judged before any is added)."""
    fields = decode_record(line)
    original = fields.get(LINE_FIELD)
    converted = type(original) is str  # a converted logfmt / text line holds its original text
    text = original if isinstance(original, str) else line.decode()
    fields[LINE_FIELD] = text  # line filters in a gate read the raw line, as the compiled matcher does
    passing = [e for e, gate in plan if gate is None or any(holds(fields) for holds in gate)]
    if not converted:
        del fields[LINE_FIELD]
    apply(fields, text, passing)
    return fields


def _with_line(decode: Callable[[bytes], Record], attr: str) -> Callable[[bytes], Record]:
    """`decode`, then the raw line as the virtual `_line` field (its text: the decoder checked the UTF-8).

    A record that has `_line` already is a converted logfmt or text line whose original text it holds.
    """

    def decode_with_line(line: bytes) -> Record:
        record = decode(line)
        if getattr(record, attr) is msgspec.UNSET:
            setattr(record, attr, line.decode())
        return record

    return decode_with_line


def _dotted(literal: Any, head: Any, tail: str) -> Any:
    """get_path on a record: the flattened key first, then the path inside the top-level object."""
    if literal is not msgspec.UNSET:
        return literal
    node = head
    for part in tail.split("."):
        if type(node) is not dict:
            return MISSING
        node = node.get(part, MISSING)
    return node
