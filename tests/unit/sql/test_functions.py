"""KDA's SQL function library (engine.sql.functions), evaluated through the engine.

Each test compiles a small program with ``engine.compile``, pushes rows and reads the result, so
the lowering, the kda_* macros and the runtime's error routing are all exercised; the expected
values are the KDA SQL Reference's own examples where it gives one.
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal
from typing import Any

import pytest

import engine
from engine.errors import PlanError, SqlError
from engine.sql.functions import (
    UNSUPPORTED_TABLE_FUNCTIONS,
    capture_groups,
    java_datetime_format,
    java_regex,
    similar_to_regex,
    w3c_regex,
)
from engine.sql.parse import parse_program

APACHE = '127.0.0.1 - frank [10/Oct/2000:13:55:36 -0700] "GET /apache_pb.gif HTTP/1.0" 200 2326'


def _program(columns: str, select: str, tail: str, kda: bool) -> engine.Program:
    """A one-query program; ``kda``: a KDA SQL program (SELECT STREAM), where KDA's meaning of a
    name DuckDB also has (SUBSTRING, SIMILAR TO, TO_TIMESTAMP, EXTRACT, CAST) holds."""
    if kda:
        return engine.compile(f"CREATE STREAM t ({columns});\nSELECT STREAM {select}\n{tail};")
    return engine.compile(f"CREATE TABLE t ({columns});\nSELECT {select}\n{tail};")


def _plain(rows: list[dict[str, Any]], kda: bool) -> list[dict[str, Any]]:
    """KDA results with the lower-case names the tests use and without the ROWTIME of each row."""
    if not kda:
        return rows
    return [{k.lower(): v for k, v in r.items() if k != "ROWTIME"} for r in rows]


def _run(
    columns: str, select: str, rows: list[dict[str, Any]], tail: str = "FROM t", kda: bool = False
) -> list[dict[str, Any]]:
    program = _program(columns, select, tail, kda)
    program.push("t", rows)
    program.flush()
    return _plain(program.poll("result").to_pylist(), kda)


def _one(columns: str, select: str, row: dict[str, Any], kda: bool = False) -> dict[str, Any]:
    out = _run(columns, select, [row], kda=kda)
    assert len(out) == 1
    return out[0]


def _errors(
    columns: str, select: str, rows: list[dict[str, Any]], kda: bool = False
) -> tuple[list[dict[str, Any]], list[str]]:
    program = _program(columns, select, "FROM t", kda)
    program.push("t", rows)
    program.flush()
    errors = program.poll_errors().to_pylist()
    return _plain(program.poll("result").to_pylist(), kda), [f"{e['reason']}:{e['message']}" for e in errors]


def _plan_error(sql: str) -> SqlError:
    with pytest.raises(SqlError) as info:
        engine.compile(sql)
    return info.value


# ---------------------------------------------------------------------------- numeric


def test_step_and_floor_ceil_to_unit() -> None:
    row = _one(
        "ts TIMESTAMP, n INT",
        "STEP(ts BY INTERVAL '10' SECOND) AS s10, STEP(ts BY INTERVAL '5' DAY) AS s5d, STEP(n BY 5) AS sn,"
        " STEP(-n BY 5) AS sneg, FLOOR(ts TO MINUTE) AS fm, FLOOR(ts TO YEAR) AS fy, CEIL(ts TO HOUR) AS ch,"
        " CEIL(ts TO SECOND) AS cs",
        {"ts": "2024-05-01T13:48:23Z", "n": 23},
    )
    assert row["s10"] == datetime(2024, 5, 1, 13, 48, 20)  # KDA's example
    # 5-day steps count from 1970-01-01: 19844 days to 2024-05-01, 19840 = 2024-04-27
    assert row["s5d"] == datetime(2024, 4, 27)
    assert (row["sn"], row["sneg"]) == (20, -25)  # rounds down, also below zero
    assert row["fm"] == datetime(2024, 5, 1, 13, 48)
    assert row["fy"] == datetime(2024, 1, 1)
    assert row["ch"] == datetime(2024, 5, 1, 14, 0)
    assert row["cs"] == datetime(2024, 5, 1, 13, 48, 23)  # already on a second: unchanged


def test_step_null_is_null() -> None:
    row = _one(
        "ts TIMESTAMP, n INT", "STEP(ts BY INTERVAL '1' MINUTE) AS a, STEP(n BY 5) AS b", {"ts": None, "n": None}
    )
    assert row == {"a": None, "b": None}


def test_numeric_functions() -> None:
    row = _one(
        "x DOUBLE, a INT, b INT",
        "ABS(-x) AS ab, CEIL(x) AS c, CEILING(x) AS c2, FLOOR(x) AS f, EXP(0) AS e, LN(1) AS ln,"
        " LOG10(1000) AS lg, POWER(2, 10) AS p, MOD(a, b) AS m, MOD(4, 3) AS m2, SQRT(16) AS sq",
        {"x": 2.5, "a": -4, "b": 3},
    )
    assert row == {
        "ab": 2.5,
        "c": 3.0,
        "c2": 3.0,
        "f": 2.0,
        "e": 1.0,
        "ln": 0.0,
        "lg": 3.0,
        "p": 1024.0,
        "m": -1,  # MOD(-4, 3) = -1 in KDA
        "m2": 1,
        "sq": 4.0,
    }


def test_mod_by_zero_is_an_error_row() -> None:
    out, errors = _errors("a INT, b INT", "a, MOD(a, b) AS m", [{"a": 5, "b": 0}, {"a": 7, "b": 2}])
    assert out == [{"a": 7, "m": 1}]
    assert [e.split(":")[0] for e in errors] == ["eval"]


# ---------------------------------------------------------------------------- strings


def test_string_functions() -> None:
    row = _one(
        "s VARCHAR",
        "s || '!' AS cat, CHAR_LENGTH(s) AS cl, CHARACTER_LENGTH(s) AS cl2, INITCAP(s) AS ic, LOWER(s) AS lo,"
        " UPPER(s) AS up",
        {"s": "hELLO  wide wORLD"},
    )
    assert row == {
        "cat": "hELLO  wide wORLD!",
        "cl": 17,
        "cl2": 17,
        "ic": "Hello  Wide World",  # space-delimited words; the double space stays
        "lo": "hello  wide world",
        "up": "HELLO  WIDE WORLD",
    }


def test_position_rules() -> None:
    row = _one(
        "s VARCHAR",
        "POSITION('.com' IN s) AS found, POSITION('xyz' IN s) AS absent, POSITION('' IN s) AS empty",
        {"s": "http://example.com/x"},
    )
    assert row == {"found": 15, "absent": 0, "empty": 1}


def test_substring_forms() -> None:
    row = _one(
        "s VARCHAR",
        "SUBSTRING(s FROM 2 FOR 3) AS a, SUBSTRING(s, 2, 3) AS b, SUBSTRING(s FROM 3) AS c,"
        " SUBSTRING(s FROM 0 FOR 3) AS d, SUBSTRING(s FROM -1 FOR 3) AS e, SUBSTRING(s FROM 20 FOR 2) AS f,"
        " SUBSTRING(s FROM '[0-9]+') AS g, SUBSTRING(s FROM 'z+') AS h",
        {"s": "abc123def"},
        kda=True,
    )
    assert row == {
        "a": "bc1",
        "b": "bc1",
        "c": "c123def",
        "d": "ab",  # start 0 shortens the length by one, as in SQL
        "e": "a",
        "f": "",
        "g": "123",  # the first match of the regex
        "h": None,  # no match: NULL
    }


def test_substring_negative_length_is_an_error_row() -> None:
    out, errors = _errors(
        "s VARCHAR, n INT", "SUBSTRING(s FROM 1 FOR n) AS x", [{"s": "abc", "n": -1}, {"s": "abc", "n": 2}], kda=True
    )
    assert out == [{"x": "ab"}]
    assert len(errors) == 1 and "negative length" in errors[0]


def test_overlay_and_trim() -> None:
    row = _one(
        "s VARCHAR",
        "OVERLAY(s PLACING 'XY' FROM 2 FOR 3) AS o1, OVERLAY(s PLACING 'XY' FROM 2) AS o2,"
        " OVERLAY(s PLACING 'XY' FROM 9) AS o3, TRIM(BOTH 'x' FROM s) AS t1, TRIM(LEADING 'x' FROM s) AS t2,"
        " TRIM(TRAILING 'x' FROM s) AS t3, TRIM(' ' || s || ' ') AS t4",
        {"s": "xabcdefx"},
    )
    assert row == {
        "o1": "xXYdefx",
        "o2": "xXYcdefx",
        "o3": "xabcdefxXY",  # a start past the end appends
        "t1": "abcdef",
        "t2": "abcdefx",
        "t3": "xabcdef",
        "t4": "xabcdefx",
    }


def test_trim_refuses_more_than_one_character() -> None:
    err = _plan_error("CREATE TABLE t (s VARCHAR);\nSELECT TRIM(BOTH 'ab' FROM s) AS x FROM t;")
    assert (err.line, err.col) == (2, 18)
    assert "one character" in err.message


def test_regex_replace_occurrences() -> None:
    row = _one(
        "s VARCHAR",
        "REGEX_REPLACE(s, 'http://', 'https://', 1, 0) AS all_,"
        " REGEX_REPLACE(s, 'o', '0', 1, 0) AS every_o, REGEX_REPLACE(s, 'o', '0', 1, 2) AS second_o,"
        " REGEX_REPLACE(s, 'o', '0', 16, 1) AS first_after_16, REGEX_REPLACE(s, '(w+)', '[$1]', 1, 0) AS grp,"
        " REGEX_REPLACE(s, 'o', '\\$', 1, 1) AS dollar",
        {"s": "http://foo.com/http://www"},
    )
    assert row["all_"] == "https://foo.com/https://www"
    assert row["every_o"] == "http://f00.c0m/http://www"
    assert row["second_o"] == "http://fo0.com/http://www"
    assert row["first_after_16"] == "http://foo.com/http://www"  # no o from position 16 on
    assert row["grp"] == "http://foo.com/http://[www]"
    assert row["dollar"] == "http://f$o.com/http://www"


def test_regex_replace_null_and_bad_arguments() -> None:
    rows = [
        {"s": "aaa", "start": 1, "occ": 0},
        {"s": None, "start": 1, "occ": 0},
        {"s": "aaa", "start": 0, "occ": 0},
        {"s": "aaa", "start": 1, "occ": -1},
        {"s": "aaa", "start": None, "occ": 0},
    ]
    out, errors = _errors("s VARCHAR, start INT, occ INT", "REGEX_REPLACE(s, 'a', 'b', start, occ) AS r", rows)
    assert out == [{"r": "bbb"}, {"r": None}, {"r": None}]
    assert len(errors) == 2
    assert any("startPosition" in e for e in errors) and any("occurrence" in e for e in errors)


def test_like_and_similar_to() -> None:
    rows = [{"s": "TECHNOLOGY"}, {"s": "ENERGY"}, {"s": "50%_OFF"}, {"s": "abcabc"}]
    out = _run(
        "s VARCHAR",
        "s, s SIMILAR TO '%TECH%' AS tech, s LIKE '50!%%' ESCAPE '!' AS pct, s SIMILAR TO '(abc)+' AS rep,"
        " s SIMILAR TO '[A-Z]{6}' AS six, s SIMILAR TO 'ENERG_|TECH%' AS alt, s SIMILAR TO '50#%#_%' ESCAPE '#' AS esc,"
        " s NOT SIMILAR TO '%Y' AS not_y, s LIKE 'E%' AS e",
        rows,
        kda=True,
    )
    by = {r["s"]: r for r in out}
    assert [by[s]["tech"] for s in ("TECHNOLOGY", "ENERGY", "50%_OFF", "abcabc")] == [True, False, False, False]
    assert by["50%_OFF"]["pct"] and not by["ENERGY"]["pct"]
    assert by["abcabc"]["rep"] and not by["TECHNOLOGY"]["rep"]
    assert by["ENERGY"]["six"] and not by["TECHNOLOGY"]["six"]  # whole-string match
    assert by["ENERGY"]["alt"] and by["TECHNOLOGY"]["alt"] and not by["abcabc"]["alt"]
    assert by["50%_OFF"]["esc"] and not by["abcabc"]["esc"]
    assert by["abcabc"]["not_y"] and not by["ENERGY"]["not_y"]
    assert by["ENERGY"]["e"] and not by["TECHNOLOGY"]["e"]


def test_similar_to_translation() -> None:
    assert similar_to_regex("%a.b_", None) == "(?s).*a\\.b."
    assert similar_to_regex("a!%[%_]", "!") == "(?s)a%[%_]"


def test_unicode_literal_is_a_string_not_a_bitwise_and() -> None:
    (stmt,) = parse_program("SELECT U&'\\0009' AS tab, u&'!0041x' UESCAPE '!' AS a FROM t")
    row = _one("s VARCHAR", "U&'\\0009' AS tab, U&'caf\\00e9' AS cafe, s || U&'\\0009' || s AS joined", {"s": "x"})
    assert row == {"tab": "\t", "cafe": "café", "joined": "x\tx"}
    assert "&" not in stmt.sql(dialect="duckdb")


# ---------------------------------------------------------------------------- date-time


def test_tsdiff_unix_timestamp_to_timestamp() -> None:
    row = _one(
        "a TIMESTAMP, b TIMESTAMP, ms BIGINT",
        "TSDIFF(a, b) AS d, TSDIFF(ms, ms + 250) AS dn, TSDIFF(a, CAST(NULL AS TIMESTAMP)) AS dnull,"
        " UNIX_TIMESTAMP(a) AS u, TO_TIMESTAMP(ms) AS back",
        {"a": "2024-05-01T13:00:00Z", "b": "2024-05-01T13:00:01.500Z", "ms": 1714568400123},
        kda=True,
    )
    assert row == {
        "d": 1500,
        "dn": 250,
        "dnull": None,
        "u": 1714568400000,
        "back": datetime(2024, 5, 1, 13, 0, 0, 123000),
    }


def test_extract_fields() -> None:
    row = _one(
        "ts TIMESTAMP",
        "EXTRACT(YEAR FROM ts) AS y, EXTRACT(MONTH FROM ts) AS mo, EXTRACT(DAY FROM ts) AS d,"
        " EXTRACT(HOUR FROM ts) AS h, EXTRACT(MINUTE FROM ts) AS mi, EXTRACT(SECOND FROM ts) AS s",
        {"ts": "2024-05-01T13:48:23.456Z"},
        kda=True,
    )
    assert row == {"y": 2024, "mo": 5, "d": 1, "h": 13, "mi": 48, "s": Decimal("23.456")}


def test_timestamp_to_char_and_friends() -> None:
    row = _one(
        "ts TIMESTAMP, d DATE, tm TIME",
        "TIMESTAMP_TO_CHAR('yyyy-MM-dd''T''HH:mm:ss.SSS', ts) AS iso,"
        " TIMESTAMP_TO_CHAR('yyyy-MM-dd hh:mm:ss a', ts) AS ampm,"
        " TIMESTAMP_TO_CHAR('dd/MMM/yyyy:HH:mm:ss Z', ts) AS clf,"
        " TIMESTAMP_TO_CHAR('yyyy', CAST(NULL AS TIMESTAMP)) AS n,"
        " DATE_TO_CHAR('MM/dd/yy', d) AS dc, TIME_TO_CHAR('HH:mm', tm) AS tc",
        {"ts": "2024-05-01T13:08:09.045Z", "d": "2024-02-29", "tm": "07:30:00"},
    )
    assert row == {
        "iso": "2024-05-01T13:08:09.045",
        "ampm": "2024-05-01 01:08:09 PM",
        "clf": "01/May/2024:13:08:09 +0000",
        "n": "null",  # KDA: TIMESTAMP_TO_CHAR of NULL is the string 'null'
        "dc": "02/29/24",
        "tc": "07:30",
    }


def test_char_to_timestamp_date_time() -> None:
    rows = [
        {"s": "10/Oct/2000:13:55:36 -0700", "d": "2024-05-01", "t": "13:55"},
        {"s": "not a date", "d": "2024-13-45", "t": "25:99"},
    ]
    out = _run(
        "s VARCHAR, d VARCHAR, t VARCHAR",
        "CHAR_TO_TIMESTAMP('dd/MMM/yyyy:HH:mm:ss z', s) AS ts, CHAR_TO_DATE('yyyy-MM-dd', d) AS dd,"
        " CHAR_TO_TIME('HH:mm', t) AS tt, CHAR_TO_TIMESTAMP('HH:mm', t) AS no_date,"
        " CHAR_TO_TIMESTAMP('yyyy-MM-dd', d) AS midnight",
        rows,
    )
    assert out[0] == {
        "ts": datetime(2000, 10, 10, 20, 55, 36),  # -0700 read as an offset, stored in UTC
        "dd": date(2024, 5, 1),
        "tt": time(13, 55),
        "no_date": datetime(1970, 1, 1, 13, 55),  # missing fields default as in Java
        "midnight": datetime(2024, 5, 1),
    }
    assert out[1] == {"ts": None, "dd": None, "tt": None, "no_date": None, "midnight": None}  # no match: NULL


def test_java_patterns_translate() -> None:
    assert java_datetime_format("yyyy-MM-dd'T'HH:mm:ss.SSS", False, None, "F") == "%Y-%m-%dT%H:%M:%S.%g"
    assert java_datetime_format("d/M/yy h:m a 'at' E", False, None, "F") == "%-d/%-m/%y %-I:%-M %p at %a"
    assert java_datetime_format("''yyyy'' 100%", True, None, "F") == "'%Y' 100%%"


def test_non_literal_or_unknown_pattern_is_a_plan_error() -> None:
    err = _plan_error("CREATE TABLE t (s VARCHAR, f VARCHAR);\nSELECT CHAR_TO_TIMESTAMP(f, s) AS x FROM t;")
    assert (err.line, err.col) == (2, 26) and "literal" in err.message
    err = _plan_error("CREATE TABLE t (s VARCHAR);\nSELECT TIMESTAMP_TO_CHAR('yyyy-ww', s) AS x FROM t;")
    assert (err.line, err.col) == (2, 26) and "'w'" in err.message


def test_current_time_functions_are_utc_now() -> None:
    before = datetime.now(timezone.utc).replace(tzinfo=None)
    row = _one(
        "s VARCHAR",
        "CURRENT_TIMESTAMP AS ct, LOCALTIMESTAMP AS lt, CURRENT_DATE AS cd, CURRENT_TIME AS ctime, LOCALTIME AS ltime,"
        " CURRENT_ROW_TIMESTAMP AS crt",
        {"s": "x"},
    )
    after = datetime.now(timezone.utc).replace(tzinfo=None)
    for key in ("ct", "lt", "crt"):
        assert before - timedelta(seconds=1) <= row[key] <= after + timedelta(seconds=1), key
    assert row["cd"] in (before.date(), after.date())
    assert isinstance(row["ctime"], time) and isinstance(row["ltime"], time)


def test_current_row_timestamp_is_read_per_row() -> None:
    out = _run("n INT", "n, CURRENT_ROW_TIMESTAMP AS crt", [{"n": i} for i in range(200)])
    stamps = [r["crt"] for r in sorted(out, key=lambda r: r["n"])]
    assert stamps == sorted(stamps) and len(set(stamps)) > 1


def test_timestamp_difference_with_qualifier() -> None:
    row = _one(
        "a TIMESTAMP, b TIMESTAMP",
        "(b - a) DAY TO SECOND AS dts, (b - a) MINUTE AS m, (b - a) HOUR AS h, (b - a) SECOND AS s,"
        " (b - a) MINUTE(3) TO SECOND(3) AS mts, (a - b) MINUTE AS neg",
        {"a": "2024-05-01T10:00:00Z", "b": "2024-05-02T11:30:15.250Z"},
    )
    row = {k: _as_timedelta(v) for k, v in row.items()}
    total = timedelta(days=1, hours=1, minutes=30, seconds=15, milliseconds=250)
    assert row["dts"] == total and row["s"] == total and row["mts"] == total
    assert row["m"] == timedelta(minutes=1530)
    assert row["h"] == timedelta(hours=25)
    assert row["neg"] == -timedelta(minutes=1530)  # truncated toward zero


def _as_timedelta(value: Any) -> timedelta:
    """An interval as Arrow hands it out (month_day_nano) or a timedelta."""
    if isinstance(value, timedelta):
        return value
    assert value.months == 0
    return timedelta(days=value.days, microseconds=value.nanoseconds // 1000)


def test_qualified_difference_is_no_alias() -> None:
    (stmt,) = parse_program("SELECT (a - b) MINUTE AS m FROM t")
    assert stmt.expressions[0].alias == "m"


# ---------------------------------------------------------------------------- aggregates, misc


def test_any_every_aggregates_and_any_subquery_untouched() -> None:
    sql = """CREATE TABLE t (ts TIMESTAMP, price DOUBLE);
SELECT window_start, ANY(price < 1) AS cheap, EVERY(price < 100) AS all_small, COUNT(*) AS n
FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '1' MINUTE))
GROUP BY window_start, window_end;"""
    program = engine.compile(sql)
    program.push(
        "t",
        [
            {"ts": "2024-05-01T10:00:01Z", "price": 0.5},
            {"ts": "2024-05-01T10:00:02Z", "price": 50},
            {"ts": "2024-05-01T10:01:01Z", "price": 5},
            {"ts": "2024-05-01T10:01:02Z", "price": 500},
        ],
    )
    program.flush()
    out = sorted(program.poll("result").to_pylist(), key=lambda r: r["window_start"])
    assert [(r["cheap"], r["all_small"], r["n"]) for r in out] == [(True, True, 2), (False, False, 2)]
    (stmt,) = parse_program("SELECT x = ANY (SELECT 1) AS y FROM t")
    from engine.sql.functions import lower_functions

    assert "ANY" in lower_functions(stmt).sql(dialect="duckdb").upper()


def test_null_handling_and_monotonic() -> None:
    row = _one(
        "a INT, b INT",
        "COALESCE(a, b, 0) AS c, NULLIF(b, 2) AS n, a IS DISTINCT FROM b AS dist,"
        " a IS NOT DISTINCT FROM NULL AS same, CASE WHEN b > 1 THEN 'big' ELSE 'small' END AS k,"
        " CASE b WHEN 2 THEN 'two' END AS two, MONOTONIC(b + 1) AS mono",
        {"a": None, "b": 2},
    )
    assert row == {"c": 2, "n": None, "dist": True, "same": True, "k": "big", "two": "two", "mono": 3}


def test_cast_to_kda_types() -> None:
    out, errors = _errors(
        "s VARCHAR, x DOUBLE",
        "CAST(s AS VARCHAR(4)) AS v, CAST(x AS REAL) AS r, CAST(x AS DOUBLE) AS d, CAST(x AS DECIMAL(5,2)) AS dec,"
        " CAST(x AS INTEGER) AS i, CAST('2024-05-01 10:00:00' AS TIMESTAMP) AS ts",
        [{"s": "abcd", "x": 2.75}, {"s": "abcde", "x": 1.0}],
        kda=True,
    )
    assert out == [
        {"v": "abcd", "r": 2.75, "d": 2.75, "dec": Decimal("2.75"), "i": 3, "ts": datetime(2024, 5, 1, 10)},
    ]
    # too long for VARCHAR(4): no value, the row goes to the error stream
    assert len(errors) == 1 and "VARCHAR(4)" in errors[0]


def test_unsupported_table_functions_are_refused_by_name() -> None:
    assert "GROUP_RANK" in UNSUPPORTED_TABLE_FUNCTIONS
    for name in UNSUPPORTED_TABLE_FUNCTIONS:
        call = f"{name}(CURSOR(SELECT * FROM t), 'S', 5)"
        err = _plan_error(f"CREATE TABLE t (s VARCHAR);\nSELECT *\nFROM TABLE({call});")
        assert name in str(err) and "not supported yet" in err.message
        assert (err.line, err.col) == (3, 12)


# ---------------------------------------------------------------------------- log parsing


def test_regex_log_parse_fields_by_three_part_name() -> None:
    rows = [{"line": "SQLstream is awesome!"}, {"line": "!!!"}]
    out = _run(
        "line VARCHAR",
        "T.REC.COLUMN1 AS c1, T.REC.COLUMN2 AS c2, T.REC.COLUMN3 AS c3, T.REC IS NULL AS no_match",
        rows,
        tail="FROM (SELECT REGEX_LOG_PARSE(line, '(\\w+)\\s+(\\w+)\\s+(\\w+!)') AS REC FROM t) AS T",
    )
    assert out == [
        {"c1": "SQLstream", "c2": "is", "c3": "awesome!", "no_match": False},
        {"c1": None, "c2": None, "c3": None, "no_match": True},  # no match: a NULL row
    ]


def test_regex_log_parse_refuses_what_re2_cannot_do() -> None:
    err = _plan_error("CREATE TABLE t (s VARCHAR);\nSELECT REGEX_LOG_PARSE(s, '(a)(?=b)') AS r FROM t;")
    assert (err.line, err.col) == (2, 27) and "lookahead" in err.message
    err = _plan_error("CREATE TABLE t (s VARCHAR);\nSELECT REGEX_LOG_PARSE(s, '(a)\\1') AS r FROM t;")
    assert "back-references" in err.message
    err = _plan_error("CREATE TABLE t (s VARCHAR);\nSELECT REGEX_LOG_PARSE(s, 'a++') AS r FROM t;")
    assert "possessive" in err.message
    err = _plan_error("CREATE TABLE t (s VARCHAR);\nSELECT REGEX_LOG_PARSE(s, '([a-z') AS r FROM t;")
    assert "bad pattern" in err.message and (err.line, err.col) == (2, 27)


def test_java_regex_translation() -> None:
    assert java_regex("\\p{Alpha}+[\\p{Digit}_]", None, "F") == "[[:alpha:]]+[[:digit:]_]"
    assert java_regex("(?<year>\\d{4})", None, "F") == "(?P<year>\\d{4})"
    assert capture_groups("(a)(?:b)(?P<n>c)[(]\\(") == 2


def test_fast_regex_log_parse_is_lazy_and_consumes_everything() -> None:
    rows = [{"line": "key=a=b;rest"}, {"line": "no separator"}]
    out = _run(
        "line VARCHAR",
        "x.r.COLUMN1 AS k, x.r.COLUMN2 AS v",
        rows,
        tail="FROM (SELECT FAST_REGEX_LOG_PARSE(line, '(.*)=(.*);.*') AS r FROM t) AS x",
    )
    assert out == [{"k": "key", "v": "a=b"}, {"k": None, "v": None}]


def test_w3c_log_parse_common() -> None:
    (row,) = _run(
        "line VARCHAR",
        "l.r.COLUMN1 AS host, l.r.COLUMN2 AS ident, l.r.COLUMN3 AS usr, l.r.COLUMN4 AS ts, l.r.COLUMN5 AS req,"
        " l.r.COLUMN6 AS status, l.r.COLUMN7 AS bytes",
        [{"line": APACHE}],
        tail="FROM (SELECT W3C_LOG_PARSE(line, 'COMMON') AS r FROM t) AS l",
    )
    assert row == {
        "host": "127.0.0.1",
        "ident": "-",
        "usr": "frank",
        "ts": "[10/Oct/2000:13:55:36 -0700]",
        "req": "GET /apache_pb.gif HTTP/1.0",
        "status": 200,
        "bytes": 2326,
    }


def test_w3c_log_parse_other_formats() -> None:
    combined = APACHE + ' "http://ref.example/" "Mozilla/5.0 (X11)"'
    row = _one(
        "line VARCHAR, vhost VARCHAR",
        "W3C_LOG_PARSE(line, 'NCSA EXTENDED') AS n, W3C_LOG_PARSE(vhost, 'COMMON WITH VHOST') AS v,"
        " W3C_LOG_PARSE(line, '%h %l %u') AS custom, W3C_LOG_PARSE('junk', 'COMMON') AS junk",
        {"line": combined, "vhost": "www.example.com " + APACHE},
    )
    assert row["n"]["COLUMN8"] == "http://ref.example/" and row["n"]["COLUMN9"] == "Mozilla/5.0 (X11)"
    assert row["v"]["COLUMN1"] == "www.example.com" and row["v"]["COLUMN8"] == 2326
    assert row["custom"] == {"COLUMN1": "127.0.0.1", "COLUMN2": "-", "COLUMN3": "frank"}
    assert row["junk"] is None
    assert w3c_regex("%{Referer}i -> %U")[1] == [False, False]


def test_variable_column_log_parse_tab_and_typed_columns() -> None:
    row = _one(
        "line VARCHAR, csv VARCHAR, quoted VARCHAR",
        "VARIABLE_COLUMN_LOG_PARSE(line, 3, U&'\\0009') AS tabbed,"
        " VARIABLE_COLUMN_LOG_PARSE(csv, 'NAME TYPE VARCHAR(16), QTY TYPE INTEGER, PRICE TYPE DOUBLE', ',') AS typed,"
        " VARIABLE_COLUMN_LOG_PARSE(quoted, 3, ',', '\\', '\"') AS q",
        {"line": "a\tb\tc", "csv": "widget, 4,2.5", "quoted": 'x,"y,z",w\\,v'},
    )
    assert row["tabbed"] == {"COLUMN1": "a", "COLUMN2": "b", "COLUMN3": "c"}
    assert row["typed"] == {"NAME": "widget", "QTY": 4, "PRICE": 2.5}
    assert row["q"] == {"COLUMN1": "x", "COLUMN2": "y,z", "COLUMN3": "w,v"}


def test_variable_column_log_parse_bad_value_is_an_error_row() -> None:
    out, errors = _errors(
        "csv VARCHAR",
        "VARIABLE_COLUMN_LOG_PARSE(csv, 'A TYPE INTEGER, B TYPE VARCHAR', ',') AS r",
        [{"csv": "1,x"}, {"csv": "one,x"}],
    )
    assert out == [{"r": {"A": 1, "B": "x"}}]
    assert [e.split(":")[0] for e in errors] == ["eval"]


def test_fixed_column_log_parse_and_sys_log_parse() -> None:
    row = _one(
        "line VARCHAR, sys VARCHAR",
        "FIXED_COLUMN_LOG_PARSE(line, 'CODE TYPE VARCHAR(2) START 0 FOR 3, N TYPE INTEGER START 3 FOR 4,"
        " REST TYPE VARCHAR START 7') AS f, SYS_LOG_PARSE(sys) AS s",
        {"line": "ABC  42tail", "sys": "Mar  7 04:02:16 host1 sshd[42]: session opened"},
    )
    assert row["f"] == {"CODE": "AB", "N": 42, "REST": "tail"}  # a VARCHAR(2) field keeps 2 characters
    stamp = row["s"]["COLUMN1"]
    assert (stamp.month, stamp.day, stamp.hour, stamp.minute, stamp.second) == (3, 7, 4, 2, 16)
    assert row["s"]["COLUMN2"] == "host1 sshd[42]: session opened"


def test_log_parse_needs_literal_patterns() -> None:
    err = _plan_error("CREATE TABLE t (s VARCHAR, p VARCHAR);\nSELECT REGEX_LOG_PARSE(s, p) AS r FROM t;")
    assert (err.line, err.col) == (2, 27) and "quoted literal" in err.message
    err = _plan_error("CREATE TABLE t (s VARCHAR);\nSELECT W3C_LOG_PARSE(s, 'IIS') AS r FROM t;")
    assert "IIS" in err.message and "not supported yet" in err.message
    err = _plan_error("CREATE TABLE t (s VARCHAR);\nSELECT FIXED_COLUMN_LOG_PARSE(s, 'A TYPE INTEGER') AS r FROM t;")
    assert "START" in err.message


# ---------------------------------------------------------------------------- the rewrite itself


def test_lowering_is_idempotent_and_keeps_rowtime_group_keys() -> None:
    from engine.sql.functions import lower_functions

    (stmt,) = parse_program(
        "SELECT STEP(s.ROWTIME BY INTERVAL '1' MINUTE) AS w, STEP(ev BY INTERVAL '1' MINUTE) AS e,"
        " FLOOR(ROWTIME TO HOUR) AS h, COUNT(*) AS n FROM s"
        " GROUP BY STEP(s.ROWTIME BY INTERVAL '1' MINUTE), STEP(ev BY INTERVAL '1' MINUTE)"
    )
    once = lower_functions(stmt)
    twice = lower_functions(once)
    assert once == twice
    text = once.sql(dialect="duckstream")
    assert text.count("STEP(s.ROWTIME BY INTERVAL '1' MINUTE)") == 2  # the window key and its repetition
    assert "STEP(ev" not in text and "TIME_BUCKET" in text.upper()
    assert "DATE_TRUNC('hour', ROWTIME)" in text  # not a GROUP BY key: lowered


def test_unknown_three_part_name_still_reports_the_table() -> None:
    err = _plan_error("CREATE TABLE t (s VARCHAR);\nSELECT x.r.COLUMN1 AS c FROM t;")
    assert isinstance(err, PlanError) and 'unknown table or alias "x"' in err.message
