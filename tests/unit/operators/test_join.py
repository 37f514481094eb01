"""Windowed stream-to-stream joins: parsing, the operator against a reference model on random
inputs and batch splits, restore, state pruning, evaluation errors and plan errors."""

from __future__ import annotations

import datetime as dt
import random

import pyarrow as pa
import pytest
import sqlglot

from engine.errors import PlanError
from engine.operators.join import StreamJoinOperator
from engine.plan.logical import StreamJoinSpec
from engine.plan.planner import compile_program
from engine.runtime.loop import RunOptions
from engine.runtime.pipeline import Pipeline
from engine.sql.dialect import Duckstream, TableWindow
from engine.testing import run_program

T0 = dt.datetime(2024, 5, 1, 10, 0)
SOURCES = """
CREATE TABLE a (ROWTIME TIMESTAMP, k VARCHAR, x INT, WATERMARK FOR ROWTIME AS ROWTIME);
CREATE TABLE b (ROWTIME TIMESTAMP, k VARCHAR, y INT, WATERMARK FOR ROWTIME AS ROWTIME);
"""


def _iso(seconds: int) -> str:
    return (T0 + dt.timedelta(seconds=seconds)).isoformat() + "Z"


def _secs(value: str | dt.datetime) -> int:
    when = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value.rstrip("Z"))
    return int((when - T0).total_seconds())


def _rows(rng: random.Random, n: int, value: str) -> list[dict]:
    times = sorted(rng.randint(0, 120) for _ in range(n))
    return [{"ROWTIME": _iso(t), "k": rng.choice("pq"), value: i} for i, t in enumerate(times)]


def _split(rng: random.Random, rows: list[dict]) -> list[list[dict]]:
    cuts = sorted(rng.sample(range(1, len(rows)), k=min(len(rows) - 1, rng.randint(0, 4)))) if len(rows) > 1 else []
    bounds = [0, *cuts, len(rows)]
    return [rows[i:j] for i, j in zip(bounds, bounds[1:])]


def _run(sql: str, inputs: dict[str, list[list[dict]]], **options: object) -> tuple[list[dict], list[dict]]:
    program = compile_program(SOURCES + sql)
    opts = RunOptions(idle_timeout_us=None, sleep=lambda s: None, **options)  # type: ignore[arg-type]
    sinks, errors, _ = run_program(program, inputs, opts)
    return sinks["result"].rows(), errors.rows()


def _window(kind: str, size: int) -> str:
    if kind == "none":
        return ""
    if kind == "range":
        return f" OVER (RANGE INTERVAL '{size}' SECOND PRECEDING)"
    return f" OVER (ROWS {size} PRECEDING)"


def _reference(left: list[dict], right: list[dict], wa: tuple[str, int], wb: tuple[str, int], how: str) -> list[tuple]:
    """The join by its rule, pair by pair: (rowtime, x, y) rows."""

    def in_window(rows: list[dict], i: int, window: tuple[str, int], at: int) -> bool:
        kind, size = window
        t = _secs(rows[i]["ROWTIME"])
        if t > at:
            return False
        if kind == "range":
            return t >= at - size
        if kind == "none":
            return t == at
        later = [j for j, r in enumerate(rows) if _secs(r["ROWTIME"]) <= at and j > i]  # rows arrive in time order
        return len(later) <= size

    out = []
    hit_a, hit_b = set(), set()
    for i, a in enumerate(left):
        for j, b in enumerate(right):
            ta, tb = _secs(a["ROWTIME"]), _secs(b["ROWTIME"])
            if a["k"] != b["k"]:
                continue
            if ta <= tb:
                ok = in_window(left, i, wa, tb) or (ta == tb and in_window(right, j, wb, ta))
            else:
                ok = in_window(right, j, wb, ta)
            if ok:
                out.append((max(ta, tb), a["x"], b["y"]))
                hit_a.add(i)
                hit_b.add(j)
    end = max(_secs(r["ROWTIME"]) for r in left + right)

    def exit_time(rows: list[dict], i: int, window: tuple[str, int]) -> int:
        kind, size = window
        t = _secs(rows[i]["ROWTIME"])
        if kind == "range":
            return t + size
        if kind == "none":
            return t
        return _secs(rows[i + size + 1]["ROWTIME"]) if i + size + 1 < len(rows) else end

    if how in ("left", "full"):
        out += [(exit_time(left, i, wa), a["x"], None) for i, a in enumerate(left) if i not in hit_a]
    if how in ("right", "full"):
        out += [(exit_time(right, j, wb), None, b["y"]) for j, b in enumerate(right) if j not in hit_b]
    return sorted(out, key=repr)


def _as_tuples(rows: list[dict]) -> list[tuple]:
    return sorted(((_secs(r["t"]), r["x"], r["y"]) for r in rows), key=repr)


WINDOWS = [
    (("range", 30), ("none", 0)),
    (("none", 0), ("range", 20)),
    (("range", 10), ("range", 25)),
    (("rows", 1), ("none", 0)),
    (("rows", 0), ("rows", 2)),
    (("range", 15), ("rows", 1)),
]


@pytest.mark.parametrize(
    ("wa", "wb", "how"),
    [
        (wa, wb, how)
        for i, (wa, wb) in enumerate(WINDOWS)
        for how in (["inner", "left", "right", "full"][i % 4], "full")
    ],
)
def test_join_matches_the_reference_whatever_the_batches(wa: tuple[str, int], wb: tuple[str, int], how: str) -> None:
    rng = random.Random(f"{wa}{wb}{how}")
    join = {"inner": "JOIN", "left": "LEFT JOIN", "right": "RIGHT JOIN", "full": "FULL JOIN"}[how]
    sql = f"SELECT ROWTIME AS t, o.x, s.y FROM a{_window(*wa)} AS o {join} b{_window(*wb)} AS s ON o.k = s.k;"
    for _ in range(3):
        left, right = _rows(rng, rng.randint(1, 12), "x"), _rows(rng, rng.randint(1, 12), "y")
        expected = _reference(left, right, wa, wb, how)
        out, errors = _run(sql, {"a": _split(rng, left), "b": _split(rng, right)})
        assert errors == []
        assert _as_tuples(out) == expected
        times = [_secs(r["t"]) for r in out]
        assert times == sorted(times), "output rows come in ascending ROWTIME"


def test_restored_run_equals_an_uninterrupted_one(tmp_path: object) -> None:
    rng = random.Random(7)
    left, right = _rows(rng, 15, "x"), _rows(rng, 15, "y")
    sql = "SELECT ROWTIME AS t, o.x, s.y FROM a OVER (ROWS 2 PRECEDING) AS o FULL JOIN b OVER (RANGE INTERVAL '20' SECOND PRECEDING) AS s ON o.k = s.k;"  # noqa: E501
    inputs = {"a": [[r] for r in left], "b": [[r] for r in right]}
    whole, _ = _run(sql, inputs)
    program = compile_program(SOURCES + sql)
    directory = str(tmp_path)
    first = RunOptions(idle_timeout_us=None, sleep=lambda s: None, stop_after_batches=11)
    sinks, _, _ = run_program(program, inputs, first, checkpoint_dir=directory)
    again = compile_program(SOURCES + sql)
    rest, _, _ = run_program(again, inputs, RunOptions(idle_timeout_us=None, sleep=lambda s: None), directory)
    assert _as_tuples(sinks["result"].rows() + rest["result"].rows()) == _as_tuples(whole)


def _pipeline(sql: str) -> tuple[Pipeline, StreamJoinOperator]:
    program = compile_program(SOURCES + sql)
    pipeline = Pipeline(program)
    op = next(o for o in pipeline.operators if isinstance(o, StreamJoinOperator))
    return pipeline, op


def _push(pipeline: Pipeline, stream: str, rows: list[tuple[int, str, int]], first_seq: int) -> list[dict]:
    value = "x" if stream == "a" else "y"
    table = pa.table(
        {
            "ROWTIME": pa.array([T0 + dt.timedelta(seconds=t) for t, _, _ in rows], pa.timestamp("us")),
            "k": [k for _, k, _ in rows],
            value: pa.array([v for _, _, v in rows], pa.int32()),
            "__seq": pa.array(range(first_seq, first_seq + len(rows)), pa.int64()),
        }
    )
    result = pipeline.push(stream, table)
    return [r for t in result.outputs.get("result", []) for r in t.to_pylist()]


def test_state_keeps_only_rows_that_can_still_match() -> None:
    pipeline, op = _pipeline(
        "SELECT o.x, s.y FROM a OVER (RANGE INTERVAL '10' SECOND PRECEDING) AS o JOIN b AS s ON o.k = s.k;"
    )
    for i in range(50):
        _push(pipeline, "a", [(i * 5, "p", i)], i)
        _push(pipeline, "b", [(i * 5 + 1, "p", i)], i)
    held = sum(t.num_rows for t in op.buffers)
    assert held <= 6, f"{held} rows held"
    assert op.snapshot()["frontier"] == op.watermark


def test_pair_waits_for_the_watermark_and_outer_row_for_its_window() -> None:
    pipeline, _ = _pipeline(
        "SELECT ROWTIME AS t, o.x, s.y FROM a OVER (RANGE INTERVAL '60' SECOND PRECEDING) AS o "
        "LEFT JOIN b AS s ON o.k = s.k;"
    )
    assert _push(pipeline, "a", [(20, "p", 1), (30, "q", 2)], 0) == []
    assert _push(pipeline, "b", [(50, "p", 7)], 0) == []  # b's time is not below the watermark yet
    out = _push(pipeline, "a", [(85, "r", 3)], 2) + _push(pipeline, "b", [(95, "z", 8)], 1)
    assert [(r["x"], r["y"]) for r in out] == [(1, 7)]  # watermark min(85, 95): q@30 may still match until 90
    out = _push(pipeline, "a", [(100, "r", 4)], 3)
    assert [(r["x"], r["y"], r["t"]) for r in out] == [(2, None, T0 + dt.timedelta(seconds=90))]


def test_a_failing_join_condition_is_an_error_row_not_an_exception() -> None:
    sql = (
        "SELECT o.x, s.y FROM a OVER (RANGE INTERVAL '60' SECOND PRECEDING) AS o "
        "JOIN b AS s ON o.k = s.k AND 10 / s.y > 1;"
    )
    left = [{"ROWTIME": _iso(0), "k": "p", "x": 1}]
    right = [{"ROWTIME": _iso(10), "k": "p", "y": 0}, {"ROWTIME": _iso(20), "k": "p", "y": 2}]
    out, errors = _run(sql, {"a": [left], "b": [right]})
    assert [(r["x"], r["y"]) for r in out] == [(1, 2)]
    assert [(e["reason"], e["source_offset"]) for e in errors] == [("eval", "a:0")]  # the pair, named by its FROM row
    assert '"y": 0' in errors[0]["payload"].decode()


def test_a_failing_select_item_is_an_error_row() -> None:
    sql = "SELECT o.x, 10 / s.y AS r FROM a OVER (RANGE INTERVAL '60' SECOND PRECEDING) AS o JOIN b AS s ON o.k = s.k;"
    left = [{"ROWTIME": _iso(0), "k": "p", "x": 1}]
    right = [{"ROWTIME": _iso(10), "k": "p", "y": 0}, {"ROWTIME": _iso(20), "k": "p", "y": 2}]
    out, errors = _run(sql, {"a": [left], "b": [right]})
    assert out == [{"x": 1, "r": 5.0}]
    assert [e["reason"] for e in errors] == ["eval"]
    payload = errors[0]["payload"]
    text = payload.decode() if isinstance(payload, bytes) else str(payload)
    assert '"o": {' in text and '"s": {' in text


def test_star_expands_both_sides_and_using_merges_the_key() -> None:
    sql = """
    CREATE TABLE a (ta TIMESTAMP, k VARCHAR, x INT, WATERMARK FOR ta AS ta);
    CREATE TABLE b (tb TIMESTAMP, k VARCHAR, y INT, WATERMARK FOR tb AS tb);
    SELECT * FROM a OVER (ROWS 0 PRECEDING) AS o FULL JOIN b AS s USING (k);
    """
    program = compile_program(sql)
    assert program.streams["result"].schema.names == ["k", "ta", "x", "tb", "y"]
    spec = next(s for s in program.operators if isinstance(s, StreamJoinSpec))
    assert spec.windows == (("rows", 0), ("none", 0))
    a = [{"ta": _iso(0), "k": "p", "x": 1}]
    b = [{"tb": _iso(0), "k": "p", "y": 2}, {"tb": _iso(5), "k": "q", "y": 3}]
    sinks, _, _ = run_program(program, {"a": [a], "b": [b]}, RunOptions(idle_timeout_us=None, sleep=lambda s: None))
    assert [(r["k"], r["x"], r["y"]) for r in sinks["result"].rows()] == [("p", 1, 2), ("q", None, 3)]


def test_over_after_a_table_name_parses_and_prints_back() -> None:
    text = (
        "SELECT * FROM a OVER (RANGE INTERVAL '1' MINUTE PRECEDING) AS o "
        "JOIN b OVER w AS s ON o.k = s.k WINDOW w AS (ROWS 2 PRECEDING)"
    )
    tree = sqlglot.parse_one(text, read=Duckstream)
    window = tree.args["from_"].this.args["window"]
    assert isinstance(window, TableWindow)
    assert window.args["spec"].args["kind"] == "RANGE"
    assert tree.args["joins"][0].this.args["window"].this.name == "w"
    assert tree.sql(dialect=Duckstream) == text


@pytest.mark.parametrize(
    ("sql", "message"),
    [
        ("SELECT o.x FROM a AS o JOIN b AS s ON o.k = s.k;", "needs a window on at least one side"),
        (
            "SELECT o.x FROM a OVER (ROWS 1 PRECEDING) AS o JOIN b AS s ON o.k = s.k JOIN b AS t ON o.k = t.k;",
            "more than two streams",
        ),
        (
            "SELECT o.k, COUNT(*) AS n FROM a OVER (ROWS 1 PRECEDING) AS o JOIN b AS s ON o.k = s.k GROUP BY o.k;",
            "GROUP BY in one SELECT",
        ),
        ("SELECT o.x FROM a OVER (RANGE UNBOUNDED PRECEDING) AS o JOIN b AS s ON o.k = s.k;", "bounded"),
        ("SELECT o.x FROM a OVER (ROWS 1 PRECEDING) AS o JOIN b AS s ON o.k = s.nope;", 'unknown column "nope"'),
        ("SELECT o.x FROM a OVER (ROWS 1 PRECEDING) AS o JOIN b AS o ON o.k = o.k;", "both sides of the join"),
        ("SELECT o.x FROM a OVER (ROWS 1 PRECEDING) AS o JOIN b AS s;", "needs ON or USING"),
        ("SELECT o.x FROM a AS o JOIN b AS s ON o.ROWTIME > s.ROWTIME;", "needs a window"),
    ],
)
def test_plan_errors(sql: str, message: str) -> None:
    with pytest.raises(PlanError, match=message) as info:
        compile_program(SOURCES + sql)
    assert info.value.line is not None


def test_interval_condition_becomes_windows() -> None:
    program = compile_program(
        SOURCES + "SELECT o.x FROM a AS o JOIN b AS s ON o.k = s.k "
        "AND o.ROWTIME >= s.ROWTIME - INTERVAL '10' SECOND AND o.ROWTIME < s.ROWTIME + INTERVAL '5' SECOND;"
    )
    spec = next(s for s in program.operators if isinstance(s, StreamJoinSpec))
    assert spec.windows == (("range", 10_000_000), ("range", 4_999_999))
