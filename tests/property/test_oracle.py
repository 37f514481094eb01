"""The batch oracle: any input, split into micro-batches anywhere, gives what DuckDB computes
over the whole input at once (with the lateness rule applied in the oracle).

The oracle is written independently of the engine: it stamps each row with the watermark before
it (running max of event time minus the delay), expands rows into their windows with plain
integer arithmetic, drops (row, window) pairs whose window had closed, and runs one GROUP BY.
"""

from __future__ import annotations

import datetime as dt
import math

import duckdb
import pyarrow as pa
from hypothesis import example, given
from hypothesis import strategies as st

from engine.testing import run_sql

EPOCH = dt.datetime(1970, 1, 1)
SEC = 1_000_000

rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            # many rows on 5 s marks, so window ends and watermarks coincide often
            "ts": st.one_of(st.integers(0, 40).map(lambda x: x * 5), st.integers(0, 600)),
            "device": st.sampled_from(["a", "b", "c", None]),
            "temp": st.one_of(st.none(), st.integers(-40, 60)),
        }
    ),
    max_size=120,
)


def _windows(ts: int, kind: str, size: int, slide: int) -> list[tuple[int, int]]:
    if kind == "tumble":
        start = ts - ts % size
        return [(start, start + size)]
    if kind == "hop":
        out, start = [], ts - ts % slide
        while start > ts - size:
            out.append((start, start + size))
            start -= slide
        return out
    start = ts - ts % size  # cumulate: slide is the step
    return [(start, start + k * slide) for k in range(1, size // slide + 1) if start + k * slide > ts]


def oracle(rows: list[dict], kind: str, size: int, slide: int, delay: int, lateness: int) -> list[dict]:
    expanded = []
    running = None
    for seq, row in enumerate(rows):
        ts = row["ts"] * SEC
        wm = None if running is None else running - delay
        for start, end in _windows(ts, kind, size, slide):
            if wm is None or wm < end + lateness:
                expanded.append({"ws": start, "we": end, "device": row["device"], "temp": row["temp"], "seq": seq})
        running = ts if running is None else max(running, ts)
    table = pa.Table.from_pylist(
        expanded,
        schema=pa.schema(
            [("ws", pa.int64()), ("we", pa.int64()), ("device", pa.string()), ("temp", pa.int64()), ("seq", pa.int64())]
        ),
    )
    con = duckdb.connect()
    con.register("x", table)
    result = con.sql(
        """SELECT device, make_timestamp(ws) AS window_start, make_timestamp(we) AS window_end,
                  CAST(SUM(temp) AS BIGINT) AS s, COUNT(*) AS n, COUNT(temp) AS nt, MIN(temp) AS lo,
                  MAX(temp) AS hi, AVG(temp) AS mean, COUNT(DISTINCT temp) AS d, arg_min(temp, seq) AS first
           FROM x GROUP BY ALL"""
    )
    return result.to_arrow_table().to_pylist()


def streamed(
    rows: list[dict], cuts: set[int], kind: str, size: int, slide: int, delay: int, lateness: int, distinct: bool
) -> list[dict]:
    tvf = {
        "tumble": f"TUMBLE(TABLE t, DESCRIPTOR(ts), INTERVAL '{size}' MICROSECOND)",
        "hop": f"HOP(TABLE t, DESCRIPTOR(ts), INTERVAL '{slide}' MICROSECOND, INTERVAL '{size}' MICROSECOND)",
        "cumulate": f"CUMULATE(TABLE t, DESCRIPTOR(ts), INTERVAL '{slide}' MICROSECOND, INTERVAL '{size}' MICROSECOND)",
    }[kind]
    distinct_sql = "COUNT(DISTINCT temp)" if distinct else "0"
    sql = f"""
    CREATE TABLE t (ts TIMESTAMP, device VARCHAR, temp BIGINT, WATERMARK FOR ts AS ts - INTERVAL '{delay}' MICROSECOND);
    SELECT device, window_start, window_end, SUM(temp) AS s, COUNT(*) AS n, COUNT(temp) AS nt,
           MIN(temp) AS lo, MAX(temp) AS hi, AVG(temp) AS mean, {distinct_sql} AS d, FIRST_VALUE(temp) AS first
    FROM TABLE({tvf})
    GROUP BY device, window_start, window_end"""
    payload = [{**r, "ts": (EPOCH + dt.timedelta(seconds=r["ts"])).isoformat() + "Z"} for r in rows]
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(rows)), len(rows)]
    batches = [payload[a:b] for a, b in zip(bounds, bounds[1:])]
    return run_sql(sql, inputs={"t": batches}, allowed_lateness_us=lateness)


def _key(row: dict) -> tuple:
    return (str(row["device"]), row["window_start"], row["window_end"])


def _same(a: list[dict], b: list[dict], distinct: bool) -> None:
    assert len(a) == len(b), f"{len(a)} rows streamed, {len(b)} from the oracle"
    for x, y in zip(sorted(a, key=_key), sorted(b, key=_key)):
        for col in ("device", "window_start", "window_end", "s", "n", "nt", "lo", "hi", "first"):
            assert x[col] == y[col], (col, x, y)
        if distinct:
            assert x["d"] == y["d"], ("d", x, y)
        if x["mean"] is None or y["mean"] is None:
            assert x["mean"] is None and y["mean"] is None
        else:
            assert math.isclose(x["mean"], y["mean"], rel_tol=1e-9, abs_tol=1e-9)


kinds = st.sampled_from([("tumble", 60, 60), ("tumble", 7, 7), ("hop", 60, 20), ("hop", 50, 20), ("cumulate", 60, 15)])


@given(rows=rows_strategy, cuts=st.sets(st.integers(0, 120), max_size=8), kind=kinds)
def test_in_order_input_equals_batch_query(rows: list[dict], cuts: set[int], kind: tuple[str, int, int]) -> None:
    rows = sorted(rows, key=lambda r: r["ts"])
    name, size, slide = kind
    got = streamed(rows, cuts, name, size * SEC, slide * SEC, 0, 0, distinct=False)
    want = oracle(rows, name, size * SEC, slide * SEC, 0, 0)
    _same(got, want, distinct=False)


BOUNDARY = [
    {"ts": 60, "device": "a", "temp": 1},
    {"ts": 30, "device": "a", "temp": 2},
    {"ts": 59, "device": None, "temp": None},
]


@example(rows=BOUNDARY, cuts=set(), kind=("tumble", 60, 60), delay=0, lateness=0, distinct=True)
@example(rows=BOUNDARY, cuts={1}, kind=("hop", 60, 20), delay=0, lateness=0, distinct=False)
@example(rows=BOUNDARY, cuts={2}, kind=("cumulate", 60, 15), delay=0, lateness=10, distinct=True)
@given(
    rows=rows_strategy,
    cuts=st.sets(st.integers(0, 120), max_size=8),
    kind=kinds,
    delay=st.sampled_from([0, 5, 30]),
    lateness=st.sampled_from([0, 0, 10]),
    distinct=st.booleans(),
)
def test_out_of_order_input_equals_batch_query_with_lateness(
    rows: list[dict], cuts: set[int], kind: tuple[str, int, int], delay: int, lateness: int, distinct: bool
) -> None:
    name, size, slide = kind
    got = streamed(rows, cuts, name, size * SEC, slide * SEC, delay * SEC, lateness * SEC, distinct)
    if lateness:
        # corrections: the last row per window and key is the converged result
        last: dict[tuple, dict] = {}
        for row in got:
            last[_key(row)] = row
        got = list(last.values())
    want = oracle(rows, name, size * SEC, slide * SEC, delay * SEC, lateness * SEC)
    _same(got, want, distinct)


SESSION_SQL = """
CREATE TABLE t (ts TIMESTAMP, device VARCHAR, temp BIGINT, WATERMARK FOR ts AS ts - INTERVAL '{delay}' SECOND);
SELECT device, window_start, window_end, COUNT(*) AS n, SUM(temp) AS s, MAX(temp) AS hi
FROM TABLE(SESSION(TABLE t PARTITION BY device, DESCRIPTOR(ts), INTERVAL '{gap}' SECOND))
GROUP BY device, window_start, window_end
"""
# Gaps and islands: a row starts a new session when it is more than `gap` after the previous row
# of its key (rows exactly `gap` apart touch, and touching sessions merge).
SESSION_ORACLE = """
WITH marked AS (
  SELECT *, CASE WHEN ts - LAG(ts) OVER w > {gap} THEN 1 ELSE 0 END AS new_session
  FROM x WINDOW w AS (PARTITION BY device ORDER BY ts)
), numbered AS (
  SELECT *, SUM(new_session) OVER (PARTITION BY device ORDER BY ts ROWS UNBOUNDED PRECEDING) AS sid FROM marked
)
SELECT device, make_timestamp(MIN(ts)) AS window_start, make_timestamp(MAX(ts) + {gap}) AS window_end,
       COUNT(*) AS n, CAST(SUM(temp) AS BIGINT) AS s, MAX(temp) AS hi
FROM numbered GROUP BY device, sid
"""


@given(
    rows=rows_strategy,
    cuts=st.sets(st.integers(0, 120), max_size=8),
    gap=st.sampled_from([5, 20, 45]),
    shuffle=st.booleans(),
)
def test_sessions_equal_gaps_and_islands(rows: list[dict], cuts: set[int], gap: int, shuffle: bool) -> None:
    """Out of order input too, with a watermark delay longer than the input: nothing is late."""
    if not shuffle:
        rows = sorted(rows, key=lambda r: r["ts"])
    payload = [{**r, "ts": (EPOCH + dt.timedelta(seconds=r["ts"])).isoformat() + "Z"} for r in rows]
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(rows)), len(rows)]
    got = run_sql(
        SESSION_SQL.format(delay=1000, gap=gap), inputs={"t": [payload[a:b] for a, b in zip(bounds, bounds[1:])]}
    )
    table = pa.Table.from_pylist(
        [{"ts": r["ts"] * SEC, "device": r["device"], "temp": r["temp"]} for r in rows],
        schema=pa.schema([("ts", pa.int64()), ("device", pa.string()), ("temp", pa.int64())]),
    )
    con = duckdb.connect()
    con.register("x", table)
    want = con.sql(SESSION_ORACLE.format(gap=gap * SEC)).to_arrow_table().to_pylist()
    key = lambda r: (str(r["device"]), r["window_start"])  # noqa: E731
    assert sorted(got, key=key) == sorted(want, key=key)
