"""The front end's error contract, shared by the SQL fuzz tests and the regressions they found."""

from __future__ import annotations

import re

from engine.errors import DuckstreamError


def assert_one_located_line(err: DuckstreamError, text: str) -> None:
    """``err`` reads as one non-empty line, and its line/column (if any) point inside ``text``."""
    message = str(err)
    assert message.strip(), "empty error message"
    assert "\n" not in message and "\r" not in message, f"error message is not one line: {message!r}"
    line, col = getattr(err, "line", None), getattr(err, "col", None)
    if line is None:
        return
    # Editors break lines at \n, and also at a lone \r: a position is fine under either reading.
    for lines in (text.split("\n"), re.split(r"\r\n|\r|\n", text)):
        if 1 <= line <= len(lines) and (col is None or 1 <= col <= len(lines[line - 1]) + 1):
            return
    lines = text.split("\n")
    where = f"line {line}, column {col}"
    raise AssertionError(f"{where} is outside the text ({len(lines)} lines): {message}")
