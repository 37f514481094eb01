"""Sliding windows against a batch oracle: any input, split into micro-batches anywhere, gives for
every on-time row what a DuckDB self-join over the whole input computes for it.

The oracle shares nothing with the operator: it marks late rows by the rule (the running max of
event time before a row, minus the delay, is above the row's time), numbers each device's rows
by (time, arrival), and joins every row to the rows of its window by plain comparisons.
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
HALF_LIFE = 10  # seconds, for EXP_AVG

rows_strategy = st.lists(
    st.fixed_dictionaries(
        {
            # many rows on 5 s marks, so equal times (ties) and window edges are common
            "ts": st.one_of(st.integers(0, 24).map(lambda x: x * 5), st.integers(0, 120)),
            "device": st.sampled_from(["a", "b", None]),
            "temp": st.one_of(st.none(), st.integers(-40, 60)),
        }
    ),
    max_size=40,
)
# (kind, size): RANGE in seconds (0: RANGE CURRENT ROW) or ROWS (0: ROWS CURRENT ROW)
windows = st.sampled_from([("range", 30), ("range", 5), ("range", 0), ("rows", 2), ("rows", 0)])


def _frame(kind: str, size: int) -> str:
    if size == 0:
        return f"{kind.upper()} CURRENT ROW"
    return f"RANGE INTERVAL '{size}' SECOND PRECEDING" if kind == "range" else f"ROWS {size} PRECEDING"


def streamed(rows: list[dict], cuts: set[int], kind: str, size: int, delay: int) -> list[dict]:
    sql = f"""
    CREATE TABLE t (ts TIMESTAMP, id BIGINT, device VARCHAR, temp BIGINT,
                    WATERMARK FOR ts AS ts - INTERVAL '{delay}' SECOND);
    SELECT id, COUNT(*) OVER w AS n, SUM(temp) OVER w AS s, MIN(temp) OVER w AS lo, MAX(temp) OVER w AS hi,
           AVG(temp) OVER w AS mean, LAG(temp, 1, -1) OVER w AS prev, FIRST_VALUE(temp) OVER w AS first,
           LAST_VALUE(temp) IGNORE NULLS OVER w AS lastnn,
           EXP_AVG(temp, INTERVAL '{HALF_LIFE}' SECOND) OVER w AS ea,
           COUNT(*) OVER (ROWS 3 PRECEDING) AS n_all
    FROM t WINDOW w AS (PARTITION BY device {_frame(kind, size)})"""
    payload = [
        {**r, "id": i, "ts": (EPOCH + dt.timedelta(seconds=r["ts"])).isoformat() + "Z"} for i, r in enumerate(rows)
    ]
    bounds = [0, *sorted(c for c in cuts if 0 < c < len(rows)), len(rows)]
    return run_sql(sql, inputs={"t": [payload[a:b] for a, b in zip(bounds, bounds[1:])]})


def oracle(rows: list[dict], kind: str, size: int, delay: int) -> list[dict]:
    kept: list[dict] = []
    running: int | None = None
    for i, row in enumerate(rows):
        wm = None if running is None else running - delay
        if wm is None or row["ts"] >= wm:
            kept.append({"id": i, "ts": row["ts"] * SEC, "device": row["device"], "temp": row["temp"]})
        running = row["ts"] if running is None else max(running, row["ts"])
    table = pa.Table.from_pylist(
        kept, schema=pa.schema([("id", pa.int64()), ("ts", pa.int64()), ("device", pa.string()), ("temp", pa.int64())])
    )
    inside = f"b.ts >= a.ts - {size * SEC}" if kind == "range" else f"b.rn >= a.rn - {size}"
    con = duckdb.connect()
    con.register("x", table)
    result = con.sql(
        f"""
        WITH r AS (SELECT *, row_number() OVER (PARTITION BY device ORDER BY ts, id) AS rn FROM x)
        SELECT a.id, COUNT(*) AS n, CAST(SUM(b.temp) AS BIGINT) AS s, MIN(b.temp) AS lo, MAX(b.temp) AS hi,
               AVG(b.temp) AS mean, list(b.temp ORDER BY b.rn) AS vals,
               SUM(b.temp * pow(2, (b.ts - a.ts) / {HALF_LIFE * SEC}))
                 / SUM(CASE WHEN b.temp IS NOT NULL THEN pow(2, (b.ts - a.ts) / {HALF_LIFE * SEC}) END) AS ea
        FROM r AS a JOIN r AS b
          ON a.device IS NOT DISTINCT FROM b.device AND b.rn <= a.rn AND {inside}
        GROUP BY a.id"""
    ).to_arrow_table()
    order = sorted(kept, key=lambda r: (r["ts"], r["id"]))
    n_all = {r["id"]: min(4, i + 1) for i, r in enumerate(order)}
    out = []
    for row in result.to_pylist():
        vals = row.pop("vals")
        present = [v for v in vals if v is not None]
        row.update(
            prev=vals[-2] if len(vals) >= 2 else -1,
            first=vals[0],
            lastnn=present[-1] if present else None,
            n_all=n_all[row["id"]],
        )
        out.append(row)
    return out


def _same(got: list[dict], want: list[dict]) -> None:
    assert len(got) == len(want), f"{len(got)} rows streamed, {len(want)} from the oracle"
    for x, y in zip(sorted(got, key=lambda r: r["id"]), sorted(want, key=lambda r: r["id"])):
        for col in ("id", "n", "s", "lo", "hi", "prev", "first", "lastnn", "n_all"):
            assert x[col] == y[col], (col, x, y)
        for col in ("mean", "ea"):
            if x[col] is None or y[col] is None:
                assert x[col] is None and y[col] is None, (col, x, y)
            else:
                assert math.isclose(x[col], y[col], rel_tol=1e-9, abs_tol=1e-9), (col, x, y)


TIES = [
    {"ts": 10, "device": "a", "temp": 1},
    {"ts": 10, "device": "a", "temp": None},
    {"ts": 40, "device": "a", "temp": 4},
    {"ts": 10, "device": "a", "temp": 8},
    {"ts": 40, "device": None, "temp": 2},
]


@example(rows=TIES, cuts={1, 3}, window=("range", 30), delay=0)
@example(rows=TIES, cuts={2}, window=("range", 30), delay=30)
@example(rows=TIES, cuts=set(), window=("range", 0), delay=5)
@given(
    rows=rows_strategy,
    cuts=st.sets(st.integers(0, 40), max_size=6),
    window=windows,
    delay=st.sampled_from([0, 5, 30]),
)
def test_sliding_windows_equal_a_batch_self_join(
    rows: list[dict], cuts: set[int], window: tuple[str, int], delay: int
) -> None:
    kind, size = window
    _same(streamed(rows, cuts, kind, size, delay), oracle(rows, kind, size, delay))
