"""DuckDB macros and Python UDFs behind the KDA SQL function library.

``engine.sql.functions.lower_functions`` rewrites KDA calls (``TSDIFF``, ``REGEX_REPLACE``,
``SUBSTRING`` with SQL's start rules, ...) into calls of the ``kda_*`` functions defined here;
``register(con)`` defines them on a connection (``engine.runtime.duck.connect`` calls it, so the
planner's dry runs and the operators see the same functions). Macros are inlined by DuckDB, so
they cost what the SQL they stand for costs; the two Python UDFs are used only by the functions
that cannot be written in SQL (a per-row clock, and splitting with quote and escape characters).

A value that makes a function fail (``REGEX_REPLACE`` with a start below 1, a string too long for
``CAST(... AS VARCHAR(n))``) raises DuckDB's ``Invalid Input Error`` through ``error()``, which
the runtime turns into an ``eval`` error row for that row.
"""

from __future__ import annotations

from datetime import datetime, timezone

import duckdb
import pyarrow as pa
from duckdb import func, sqltypes

_MACROS = r"""
CREATE MACRO kda_step(x, n) AS x - ((x % n) + n) % n;
CREATE MACRO kda_ceil_to(x, unit) AS
    CASE WHEN date_trunc(unit, x) = x THEN date_trunc(unit, x)
         ELSE date_trunc(unit, x) + CAST('1 ' || unit AS INTERVAL) END;
CREATE MACRO kda_initcap(s) AS
    array_to_string(list_transform(string_split(s, ' '), lambda w: upper(w[1]) || lower(w[2:])), ' ');
CREATE MACRO kda_substr(s, p) AS substring(s, greatest(p, 1)),
    (s, p, n) AS CASE WHEN n < 0 THEN error('SUBSTRING: negative length ' || n)
                      ELSE substring(s, greatest(p, 1), greatest(p + n - greatest(p, 1), 0)) END;
CREATE MACRO kda_overlay(s, r, p) AS kda_substr(s, 1, greatest(p - 1, 0)) || r || kda_substr(s, p + length(r)),
    (s, r, p, n) AS kda_substr(s, 1, greatest(p - 1, 0)) || r || kda_substr(s, p + n);
CREATE MACRO kda_substring_regex(s, pattern) AS
    CASE WHEN regexp_matches(s, pattern) THEN regexp_extract(s, pattern) END;
CREATE MACRO kda_regex_nth(t, pattern, repl, n) AS
    array_to_string(list_transform(regexp_split_to_array(t, pattern), lambda piece, i:
        piece || coalesce(CASE WHEN i = n
                               THEN regexp_replace(regexp_extract_all(t, pattern)[i], '^(?:' || pattern || ')$', repl)
                               ELSE regexp_extract_all(t, pattern)[i] END, '')), '');
CREATE MACRO kda_regex_replace(s, pattern, repl, start, occurrence) AS
    CASE WHEN start < 1 THEN error('REGEX_REPLACE: startPosition must be 1 or more, not ' || start)
         WHEN occurrence < 0 THEN error('REGEX_REPLACE: occurrence must be 0 or more, not ' || occurrence)
         WHEN occurrence = 0 THEN left(s, start - 1) || regexp_replace(substring(s, start), pattern, repl, 'g')
         ELSE left(s, start - 1) || kda_regex_nth(substring(s, start), pattern, repl, occurrence) END;
CREATE MACRO kda_similar_regex(p) AS
    replace(replace(regexp_replace(p, '([.^$\\])', '\\\1', 'g'), '%', '.*'), '_', '.');
CREATE MACRO kda_now() AS make_timestamp(epoch_us(now()));
CREATE MACRO kda_extract_second(x) AS CAST(date_part('millisecond', x) / 1000.0 AS DECIMAL(5, 3));
CREATE MACRO kda_tsdiff(a TIMESTAMP, b TIMESTAMP) AS epoch_ms(b) - epoch_ms(a),
    (a BIGINT, b BIGINT) AS b - a;
CREATE MACRO kda_to_timestamp(ms) AS make_timestamp(CAST(ms AS BIGINT) * 1000);
CREATE MACRO kda_utc(x) AS make_timestamp(epoch_us(x));
CREATE MACRO kda_varchar(v, n) AS
    CASE WHEN length(v) > n THEN error('CAST: ''' || left(v, 40) || ''' is longer than VARCHAR(' || n || ')')
         ELSE v END;
CREATE MACRO kda_regex_log_parse(s, pattern, names) AS
    CASE WHEN regexp_matches(s, pattern) THEN regexp_extract(s, pattern, names) END;
CREATE MACRO kda_sys_log_parse(s) AS
    CASE WHEN regexp_matches(s, '^[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2} ') THEN struct_pack(
        COLUMN1 := try_strptime(CAST(year(now()) AS VARCHAR) || ' '
                                || regexp_extract(s, '^([A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2}) ', 1),
                                '%Y %b %d %H:%M:%S'),
        COLUMN2 := regexp_extract(s, '^[A-Z][a-z]{2} +\d{1,2} \d{2}:\d{2}:\d{2} (.*)$', 1)) END;
"""


def _current_row_timestamp() -> datetime:
    """A fresh UTC wall-clock reading for each row (naive, as every engine timestamp is)."""
    return datetime.now(timezone.utc).replace(tzinfo=None)


def _split_one(text: str, delim: str, escape: str, quote: str) -> list[str]:
    """Split ``text`` at ``delim``; ``escape`` makes the next character literal, text between
    quote characters (``quote`` = one character, or begin and end) is kept whole, quotes dropped."""
    begin, end = (quote[0], quote[-1]) if quote else ("", "")
    fields, cur, i, quoted = [], [], 0, False
    while i < len(text):
        if escape and text.startswith(escape, i) and i + len(escape) < len(text):
            i += len(escape)
            cur.append(text[i])
            i += 1
        elif quoted:
            if text[i] == end:
                quoted = False
            else:
                cur.append(text[i])
            i += 1
        elif begin and text[i] == begin:
            quoted = True
            i += 1
        elif delim and text.startswith(delim, i):
            fields.append("".join(cur))
            cur = []
            i += len(delim)
        else:
            cur.append(text[i])
            i += 1
    fields.append("".join(cur))
    return fields


def _split_quoted(text: pa.Array, delim: pa.Array, escape: pa.Array, quote: pa.Array) -> pa.Array:
    """Arrow UDF behind VARIABLE_COLUMN_LOG_PARSE with escape/quote characters."""
    out: list[list[str] | None] = []
    for t, d, e, q in zip(text.to_pylist(), delim.to_pylist(), escape.to_pylist(), quote.to_pylist()):
        out.append(None if t is None or d is None else _split_one(t, d, e or "", q or ""))
    return pa.array(out, pa.list_(pa.string()))


def register(con: duckdb.DuckDBPyConnection) -> None:
    """Define the ``kda_*`` macros and UDFs on ``con`` (once per connection)."""
    con.execute(_MACROS)
    con.create_function("kda_current_row_timestamp", _current_row_timestamp, [], sqltypes.TIMESTAMP, side_effects=True)
    varchar = sqltypes.VARCHAR
    con.create_function(
        "kda_split_quoted",
        _split_quoted,
        [varchar, varchar, varchar, varchar],
        duckdb.list_type(varchar),
        type=func.ARROW,
        null_handling=func.SPECIAL,
    )
