"""The routing tree and label matchers, with Alertmanager's semantics.

- A matcher is `name op value` with op one of `=`, `!=`, `=~`, `!~`; the value may be double-quoted (with
  `\\"` and `\\\\` escapes) or bare. A missing label matches as the empty string. Regular expressions are
  RE2 (as in Alertmanager) and anchored at both ends.
- A route matches when all its matchers do; the root has none and matches everything. The children of a
  matching route are tried in order; the first that matches ends the search unless it has `continue: true`.
  If no child matches, the route itself is the match.
- Children inherit `receiver`, `group_by`, `group_wait`, `group_interval` and `repeat_interval` from their
  parent when they do not set them. `group_by: ['...']` groups by all labels.
- `mute_time_intervals` / `active_time_intervals` are a route's own (never inherited): they decide whether a
  flush of the route's groups sends anything (streamalert.notify.timeintervals), not where alerts go.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import re2

from streamalert.notify.timeintervals import RouteTimes

Op = Literal["=", "!=", "=~", "!~"]
LABEL_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MATCHER = re.compile(
    r"""\s*(?P<name>[A-Za-z_][A-Za-z0-9_]*)\s*(?P<op>=~|!~|!=|=)\s*(?P<value>"(?:[^"\\]|\\.)*"|[^,"{}\s]*)\s*"""
)
DEFAULT_GROUP_WAIT = "30s"
DEFAULT_GROUP_INTERVAL = "5m"
DEFAULT_REPEAT_INTERVAL = "4h"


class MatcherError(ValueError):
    """A matcher that cannot be parsed or whose regular expression does not compile."""


@dataclass(frozen=True, slots=True)
class Matcher:
    name: str
    op: Op
    value: str
    _regex: Any = field(default=None, compare=False, repr=False)

    @classmethod
    def make(cls, name: str, op: Op, value: str) -> Matcher:
        regex = None
        if op in ("=~", "!~"):
            options = re2.Options()
            options.log_errors = False
            try:
                regex = re2.compile(f"^(?:{value})$", options)
            except re2.error as exc:
                reason = exc.args[0] if exc.args else exc
                if isinstance(reason, bytes):
                    reason = reason.decode("utf-8", "replace")
                raise MatcherError(f"{name}{op}{value!r}: invalid RE2 pattern: {reason}") from None
        return cls(name, op, value, regex)

    def matches(self, labels: Mapping[str, str]) -> bool:
        actual = labels.get(self.name, "")
        if self.op == "=":
            return actual == self.value
        if self.op == "!=":
            return actual != self.value
        found = self._regex.search(actual) is not None
        return found if self.op == "=~" else not found

    def __str__(self) -> str:
        escaped = self.value.replace("\\", "\\\\").replace('"', '\\"')
        return f'{self.name}{self.op}"{escaped}"'


def parse_matchers(text: str) -> list[Matcher]:
    """One matcher string as Alertmanager accepts it: `a="b"`, `a=~"b.*"`, or several in braces
    `{a="b", c!="d"}`. Raises MatcherError naming the text."""
    body = text.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1]
    matchers: list[Matcher] = []
    pos = 0
    while pos < len(body):
        found = _MATCHER.match(body, pos)
        if found is None or found.end() == pos:
            raise MatcherError(f'{text!r}: not a matcher (expected name="value", !=, =~ or !~)')
        value = found.group("value")
        value = _unescape(value[1:-1] if value.startswith('"') else value)
        matchers.append(Matcher.make(found.group("name"), found.group("op"), value))  # type: ignore[arg-type]
        pos = found.end()
        if pos < len(body):
            if body[pos] != ",":
                raise MatcherError(f"{text!r}: unexpected {body[pos]!r} after a matcher")
            pos += 1
    if not matchers:
        raise MatcherError(f"{text!r}: empty matcher")
    return matchers


def _unescape(raw: str) -> str:
    """Alertmanager's unescaping of a matcher value (quoted or bare): `\\n` is a newline, `\\"` and `\\\\` are the
    character itself, any other escape is kept as written (`\\d` stays `\\d` for the regular expression)."""
    out: list[str] = []
    chars = iter(raw)
    for char in chars:
        if char != "\\":
            out.append(char)
            continue
        following = next(chars, None)
        if following is None:
            out.append("\\")  # a trailing backslash is literal
        elif following == "n":
            out.append("\n")
        elif following in ('"', "\\"):
            out.append(following)
        else:
            out.append("\\" + following)
    return "".join(out)


def matches_all(matchers: tuple[Matcher, ...] | list[Matcher], labels: Mapping[str, str]) -> bool:
    return all(m.matches(labels) for m in matchers)


@dataclass(frozen=True, slots=True)
class Route:
    """A route with its settings resolved (inherited values filled in)."""

    id: str  # unique and stable for a given tree: the matcher path plus the index among siblings
    receiver: str
    matchers: tuple[Matcher, ...]
    continue_: bool
    group_by: tuple[str, ...] | None  # None: every label ('...')
    group_wait_ms: int
    group_interval_ms: int
    repeat_interval_ms: int
    times: RouteTimes | None = None  # the route's own mute/active time intervals
    routes: tuple[Route, ...] = ()

    def match(self, labels: Mapping[str, str]) -> list[Route]:
        """The routes an alert with these labels is dispatched to, in tree order (Alertmanager's Match)."""
        if not matches_all(self.matchers, labels):
            return []
        found: list[Route] = []
        for child in self.routes:
            matched = child.match(labels)
            found.extend(matched)
            if matched and not child.continue_:
                break
        return found or [self]

    def group_labels(self, labels: Mapping[str, str]) -> dict[str, str]:
        """The labels that identify an alert's group on this route (only those the alert has)."""
        if self.group_by is None:
            return dict(labels)
        return {name: labels[name] for name in self.group_by if name in labels}

    def walk(self) -> list[Route]:
        out = [self]
        for child in self.routes:
            out.extend(child.walk())
        return out
