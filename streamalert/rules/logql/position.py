"""Where a position inside a LogQL expression is in the YAML file that holds it, for `check` to point at.

The expression is a YAML scalar; PyYAML's composer gives the scalar's start. A literal block (`expr: |`)
keeps lines and columns: expression line L is the L-th line after the indicator, shifted right by the block's
indentation. A plain or quoted one-line scalar starts at its mark (after the quote). A folded block (`>`)
or a multi-line flow scalar rearranges lines, and a quoted scalar with escapes shifts columns: no position
is claimed for those (the expression's own line and column are still reported).
"""

from __future__ import annotations

from collections.abc import Sequence

import yaml
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode


def file_position(text: str, path: Sequence[str | int], line: int, column: int) -> tuple[int, int] | None:
    """The 1-based (line, column) in the YAML `text` of (line, column) of the scalar at `path`, if exact."""
    try:
        node: Node | None = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    for step in path:
        node = _child(node, step)
    if not isinstance(node, ScalarNode):
        return None
    mark = node.start_mark
    if node.style == "|":
        lines = text.splitlines()
        first = mark.line + 1  # 0-based index of the block's first content line
        if first >= len(lines):
            return None
        indent = len(lines[first]) - len(lines[first].lstrip(" "))
        return first + line, indent + column
    if line != 1 or node.style == ">":
        return None
    if node.style is None:
        return mark.line + 1, mark.column + column
    if "\\" in text[mark.index : node.end_mark.index] or "''" in text[mark.index : node.end_mark.index]:
        return None
    return mark.line + 1, mark.column + 1 + column


def _child(node: Node | None, step: str | int) -> Node | None:
    if isinstance(step, int):
        if isinstance(node, SequenceNode) and step < len(node.value):
            child: Node = node.value[step]
            return child
        return None
    if isinstance(node, MappingNode):
        for key, value in node.value:
            if isinstance(key, ScalarNode) and key.value == step:
                found: Node = value
                return found
    return None
