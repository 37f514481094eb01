"""Fuzzing the SQL front end: any text in, a Program or one DuckstreamError out.

Programs are the ones we ship (``queries/*.sql``) and the SQL of every golden case, mutated at the
token level (tokens deleted, duplicated, swapped, replaced; keywords and odd characters inserted;
the text cut short), plus text made from scratch. ``compile_program`` must return a ``Program`` or
raise a ``DuckstreamError`` whose message is one line and whose line/column, when given, point
inside the text. Anything else escaping (sqlglot, DuckDB, KeyError, AttributeError, ...) is a bug.
Crashes found here are pinned in ``test_sql_regressions.py``.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from engine.casefile import parse_case
from engine.errors import DuckstreamError
from engine.plan.logical import Program
from engine.plan.planner import compile_program
from tests.fuzz._program import assert_one_located_line

ROOT = Path(__file__).resolve().parents[2]
CORPUS = [p.read_text() for p in sorted((ROOT / "queries").glob("*.sql"))] + [
    parse_case(p.read_text(), str(p)).sql for p in sorted((ROOT / "tests" / "golden" / "cases").glob("*.case"))
]
TOKEN = re.compile(
    r"\s+|--[^\n]*|/\*.*?\*/|'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|[A-Za-z_][A-Za-z_0-9]*|[0-9]+(?:\.[0-9]+)?|.", re.S
)
WORDS = [
    "SELECT", "FROM", "WHERE", "GROUP BY", "HAVING", "ORDER BY", "LIMIT", "TABLE", "TUMBLE", "HOP", "SESSION",
    "CUMULATE", "DESCRIPTOR", "INTERVAL", "WATERMARK FOR", "AS", "CREATE", "TABLE", "STREAM", "PUMP", "VIEW",
    "OR REPLACE", "INSERT INTO", "VALUES", "WITH", "JOIN", "LEFT JOIN", "ON", "USING", "UNION ALL", "EXCEPT",
    "DISTINCT", "CASE", "WHEN", "THEN", "ELSE", "END", "NULL", "NOT", "AND", "OR", "IN", "BETWEEN", "LIKE", "IS",
    "CAST", "TRY_CAST", "EMIT", "CHANGES", "FINAL", "STEP", "RANGE", "OVER", "PARTITION BY", "ROWS", "WINDOW",
    "window_start", "window_end", "window_time", "rowtime", "ROWTIME", "COUNT(*)", "COUNT", "SUM", "MIN", "MAX",
    "AVG", "FIRST_VALUE", "LAST_VALUE", "*", ",", ";", "(", ")", "'", '"', "`", "[", "]", "{", "}", "::", ".",
    "-- ", "/*", "*/", "$1", "$", "?", ":x", "@", "'5' SECOND", "0", "-1", "1e999", "99999999999999999999999",
    "TIMESTAMP", "TIMESTAMP(3)", "VARCHAR", "INT", "BIGINT", "DOUBLE", "DECIMAL(38, 10)", "DECIMAL(99, 100)",
    "DATE", "TIME", "BOOLEAN", "INT[]", "STRUCT(a INT)", "MAP(INT, INT)", "INTERVAL '1' MINUTE",
    "INTERVAL '-1' SECOND", "INTERVAL '0' SECOND", "INTERVAL 'x' YEAR", "LATERAL", "UNNEST", "QUALIFY",
    "PIVOT", "FILTER (WHERE", "LAG(", "ROW_NUMBER()", "PRIMARY KEY", "NOT NULL", "SECOND", "MINUTE", "HOUR",
    "DAY", "MONTH", "YEAR", "WITH (", "'connector' = 'file'", "'format' = 'csv'", "SELECT STREAM",
    "CREATE OR REPLACE PUMP p AS INSERT INTO", "STEP(", "IN", "OUT", "INOUT", "DEFAULT", "COLLATE", "x",
]  # fmt: skip
ODD_CHARS = st.one_of(
    st.characters(min_codepoint=32, max_codepoint=126),
    st.sampled_from(["\x00", "\t", "\r", "\n", "\x0b", "\x0c", "\x85", "\u2028", "\ufeff", "\ud800", "é", "😀"]),
    st.characters(),
)


def check_program(text: str) -> None:
    """The front end's contract on ``text`` (the property every test here checks)."""
    # sqlglot logs a warning for each statement it falls back on; hundreds of them drown the output.
    logger = logging.getLogger("sqlglot")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        program = compile_program(text)
    except DuckstreamError as err:
        assert_one_located_line(err, text)
    else:
        assert isinstance(program, Program)
    finally:
        logger.setLevel(level)


MUTATION = st.one_of(
    st.tuples(st.just("delete"), st.integers(0, 10**6)),
    st.tuples(st.just("duplicate"), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.just("swap"), st.integers(0, 10**6), st.integers(0, 10**6)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.sampled_from(WORDS)),
    st.tuples(st.just("replace"), st.integers(0, 10**6), st.sampled_from(WORDS)),
    st.tuples(st.just("char"), st.integers(0, 10**6), ODD_CHARS),
    st.tuples(st.just("truncate"), st.integers(0, 10**6)),
)


def mutate(text: str, mutations: list[tuple]) -> str:
    """``text`` with the token-level ``mutations`` applied in order (indexes wrap around)."""
    tokens = TOKEN.findall(text) or [""]
    for kind, where, *rest in mutations:
        i = where % len(tokens)
        if kind == "delete":
            del tokens[i]
        elif kind == "duplicate":
            tokens.insert(i, tokens[rest[0] % len(tokens)])
        elif kind == "swap":
            j = rest[0] % len(tokens)
            tokens[i], tokens[j] = tokens[j], tokens[i]
        elif kind == "insert":
            tokens.insert(i, f" {rest[0]} ")
        elif kind == "replace":
            tokens[i] = rest[0]
        elif kind == "char":
            tokens.insert(i, rest[0])
        else:
            tokens = tokens[:i]
        tokens = tokens or [""]
    return "".join(tokens)


@given(base=st.sampled_from(CORPUS), mutations=st.lists(MUTATION, min_size=1, max_size=4))
def test_mutated_programs_compile_or_fail_with_one_located_line(base: str, mutations: list[tuple]) -> None:
    check_program(mutate(base, mutations))


@given(base=st.sampled_from(CORPUS), cut=st.integers(0, 10**6))
def test_truncated_programs_compile_or_fail_with_one_located_line(base: str, cut: int) -> None:
    check_program(base[: cut % (len(base) + 1)])


@given(text=st.text(max_size=200))
def test_random_text_compiles_or_fails_with_one_located_line(text: str) -> None:
    check_program(text)
