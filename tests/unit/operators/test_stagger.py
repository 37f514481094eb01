"""Stagger windows (``WINDOWED BY STAGGER``): planning, the operator against a reference model on
random inputs and batch splits, output order, late rows and plan errors."""

from __future__ import annotations

import datetime as dt
import random

import pytest

from engine.errors import PlanError
from engine.plan.logical import StaggerAggSpec
from engine.plan.planner import compile_program
from engine.runtime.loop import RunOptions
from engine.testing import run_program, run_sql

T0 = dt.datetime(2024, 5, 1, 10, 0)
SQL = """
CREATE TABLE s (ts TIMESTAMP, k VARCHAR, v INT, WATERMARK FOR ts AS ts - INTERVAL '{delay}' SECOND);
SELECT k, window_start, window_end, COUNT(*) AS n, SUM(v) AS total
FROM s
WINDOWED BY STAGGER (PARTITION BY k RANGE INTERVAL '{range}' SECOND);
"""


def _iso(seconds: int) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).isoformat() + "Z"


def _run(sql: str, batches: list[list[dict]]) -> tuple[list[dict], list[dict]]:
    program = compile_program(sql)
    sinks, errors, _ = run_program(program, {"s": batches}, RunOptions(idle_timeout_us=None, sleep=lambda s: None))
    return sinks["result"].rows(), errors.rows()


def _reference(rows: list[tuple[int, str, int]], range_s: int, delay_s: int) -> tuple[list[tuple], list[int]]:
    """Stagger windows by the rule, one row at a time: (key, start, end, n, total) and late rows."""
    windows: dict[str, list[list[int]]] = {}  # key -> [[start, n, total], ...] in opening order
    late: list[int] = []
    seen = None
    for i, (t, k, v) in enumerate(rows):
        wm = None if seen is None else seen - delay_s
        mine = windows.setdefault(k, [])
        target = next((w for w in mine if (wm is None or w[0] + range_s > wm) and t < w[0] + range_s), None)
        if target is not None:
            target[1] += 1
            target[2] += v
        elif wm is not None and t + range_s <= wm:
            late.append(i)
        else:
            mine.append([t, 1, v])
        seen = t if seen is None else max(seen, t)
    out = [(k, s, s + range_s, n, total) for k, ws in windows.items() for s, n, total in ws]
    return sorted(out), late


@pytest.mark.parametrize(("seed", "range_s", "delay_s"), [(0, 30, 0), (1, 30, 20), (2, 20, 45), (3, 60, 10)])
def test_stagger_matches_reference_for_any_split(seed: int, range_s: int, delay_s: int) -> None:
    rnd = random.Random(seed)
    rows, clock = [], 0
    for _ in range(50):  # out of order by up to a minute; with a delay, a key has several open windows
        clock += rnd.randint(0, 6)
        rows.append((max(0, clock - rnd.randint(0, 60)), rnd.choice("abc"), rnd.randint(1, 1000)))
    expected, late = _reference(rows, range_s, delay_s)
    records = [{"ts": _iso(t), "k": k, "v": v} for t, k, v in rows]
    cuts = sorted(rnd.sample(range(1, len(records)), 5))
    splits = {
        "one batch": [records],
        "row by row": [[r] for r in records],
        "random": [records[a:b] for a, b in zip([0, *cuts], [*cuts, len(records)])],
    }
    sql = SQL.format(delay=delay_s, range=range_s)
    for label, batches in splits.items():
        out, errors = _run(sql, batches)
        got = sorted(
            (
                r["k"],
                int((r["window_start"] - T0).total_seconds()),
                int((r["window_end"] - T0).total_seconds()),
                r["n"],
                r["total"],
            )
            for r in out
        )
        assert got == expected, label
        assert sorted(int(e["source_offset"].split(":")[1]) for e in errors) == late, label
        assert all(e["reason"] == "late" for e in errors), label


def test_stagger_windows_closing_together_come_out_by_close_time_then_key() -> None:
    # c opens first, b and a at the same time (so they close together); one row closes all three.
    rows = [
        {"ts": _iso(10), "k": "c", "v": 1},
        {"ts": _iso(20), "k": "b", "v": 1},
        {"ts": _iso(20), "k": "a", "v": 1},
        {"ts": _iso(25), "k": "c", "v": 1},
        {"ts": _iso(300), "k": "d", "v": 1},
    ]
    for batches in ([rows], [rows[:2], rows[2:]], [[r] for r in rows]):
        out = run_sql(SQL.format(delay=0, range=30), {"s": batches})
        assert [(r["k"], r["n"]) for r in out] == [("c", 2), ("a", 1), ("b", 1), ("d", 1)]


def test_stagger_late_row_error_names_the_window_end() -> None:
    rows = [{"ts": _iso(100), "k": "a", "v": 1}, {"ts": _iso(0), "k": "b", "v": 2}]
    out, errors = _run(SQL.format(delay=10, range=30), [rows])
    assert [(r["k"], r["n"]) for r in out] == [("a", 1)]
    assert [e["reason"] for e in errors] == ["late"]
    assert "ends at 2024-05-01T10:00:30" in errors[0]["message"]
    assert "watermark 2024-05-01T10:01:30" in errors[0]["message"]


def test_stagger_plans_one_operator_with_keys_range_and_time() -> None:
    program = compile_program(
        """
        CREATE TABLE trades (at TIMESTAMP, event_time TIMESTAMP, sym VARCHAR, WATERMARK FOR at AS at);
        SELECT sym, date_trunc('minute', event_time) AS m, window_end, COUNT(*) AS n
        FROM trades WINDOWED BY STAGGER (PARTITION BY m, sym RANGE INTERVAL '1.5' MINUTE)
        """
    )
    [spec] = program.operators
    assert isinstance(spec, StaggerAggSpec)
    assert (spec.kind, spec.range_us, spec.time_column, spec.n_keys) == ("staggeragg", 90_000_000, "at", 2)
    assert spec.partition_sql == ["DATE_TRUNC('MINUTE', \"event_time\")", '"sym"']
    assert program.streams["result"].schema.names == ["sym", "m", "window_end", "n"]


def test_stagger_emit_changes_updates_an_open_window() -> None:
    sql = SQL.format(delay=0, range=30).rstrip().rstrip(";") + " EMIT CHANGES;"
    rows = [{"ts": _iso(0), "k": "a", "v": 1}, {"ts": _iso(10), "k": "a", "v": 2}]
    out = run_sql(sql, {"s": [rows[:1], rows[1:]]})
    assert [(r["op"], r["n"], r["total"]) for r in out] == [("insert", 1, 1), ("update", 2, 3)]


BAD = [  # (SELECT list, stagger clause, where the error points, message)
    ("k, COUNT(*) AS n", "PARTITION BY k RANGE 30", "30", "the STAGGER range must be an INTERVAL literal"),
    ("k, COUNT(*) AS n", "PARTITION BY k RANGE INTERVAL '0' SECOND", "INTERVAL '0'", "range must be positive"),
    ("k, v, COUNT(*) AS n", "PARTITION BY k RANGE INTERVAL '1' MINUTE", "v, COUNT", 'column "v" must be a stagger'),
    ("COUNT(*) AS n", "PARTITION BY window_start RANGE INTERVAL '1' MINUTE", "window_start", "cannot be a stagger"),
    ("COUNT(*) AS n", "PARTITION BY SUM(v) RANGE INTERVAL '1' MINUTE", "SUM(v)", "an aggregate cannot be a stagger"),
]


@pytest.mark.parametrize(("items", "clause", "at", "message"), BAD, ids=[b[3] for b in BAD])
def test_stagger_plan_errors_point_at_the_mistake(items: str, clause: str, at: str, message: str) -> None:
    sql = (
        "CREATE TABLE s (ts TIMESTAMP, k VARCHAR, v INT, WATERMARK FOR ts AS ts);\n"
        f"SELECT {items} FROM s\n"
        f"WINDOWED BY STAGGER ({clause});\n"
    )
    with pytest.raises(PlanError, match=message) as info:
        compile_program(sql)
    assert info.value.line is not None and info.value.col is not None
    assert sql.split("\n")[info.value.line - 1][info.value.col - 1 :].startswith(at)


def test_stagger_needs_an_event_time() -> None:
    sql = """CREATE TABLE s (ts TIMESTAMP, k VARCHAR);
SELECT k, COUNT(*) AS n FROM s WINDOWED BY STAGGER (PARTITION BY k RANGE INTERVAL '1' MINUTE);"""
    with pytest.raises(PlanError, match="needs the event time of s") as info:
        compile_program(sql)
    assert (info.value.line, info.value.col) == (2, 32)
