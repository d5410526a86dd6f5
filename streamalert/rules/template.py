"""Safe annotation templates: `{{ value }}`, `{{ rule }}`, `{{ labels.x }}`, record fields. No code runs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

import msgspec

from streamalert.decode import MISSING, get_message, get_path
from streamalert.model import Fields

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.S)
_NAME = re.compile(r"\$?[A-Za-z_@][\w@-]*(?:\.[A-Za-z_@][\w@-]*)*")
BUILTINS = ("value", "rule", "labels")


@dataclass(frozen=True, slots=True)
class Template:
    """A parsed template: literal text alternating with variable paths."""

    parts: tuple[str, ...]  # even indexes are literals, odd indexes are variable paths
    uses_record: bool

    def render(self, value: float | int, rule: str, labels: Mapping[str, str], record: Fields) -> str:
        out = []
        for i, part in enumerate(self.parts):
            if i % 2 == 0:
                out.append(part)
            else:
                out.append(_lookup(part, value, rule, labels, record))
        return "".join(out)


def parse_template(text: str) -> Template:
    """Parse a template; raise ValueError naming the bad placeholder."""
    parts: list[str] = []
    uses_record = False
    pos = 0
    for found in _PLACEHOLDER.finditer(text):
        expr = found.group(1).strip()
        if not _NAME.fullmatch(expr):
            raise ValueError(
                f"unsupported placeholder {{{{{found.group(1)}}}}}: only names such as value, rule, "
                "labels.severity or a record field (a.b) are allowed"
            )
        name = expr.removeprefix("$")
        root = name.split(".", 1)[0]
        if root == "labels" and "." not in name:
            raise ValueError("placeholder {{ labels }} needs a label name, e.g. {{ labels.severity }}")
        if root in ("value", "rule") and name != root:
            raise ValueError(f"placeholder {{{{ {name} }}}}: {root} has no fields")
        if root not in BUILTINS:
            uses_record = True
        parts.append(text[pos : found.start()])
        parts.append(name)
        pos = found.end()
    tail = text[pos:]
    if "{{" in tail or "}}" in tail:
        raise ValueError("unbalanced '{{' or '}}' in template")
    parts.append(tail)
    return Template(tuple(parts), uses_record)


def format_value(value: float | int) -> str:
    """Numbers as people write them: 3, 0.183333, 1500000.5; exponents only beyond 1e15 or below 1e-6."""
    if isinstance(value, int):
        return str(value)
    if value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    if 1e-6 <= abs(value) < 1e15:
        return f"{value:.6f}".rstrip("0").rstrip(".")
    return f"{value:.6g}"


def _lookup(name: str, value: float | int, rule: str, labels: Mapping[str, str], record: Fields) -> str:
    if name == "value":
        return format_value(value)
    if name == "rule":
        return rule
    if name.startswith("labels."):
        return labels.get(name[7:], "")
    found = get_message(record) if name == "message" else get_path(record, name)
    if found is MISSING or found is None:
        return ""
    if isinstance(found, bool):
        return "true" if found else "false"
    if isinstance(found, (int, float)):
        return format_value(found)
    if isinstance(found, str):
        return found
    try:
        return msgspec.json.encode(found, order="sorted").decode()  # objects as JSON, not Python's repr
    except (TypeError, ValueError, RecursionError):
        return str(found)
