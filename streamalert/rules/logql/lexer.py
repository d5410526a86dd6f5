"""LogQL tokens with their 1-based line and column, following Loki's lexer where it matters.

Reference: grafana/loki pkg/logql/syntax/lex.go. Kept from it: `#` comments to the end of the line;
strings in double quotes with Go escapes or in backticks without any; a number directly followed by duration
units is a DURATION (`5m`, `1h30m`, `1.5s`) and by byte units a BYTES (`10MB`, `1KiB`); `[...]` is one
RANGE token holding a Prometheus duration; keywords compare case-insensitively (the parser lower-cases
names). Operators are the longest match of the table below (`|=` before `|`, `=~` before `=`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from streamalert.rules.logql.errors import LogQLError

Kind = Literal["IDENT", "STRING", "NUMBER", "DURATION", "BYTES", "RANGE", "OP", "FLAG", "EOF"]

# Longest first, so that a two-character operator wins over its one-character prefix.
_OPERATORS = (
    "|=", "|~", "|>", "!=", "!~", "!>", "=~", "==", ">=", "<=",
    "|", "=", ">", "<", "{", "}", "(", ")", ",", "+", "-", "*", "/", "%", "^", ".",
)  # fmt: skip
_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_NUMBER = re.compile(r"(?:0[xX][0-9a-fA-F]+|\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?)")
_UNIT_TAIL = re.compile(r"[0-9.A-Za-zµ]*")
# Prometheus durations (model.ParseDuration) and Go's time.ParseDuration, which lex.go tries in that order.
_PROM_DURATION = re.compile(r"(?:\d+(?:ms|y|w|d|h|m|s))+")
_GO_DURATION = re.compile(r"(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|ms|s|m|h))+")
_DURATION_PART = re.compile(r"(\d+\.?\d*|\.\d+)(ns|us|µs|ms|y|w|d|h|m|s)")
_DURATION_SECONDS = {
    "ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0,
    "d": 86400.0, "w": 604800.0, "y": 31536000.0,
}  # fmt: skip
# go-humanize ParseBytes (used by lex.go): units are case-insensitive, the "b" is optional ("5M", "2Ki"),
# "i" units are powers of 1024. Durations are tried first, so "5m" is five minutes and "5M" five megabytes.
_BYTES = re.compile(r"(\d+\.?\d*|\.\d+)([kmgtp]i?b?|b)", re.IGNORECASE)
_BYTE_POWER = {"b": 0, "k": 1, "m": 2, "g": 3, "t": 4, "p": 5}
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\", '"': '"', "'": "'"}
_FLAGS = ("--strict", "--keep-empty")


@dataclass(frozen=True, slots=True)
class Token:
    """One token; `value` is the unquoted string, the number text, or seconds/bytes for units."""

    kind: Kind
    text: str  # as written in the source
    line: int
    column: int
    value: str | float = ""

    def is_op(self, *ops: str) -> bool:
        return self.kind == "OP" and self.text in ops

    def is_word(self, *words: str) -> bool:
        return self.kind == "IDENT" and self.text.lower() in words


def duration_seconds(text: str) -> float | None:
    """Seconds of a Prometheus or Go duration such as `5m`, `1h30m`, `1.5s`; None if not one."""
    if not (_PROM_DURATION.fullmatch(text) or _GO_DURATION.fullmatch(text)):
        return None
    parts: list[tuple[str, str]] = _DURATION_PART.findall(text)
    return float(sum(float(n) * _DURATION_SECONDS[u] for n, u in parts))


_SIGNED_GO_DURATION = re.compile(r"[-+]?(?:0|(?:(?:\d+\.?\d*|\.\d+)(?:ns|us|µs|ms|s|m|h))+)")
_LABEL_BYTES = re.compile(r"(\d+\.?\d*|\.\d+) *([kmgtpe]i?b?|b)?", re.IGNORECASE)


def go_duration_seconds(text: str) -> float | None:
    """Seconds of a Go duration as time.ParseDuration reads it (`1.5s`, `-250ms`, `1h30m`, `0`); else None."""
    if _SIGNED_GO_DURATION.fullmatch(text) is None:
        return None
    sign = -1.0 if text[0] == "-" else 1.0
    parts: list[tuple[str, str]] = _DURATION_PART.findall(text)
    return sign * float(sum(float(n) * _DURATION_SECONDS[u] for n, u in parts))


def label_bytes(text: str) -> float | None:
    """Bytes of a size as go-humanize's ParseBytes reads it (`10MB`, `1 KiB`, `5m`, `42`); else None."""
    match = _LABEL_BYTES.fullmatch(text.strip())
    if match is None:
        return None
    unit = (match.group(2) or "b").lower()
    base = 1024 if "i" in unit else 1000
    multiplier: int = base ** "bkmgtpe".index(unit[0])
    return float(match.group(1)) * multiplier


def _bytes_value(text: str) -> float | None:
    match = _BYTES.fullmatch(text)
    if match is None:
        return None
    unit = match.group(2).lower()
    base = 1024 if "i" in unit else 1000
    multiplier: int = base ** _BYTE_POWER[unit[0]]
    return float(match.group(1)) * multiplier


def tokenize(source: str) -> list[Token]:
    """All tokens of `source`, ending with EOF; raise LogQLError at the first character that is not LogQL."""
    tokens: list[Token] = []
    pos, line, line_start = 0, 1, 0
    while True:
        # Whitespace and comments.
        while pos < len(source):
            ch = source[pos]
            if ch == "\n":
                pos, line, line_start = pos + 1, line + 1, pos + 1
            elif ch.isspace():
                pos += 1
            elif ch == "#":
                end = source.find("\n", pos)
                pos = len(source) if end < 0 else end
            else:
                break
        column = pos - line_start + 1
        if pos >= len(source):
            tokens.append(Token("EOF", "", line, column))
            return tokens
        token, pos = _one(source, pos, line, column)
        tokens.append(token)
        if token.kind == "STRING" and "\n" in token.text:  # a raw string may span lines
            line += token.text.count("\n")
            line_start = pos - (len(token.text) - token.text.rfind("\n") - 1)


def _one(source: str, pos: int, line: int, column: int) -> tuple[Token, int]:
    ch = source[pos]
    if ch in '"`':
        return _string(source, pos, line, column)
    if ch == "[":
        end = source.find("]", pos)
        if end < 0:
            raise LogQLError("missing closing ']' in range", line, column)
        inner = source[pos + 1 : end]
        seconds = duration_seconds(inner.strip())
        if seconds is None or not _PROM_DURATION.fullmatch(inner.strip()) or seconds <= 0:
            raise LogQLError(f"invalid range duration {inner!r}: use e.g. [30s], [5m], [1h30m]", line, column)
        return Token("RANGE", source[pos : end + 1], line, column, seconds), end + 1
    if ch.isdigit() or (ch == "." and source[pos + 1 : pos + 2].isdigit()):
        number = _NUMBER.match(source, pos)
        assert number is not None  # a digit or ".digit" always starts a number
        tail = _UNIT_TAIL.match(source, number.end())
        assert tail is not None  # the pattern matches the empty string
        word = source[pos : tail.end()]
        if tail.end() > number.end():
            seconds = duration_seconds(word)
            if seconds is not None:
                return Token("DURATION", word, line, column, seconds), tail.end()
            size = _bytes_value(word)
            if size is not None:
                return Token("BYTES", word, line, column, size), tail.end()
            if source[number.end()].isalpha():
                raise LogQLError(f"invalid number, duration or size {word!r}", line, column)
        return Token("NUMBER", number.group(), line, column, number.group()), number.end()
    if ch == "-" and source.startswith("--", pos):
        for flag in _FLAGS:
            if source.startswith(flag, pos):
                return Token("FLAG", flag, line, column, flag), pos + len(flag)
    ident = _IDENT.match(source, pos)
    if ident is not None:
        return Token("IDENT", ident.group(), line, column, ident.group()), ident.end()
    for op in _OPERATORS:
        if source.startswith(op, pos):
            return Token("OP", op, line, column, op), pos + len(op)
    raise LogQLError(f"unexpected character {ch!r}", line, column)


def _string(source: str, pos: int, line: int, column: int) -> tuple[Token, int]:
    quote = source[pos]
    if quote == "`":
        end = source.find("`", pos + 1)
        if end < 0:
            raise LogQLError("unterminated raw string", line, column)
        return Token("STRING", source[pos : end + 1], line, column, source[pos + 1 : end]), end + 1
    out: list[str] = []
    i = pos + 1
    while i < len(source):
        ch = source[i]
        if ch == '"':
            return Token("STRING", source[pos : i + 1], line, column, "".join(out)), i + 1
        if ch == "\n":
            break
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        code, i = _escape(source, i, line, column + (i - pos))
        out.append(code)
    raise LogQLError("unterminated string", line, column)


def _escape(source: str, i: int, line: int, column: int) -> tuple[str, int]:
    """One Go escape sequence at source[i] == '\\' (strconv.Unquote rules); return the text and next index."""
    kind = source[i + 1 : i + 2]
    if kind in _ESCAPES:
        return _ESCAPES[kind], i + 2
    widths = {"x": 2, "u": 4, "U": 8}
    if kind in widths:
        digits = source[i + 2 : i + 2 + widths[kind]]
        if len(digits) == widths[kind] and all(c in "0123456789abcdefABCDEF" for c in digits):
            return chr(int(digits, 16)), i + 2 + widths[kind]
    elif kind in "01234567" and kind:
        digits = source[i + 1 : i + 4]
        if len(digits) == 3 and all(c in "01234567" for c in digits) and int(digits, 8) < 256:
            return chr(int(digits, 8)), i + 4
    raise LogQLError(f"invalid escape sequence {source[i : i + 2]!r} in string", line, column)
