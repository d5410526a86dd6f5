"""LogQL's `| regexp` and `| pattern` parsers as field extractors: labels taken from the raw line into the record.

A rule written in LogQL with one of these parsers carries `extract: [{regexp: "..."}]` or `[{pattern: "..."}]`
(rules/logql/translate.py). The compiled rule set (rules/codegen.py) then runs each distinct extractor of the
set on the lines one of its rules could match (its gate), so the extracted labels are ordinary record fields
for matchers, `group_by` and unwrapped values alike. Rule sets without extractors pay nothing.

Semantics are Loki's (grafana/loki pkg/logql/log/parser.go, RegexpParser / PatternParser.Process):
- regexp: `FindSubmatch` (leftmost-first search, unanchored) on the whole line; a named group that does not
  take part in the match sets its label to ""; no match sets nothing. Go's regexp is RE2, as here.
- pattern (pkg/logql/log/pattern/pattern.go, Matcher.Matches): a leading literal must start the line; each
  capture then takes the text up to the *first* occurrence of the next literal; when that literal does not
  occur, the capture takes the rest of the line and matching stops (the captures so far are kept); a final
  capture takes the rest; text after a final literal is ignored; an empty line extracts nothing. This is a
  direct port of Matches with `str.find`: each literal is searched once, from where the previous one ended,
  so the time is linear in the line. (A translation into one RE2 expression with a "rest of the line"
  alternative per capture gave the same captures, but RE2's submatch engine then ran over the whole line:
  about 15 us a line in bench/logql_bench.py's setting, against about 1 us for the port.)
- a regexp whose matches all contain a literal (its leading literal, when it has no alternation or flags)
  is only run on lines containing that literal: the RE2 call costs microseconds even when it fails.
- a label that the line's own record already has is extracted as `NAME_extracted` (Loki's duplicateSuffix
  for a label the stream already carries).
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass

import re2

from streamalert.decode import LINE_FIELD

EXTRACTOR_KINDS = ("regexp", "pattern")
DUPLICATE_SUFFIX = "_extracted"
_CAPTURE = re.compile(r"<([A-Za-z_][A-Za-z0-9_]*)>")  # pkg/logql/log/pattern/lexer.rl: identifier in <>
_LABEL = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


@dataclass(frozen=True, slots=True)
class Extractor:
    """One compiled `regexp` (RE2, its (group index, label) pairs) or `pattern` (its nodes) parser."""

    kind: str
    expression: str
    names: tuple[str, ...]
    regex: re2._Regexp | None = None
    groups: tuple[tuple[int, str], ...] = ()
    guard: str = ""  # regexp: a literal every match contains ("" when none is known)
    head: str = ""  # pattern: the leading literal
    steps: tuple[tuple[str, str | None], ...] = ()  # pattern: (capture name or "_", the literal after it)

    def extract(self, text: str) -> list[tuple[str, str]]:
        """(label, value) pairs of the line, in capture order; [] when the line does not match."""
        if not text:
            return []  # both parsers: an empty line extracts nothing
        if self.regex is None:
            return self._pattern(text)
        if self.guard and self.guard not in text:
            return []
        found = self.regex.search(text)
        if found is None:
            return []
        # Go's FindSubmatch gives nil for a group outside the match, which Loki sets as ""
        return [(name, found.group(index) or "") for index, name in self.groups]

    def _pattern(self, text: str) -> list[tuple[str, str]]:
        """pattern.Matcher.Matches, step by step."""
        head = self.head
        if head and not text.startswith(head):
            return []
        pos = len(head)
        out: list[tuple[str, str]] = []
        for name, literal in self.steps:
            if literal is None or (end := text.find(literal, pos)) == -1:
                # a final capture, or a literal that does not occur: the capture takes the rest of the line
                if name != "_":
                    out.append((name, text[pos:]))
                return out
            if name != "_":
                out.append((name, text[pos:end]))
            pos = end + len(literal)
        return out


def compile_extractor(kind: str, expression: str) -> Extractor:
    """The extractor of `| regexp "expression"` or `| pattern "expression"`; ValueError says what is wrong."""
    if kind not in EXTRACTOR_KINDS:
        raise ValueError(f"unknown extractor {kind!r}: expected one of {', '.join(EXTRACTOR_KINDS)}")
    extractor = _regexp(expression) if kind == "regexp" else _pattern(expression)
    if LINE_FIELD in extractor.names:
        raise ValueError(f"`{LINE_FIELD}` is reserved for the raw line and cannot name an extracted label")
    return extractor


def _options() -> re2.Options:
    options = re2.Options()
    options.log_errors = False
    return options


def _regexp(expression: str) -> Extractor:
    # NewRegexpParser: it must compile, have a named group, and no name twice.
    try:
        regex = re2.compile(expression, _options())
    except re2.error as exc:
        raise ValueError(f"invalid regular expression {expression!r}") from exc
    index: dict[str, int] = dict(regex.groupindex)
    if not index:
        raise ValueError(f"the regexp {expression!r} has no named capture group (?P<name>...)")
    for name in index:
        if not _LABEL.fullmatch(name):
            raise ValueError(f"invalid extracted label name {name!r}")
    if expression.count("(?P<") + expression.count("(?<") > len(index):
        raise ValueError(f"the regexp {expression!r} names a capture group twice")
    groups = tuple(sorted((i, name) for name, i in index.items()))
    names = tuple(name for _, name in groups)
    return Extractor("regexp", expression, names, regex, groups, guard=_leading_literal(expression))


_META = frozenset(".^$*+?()[]{}|\\")


def _leading_literal(expression: str) -> str:
    """The literal every match of the regexp starts with, when that is plain to see; else ""."""
    if "|" in expression or expression.startswith("(?"):
        return ""  # an alternation may avoid it; flags such as (?i) change what it matches
    literal = ""
    for char in expression:
        if char in _META:
            if char in "*?{":
                literal = literal[:-1]  # the quantified character is optional
            break
        literal += char
    return literal


def _pattern(expression: str) -> Extractor:
    nodes = _pattern_nodes(expression)
    names = [n for is_capture, n in nodes if is_capture and n != "_"]
    if not names:
        raise ValueError(f"the pattern {expression!r} needs at least one named capture")  # ErrNoCapture
    if len(set(names)) != len(names):
        raise ValueError(f"the pattern {expression!r} names a capture twice")
    for (a, x), (b, y) in itertools.pairwise(nodes):
        if a and b:
            raise ValueError(f"the pattern {expression!r} has consecutive captures <{x}><{y}>")
    head = ""
    if not nodes[0][0]:
        head, nodes = nodes[0][1], nodes[1:]
    # from here: capture, literal, capture, ... (literal)?  as in Matches
    steps = tuple((nodes[k][1], nodes[k + 1][1] if k + 1 < len(nodes) else None) for k in range(0, len(nodes), 2))
    return Extractor("pattern", expression, tuple(names), head=head, steps=steps)


def _pattern_nodes(expression: str) -> list[tuple[bool, str]]:
    """(is_capture, text) nodes of a pattern: captures `<name>` / `<_>`, literals between them."""
    nodes: list[tuple[bool, str]] = []
    pos = 0
    for found in _CAPTURE.finditer(expression):
        if found.start() > pos:
            nodes.append((False, expression[pos : found.start()]))
        nodes.append((True, found.group(1)))
        pos = found.end()
    if pos < len(expression):
        nodes.append((False, expression[pos:]))
    if not nodes:
        raise ValueError("the pattern is empty")
    return nodes


def merge_names(extractors: Sequence[Extractor]) -> dict[str, Extractor]:
    """label -> its extractor over a rule set; ValueError when two different parsers extract the same label
    (one record holds one value per field, so the two rules could not both see theirs)."""
    owner: dict[str, Extractor] = {}
    for extractor in extractors:
        for name in extractor.names:
            other = owner.setdefault(name, extractor)
            if (other.kind, other.expression) != (extractor.kind, extractor.expression):
                raise ValueError(
                    f"the label {name!r} is extracted by two different parsers (`| {other.kind} "
                    f"{other.expression!r}` and `| {extractor.kind} {extractor.expression!r}`): "
                    "one record holds one value per field, rename one capture"
                )
    return owner


def apply(fields: dict[str, object], text: str, extractors: Sequence[Extractor]) -> None:
    """Add each extractor's labels of the line `text` to the decoded record `fields` (NAME_extracted when
    the record already has NAME)."""
    base = set(fields) if extractors else set()
    for extractor in extractors:
        for name, value in extractor.extract(text):
            fields[name + DUPLICATE_SUFFIX if name in base else name] = value
