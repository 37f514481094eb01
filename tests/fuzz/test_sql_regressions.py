"""Programs the SQL fuzzer broke the front end with, reduced to a few tokens each.

Every one must be refused with a ``DuckstreamError`` whose message is one line and whose line and
column, when given, point inside the program. Found by ``test_sql_fuzz.py``; each id says what
went wrong when it was found.
"""

from __future__ import annotations

import logging

import pytest

from engine.errors import DuckstreamError
from engine.plan.planner import compile_program
from engine.testing import run_sql
from tests.fuzz._program import assert_one_located_line

T = "CREATE TABLE t (ts TIMESTAMP, k VARCHAR, v INT, WATERMARK FOR ts AS ts);\n"

REGRESSIONS = {
    # AttributeError: 'NoneType' object has no attribute 'sql' (an aggregate called with no argument)
    "count_without_argument": T + "SELECT COUNT() AS n FROM t;",
    "count_without_argument_in_window": T
    + "SELECT window_start, COUNT() AS n\n"
    + "FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))\n"
    + "GROUP BY window_start, window_end;",
    # AttributeError: 'NoneType' object has no attribute 'sql' (SESSION ... PARTITION BY with no column)
    "session_partition_by_nothing": T
    + "SELECT k, COUNT(*) AS n\n"
    + "FROM TABLE(SESSION(TABLE t PARTITION BY, DESCRIPTOR(ts), INTERVAL '1' SECOND))\n"
    + "GROUP BY k, window_start, window_end;",
    # AttributeError: 'NoneType' object has no attribute 'meta' (a statement without its query)
    "create_view_without_query": "CREATE VIEW v",
    "create_view_as_without_query": T + "CREATE VIEW v AS",
    "insert_into_without_query": T + "INSERT INTO t",
    "insert_without_target": "INSERT SELECT",
    # AttributeError: 'InOutColumnConstraint' object has no attribute 'kind' (IN parsed as a constraint)
    "column_constraint_in": "CREATE TABLE t (ts IN);",
    # UnicodeEncodeError from pyarrow: a lone surrogate as a column name
    "lone_surrogate_column_name": "CREATE TABLE t (\ud800 INT);",
    # duckdb.InvalidInputException: a parameter placeholder inside a window aggregate
    "parameter_in_window_aggregate": T
    + "SELECT window_start, COUNT($1) AS n\n"
    + "FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))\n"
    + "GROUP BY window_start, window_end;",
    # duckdb.BinderException: an unknown column with the name of the output column it feeds
    "unknown_column_named_like_its_alias_in_window": "CREATE TABLE t (ts TIMESTAMP, m INT, WATERMARK FOR ts AS ts);\n"
    + "SELECT window_start, SUM(v) AS v\n"
    + "FROM TABLE(HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '20' SECOND, INTERVAL '50' SECOND))\n"
    + "GROUP BY window_start, window_end;",
    # position past the end of line 1 (21 characters): a keyword spanning a line break (GROUP\nBY)
    # stops the line count, so "1:28" is reported for the comma at 2:6
    "position_after_keyword_spanning_lines": "SELECT a FROM t GROUP\nBY a,,",
    "position_after_keyword_spanning_lines_in_program": T + "SELECT k FROM t\nGROUP\nBY k,,;",
    # line 3 of a 2-line program: a "$" followed by a line break counts the lines after it twice
    "position_after_dollar": "$\nSELECT)",
    "position_after_dollar_in_program": T + "SELECT k FROM t WHERE k = $x\n);",
    "position_after_dollar_at_end_of_text": "SELECT $1\n('1'",
    # the same two slips in the positions of plan errors (an unknown stream or column)
    "plan_error_position_after_dollar": "CREATE TABLE t (ts TIMESTAMP, k VARCHAR);\nSELECT k $1\nFROM nosuch;",
    "plan_error_position_after_keyword_spanning_lines": "CREATE TABLE t (ts TIMESTAMP, k VARCHAR);\n"
    + "SELECT k FROM t GROUP\nBY k\nHAVING nosuch > 1;",
}


@pytest.mark.parametrize("name", sorted(REGRESSIONS))
def test_fuzzer_found_program_is_refused_with_one_located_line(name: str, caplog: pytest.LogCaptureFixture) -> None:
    text = REGRESSIONS[name]
    caplog.set_level(logging.ERROR, logger="sqlglot")
    with pytest.raises(DuckstreamError) as info:
        compile_program(text)
    assert_one_located_line(info.value, text)


# Programs where refusing them at plan time and running them are both fine, but where another
# exception escaped (some compiled and then crashed when run).
RUN_REGRESSIONS = {
    # KeyError from pyarrow at run time: 'Field "name" exists 2 times in schema'
    "duplicate_output_column": "CREATE TABLE t (id INT, name VARCHAR);\nSELECT name, name FROM t;",
    "star_repeats_a_column": "CREATE TABLE t (id INT, name VARCHAR);\nSELECT id, * FROM t;",
    # duckdb.BinderException at plan time: an aggregate inside a scalar subquery is taken for the
    # outer query's (valid SQL, so running it is as good as refusing it)
    "aggregate_in_scalar_subquery": T + "SELECT k, (SELECT max(x) FROM (SELECT 1 AS x)) AS c FROM t;",
    # duckdb.BinderException at plan time: a column qualified by the stream's name after the
    # window is aliased
    "qualified_column_through_aliased_window": T
    + "SELECT window_start, SUM(t.v) AS s\n"
    + "FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND)) AS w\n"
    + "GROUP BY window_start, window_end;",
    # ValueError at run time: DuckDB cuts a name at NUL, so the result's names no longer match
    "nul_in_alias_of_window_result": T
    + "SELECT window_start, COUNT(*) AS n\x00\n"
    + "FROM TABLE(TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '10' SECOND))\n"
    + "GROUP BY window_start, window_end;",
    # pyarrow.ArrowInvalid at run time: an empty select list with EMIT CHANGES
    "empty_select_list_emit_changes": T + "SELECT FROM t GROUP BY k EMIT CHANGES;",
}
ROWS = [
    {"ts": "2024-05-01T10:00:00Z", "k": "a", "v": 1, "id": 1, "name": "a"},
    {"ts": "2024-05-01T10:00:30Z", "k": "b", "v": 2, "id": 2, "name": "b"},
]


@pytest.mark.parametrize("name", sorted(RUN_REGRESSIONS))
def test_fuzzer_found_program_is_refused_or_runs(name: str) -> None:
    text = RUN_REGRESSIONS[name]
    try:
        run_sql(text, inputs={"t": [ROWS, ROWS]})
    except DuckstreamError as err:
        assert_one_located_line(err, text)
