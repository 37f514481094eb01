"""PARSE: program text -> sqlglot statements with positions, or one SqlError with a location."""

from __future__ import annotations

import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from engine.errors import SqlError
from engine.sql.dialect import Duckstream

_TOKEN_LINE = re.compile(r"[Ll]ine (\d+), [Cc]ol(?:umn)?: (\d+)")


def parse_program(text: str, path: str | None = None) -> list[exp.Expression]:
    """Parse every statement of a program (``;``-separated, comments allowed).

    Raises ``SqlError`` with ``path:line:col`` pointing at the first character of the offending
    token.
    """
    try:
        trees = sqlglot.parse(text, read=Duckstream)
    except ParseError as err:
        first = err.errors[0] if err.errors else {}
        line, col = first.get("line"), first.get("col")
        highlight = first.get("highlight") or ""
        if isinstance(col, int) and highlight:
            col = max(1, col - len(highlight) + 1)
        desc = str(first.get("description") or err).strip()
        raise SqlError(_clean(desc, highlight), line, col, path) from None
    except TokenError as err:
        m = _TOKEN_LINE.search(str(err))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        raise SqlError(f"cannot read the program: {str(err).splitlines()[0]}", line, col, path) from None
    return [t for t in trees if t is not None]


def _clean(description: str, highlight: str) -> str:
    text = description.rstrip(".")
    if text.startswith("Invalid expression / Unexpected token"):
        text = f"unexpected {highlight!r}" if highlight else "unexpected token"
    elif text.startswith("Required keyword"):
        m = re.search(r"\.(\w+)'>", text)
        text = f"incomplete {m.group(1).upper() if m else 'statement'}: something is missing here"
    return text[:1].lower() + text[1:]
