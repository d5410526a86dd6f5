"""yaml.safe_load's result, faster: libyaml parses, and plain maps, lists and strings are built directly.

`streamalert check` on 10,000 rules spent 36 s in PyYAML's pure-Python parser; even PyYAML's C loader
spends seconds composing nodes. Here, in order:
1. libyaml's events (PyYAML's C extension, read with `get_event` in one loop) become objects directly:
   every scalar's tag comes from PyYAML's own resolver, strings are taken as they are, and every other
   scalar (numbers, booleans, null, dates) is made by PyYAML's SafeConstructor; each scalar's value is
   memoized by its text and style (rule files repeat their keys and values). A document
   with anything else (anchors, aliases, explicit tags, merge keys, non-scalar keys, several documents)
   goes to step 2.
2. PyYAML's C loader composes the nodes; maps, lists and strings are built in one walk, and every other
   node goes to SafeConstructor itself.
3. Any exception, or a PyYAML built without libyaml: yaml.safe_load itself, so every error is reported
   with PyYAML's own message and excerpt, as before.
"""

from __future__ import annotations

from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.events import (
    AliasEvent,
    MappingEndEvent,
    MappingStartEvent,
    ScalarEvent,
    SequenceEndEvent,
    SequenceStartEvent,
    StreamEndEvent,
)
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode
from yaml.resolver import Resolver

_STR = "tag:yaml.org,2002:str"
_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
_SPECIAL_KEYS = ("tag:yaml.org,2002:merge", "tag:yaml.org,2002:value")  # rewritten by flatten_mapping
_C_SAFE_LOADER: type[Any] | None = getattr(yaml, "CSafeLoader", None)


def safe_load(text: str) -> Any:
    """What yaml.safe_load(text) returns or raises."""
    if _C_SAFE_LOADER is None:
        return yaml.safe_load(text)
    try:
        return _from_events(_C_SAFE_LOADER, text)
    except _Unusual:
        pass
    except Exception:
        return yaml.safe_load(text)
    try:
        return _fast_load(_C_SAFE_LOADER, text)
    except Exception:
        return yaml.safe_load(text)


class _Unusual(Exception):
    """The document uses something step 1 leaves to PyYAML's composer."""


_NO_KEY: Any = object()


def _from_events(loader: type[Any], text: str) -> Any:  # noqa: PLR0915 (one flat loop: per-event calls cost)
    """Step 1 of the module docstring; raises _Unusual for anything it does not take.

    One pass over libyaml's events with the open containers on a stack; a scalar's value is memoized by its
    text and style (`implicit`), which fix its tag: rule files repeat their keys and most of their values.
    """
    resolver: Any = Resolver()
    resolve = resolver.resolve
    construct = SafeConstructor().construct_object
    scalars: dict[tuple[str, Any], Any] = {}  # (text, implicit) -> value; strings as they are
    roots: list[Any] = []
    stack: list[tuple[Any, bool, Any]] = []  # the enclosing containers: (container, is a list, pending key)
    top: Any = roots  # the innermost open container, whether it is a list, and a map's key awaiting its value
    in_list = True
    pending: Any = _NO_KEY
    parser = loader(text)
    try:
        get_event = parser.get_event
        while True:
            event = get_event()
            kind = type(event)
            if kind is ScalarEvent:
                if event.anchor is not None or event.tag not in (None, "!"):
                    raise _Unusual
                key = (event.value, event.implicit)
                value = scalars.get(key, _NO_KEY)
                if value is _NO_KEY:
                    tag = resolve(ScalarNode, event.value, event.implicit)
                    if tag == _STR:
                        value = event.value
                    elif tag in _SPECIAL_KEYS:
                        raise _Unusual  # a merge key (`<<`) or a `=`: PyYAML's composer and constructor decide
                    else:  # values of these tags are immutable (numbers, booleans, None, dates)
                        node = ScalarNode(tag, event.value, event.start_mark, event.end_mark, event.style)
                        value = construct(node, deep=True)
                    scalars[key] = value
                if in_list:
                    top.append(value)
                elif pending is _NO_KEY:
                    pending = value
                else:
                    top[pending] = value
                    pending = _NO_KEY
                continue
            if kind is MappingStartEvent or kind is SequenceStartEvent:
                if event.anchor is not None or event.tag not in (None, "!"):
                    raise _Unusual
                opened: Any = {} if kind is MappingStartEvent else []
                if in_list:
                    top.append(opened)
                elif pending is _NO_KEY:
                    raise _Unusual  # a map or list as a key
                else:
                    top[pending] = opened
                    pending = _NO_KEY
                stack.append((top, in_list, pending))
                top, in_list, pending = opened, kind is SequenceStartEvent, _NO_KEY
            elif kind is MappingEndEvent or kind is SequenceEndEvent:
                top, in_list, pending = stack.pop()
            elif kind is AliasEvent:
                raise _Unusual
            elif kind is StreamEndEvent:
                break
            # stream start, document start and end: nothing to build
    finally:
        parser.dispose()
    if len(roots) > 1:
        raise _Unusual  # several documents: PyYAML's own error
    return roots[0] if roots else None


def _fast_load(base: type[Any], text: str) -> Any:
    tags: dict[tuple[str, Any], str] = {}

    class Loader(base):  # type: ignore[misc]
        def resolve(self, kind: type[Node], value: Any, implicit: Any) -> str:
            if kind is not ScalarNode:
                return str(super().resolve(kind, value, implicit))
            key = (value, implicit)
            tag = tags.get(key)
            if tag is None:
                tag = tags[key] = super().resolve(kind, value, implicit)
            return tag

    loader = Loader(text)
    try:
        node = loader.get_single_node()
        return None if node is None else _Builder(loader).build(node)
    finally:
        loader.dispose()


class _Builder:
    """Python objects from composed nodes, as SafeConstructor makes them (shared anchors stay shared)."""

    def __init__(self, loader: Any) -> None:
        self.loader = loader
        self.made: dict[Node, Any] = {}

    def build(self, node: Node) -> Any:
        made = self.made.get(node, self)
        if made is not self:
            return made
        kind, tag = type(node), node.tag
        if kind is ScalarNode and tag == _STR:
            return node.value
        if kind is SequenceNode and tag == _SEQ:
            items: list[Any] = []
            self.made[node] = items
            items.extend(self.build(child) for child in node.value)
            return items
        if kind is MappingNode and tag == _MAP and all(_plain_key(key) for key, _ in node.value):
            mapping: dict[Any, Any] = {}
            self.made[node] = mapping
            for key, value in node.value:
                mapping[self.build(key)] = self.build(value)
            return mapping
        value = self.loader.construct_object(node, deep=True)
        self.made[node] = value
        return value


def _plain_key(node: Node) -> bool:
    """A key SafeConstructor would take as it is: a scalar (always hashable), not a merge or `=` key."""
    return type(node) is ScalarNode and node.tag not in _SPECIAL_KEYS


def yaml_problem(exc: yaml.YAMLError) -> str:
    """Where and what, in one line, without PyYAML's "<unicode string>" and its excerpt of the line (which can
    hold a secret): "expected ',' or ']', but got '<stream end>' at line 4, column 1"."""
    if isinstance(exc, yaml.MarkedYAMLError) and exc.problem_mark is not None:
        mark = exc.problem_mark
        return f"{exc.problem or exc.context} at line {mark.line + 1}, column {mark.column + 1}"
    return type(exc).__name__
