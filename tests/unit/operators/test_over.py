"""Sliding windows (``agg(x) OVER w``): when rows are emitted, what state is kept, checkpoints,
error rows, EXP_AVG's arithmetic, and the planner's refusals (one line, with a position)."""

from __future__ import annotations

import datetime as dt
import decimal
import math
import random

import numpy as np
import pyarrow as pa
import pytest

from engine.errors import PlanError
from engine.operators.over import OverOperator, _exp_avg
from engine.plan.explain import describe
from engine.plan.logical import OverSpec
from engine.plan.planner import compile_program
from engine.runtime.loop import RunOptions
from engine.runtime.pipeline import Pipeline
from engine.sql.dialect import Duckstream
from engine.testing import run_program, run_sql
from engine.types import MAX_TIME, SEQ_COL

T0 = dt.datetime(2024, 5, 1, 10, 0)
SCHEMA = pa.schema([("ts", pa.timestamp("us")), ("k", pa.string()), ("v", pa.int64())])


def _at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def _us(seconds: float) -> int:
    return int((_at(seconds) - dt.datetime(1970, 1, 1)) / dt.timedelta(microseconds=1))


def _pipeline(select: str, delay_s: int = 0) -> Pipeline:
    sql = f"CREATE TABLE s (ts TIMESTAMP, k VARCHAR, v BIGINT, WATERMARK FOR ts AS ts - INTERVAL '{delay_s}' SECOND);\n"
    return Pipeline(compile_program(sql + select))


class Feed:
    """Pushes rows (seconds after T0, key, value) into source ``s`` with running ``__seq``."""

    def __init__(self, pipe: Pipeline) -> None:
        self.pipe, self.seq = pipe, 0

    def push(self, *rows: tuple[float | None, str | None, int | None]) -> tuple[list[dict], list[dict]]:
        table = pa.Table.from_pylist(
            [{"ts": None if t is None else _at(t), "k": k, "v": v} for t, k, v in rows], schema=SCHEMA
        )
        seqs = np.arange(self.seq, self.seq + len(rows), dtype=np.int64)
        self.seq += len(rows)
        result = self.pipe.push("s", table.append_column(SEQ_COL, pa.array(seqs)))
        return _rows(result.outputs.get("result", [])), _rows(result.errors)

    def end(self) -> tuple[list[dict], list[dict]]:
        result = self.pipe.advance("s", MAX_TIME)
        return _rows(result.outputs.get("result", [])), _rows(result.errors)


def _rows(tables: list[pa.Table]) -> list[dict]:
    return [row for t in tables for row in t.to_pylist()]


def _over(pipe: Pipeline) -> OverOperator:
    ops = [op for op in pipe.operators if isinstance(op, OverOperator)]
    assert len(ops) == 1
    return ops[0]


def _held(op: OverOperator) -> tuple[int, int]:
    """(kept rows, pending rows)."""
    return (op.kept.num_rows if op.kept is not None else 0, op.pending.num_rows if op.pending is not None else 0)


# ---------------------------------------------------------------------------------- emission
def test_without_delay_every_row_is_emitted_in_the_tick_it_arrives() -> None:
    feed = Feed(_pipeline("SELECT v, COUNT(*) OVER (RANGE INTERVAL '10' SECOND PRECEDING) AS n FROM s"))
    assert feed.push((0, "a", 1))[0] == [{"v": 1, "n": 1, "__seq": 0, "__wm": -(2**63)}]
    out, _ = feed.push((5, "a", 2), (5, "a", 3))
    assert [(r["v"], r["n"]) for r in out] == [(2, 2), (3, 3)]
    out, _ = feed.push((5, "a", 4))  # equal time in a later tick: on time, after the others
    assert [(r["v"], r["n"], r["__seq"]) for r in out] == [(4, 4, 3)]


def test_with_a_delay_rows_wait_for_the_watermark_and_come_out_in_time_order() -> None:
    feed = Feed(_pipeline("SELECT v, SUM(v) OVER (RANGE INTERVAL '1' MINUTE PRECEDING) AS s FROM s", delay_s=10))
    out, _ = feed.push((0, "a", 1), (20, "a", 2))  # watermark 10: the row at 0 is due, 20 waits
    assert [(r["v"], r["s"]) for r in out] == [(1, 1)]
    op = _over(feed.pipe)
    assert _held(op) == (1, 1)
    out, errors = feed.push((15, "a", 4), (40, "a", 8))  # watermark 30: 15 and 20 are due
    assert [(r["v"], r["s"]) for r in out] == [(4, 5), (2, 7)] and errors == []
    out, _ = feed.end()
    assert [(r["v"], r["s"]) for r in out] == [(8, 15)]
    assert _held(op) == (0, 0)


def test_first_row_of_a_delayed_stream_is_emitted_once_the_watermark_passes_it() -> None:
    feed = Feed(_pipeline("SELECT v, COUNT(*) OVER (ROWS 1 PRECEDING) AS n FROM s", delay_s=10))
    out, _ = feed.push((0, "a", 1))
    assert out == []
    out, _ = feed.push((10, "a", 2))  # watermark 0 reaches the first row
    assert [(r["v"], r["n"]) for r in out] == [(1, 1)]


def test_output_keeps_the_input_rows_hidden_columns() -> None:
    feed = Feed(_pipeline("SELECT *, COUNT(*) OVER (ROWS 2 PRECEDING) AS n FROM s", delay_s=5))
    feed.push((0, "a", 1), (3, "a", 2))
    out, _ = feed.push((20, "b", 3))
    assert [(r["v"], r["__seq"], r["__wm"], r["n"]) for r in out] == [
        (1, 0, -(2**63), 1),
        (2, 1, _us(0) - 5_000_000, 2),
    ]
    assert set(out[0]) == {"ts", "k", "v", "n", "__seq", "__wm"}


# ---------------------------------------------------------------------------------- errors
def test_late_rows_become_error_rows() -> None:
    feed = Feed(_pipeline("SELECT v, COUNT(*) OVER (RANGE INTERVAL '1' MINUTE PRECEDING) AS n FROM s", delay_s=5))
    feed.push((0, "a", 1), (30, "a", 2))
    out, errors = feed.push((24, "a", 3), (26, "a", 4))
    assert [(e["reason"], e["source_offset"]) for e in errors] == [("late", "s:2")]
    assert "behind the watermark 2024-05-01T10:00:25Z" in errors[0]["message"]
    assert errors[0]["event_time"] == _at(24)
    out, _ = feed.end()
    assert [(r["v"], r["n"]) for r in out] == [(4, 2), (2, 3)]


def test_rows_without_a_time_become_missing_time_error_rows() -> None:
    sql = """
    CREATE TABLE s (ts TIMESTAMP, v INT);
    CREATE VIEW picked AS SELECT CASE WHEN v > 0 THEN ts END AS t, v FROM s;
    SELECT v, COUNT(*) OVER (ORDER BY t ROWS 5 PRECEDING) AS n FROM picked"""
    rows = [{"ts": _at(i).isoformat(), "v": v} for i, v in enumerate([1, -1, 2])]
    sinks, errors, _ = run_program(
        compile_program(sql), {"s": [rows]}, RunOptions(idle_timeout_us=None, sleep=lambda s: None)
    )
    assert [(r["v"], r["n"]) for r in sinks["result"].rows()] == [(1, 1), (2, 2)]
    assert [(e["reason"], e["source_offset"]) for e in errors.rows()] == [("missing_time", "s:1")]


def test_a_row_whose_argument_fails_is_an_eval_error_and_counts_nowhere() -> None:
    feed = Feed(
        _pipeline("SELECT v, SUM(100 // v) OVER (ROWS 5 PRECEDING) AS s, COUNT(*) OVER (ROWS 5 PRECEDING) AS n FROM s")
    )
    out, errors = feed.push((0, "a", 1), (1, "a", 0), (2, "a", 4))
    assert [(r["v"], r["s"], r["n"]) for r in out] == [(1, 100, 1), (4, 125, 2)]
    assert [(e["reason"], e["source_offset"]) for e in errors] == [("eval", "s:1")]


def test_a_select_list_that_fails_on_a_row_diverts_that_row_only() -> None:
    feed = Feed(_pipeline("SELECT v, 10 // (COUNT(*) OVER (ROWS 5 PRECEDING) - 2) AS q FROM s"))
    out, errors = feed.push((0, "a", 1), (1, "a", 2), (2, "a", 3))
    assert [(r["v"], r["q"]) for r in out] == [(1, -10), (3, 10)]
    assert [(e["reason"], e["source_offset"]) for e in errors] == [("eval", "s:1")]


def test_a_window_that_overflows_its_type_is_an_eval_error_for_its_row() -> None:
    big = 2**62
    feed = Feed(_pipeline("SELECT v, SUM(v) OVER (ROWS 1 PRECEDING) AS s FROM s"))
    out, errors = feed.push((0, "a", big), (1, "a", big), (2, "a", 1))
    assert [(r["v"], r["s"]) for r in out] == [(big, big), (1, big + 1)]
    assert [(e["reason"], e["source_offset"]) for e in errors] == [("eval", "s:1")]


# ---------------------------------------------------------------------------------- state
def test_range_state_holds_only_rows_a_later_window_can_reach() -> None:
    feed = Feed(_pipeline("SELECT k, COUNT(*) OVER (PARTITION BY k RANGE INTERVAL '10' SECOND PRECEDING) AS n FROM s"))
    op = _over(feed.pipe)
    feed.push(*[(t, "a" if t % 2 else "b", t) for t in range(20)])
    assert _held(op) == (11, 0)  # times 9..19: a row at 19 or later reaches back to 9
    out, _ = feed.push((40, "a", 0))
    assert out[0]["n"] == 1 and _held(op) == (1, 0)


def test_rows_state_holds_the_last_rows_of_each_partition() -> None:
    feed = Feed(_pipeline("SELECT k, SUM(v) OVER (PARTITION BY k ROWS 2 PRECEDING) AS s FROM s"))
    op = _over(feed.pipe)
    feed.push(*[(t, "a" if t < 10 else "b", t) for t in range(15)])
    assert _held(op) == (4, 0)  # two rows of a, two of b
    out, _ = feed.push((1000, "a", 100))
    assert out[0]["s"] == 8 + 9 + 100


def test_snapshot_and_restore_resume_exactly() -> None:
    select = (
        "SELECT k, v, SUM(v) OVER w AS s, LAG(v) OVER w AS prev FROM s "
        "WINDOW w AS (PARTITION BY k RANGE INTERVAL '30' SECOND PRECEDING)"
    )
    rows = [(t * 7 % 50, "ab"[t % 2], t) for t in range(30)]
    straight = Feed(_pipeline(select, delay_s=20))
    expected = [r for i in range(0, 30, 5) for r in straight.push(*rows[i : i + 5])[0]] + straight.end()[0]
    first = Feed(_pipeline(select, delay_s=20))
    got = [r for i in range(0, 15, 5) for r in first.push(*rows[i : i + 5])[0]]
    snap = first.pipe.snapshot()
    second = Feed(_pipeline(select, delay_s=20))
    second.pipe.restore(snap)
    second.seq = first.seq
    got += [r for i in range(15, 30, 5) for r in second.push(*rows[i : i + 5])[0]] + second.end()[0]
    assert got == expected


# ---------------------------------------------------------------------------------- functions
def _exp_avg_direct(times: list[int], values: list[float | None], now: int, half_life: int) -> float | None:
    """The formula in decimal arithmetic (no underflow), as the reference."""
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        pairs = [(t, decimal.Decimal(x)) for t, x in zip(times, values) if x is not None]
        if not pairs:
            return None
        weights = [decimal.Decimal(2) ** (decimal.Decimal(t - now) / half_life) for t, _ in pairs]
        return float(sum(w * x for w, (_, x) in zip(weights, pairs)) / sum(weights))


def test_exp_avg_equals_the_formula_even_over_spans_of_many_half_lives() -> None:
    rnd = random.Random(7)
    n = 300
    times = sorted(rnd.randrange(0, 10**12, 10**6) for _ in range(n))  # microseconds, days apart at most
    values = [None if rnd.random() < 0.2 else rnd.uniform(-50, 50) for _ in range(n)]
    k = [min(i, rnd.randrange(0, 40)) for i in range(n)]
    res = pa.table(
        {
            "__t": pa.array(times, pa.int64()),
            "__g0": pa.array([1] * n, pa.int64()),
            "__rn0": pa.array(range(1, n + 1), pa.int64()),
            "__k0": pa.array(k, pa.int64()),
            "__new": pa.array([i % 3 != 0 for i in range(n)]),
            "__a0": pa.array(values, pa.float64()),
        }
    )
    shuffled = res.take(pa.array(rnd.sample(range(n), n)))
    got = _exp_avg(shuffled, 0, "__a0", 1_000_000).to_pylist()
    for row, value in zip(shuffled.to_pylist(), got):
        if not row["__new"]:
            assert value is None
            continue
        i = row["__rn0"] - 1
        lo = i - row["__k0"]
        want = _exp_avg_direct(times[lo : i + 1], values[lo : i + 1], times[i], 1_000_000)
        assert (value is None) == (want is None)
        if want is not None:
            assert math.isclose(value, want, rel_tol=1e-9, abs_tol=1e-9)


def test_nth_value_from_last_when_the_dialect_reads_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(Duckstream.Parser, "SUPPORTS_NTH_VALUE_FROM_MODIFIER", True)
    sql = """
    CREATE TABLE s (ts TIMESTAMP, v INT, WATERMARK FOR ts AS ts);
    SELECT v, NTH_VALUE(v, 2) FROM LAST OVER w AS second_last,
              NTH_VALUE(v, 2) FROM LAST IGNORE NULLS OVER w AS second_last_value,
              NTH_VALUE(v, 2) FROM FIRST OVER w AS second
    FROM s WINDOW w AS (ROWS 3 PRECEDING)"""
    values = [1, None, 3, None, 5]
    rows = [{"ts": _at(i).isoformat(), "v": v} for i, v in enumerate(values)]
    out = run_sql(sql, {"s": [rows]})
    assert [(r["second_last"], r["second_last_value"], r["second"]) for r in out] == [
        (None, None, None),
        (1, None, None),
        (None, 1, None),
        (3, 1, None),
        (None, 3, 3),
    ]


def test_any_duckdb_aggregate_and_filter_work_over_a_window() -> None:
    sql = """
    CREATE TABLE s (ts TIMESTAMP, v INT, WATERMARK FOR ts AS ts);
    SELECT v, quantile_cont(v, 0.5) OVER w AS med, COUNT(DISTINCT v % 2) OVER w AS parities,
           SUM(v) FILTER (WHERE v > 2) OVER w AS big, string_agg(CAST(v AS VARCHAR), ',') OVER w AS listed
    FROM s WINDOW w AS (ROWS 2 PRECEDING)"""
    rows = [{"ts": _at(i).isoformat(), "v": v} for i, v in enumerate([1, 2, 3, 4])]
    out = run_sql(sql, {"s": [rows[:1], rows[1:]]})
    assert [(r["med"], r["parities"], r["big"], r["listed"]) for r in out] == [
        (1.0, 1, None, "1"),
        (1.5, 2, None, "1,2"),
        (2.0, 2, 3, "1,2,3"),
        (3.0, 2, 7, "2,3,4"),
    ]


def test_a_window_over_a_view_without_watermark_takes_its_order_by_column_as_time() -> None:
    sql = """
    CREATE TABLE s (ts TIMESTAMP, v INT);
    CREATE VIEW big AS SELECT ts, v FROM s WHERE v > 0;
    SELECT v, SUM(v) OVER (ORDER BY ts ROWS BETWEEN 1 PRECEDING AND CURRENT ROW) AS s FROM big"""
    program = compile_program(sql)
    assert program.streams["s"].time_column == "ts"
    rows = [{"ts": _at(i).isoformat(), "v": v} for i, v in enumerate([1, -1, 2, 3])]
    sinks, _, _ = run_program(program, {"s": [rows]}, RunOptions(idle_timeout_us=None, sleep=lambda s: None))
    assert [r["s"] for r in sinks["result"].rows()] == [1, 3, 5]


def test_explain_shows_the_three_statements() -> None:
    program = compile_program(
        "CREATE TABLE s (ts TIMESTAMP, v INT, WATERMARK FOR ts AS ts);\n"
        "SELECT v, AVG(v) OVER (RANGE INTERVAL '1' MINUTE PRECEDING) AS a FROM s"
    )
    spec = next(op for op in program.operators if isinstance(op, OverSpec))
    assert spec.windows == (("range", 60_000_000, ()),)
    text = describe(program)
    assert "] over: s -> result" in text
    assert 'ROWS BETWEEN "__k0" PRECEDING AND CURRENT ROW' in text


# ---------------------------------------------------------------------------------- refusals
HEAD = "CREATE TABLE s (ts TIMESTAMP, k VARCHAR, v INT, other TIMESTAMP, WATERMARK FOR ts AS ts);\n"


@pytest.mark.parametrize(
    ("select", "where", "message"),
    [
        ("SELECT LEAD(v) OVER (ROWS 2 PRECEDING) FROM s", (2, 8), "LEAD is not supported over a sliding window"),
        ("SELECT ROW_NUMBER() OVER (ROWS 2 PRECEDING) FROM s", (2, 8), "ROW_NUMBER is not supported"),
        ("SELECT abs(v) OVER (ROWS 2 PRECEDING) FROM s", (2, 8), "ABS is not an aggregate or window function"),
        ("SELECT v FROM s WHERE COUNT(*) OVER (ROWS 2 PRECEDING) > 1", (2, 23), "cannot be used in WHERE"),
        ("SELECT k, COUNT(*) OVER (ROWS 2 PRECEDING) FROM s GROUP BY k", (2, 51), "GROUP BY and OVER windows"),
        ("SELECT SUM(v) OVER (ORDER BY ts DESC ROWS 2 PRECEDING) FROM s", (2, 30), "ordered by time ascending"),
        ("SELECT SUM(v) OVER (ORDER BY ts, k ROWS 2 PRECEDING) FROM s", (2, 34), "time column alone"),
        ("SELECT SUM(v) OVER (ORDER BY other ROWS 2 PRECEDING) FROM s", (2, 30), "time column of s"),
        ("SELECT SUM(v) OVER (PARTITION BY k) FROM s", (2, 8), "needs a frame that ends at the current row"),
        (
            "SELECT SUM(v) OVER (ROWS BETWEEN 3 PRECEDING AND 1 PRECEDING) FROM s",
            (2, 50),
            "must end at the current row",
        ),
        ("SELECT SUM(v) OVER (ROWS INTERVAL '1' MINUTE PRECEDING) FROM s", (2, 26), "ROWS counts rows"),
        ("SELECT SUM(v) OVER (RANGE INTERVAL '-1' MINUTE PRECEDING) FROM s", (2, 27), "cannot be negative"),
        ("SELECT SUM(v) OVER (RANGE INTERVAL '0' SECOND PRECEDING) FROM s", (2, 27), "0 PRECEDING is not allowed"),
        ("SELECT LAG(v, k) OVER (ROWS 2 PRECEDING) FROM s", (2, 15), "LAG's offset must be a whole number"),
        ("SELECT EXP_AVG(k, INTERVAL '1' SECOND) OVER (ROWS 2 PRECEDING) FROM s", (2, 8), "EXP_AVG averages numbers"),
        ("SELECT EXP_AVG(v) OVER (ROWS 2 PRECEDING) FROM s", (2, 8), "EXP_AVG takes a value and a half-life"),
        ("SELECT FIRST_VALUE(v) FILTER (WHERE v > 1) OVER (ROWS 2 PRECEDING) FROM s", (2, 8), "FILTER applies"),
        (
            "SELECT SUM(v) OVER w FROM s WINDOW w AS (ROWS 1 PRECEDING), w AS (ROWS 2 PRECEDING)",
            (2, 61),
            "defined twice",
        ),
        ("SELECT SUM(v) OVER (w ROWS 2 PRECEDING) FROM s WINDOW w AS (PARTITION BY k)", (2, 8), "cannot refine"),
        ("SELECT v FROM s WINDOW w AS (ROWS 2 PRECEDING)", (2, 24), "no OVER uses it"),
        ("SELECT SUM(v) OVER (PARTITION BY SUM(v) ROWS 1 PRECEDING) FROM s", (2, 34), "PARTITION BY takes row"),
        ("SELECT SUM(v) OVER (ROWS 1 PRECEDING) FROM s EMIT CHANGES", (2, 8), "EMIT CHANGES does not apply"),
        ("SELECT SUM(nope) OVER (ROWS 1 PRECEDING) FROM s", (2, 12), 'unknown column "nope"'),
        (
            "SELECT SUM(v) OVER (ROWS 1 PRECEDING) FROM TABLE(TUMBLE(TABLE s, DESCRIPTOR(ts), INTERVAL '1' MINUTE))",
            (2, 8),
            "window table function",
        ),
    ],
)
def test_refusals_are_one_line_with_a_position(select: str, where: tuple[int, int], message: str) -> None:
    with pytest.raises(PlanError) as info:
        compile_program(HEAD + select)
    err = info.value
    assert message in err.message
    assert (err.line, err.col) == where
    assert "\n" not in str(err)


def test_minute_to_second_spans_are_read_as_kda_writes_them() -> None:
    program = compile_program(
        HEAD + "SELECT COUNT(*) OVER (RANGE INTERVAL '59:59.999' MINUTE TO SECOND(3) PRECEDING) FROM s"
    )
    spec = next(op for op in program.operators if isinstance(op, OverSpec))
    assert spec.windows == (("range", 3_599_999_000, ()),)
    program = compile_program(HEAD + "SELECT COUNT(*) OVER (RANGE INTERVAL '1 02:03' DAY TO MINUTE PRECEDING) FROM s")
    spec = next(op for op in program.operators if isinstance(op, OverSpec))
    assert spec.windows[0][1] == (26 * 3600 + 3 * 60) * 1_000_000
