"""Context-aware completion for the REPL: what Tab offers depends on where the cursor is.

``complete(before, after, catalog)`` looks at the statement around the cursor (``before`` and
``after`` it, split at ``;``) and returns the word being completed and the candidates:

- after ``FROM``, ``JOIN``, ``INTO``, ``TABLE``, ``DESCRIBE``, ``SHOW CREATE``, ``DROP STREAM``:
  stream names; after ``STOP`` / ``DROP PUMP``: pump names;
- after ``name.`` (a stream or an alias given in the statement, before or after the cursor):
  that stream's columns;
- in an expression (after ``SELECT``, ``WHERE``, ``BY``, ``ON``, ``HAVING``, an operator, ``,``
  or ``(``): the columns of the streams the statement names (anywhere in it), or of every known
  stream when it names none yet, then functions and a few expression keywords;
- a dot command's name, and after ``.mode`` the modes, after ``.chart`` columns;
- anywhere else: keywords, stream names and columns.

Matching ignores case. The catalog is asked for columns only of the streams needed, so a Tab
after ``FROM`` costs nothing.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass

STREAM_WORDS = {"FROM", "JOIN", "INTO", "TABLE", "DESCRIBE", "DESC"}
EXPRESSION_WORDS = {
    "SELECT", "WHERE", "BY", "ON", "HAVING", "AND", "OR", "NOT", "WHEN", "THEN", "ELSE", "CASE",
    "DISTINCT", ",", "(", "=", "<", ">", "+", "-", "*", "/", "%", "||", "IN", "IS",
}  # fmt: skip
EXPRESSION_KEYWORDS = ("CASE", "CAST", "DISTINCT", "NULL", "NOT", "TRUE", "FALSE", "INTERVAL", "TIMESTAMP")
NOT_ALIASES = {
    "WHERE", "GROUP", "ORDER", "JOIN", "LEFT", "RIGHT", "INNER", "OUTER", "FULL", "CROSS", "ON",
    "USING", "HAVING", "LIMIT", "UNION", "EMIT", "WINDOW", "OVER", "AS", "WITH",
}  # fmt: skip
_TOKEN = re.compile(r'"(?:[^"]|"")*"?|[A-Za-z_][\w$]*|\|\||[^\s\w]')
_SOURCE = re.compile(
    r'\b(?:FROM|JOIN|TABLE)\s+("(?:[^"]|"")+"|[A-Za-z_][\w$]*)(?:\s+(?:AS\s+)?("[^"]+"|[A-Za-z_][\w$]*))?',
    re.IGNORECASE,
)


@dataclass
class Catalog:
    """What completion can ask the session (each a cheap call, or cached by the session)."""

    streams: Callable[[], list[str]]
    columns: Callable[[str], list[str]]  # the columns of one stream ([] if unknown)
    functions: Callable[[], set[str]]
    pumps: Callable[[], list[str]]
    keywords: tuple[str, ...] = ()
    dot_commands: tuple[str, ...] = ()
    modes: tuple[str, ...] = ()


def _statement(before: str, after: str) -> tuple[str, str]:
    """The part of the statement under the cursor that is before it and after it."""
    return before[before.rfind(";") + 1 :], after.split(";", 1)[0]


def _unquote(name: str) -> str:
    return name[1:-1].replace('""', '"') if name.startswith('"') and name.endswith('"') and len(name) > 1 else name


def named_streams(text: str, known: list[str]) -> dict[str, str]:
    """Aliases and names of the streams ``text`` reads (lower-cased) -> the stream's name."""
    by_key = {k.lower(): k for k in known}
    found: dict[str, str] = {}
    for m in _SOURCE.finditer(text):
        name = _unquote(m.group(1))
        stream = by_key.get(name.lower())
        if stream is None:
            continue
        found[name.lower()] = stream
        alias = m.group(2)
        if alias and alias.upper() not in NOT_ALIASES:
            found[_unquote(alias).lower()] = stream
    return found


def _match(word: str, candidates: list[str]) -> list[str]:
    low = word.lower()
    seen: dict[str, None] = {}
    for c in candidates:
        if c.lower().startswith(low) and c.lower() != low:
            seen.setdefault(c, None)
    return list(seen)


def complete(before: str, after: str, catalog: Catalog) -> tuple[str, list[str]]:
    """The word being completed (what the cursor ends) and the candidates for it."""
    head, tail = _statement(before, after)
    stripped = head.lstrip()
    if stripped.startswith("."):
        return _dot(stripped, catalog)
    qualified = re.search(r'("(?:[^"]|"")+"|[A-Za-z_][\w$]*)\.([\w$]*)$', head)
    if qualified:
        word = qualified.group(2)
        streams = named_streams(head + tail, catalog.streams())
        qualifier = _unquote(qualified.group(1)).lower()
        stream = streams.get(qualifier) or next((s for s in catalog.streams() if s.lower() == qualifier), None)
        return word, _match(word, catalog.columns(stream)) if stream else []
    m = re.search(r"[\w$]*$", head)
    word = m.group(0) if m else ""
    tokens = [t.upper() for t in _TOKEN.findall(head[: len(head) - len(word)])]
    prev = tokens[-1] if tokens else ""
    prev2 = tokens[-2] if len(tokens) > 1 else ""
    if prev == "PUMP" or (prev == "STOP" and len(tokens) == 1):
        return word, _match(word, catalog.pumps())
    if (
        prev in STREAM_WORDS
        or (prev2, prev) == ("SHOW", "CREATE")
        or (prev in ("STREAM", "VIEW") and prev2 != "SELECT")
    ):
        if prev == "TABLE" and prev2 == "CREATE":
            return word, []
        return word, _match(word, catalog.streams())
    if prev == "(" and prev2 == "DESCRIPTOR":
        return word, _match(word, _statement_columns(head + tail, catalog))
    if prev in EXPRESSION_WORDS or (prev, prev2) == ("STREAM", "SELECT"):
        columns = _statement_columns(head + tail, catalog)
        functions = sorted(catalog.functions(), key=str.lower)
        return word, _match(word, [*columns, *EXPRESSION_KEYWORDS, *functions])
    if not word:
        return word, []
    everything = [*catalog.keywords, *catalog.streams(), *_statement_columns(head + tail, catalog)]
    return word, _match(word, [*everything, *sorted(catalog.functions(), key=str.lower)])


def _statement_columns(text: str, catalog: Catalog) -> list[str]:
    """Columns of the streams ``text`` names, or of every known stream if it names none."""
    streams = list(dict.fromkeys(named_streams(text, catalog.streams()).values())) or catalog.streams()
    out: list[str] = []
    for stream in streams:
        out += catalog.columns(stream)
    return list(dict.fromkeys(out))


def _dot(text: str, catalog: Catalog) -> tuple[str, list[str]]:
    parts = text.split()
    if len(parts) <= 1 and not text.endswith(" "):
        return text, _match(text, list(catalog.dot_commands))
    command = parts[0].lower()
    word = "" if text.endswith(" ") else parts[-1]
    if command == ".mode":
        return word, _match(word, list(catalog.modes))
    if command == ".chart":
        return word, _match(word, [*_statement_columns("", catalog), "BY", "off"])
    return word, []


__all__ = ["Catalog", "complete", "named_streams"]
