"""Benchmark: 1-second tumbling COUNT/SUM/AVG/MAX per key, streaming vs DuckDB one-shot.

Prints events/second for duckstream fed in micro-batches and for DuckDB's one-shot GROUP BY
over the same Arrow table, measured in the same run, their ratio, and peak memory. Results of
both are checked equal. Targets (issue #2): streaming >= 40% of one-shot, >= 2M events/s at
10k-row batches, memory bounded by open windows x keys.

    python bench/bench_tumble.py                       # 5M rows, 1,000 keys
    python bench/bench_tumble.py --rows 1000000 --batch 10000 --batch 100000
"""

from __future__ import annotations

import argparse
import gc
import resource
import sys
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine import compile as compile_program  # noqa: E402
from engine.runtime.pipeline import Pipeline  # noqa: E402
from engine.types import MAX_TIME, SEQ_COL  # noqa: E402

SQL = """
CREATE TABLE events (ts TIMESTAMP(3), key VARCHAR, value DOUBLE,
                     WATERMARK FOR ts AS ts - INTERVAL '1' SECOND);
SELECT key, window_start, window_end, COUNT(*) AS n, SUM(value) AS total, AVG(value) AS mean, MAX(value) AS peak
FROM TABLE(TUMBLE(TABLE events, DESCRIPTOR(ts), INTERVAL '1' SECOND))
GROUP BY key, window_start, window_end
"""
ONE_SHOT = """
SELECT key, time_bucket(INTERVAL '1 second', ts, TIMESTAMP '1970-01-01') AS window_start,
       COUNT(*) AS n, SUM(value) AS total, AVG(value) AS mean, MAX(value) AS peak
FROM events GROUP BY ALL
"""


def generate(rows: int, keys: int, rate: int, seed: int = 7) -> pa.Table:
    """``rows`` events over ``keys`` keys, ``rate`` events per second of event time, in order
    but for a little jitter (up to 0.5 s, inside the 1 s watermark delay)."""
    rng = np.random.default_rng(seed)
    base = 1_714_557_600_000  # 2024-05-01T10:00:00Z in ms
    ts = base + (np.arange(rows, dtype=np.int64) * 1000) // rate
    ts = ts - rng.integers(0, 500, rows)
    names = np.array([f"k{i:04d}" for i in range(keys)], dtype=object)
    key = pa.DictionaryArray.from_arrays(pa.array(rng.integers(0, keys, rows), pa.int32()), pa.array(names)).cast(
        pa.string()
    )
    return pa.table(
        {
            "ts": pa.array(ts, pa.timestamp("ms")).cast(pa.timestamp("us")),
            "key": key,
            "value": pa.array(rng.random(rows) * 100.0),
            SEQ_COL: pa.array(np.arange(rows, dtype=np.int64)),
        }
    )


def one_shot(table: pa.Table) -> tuple[float, pa.Table]:
    con = duckdb.connect()
    con.register("events", table.drop_columns([SEQ_COL]))
    start = time.perf_counter()
    out = con.sql(ONE_SHOT).to_arrow_table()
    return time.perf_counter() - start, out


def streaming(table: pa.Table, batch: int) -> tuple[float, pa.Table, int]:
    program = compile_program(SQL)
    pipeline = Pipeline(program)
    outputs: list[pa.Table] = []
    peak_state = 0
    start = time.perf_counter()
    for offset in range(0, table.num_rows, batch):
        result = pipeline.push("events", table.slice(offset, batch))
        for tables in result.outputs.values():
            outputs += tables
        op = pipeline.operators[0]
        peak_state = max(peak_state, sum(t.num_rows for t in op.state))  # type: ignore[attr-defined]
    for tables in pipeline.advance("events", MAX_TIME).outputs.values():
        outputs += tables
    elapsed = time.perf_counter() - start
    return elapsed, pa.concat_tables(outputs), peak_state


def same_results(streamed: pa.Table, expected: pa.Table) -> str:
    """'results equal' or what differs (rows matched on key and window_start)."""
    if streamed.num_rows != expected.num_rows:
        return f"RESULTS DIFFER: {streamed.num_rows:,} rows vs {expected.num_rows:,}"
    order = [("key", "ascending"), ("window_start", "ascending")]
    a, b = streamed.sort_by(order), expected.sort_by(order)
    for col in ("key", "window_start", "n", "peak"):
        if not a[col].equals(b[col].cast(a[col].type)):
            return f"RESULTS DIFFER in {col}"
    for col in ("total", "mean"):
        x, y = a[col].to_numpy(), b[col].to_numpy()
        if not np.allclose(x, y, rtol=1e-9, atol=1e-9):
            return f"RESULTS DIFFER in {col}"
    return "results equal"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000_000)
    parser.add_argument("--keys", type=int, default=1_000)
    parser.add_argument("--rate", type=int, default=10_000, help="events per second of event time")
    parser.add_argument(
        "--batch", type=int, action="append", help="micro-batch sizes (default 10000, 100000 and 1000000)"
    )
    args = parser.parse_args()
    batches = args.batch or [10_000, 100_000, 1_000_000]
    table = generate(args.rows, args.keys, args.rate)
    print(f"{args.rows:,} events, {args.keys:,} keys, {args.rate:,} events/s of event time, 1 s tumbling windows")
    base_s, expected = one_shot(table)
    base_rate = args.rows / base_s
    print(f"duckdb one-shot GROUP BY   {base_rate / 1e6:8.2f} M events/s   ({expected.num_rows:,} result rows)")
    for batch in batches:
        gc.collect()
        secs, got, peak_state = streaming(table, batch)
        rate = args.rows / secs
        same = same_results(got, expected)
        print(
            f"duckstream, {batch:>7,}-row batches {rate / 1e6:6.2f} M events/s   ratio {rate / base_rate:5.2f}"
            f"   peak state {peak_state:,} rows   {same}"
        )
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    input_mb = table.nbytes / 2**20
    print(f"peak RSS {peak_mb:,.0f} MiB (the input table alone is {input_mb:,.0f} MiB)")


if __name__ == "__main__":
    main()
