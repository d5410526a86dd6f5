"""The one error of the LogQL front end: a message with the 1-based line and column in the expression."""

from __future__ import annotations


class LogQLError(ValueError):
    """A LogQL expression that is malformed or outside the supported subset, with its position.

    Positions are within the expression string; whoever read it from a file adds the file, group and rule.
    """

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(f"line {line}, column {column}: {message}")
        self.message = message
        self.line = line
        self.column = column
