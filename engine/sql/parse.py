"""PARSE: program text -> sqlglot statements with positions, or one SqlError with a location."""

from __future__ import annotations

import difflib
import logging
import re

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError
from sqlglot.tokens import TokenType

from engine.errors import SqlError
from engine.sql.dialect import Duckstream

logging.getLogger("sqlglot").setLevel(logging.CRITICAL)  # we report errors ourselves, in one line
_TOKEN_LINE = re.compile(r"[Ll]ine (\d+), [Cc]ol(?:umn)?: (\d+)")


def parse_program(text: str, path: str | None = None) -> list[exp.Expr]:
    """Parse every statement of a program (``;``-separated, comments allowed).

    Raises ``SqlError`` with ``path:line:col`` pointing at the first character of the offending
    token.
    """
    _check_tokens(text, path)
    try:
        trees = sqlglot.parse(text, read=Duckstream)
    except ParseError as err:
        first = err.errors[0] if err.errors else {}
        line, col = first.get("line"), first.get("col")
        highlight = first.get("highlight") or ""
        # sqlglot's own line count slips after some tokens (a keyword spanning a line break, "$"):
        # find the token it means and take the position from the token's offset in the text
        token = _token_at(text, line, col, highlight)
        if token is not None:
            line, col = _where_tok(text, token)
        elif isinstance(col, int) and highlight:
            col = max(1, col - len(highlight) + 1)
        lines = text.split("\n")
        if isinstance(line, int) and line > len(lines):  # the error is at the end of the text
            line, col = len(lines), len(lines[-1]) + 1
        desc = str(first.get("description") or err).strip()
        raise SqlError(_clean(desc, highlight), line, col, path) from None
    except TokenError as err:
        open_at = _unterminated(text)
        if open_at is not None:
            offset, what = open_at
            line, col = text.count("\n", 0, offset) + 1, offset - text.rfind("\n", 0, offset)
            raise SqlError(f"{what} is never closed", line, col, path) from None
        m = _TOKEN_LINE.search(str(err))
        line, col = (int(m.group(1)), int(m.group(2))) if m else (None, None)
        raise SqlError(f"cannot read the program: {str(err).splitlines()[0]}", line, col, path) from None
    return [t for t in trees if t is not None]


STATEMENT_WORDS = ("SELECT", "WITH", "CREATE", "INSERT", "VALUES", "FROM")
_AFTER_COMMA_BAD = {TokenType.COMMA, TokenType.R_PAREN, TokenType.FROM, TokenType.SEMICOLON}


def _check_tokens(text: str, path: str | None) -> None:
    """Mistakes the lenient parser would let through or report far from where they are."""
    try:
        toks = Duckstream().tokenize(text)
    except TokenError:
        return  # parse_program reports it
    start = True
    for i, tok in enumerate(toks):
        if start and tok.token_type not in (TokenType.SEMICOLON, TokenType.L_PAREN):
            word = tok.text.upper()
            if tok.token_type == TokenType.VAR and word not in STATEMENT_WORDS:
                close = difflib.get_close_matches(word, ["SELECT", "CREATE", "INSERT", "WITH"], n=1)
                hint = f"did you mean {close[0]}?" if close else "a statement starts with CREATE, INSERT or SELECT"
                raise SqlError(f"unknown statement {tok.text!r}", *_where_tok(text, tok), path, hint)
        start = tok.token_type == TokenType.SEMICOLON
        if tok.token_type == TokenType.COMMA and i + 1 < len(toks) and toks[i + 1].token_type in _AFTER_COMMA_BAD:
            nxt = toks[i + 1]
            raise SqlError(f"unexpected {nxt.text!r} after ','", *_where_tok(text, nxt), path, "remove the extra comma")


def _unterminated(text: str) -> tuple[int, str] | None:
    """(offset, what) of a string, quoted name or comment that the text never closes, or None."""
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if text.startswith("--", i):
            end = text.find("\n", i)
            i = n if end < 0 else end + 1
        elif text.startswith("/*", i):
            end = text.find("*/", i + 2)
            if end < 0:
                return i, "a /* comment"
            i = end + 2
        elif ch in "'\"`":
            j = i + 1
            while True:
                j = text.find(ch, j)
                if j < 0:
                    return i, "a quoted name" if ch != "'" else "a string"
                if text.startswith(ch * 2, j):  # a doubled quote stands for itself
                    j += 2
                    continue
                break
            i = j + 1
        else:
            i += 1
    return None


def _token_at(text: str, line: object, col: object, highlight: str) -> object | None:
    try:
        toks = Duckstream().tokenize(text)
    except TokenError:
        return None
    for tok in toks:
        if tok.line == line and tok.col == col and (not highlight or tok.text == highlight):
            return tok
    return None


def _where_tok(text: str, tok: object) -> tuple[int, int]:
    """1-based (line, column) of a token's first character, from its offset in the text
    (the tokenizer's own line count is off after a token that spans a line break)."""
    start = tok.start  # type: ignore[attr-defined]
    return text.count("\n", 0, start) + 1, start - text.rfind("\n", 0, start)


def _clean(description: str, highlight: str) -> str:
    text = description.rstrip(".")
    if text.startswith("Invalid expression / Unexpected token"):
        text = f"unexpected {highlight!r}" if highlight else "unexpected token"
    elif text.startswith("Required keyword"):
        m = re.search(r"\.(\w+)'>", text)
        text = f"incomplete {m.group(1).upper() if m else 'statement'}: something is missing here"
    return text[:1].lower() + text[1:]
